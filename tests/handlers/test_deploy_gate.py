"""The deploy gate's image check against the real registry server (Debian's `docker-registry`),
through the dispatcher and `opsbot run`: a tag the registry has passes, one it lacks refuses
before anything changes, a registry that cannot be asked is not checked."""

from __future__ import annotations

import base64
import json
import socket
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from bot.config import load_settings
from bot.registry import Registry
from bot.services import Services
from tests.conftest import DEMO_CONFIG, RecordingReporter, dispatch
from tests.console.test_cli import opsbot
from tests.support.oci_registry import RegistryServer, TokenService, registry_holding

STAGING_API = "/apis/apps/v1/namespaces/shop-staging/deployments/shop-api"
IMAGE_FIELD = "Image in registry"

Build = Callable[..., Services]


def closed_url() -> str:
    with socket.socket() as sock:  # a port nobody listens on
        sock.bind(("127.0.0.1", 0))
        return f"http://127.0.0.1:{sock.getsockname()[1]}"


@pytest.fixture
def registry(tmp_path: Path) -> Iterator[RegistryServer]:
    """The real registry, anonymous, holding registry.example.com's shop/api:1.5.0."""
    yield from registry_holding(tmp_path / "registry", ("shop/api", "1.5.0"))


@pytest.fixture
def private_registry(tmp_path: Path) -> Iterator[RegistryServer]:
    """The real registry behind token auth: no anonymous pulls, user `ci` may pull and push."""
    (tmp_path / "private").mkdir()
    tokens = TokenService(tmp_path / "private", user="ci", password="s3cret",
                          anonymous_pull=False).start()
    server = RegistryServer(tmp_path / "private", tokens=tokens).start()
    try:
        server.push("shop/api", "1.5.0")
        yield server
    finally:
        server.stop()
        tokens.stop()


def config_file(tmp_path: Path, registries: dict[str, Any], *, name: str = "opsbot.yaml",
                staging: dict[str, Any] | None = None,
                prod: dict[str, Any] | None = None) -> Path:
    raw = yaml.safe_load(DEMO_CONFIG.read_text())
    raw["registries"] = registries
    raw["environments"]["staging"].update(staging or {})
    raw["environments"]["prod"].update(prod or {})
    path = tmp_path / name
    path.write_text(yaml.safe_dump(raw))
    return path


@pytest.fixture
def build(kubeconfig: Path, tmp_path: Path) -> Iterator[Build]:
    built: list[Services] = []

    def _build(registries: dict[str, Any], **envs: Any) -> Services:
        config = config_file(tmp_path, registries, name=f"opsbot{len(built)}.yaml", **envs)
        environ = {"KUBECONFIG": str(kubeconfig),
                   "OPSBOT_DATABASE_URL": f"sqlite:///{tmp_path / f'db{len(built)}.sqlite'}"}
        services = Services.build(load_settings(config, environ=environ),
                                  registry=Registry.builtin())
        built.append(services)
        return services

    yield _build
    for services in built:
        services.close()


async def run(services: Services, text: str, user: str = "alice") -> RecordingReporter:
    """What a console command reported (tests.conftest.dispatch, its outcome aside)."""
    return (await dispatch(services, text, user))[1]


def prechecks(rep: RecordingReporter) -> Any:
    return next(s for s in rep.final.steps if s.name == "Pre-checks")


# -- the tag is there, or not -----------------------------------------------------------------


async def test_a_tag_the_registry_has_passes_with_its_digest(
    build: Build, registry: RegistryServer,
) -> None:
    services = build({"registry.example.com": {"url": registry.url}})
    rep = await run(services, "deploy shop-api 1.5.0 --dry-run")
    assert rep.final.status == "succeeded", rep.final.summary
    step = prechecks(rep)
    assert dict(step.fields)[IMAGE_FIELD].startswith("✓ in the registry (sha256:")
    assert "registry.example.com/shop/api:1.5.0 is in its registry" in step.summary


async def test_a_tag_the_registry_lacks_refuses_before_anything_changes(
    build: Build, registry: RegistryServer, sim: Any,
) -> None:
    services = build({"registry.example.com": {"url": registry.url}})
    before = sim.get(STAGING_API)
    rep = await run(services, "deploy shop-api 9.9.9")
    assert rep.final.status == "refused"
    assert rep.final.summary == (
        "`registry.example.com/shop/api:9.9.9` is not in its registry (registry.example.com has "
        "no such manifest); push it first, or check the tag")
    assert [s.status for s in rep.final.steps][:2] == ["succeeded", "refused"]
    assert sim.get(STAGING_API)["spec"] == before["spec"]  # nothing applied
    # A repository the registry never heard of is missing too (MANIFEST_UNKNOWN), not unchecked.
    rep = await run(build({"registry.example.com": {"url": registry.url}}),
                    "deploy shop-web 2.2.0")
    assert rep.final.status == "refused"
    assert "registry.example.com/shop/web:2.2.0` is not in its registry" in rep.final.summary


def test_opsbot_run_exits_1_on_a_missing_tag_and_deploys_one_that_exists(
    registry: RegistryServer, kubeconfig: Path, db_url: str, tmp_path: Path, sim: Any,
) -> None:
    env = {"OPSBOT_CONFIG": str(config_file(
               tmp_path, {"registry.example.com": {"url": registry.url}})),
           "KUBECONFIG": str(kubeconfig), "OPSBOT_DATABASE_URL": db_url}
    missing = opsbot("run", "deploy shop-api 9.9.9", "--as", "alice", env=env)
    assert missing.returncode == 1, missing.stdout + missing.stderr
    assert "registry.example.com/shop/api:9.9.9` is not in its registry" in missing.stdout
    assert "registry.example.com/shop/api:1.4.0" in sim.get(STAGING_API)["spec"]["template"][
        "spec"]["containers"][0]["image"]
    there = opsbot("run", "deploy shop-api 1.5.0", "--as", "alice", env=env)
    assert there.returncode == 0, there.stdout + there.stderr
    assert "Image in registry: ✓ in the registry (sha256:" in there.stdout
    assert sim.get(STAGING_API)["spec"]["template"]["spec"]["containers"][0]["image"] == \
        "registry.example.com/shop/api:1.5.0"


# -- credentials: token auth, from a file or a Secret -----------------------------------------


def docker_config(host: str, user: str, password: str) -> dict[str, Any]:
    auth = base64.b64encode(f"{user}:{password}".encode()).decode()
    return {"auths": {host: {"auth": auth}, "other.example.com": {"auth": "eDp5"}}}


async def test_token_auth_with_credentials_from_a_docker_config_file(
    build: Build, private_registry: RegistryServer, tmp_path: Path,
) -> None:
    good, bad = tmp_path / "good.json", tmp_path / "bad.json"
    good.write_text(json.dumps(docker_config("registry.example.com", "ci", "s3cret")))
    bad.write_text(json.dumps(docker_config("registry.example.com", "ci", "wrong")))
    entry = {"url": private_registry.url, "credentials_file": str(good)}
    rep = await run(build({"registry.example.com": entry}), "deploy shop-api 1.5.0 --dry-run")
    assert dict(prechecks(rep).fields)[IMAGE_FIELD].startswith("✓ in the registry")
    assert private_registry.tokens is not None
    assert private_registry.tokens.requests[-1] == {
        "user": "ci", "scope": "repository:shop/api:pull", "service": "opsbot-test-registry"}
    rep = await run(build({"registry.example.com": entry}), "deploy shop-api 9.9.9")
    assert rep.final.status == "refused" and "is not in its registry" in rep.final.summary

    # Wrong credentials, or none where anonymous pulls are refused: not checked, never passed
    # (staging warns and goes on; prod refuses, as it refuses every check that cannot run).
    for registries in ({"registry.example.com": {**entry, "credentials_file": str(bad)}},
                       {"registry.example.com": {"url": private_registry.url}}):
        rep = await run(build(registries), "deploy shop-api 1.5.0 --dry-run")
        step = prechecks(rep)
        assert step.status == "not_checked", step.summary
        assert dict(step.fields)[IMAGE_FIELD].startswith("not checked: the token service of ")
        assert "not checked: image registry.example.com/shop/api:1.5.0 (the token service" \
            in step.summary
        rep = await run(build(registries, prod={"deploy": {}}),
                        "deploy shop-api 1.5.0 --env prod")
        assert not rep.views  # refused before anyone is asked to approve
        assert "image registry.example.com/shop/api:1.5.0 (the token service" \
            in rep.notices[-1].text
        assert "prod refuses deploys whose checks cannot run" in rep.notices[-1].text


async def test_credentials_from_a_dockerconfigjson_secret_in_the_namespace(
    build: Build, private_registry: RegistryServer, kubeconfig: Path,
) -> None:
    import kubernetes

    api = kubernetes.client.CoreV1Api(
        kubernetes.config.new_client_from_config(config_file=str(kubeconfig)))
    content = json.dumps(docker_config("registry.example.com", "ci", "s3cret")).encode()
    api.create_namespaced_secret("shop-staging", {
        "metadata": {"name": "registry-pull"}, "type": "kubernetes.io/dockerconfigjson",
        "data": {".dockerconfigjson": base64.b64encode(content).decode()}})
    api.create_namespaced_secret("shop-staging", {
        "metadata": {"name": "not-docker"}, "type": "Opaque", "data": {"x": "eA=="}})
    entry = {"url": private_registry.url, "credentials_secret": "registry-pull"}
    rep = await run(build({"registry.example.com": entry}), "deploy shop-api 1.5.0 --dry-run")
    assert dict(prechecks(rep).fields)[IMAGE_FIELD].startswith("✓ in the registry")
    for secret, said in (("not-docker", "is not of type kubernetes.io/dockerconfigjson"),
                         ("absent", "cannot read the registry credentials Secret absent")):
        rep = await run(build({"registry.example.com": {**entry, "credentials_secret": secret}}),
                        "deploy shop-api 1.5.0 --dry-run")
        step = prechecks(rep)
        assert step.status == "not_checked" and said in dict(step.fields)[IMAGE_FIELD]


# -- a registry that cannot be asked, and which images are checked ----------------------------


async def test_an_unreachable_registry_is_not_checked_and_refused_where_configured(
    build: Build,
) -> None:
    registries = {"registry.example.com": {"url": closed_url(), "timeout_seconds": 5}}
    rep = await run(build(registries), "deploy shop-api 1.5.0 --dry-run")
    assert rep.final.status == "succeeded"
    step = prechecks(rep)
    assert step.status == "not_checked"
    assert " did not answer: " in dict(step.fields)[IMAGE_FIELD]
    rep = await run(build(registries, staging={"deploy": {"unchecked": "refuse"}}),
                    "deploy shop-api 1.5.0")
    assert rep.final.status == "refused"
    assert "not checked: image registry.example.com/shop/api:1.5.0 (" in rep.final.summary


async def test_which_images_are_checked(build: Build, registry: RegistryServer) -> None:
    # A registry host not under `registries` is not asked (the check is off for it) ...
    rep = await run(build({"elsewhere.example.com": {"url": registry.url}}),
                    "deploy shop-api 9.9.9 --dry-run")
    assert rep.final.status == "succeeded" and IMAGE_FIELD not in dict(prechecks(rep).fields)
    # ... and an environment may turn the check off for every image.
    rep = await run(build({"registry.example.com": {"url": registry.url}},
                          staging={"deploy": {"prechecks": {"image_exists": False}}}),
                    "deploy shop-api 9.9.9 --dry-run")
    assert dict(prechecks(rep).fields)[IMAGE_FIELD] == "off for this environment"


@pytest.fixture
def basic_registry(tmp_path: Path) -> Iterator[RegistryServer]:
    """The real registry asking for basic auth itself (htpasswd), over TLS with a test CA."""
    (tmp_path / "basic").mkdir()
    server = RegistryServer(tmp_path / "basic", htpasswd=("ci", "s3cret")).start()
    try:
        server.push("shop/api", "1.5.0")
        yield server
    finally:
        server.stop()


async def test_basic_auth_over_tls_with_the_configured_ca(
    build: Build, basic_registry: RegistryServer, tmp_path: Path,
) -> None:
    creds = tmp_path / "config.json"
    creds.write_text(json.dumps(docker_config("registry.example.com", "ci", "s3cret")))
    entry = {"url": basic_registry.url, "credentials_file": str(creds),
             "ca_file": str(basic_registry.ca_file)}
    rep = await run(build({"registry.example.com": entry}), "deploy shop-api 1.5.0 --dry-run")
    assert dict(prechecks(rep).fields)[IMAGE_FIELD].startswith("✓ in the registry")
    rep = await run(build({"registry.example.com": entry}), "deploy shop-api 9.9.9")
    assert rep.final.status == "refused" and "is not in its registry" in rep.final.summary
    # Without credentials, or without trusting its CA: not checked.
    for changed, said in (({"credentials_file": None}, "refused access anonymously (401)"),
                          ({"ca_file": None}, "did not answer: ")):
        rep = await run(build({"registry.example.com": {**entry, **changed}}),
                        "deploy shop-api 1.5.0 --dry-run")
        step = prechecks(rep)
        assert step.status == "not_checked" and said in dict(step.fields)[IMAGE_FIELD], \
            step.fields


async def test_an_image_by_digest_is_asked_by_its_digest(
    build: Build, registry: RegistryServer,
) -> None:
    digest = registry.push("shop/api", "1.5.1")
    services = build({"registry.example.com": {"url": registry.url}})
    rep = await run(services, f"deploy shop-api registry.example.com/shop/api@{digest} --dry-run")
    assert rep.final.status == "succeeded", rep.final.summary
    assert dict(prechecks(rep).fields)[IMAGE_FIELD] == f"✓ in the registry ({digest[:19]}…)"
    unknown = "sha256:" + "0" * 64
    rep = await run(services, f"deploy shop-api registry.example.com/shop/api@{unknown}")
    assert rep.final.status == "refused"
    assert f"registry.example.com/shop/api@{unknown}` is not in its registry" in rep.final.summary
