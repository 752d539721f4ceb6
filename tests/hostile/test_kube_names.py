"""Every value that reaches a Kubernetes (or Argo CD) URL path is a Kubernetes name: the
validators accept exactly RFC 1123 names, and the one boundary to the Kubernetes client refuses
anything else before a request is made (`/`, `..`, `%2F`, look-alike letters, a newline)."""

from __future__ import annotations

import asyncio
import contextlib
import json
import string
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import quote

import pytest
from hypothesis import given
from hypothesis import strategies as st

from bot.argocd import _app_path
from bot.config import load_settings
from bot.errors import ConfigError, NotFound, PermanentError, UsageError
from bot.kube import KubeClients, KubeFactory
from bot.names import (
    check_dns1123_label,
    check_dns1123_subdomain,
    is_dns1123_label,
    is_dns1123_subdomain,
)
from bot.runbooks.params import coerce_params
from bot.services import Services
from simcluster import SimCluster
from tests.conftest import dispatch
from tests.hostile.conftest import examples

ALLOWED = set(string.ascii_lowercase + string.digits + "-")


def _part(value: str) -> bool:
    return bool(value) and set(value) <= ALLOWED and value[0] != "-" and value[-1] != "-"


def reference_label(value: str) -> bool:
    """An RFC 1123 label as Kubernetes checks it (IsDNS1123Label), spelled out by hand: 1-63
    of a-z, 0-9 and '-', starting and ending with a letter or digit."""
    return len(value) <= 63 and _part(value)


def reference_subdomain(value: str) -> bool:
    """IsDNS1123Subdomain: such parts joined by dots, at most 253 in all (Kubernetes does not
    hold each part to 63)."""
    return len(value) <= 253 and all(_part(part) for part in value.split("."))


HOSTILE = ["/", "..", ".", "%2F", "%2f", "a/b", "../kube-system", "shop-api/..", "shop%2Fapi",
           "ѕhop-api", "shop‐api", "shop–api", "ＳＨＯＰ", "shop-api\n", "shop-api ", "\x00",
           "shop-api?x=1", "shop-api#x", "shop-api;x", "Shop-Api", "-shop", "shop-", "",
           "a" * 64, "shop_api", "shop.api.", ".shop", "shop..api", "İ", "ı"]
names = st.one_of(
    st.sampled_from(HOSTILE),
    st.text(max_size=70),
    st.text(alphabet=sorted(ALLOWED | {".", "/", "%", "_", "A", "\u0455", "\u2010"}),
            max_size=70),
    st.from_regex(r"[a-z0-9]([-a-z0-9]{0,20}[a-z0-9])?(\.[a-z0-9]([-a-z0-9]{0,5}[a-z0-9])?){0,3}",
                  fullmatch=True),
)


@examples(500)
@given(value=names)
def test_the_validators_accept_exactly_rfc_1123_names(value: str) -> None:
    assert is_dns1123_label(value) == reference_label(value)
    assert is_dns1123_subdomain(value) == reference_subdomain(value)
    if is_dns1123_subdomain(value):
        assert quote(value, safe="") == value  # nothing in it means anything in a URL
        assert check_dns1123_subdomain(value) == value
    else:
        with pytest.raises(UsageError):
            check_dns1123_subdomain(value)
    if not is_dns1123_label(value):
        with pytest.raises(UsageError):
            check_dns1123_label(value)


@examples(300)
@given(value=names)
def test_argocd_paths_take_only_names(value: str) -> None:
    if is_dns1123_subdomain(value):
        assert _app_path(value) == f"/api/v1/applications/{value}"
    else:
        with pytest.raises(PermanentError):
            _app_path(value)


@examples(200)
@given(value=names)
def test_command_values_of_type_name_and_app_are_names(offline: Services, value: str) -> None:
    for runbook, param in (("backup-describe", "name"), ("scale", "app")):
        raw = {param: value, **({"replicas": "2"} if runbook == "scale" else {})}
        try:
            params = coerce_params(offline.catalog.by_name(runbook), raw,
                                   settings=offline.settings, environment="staging")
        except UsageError:
            continue
        assert is_dns1123_subdomain(params[param])


@pytest.fixture
def kube(sim: SimCluster, tmp_path: Path) -> Iterator[KubeClients]:
    factory = KubeFactory(sim.write_kubeconfig(str(tmp_path / "kubeconfig")))
    yield factory.for_context(None)
    factory.close()


@examples(40)
@given(value=names)
def test_the_kubernetes_boundary_refuses_any_other_path_value(
        kube: KubeClients, value: str) -> None:
    async def read(name: str, namespace: str) -> object:
        return await kube.call(kube.apps.read_namespaced_deployment, name, namespace)

    for name, namespace in ((value, "shop-staging"), ("shop-api", value)):
        if is_dns1123_subdomain(value):
            # Asked; the cluster may have no such object (404): a name was sent either way.
            with contextlib.suppress(NotFound):
                asyncio.run(read(name, namespace))
            continue
        with pytest.raises(PermanentError, match="not a Kubernetes name; nothing was sent"):
            asyncio.run(read(name, namespace))


def test_a_real_name_still_goes_through(kube: KubeClients) -> None:
    async def read() -> object:
        return await kube.call(kube.apps.read_namespaced_deployment, "shop-api",
                               namespace="shop-staging")

    assert asyncio.run(read()).metadata.name == "shop-api"


@pytest.mark.parametrize("text", [
    "status shop-api/..", "status ../shop-api", "status %2Fshop-api", "status ѕhop-api",
    "diag shop-api --env ../prod", "backup describe a/b", "backup describe shop%2F..",
    "backup restore x --into kube-system/x", "logs shop-api --container ../x",
])
async def test_path_text_in_commands_is_refused_before_kubernetes(
        offline: Services, text: str) -> None:
    outcome, rep = await dispatch(offline, text)  # no cluster: reaching it would fail otherwise
    assert outcome.status == "usage", (text, rep.notices)


@pytest.mark.parametrize("workload", ["../shop-api", "shop/api", "shop%2Fapi", "ѕhop-api"])
def test_a_configured_workload_must_be_a_name(tmp_path: Path, workload: str) -> None:
    config = tmp_path / "opsbot.yaml"
    config.write_text(
        "default_environment: staging\n"
        "environments:\n  staging:\n    namespace: shop-staging\n"
        f"apps:\n  shop-api:\n    workload: {json.dumps(workload)}\n", encoding="utf-8")
    with pytest.raises(ConfigError, match="is not a valid Kubernetes name"):
        load_settings(config, environ={})
