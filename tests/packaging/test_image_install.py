"""The image's install steps without a container engine (none can run here): the Dockerfile's
own script, `scripts/image-install`, run as a non-root user on a read-only copy of the build
context (.dockerignore applied), then `opsbot --version` and `opsbot runbooks validate` from the
read-only result, as the container runs them, and `opsbot serve` writing only to the image's
volumes."""

from __future__ import annotations

import fnmatch
import os
import re
import shutil
import signal
import stat
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

import bot
from tests.packaging.image import dockerfile_settings
from tests.packaging.tools import ROOT, run
from tests.slack.test_slack_serve import free_port, wait_healthy

NOBODY = 65534
# What the non-root user keeps of the environment: the package index settings (PIP_*) and proxies.
PASSED_ON = re.compile(r"PIP_\w+|(?i:https?_proxy|no_proxy)")


def ignored(relative: str, patterns: list[str]) -> bool:
    """Whether .dockerignore's patterns leave `relative` (a POSIX path) out of the context."""
    parts = relative.split("/")
    for pattern in patterns:
        for candidate in (pattern, pattern.removeprefix("**/")):
            # A pattern matches the path or one of its parent directories.
            if any(fnmatch.fnmatchcase("/".join(parts[:n]), candidate)
                   for n in range(1, len(parts) + 1)):
                return True
            if pattern.startswith("**/") and any(fnmatch.fnmatchcase(p, candidate) for p in parts):
                return True
    return False


def build_context(target: Path) -> list[str]:
    """Copy the source tree as `docker build .` would send it; the relative paths copied."""
    patterns = [line.strip().lstrip("/") for line in (ROOT / ".dockerignore").read_text()
                .splitlines() if line.strip() and not line.startswith("#")]
    assert not any(p.startswith("!") for p in patterns), "exceptions are not modelled here"
    copied = []
    for directory, dirs, files in os.walk(ROOT):
        here = Path(directory).relative_to(ROOT).as_posix()
        here = "" if here == "." else here + "/"
        dirs[:] = [d for d in dirs if not ignored(here + d, patterns)]
        for name in files:
            if not ignored(here + name, patterns):
                (target / here).mkdir(parents=True, exist_ok=True)
                shutil.copy2(ROOT / (here + name), target / here / name)
                copied.append(here + name)
    return copied


def read_only(tree: Path) -> None:
    for directory, _, files in os.walk(tree):
        for name in files:
            path = Path(directory) / name
            path.chmod(path.stat().st_mode & ~(stat.S_IWUSR | stat.S_IWGRP | stat.S_IWOTH))
        path = Path(directory)
        path.chmod(0o555)


def as_non_root(argv: list[str]) -> list[str]:
    """The command as an unprivileged user: `nobody` when the tests run as root."""
    if os.geteuid() != 0:
        return argv
    setpriv = shutil.which("setpriv")
    if setpriv is None:
        pytest.skip("running as root without setpriv (util-linux): no way to drop privileges")
    return [setpriv, f"--reuid={NOBODY}", f"--regid={NOBODY}", "--clear-groups", *argv]


def python_for_non_root() -> str:
    """A Python 3.11+ with venv the unprivileged user can run (this one may sit in root's home)."""
    candidates = [str(Path(sys.base_prefix) / "bin" / "python3"), "/usr/bin/python3",
                  "/usr/local/bin/python3"]
    for python in candidates:
        # Through env, as the script runs it: setpriv itself may still exec what root can.
        done = run(as_non_root(["env", python, "-c", "import sys, venv, ensurepip; "
                                "assert sys.version_info >= (3, 11)"]), timeout=60)
        if done.returncode == 0:
            return python
    pytest.fail(f"no Python 3.11+ with venv and ensurepip that uid {NOBODY} may run among "
                f"{candidates}")


@pytest.fixture
def workdir() -> Iterator[Path]:
    """A directory the unprivileged user can use (pytest's tmp_path is root's alone)."""
    path = Path(tempfile.mkdtemp(prefix="opsbot-image-"))
    path.chmod(0o755)
    try:
        yield path
    finally:
        for directory, _, _ in os.walk(path):
            Path(directory).chmod(0o755)
        shutil.rmtree(path, ignore_errors=True)


def test_dockerignore_sends_the_package_and_nothing_else(tmp_path: Path) -> None:
    copied = set(build_context(tmp_path))
    assert {"pyproject.toml", "README.md", "scripts/image-install", "bot/cli.py",
            "runbooks/deploy.yaml", "examples/demo.yaml"} <= copied
    for path in copied:
        assert not path.startswith((".venv", ".git/", "tests/", "helm/", "docs/")), path
        assert "__pycache__" not in path and not path.endswith((".pyc", ".db")), path


@pytest.mark.slow
def test_the_image_install_runs_as_non_root_from_a_read_only_source(workdir: Path) -> None:
    context, home = workdir / "context", workdir / "home"
    context.mkdir()
    home.mkdir()
    build_context(context)
    read_only(context)
    if os.geteuid() == 0:
        os.chown(home, NOBODY, NOBODY)
    python = python_for_non_root()
    prefix = home / "opt-opsbot"
    env = {k: v for k, v in os.environ.items() if PASSED_ON.fullmatch(k)}
    env |= {"PATH": "/usr/local/bin:/usr/bin:/bin", "HOME": str(home), "TMPDIR": str(home),
            "PYTHON": python, "PIP_DISABLE_PIP_VERSION_CHECK": "1"}

    # The Dockerfile's build stage: RUN sh /src/scripts/image-install /src /opt/opsbot
    done = run(as_non_root(["sh", str(context / "scripts" / "image-install"), str(context),
                            str(prefix)]), env=env, cwd=home, timeout=900)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert not list(prefix.rglob("*.whl")), "wheels left in the virtualenv"
    assert not (home / ".cache" / "pip").exists(), "a pip cache was written"
    # Installed with its bytecode: the image (PYTHONDONTWRITEBYTECODE, a read-only tree) never
    # compiles a module at start.
    [package] = prefix.glob("lib/python3*/site-packages/bot")
    sources = list(package.rglob("*.py"))
    assert len(sources) > 50
    for source in sources:
        compiled = list((source.parent / "__pycache__").glob(f"{source.stem}.cpython-3*.pyc"))
        assert compiled, f"no bytecode for {source.relative_to(package)}"

    # The final stage runs the virtualenv read-only, as a user who owns none of it.
    read_only(prefix)
    runtime = {"PATH": f"{prefix}/bin:/usr/bin:/bin", "HOME": "/nonexistent",
               "PYTHONDONTWRITEBYTECODE": "1"}
    version = run(as_non_root([str(prefix / "bin" / "opsbot"), "--version"]), env=runtime,
                  cwd=context, timeout=120)
    assert version.returncode == 0, version.stderr
    assert version.stdout.strip() == f"opsbot {bot.__version__}"
    validate = run(as_non_root([str(prefix / "bin" / "opsbot"), "runbooks", "validate"]),
                   env=runtime, cwd=context, timeout=120)
    assert validate.returncode == 0, validate.stdout + validate.stderr
    shipped = len(list((ROOT / "runbooks").glob("*.yaml")))
    assert f"{shipped} runbooks valid" in validate.stdout

    # `opsbot serve` with the image's environment, its two volumes the only writable places.
    volumes, image_env = dockerfile_settings()
    places = {volume: home / volume.strip("/").replace("/", "-") for volume in volumes}
    for place in places.values():
        place.mkdir()
        if os.geteuid() == 0:
            os.chown(place, NOBODY, NOBODY)
    config = workdir / "opsbot.yaml"
    config.write_text("default_environment: default\n"
                      "environments: {default: {namespace: opsbot}}\n")
    served = {key: next((value.replace(v, str(p), 1) for v, p in places.items()
                         if v in value), value) for key, value in image_env.items()}
    port = free_port()
    served |= {"PATH": f"{prefix}/bin:/usr/bin:/bin", "OPSBOT_CONFIG": str(config),
               "OPSBOT_LISTEN": f"127.0.0.1:{port}", "SLACK_BOT_TOKEN": "xoxb-0",
               "SLACK_SIGNING_SECRET": "0" * 32, "SLACK_API_URL": "http://127.0.0.1:9/api/"}
    workdir_of_image = places[image_env["OPSBOT_DATABASE_URL"].split("sqlite:///")[1]
                              .rsplit("/", 1)[0]]
    log = workdir / "serve.log"
    with log.open("wb") as out:
        process = subprocess.Popen(as_non_root([str(prefix / "bin" / "opsbot"), "serve"]),
                                   env=served, cwd=workdir_of_image, stdout=out, stderr=out)
    try:
        url = f"http://127.0.0.1:{port}"
        try:
            wait_healthy(url, process, timeout=90)
        except (AssertionError, TimeoutError) as exc:
            raise AssertionError(log.read_text()[-3000:]) from exc
        assert httpx.get(f"{url}/readyz", timeout=10).json()["ready"] is True
    finally:
        process.send_signal(signal.SIGTERM)
        process.wait(timeout=60)
    assert (workdir_of_image / "opsbot.db").is_file()


def test_the_dockerfile_runs_the_shared_install_script() -> None:
    text = (ROOT / "Dockerfile").read_text()
    assert "RUN sh /src/scripts/image-install /src /opt/opsbot" in text
    assert "COPY --from=build /opt/opsbot /opt/opsbot" in text
    froms = re.findall(r"^FROM (\S+)", text, re.M)
    assert len(froms) == 2 and len(set(froms)) == 1, "both stages on the same pinned base"
    assert re.fullmatch(r"python:3\.\d+\.\d+-slim-\w+@sha256:[0-9a-f]{64}", froms[0])
    labels = set(re.findall(r"org\.opencontainers\.image\.(\w+)=", text))
    assert {"title", "version", "revision", "licenses", "description"} <= labels
    assert f"ARG VERSION={bot.__version__}\n" in text
