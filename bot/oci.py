"""The one boundary to container registries: an image reference read by the distribution spec's
grammar, and "does this manifest exist?" asked over the OCI distribution API (httpx), with the
registry's token or basic auth, its failures as our error tree.

Nothing from chat reaches a URL unchecked: the repository and the tag or digest are validated
against the grammar (which leaves no character a URL path would read specially) before any
request, and the request goes only to the endpoint the configuration names for the host.
"""

from __future__ import annotations

import base64
import binascii
import json
import re
import ssl
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from bot.errors import PermanentError, RetryableError
from bot.lazy import httpx
from bot.prometheus import safe_url

__all__ = [
    "MANIFEST_TYPES",
    "Credentials",
    "ImageRef",
    "ManifestAnswer",
    "RegistryClient",
    "credentials_from",
    "parse_image",
]

# Docker Hub's short names: `nginx` is docker.io/library/nginx, asked at registry-1.docker.io.
DOCKER_HUB = "docker.io"
DOCKER_HUB_ENDPOINT = "https://registry-1.docker.io"

# The distribution spec's reference grammar (distribution/reference, regexp.go).
_COMPONENT = r"[a-z0-9]+(?:(?:\.|_|__|-+)[a-z0-9]+)*"
_NAME = re.compile(rf"{_COMPONENT}(?:/{_COMPONENT})*")
_TAG = re.compile(r"[\w][\w.-]{0,127}", re.ASCII)
_DIGEST = re.compile(r"[a-z0-9]+(?:[.+_-][a-z0-9]+)*:[a-zA-Z0-9=_-]{32,}")
_DOMAIN_LABEL = r"(?:[a-zA-Z0-9]|[a-zA-Z0-9][a-zA-Z0-9-]*[a-zA-Z0-9])"
_HOST = re.compile(rf"{_DOMAIN_LABEL}(?:\.{_DOMAIN_LABEL})*(?::[0-9]{{1,5}})?", re.ASCII)
MAX_NAME = 255

# What we accept, as a container runtime asks: OCI index and manifest, Docker v2 list and
# manifest (a multi-arch tag answers with an index or a list).
MANIFEST_TYPES = (
    "application/vnd.oci.image.index.v1+json",
    "application/vnd.oci.image.manifest.v1+json",
    "application/vnd.docker.distribution.manifest.list.v2+json",
    "application/vnd.docker.distribution.manifest.v2+json",
)
# Error codes by which a registry says the repository or manifest is not there.
_MISSING_CODES = frozenset({"MANIFEST_UNKNOWN", "NAME_UNKNOWN", "NOT_FOUND", "TAG_INVALID"})


@dataclass(frozen=True)
class ImageRef:
    """`registry.example.com:5000/shop/api:1.5.0` as host, repository and tag (or digest)."""

    host: str  # registry host[:port], `docker.io` for Docker Hub
    repository: str  # `shop/api`; `library/nginx` on Docker Hub
    tag: str | None
    digest: str | None

    @property
    def reference(self) -> str:
        """What the manifest is asked by: the digest when there is one, else the tag."""
        return self.digest or self.tag or "latest"

    def __str__(self) -> str:
        text = f"{self.host}/{self.repository}"
        if self.tag:
            text += f":{self.tag}"
        return f"{text}@{self.digest}" if self.digest else text


def parse_image(image: str) -> ImageRef:
    """An image reference, validated; ValueError says what is wrong with it."""
    if not image.isascii() or any(c.isspace() for c in image) or not image:
        raise ValueError("an image reference is ASCII without spaces")
    rest, at, digest = image.partition("@")
    if at and not _DIGEST.fullmatch(digest):
        raise ValueError(f"`{digest}` is not a digest (algorithm:hex)")
    if digest.startswith("sha256:") and not re.fullmatch(r"sha256:[0-9a-f]{64}", digest):
        raise ValueError("a sha256 digest is 64 lowercase hex digits")
    slash, colon = rest.rfind("/"), rest.rfind(":")
    tag: str | None = None
    if colon > slash:
        rest, tag = rest[:colon], rest[colon + 1:]
        if not _TAG.fullmatch(tag):
            raise ValueError(f"`{tag}` is not a tag (letters, digits, _ . -; at most 128)")
    first, sep, remainder = rest.partition("/")
    if sep and ("." in first or ":" in first or first == "localhost" or first != first.lower()):
        host, repository = first, remainder
        if not _HOST.fullmatch(host):
            raise ValueError(f"`{host}` is not a registry host")
    else:
        host, repository = DOCKER_HUB, rest if sep else f"library/{rest}"
    if host in ("index.docker.io", "registry-1.docker.io"):
        host = DOCKER_HUB
    if not _NAME.fullmatch(repository) or len(host) + 1 + len(repository) > MAX_NAME:
        raise ValueError(f"`{repository}` is not a repository name (lowercase letters, digits, "
                         "separators . _ __ -, components joined by /)")
    return ImageRef(host, repository, tag if tag or digest else "latest", digest or None)


@dataclass(frozen=True)
class Credentials:
    username: str
    password: str


def credentials_from(config: Mapping[str, Any], host: str) -> Credentials | None:
    """The credentials for `host` in a docker config.json (`auths`: `auth` as base64
    user:password, or `username` and `password`); None when it has none for the host."""
    auths = config.get("auths")
    if not isinstance(auths, Mapping):
        return None
    keys = {host, f"https://{host}", f"http://{host}", f"https://{host}/v1/", f"{host}/v1/"}
    if host == DOCKER_HUB:
        keys |= {"https://index.docker.io/v1/", "index.docker.io", "registry-1.docker.io"}
    for key, entry in auths.items():
        if key not in keys or not isinstance(entry, Mapping):
            continue
        if isinstance(entry.get("auth"), str) and entry["auth"]:
            try:
                user, _, password = base64.b64decode(entry["auth"], validate=True) \
                    .decode().partition(":")
            except (binascii.Error, UnicodeDecodeError):
                continue
            return Credentials(user, password)
        if isinstance(entry.get("username"), str) and isinstance(entry.get("password"), str):
            return Credentials(entry["username"], entry["password"])
    return None


@dataclass(frozen=True)
class ManifestAnswer:
    """The registry's answer: the manifest is there (with its digest and media type) or not."""

    found: bool
    digest: str | None = None
    media_type: str | None = None


class RegistryClient:
    """HEAD on manifests of one registry endpoint, authenticating as the registry asks."""

    def __init__(self, url: str, *, credentials: Credentials | None = None,
                 verify: bool | ssl.SSLContext = True, timeout: float = 10.0) -> None:
        self.url = url.rstrip("/")
        self.shown_url = safe_url(self.url)
        self._credentials = credentials
        self._http = httpx.AsyncClient(timeout=timeout, verify=verify, follow_redirects=False)

    async def __aenter__(self) -> RegistryClient:
        return self

    async def __aexit__(self, *_: object) -> None:
        await self._http.aclose()

    async def manifest(self, ref: ImageRef) -> ManifestAnswer:
        """Whether `ref`'s manifest exists. A 404 counts as missing only when the registry says
        so with its error code; anything else it cannot tell raises RetryableError (not
        reachable, a server error) or PermanentError (credentials refused)."""
        path = f"/v2/{ref.repository}/manifests/{ref.reference}"  # both validated by the grammar
        headers = {"Accept": ", ".join(MANIFEST_TYPES)}
        response = await self._send("HEAD", path, headers)
        if response.status_code == 401:
            authorization = await self._authorize(response, ref)
            if authorization is not None:
                headers["Authorization"] = authorization
                response = await self._send("HEAD", path, headers)
        status = response.status_code
        if status == 200:
            return ManifestAnswer(True, response.headers.get("Docker-Content-Digest"),
                                  response.headers.get("Content-Type"))
        if status == 404:
            # HEAD has no body: ask again with GET to read why (a 404 from something that is
            # not a registry must not refuse a deploy).
            codes = _error_codes(await self._send("GET", path, headers))
            if codes & _MISSING_CODES:
                return ManifestAnswer(False)
            raise RetryableError(f"{self.shown_url} answered 404 without a registry error "
                                 "code; is it a registry?", delay=1.0)
        if status in (401, 403):
            why = "with the configured credentials" if self._credentials else "anonymously"
            raise PermanentError(f"{self.shown_url} refused access {why} ({status})")
        raise RetryableError(f"{self.shown_url} answered {status}", delay=1.0)

    async def _send(self, method: str, path: str, headers: Mapping[str, str]) -> httpx.Response:
        try:
            return await self._http.request(method, self.url + path, headers=dict(headers))
        except httpx.HTTPError as exc:
            raise RetryableError(f"{self.shown_url} did not answer: {_why(exc)}",
                                 delay=1.0) from exc

    async def _authorize(self, response: httpx.Response, ref: ImageRef) -> str | None:
        """The Authorization header the challenge asks for: a bearer token from the realm
        (anonymous, or with basic credentials), or basic credentials; None when we have none
        to offer."""
        scheme, params = _challenge(response.headers.get("WWW-Authenticate", ""))
        basic = None
        if self._credentials is not None:
            pair = f"{self._credentials.username}:{self._credentials.password}".encode()
            basic = "Basic " + base64.b64encode(pair).decode()
        if scheme == "basic":
            return basic
        if scheme != "bearer" or not params.get("realm", "").startswith(("https://", "http://")):
            return None
        query = {"service": params.get("service", ""),
                 "scope": params.get("scope") or f"repository:{ref.repository}:pull"}
        try:
            answer = await self._http.get(params["realm"], params=query,
                                          headers={"Authorization": basic} if basic else {})
        except httpx.HTTPError as exc:
            raise RetryableError(f"the token service of {self.shown_url} did not answer: "
                                 f"{_why(exc)}", delay=1.0) from exc
        if answer.status_code in (401, 403):
            raise PermanentError(f"the token service of {self.shown_url} refused "
                                 f"{'the credentials' if basic else 'an anonymous token'} "
                                 f"({answer.status_code})")
        if answer.status_code != 200:
            raise RetryableError(f"the token service of {self.shown_url} answered "
                                 f"{answer.status_code}", delay=1.0)
        try:
            body = answer.json()
        except ValueError as exc:
            raise RetryableError(f"the token service of {self.shown_url} answered no JSON",
                                 delay=1.0) from exc
        token = (body.get("token") or body.get("access_token")) if isinstance(body, dict) \
            else None
        if not isinstance(token, str) or not token:
            raise RetryableError(f"the token service of {self.shown_url} gave no token",
                                 delay=1.0)
        return f"Bearer {token}"


_PARAM = re.compile(r'\s*([A-Za-z][A-Za-z0-9_-]*)\s*=\s*(?:"((?:[^"\\]|\\.)*)"|([^\s,]*))\s*,?')


def _challenge(header: str) -> tuple[str, dict[str, str]]:
    """`Bearer realm="...",service="...",scope="..."` -> ("bearer", {...})."""
    scheme, _, rest = header.strip().partition(" ")
    params: dict[str, str] = {}
    for match in _PARAM.finditer(rest):
        quoted, bare = match.group(2), match.group(3)
        params[match.group(1).lower()] = re.sub(r"\\(.)", r"\1", quoted) if quoted is not None \
            else bare or ""
    return scheme.lower(), params


def _error_codes(response: httpx.Response) -> set[str]:
    try:
        body = json.loads(response.content or b"{}")
    except ValueError:
        return set()
    errors = body.get("errors") if isinstance(body, dict) else None
    return {str(e.get("code")) for e in errors or [] if isinstance(e, dict)}


def _why(exc: httpx.HTTPError) -> str:
    return str(exc) or type(exc).__name__
