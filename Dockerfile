# syntax=docker/dockerfile:1
# The opsbot image: `opsbot serve` as a non-root user on a read-only root filesystem.
#   docker build -t opsbot:0.1.0 .
# Both stages use the same base, so the virtualenv built in the first runs unchanged in the second.
# python:3.11.15-slim-bookworm, pinned by digest (the multi-arch index as docker-library's
# repo-info records it); to move on, change tag and digest together.

FROM python:3.11.15-slim-bookworm@sha256:d29f48a31a8b408ed19272ca1e7b10ebae13b240a27e862d3d4217c528e2e0c3 AS build
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_NO_CACHE_DIR=1
COPY . /src
# Wheels of opsbot and every dependency, then a virtualenv installed from exactly those wheels
# (the same script tests/packaging runs, so the two cannot drift).
RUN sh /src/scripts/image-install /src /opt/opsbot

FROM python:3.11.15-slim-bookworm@sha256:d29f48a31a8b408ed19272ca1e7b10ebae13b240a27e862d3d4217c528e2e0c3
ARG VERSION=0.1.0
ARG REVISION=unknown
LABEL org.opencontainers.image.title="opsbot" \
      org.opencontainers.image.description="ChatOps bot that turns Slack commands and Alertmanager alerts into audited Kubernetes runbooks" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.revision="${REVISION}" \
      org.opencontainers.image.licenses="Apache-2.0" \
      org.opencontainers.image.base.name="docker.io/library/python:3.11.15-slim-bookworm"

# Only the virtualenv comes over: no wheels, no build tree, no pip cache. Runbooks, migrations
# and the demo world are package data inside it.
COPY --from=build /opt/opsbot /opt/opsbot

# The writable places, and nothing else: the SQLite directory (also the working directory, where
# the default database file goes) and a temp directory for graphs and matplotlib's cache.
# Kubernetes mounts volumes there; `docker run --read-only` gets anonymous volumes.
RUN mkdir -p /var/lib/opsbot /tmp/opsbot \
 && chown 10001:10001 /var/lib/opsbot /tmp/opsbot
VOLUME ["/var/lib/opsbot", "/tmp/opsbot"]
WORKDIR /var/lib/opsbot

ENV PATH=/opt/opsbot/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    TMPDIR=/tmp/opsbot \
    MPLCONFIGDIR=/tmp/opsbot/matplotlib \
    HOME=/tmp/opsbot \
    OPSBOT_DATABASE_URL=sqlite:////var/lib/opsbot/opsbot.db \
    OPSBOT_LISTEN=0.0.0.0:3000

USER 10001:10001
EXPOSE 3000
# No HEALTHCHECK on purpose: Kubernetes probes /healthz and /readyz.
# checkov:skip=CKV_DOCKER_2:health is Kubernetes' liveness and readiness probes on /healthz and /readyz
ENTRYPOINT ["opsbot", "serve"]
