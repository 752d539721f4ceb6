"""The deploy gate from Slack, against the real registry server: a tag that was never pushed is
refused in the deploy's message before anything changes; one that was pushed goes through."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from bot.config import RegistryConfig, Settings
from simcluster import SimCluster
from tests.support.oci_registry import RegistryServer, registry_holding
from tests.support.slack_standin import SlackDriver

API = "/apis/apps/v1/namespaces/shop-staging/deployments/shop-api"


@pytest.fixture
def registry(tmp_path: Path) -> Iterator[RegistryServer]:
    yield from registry_holding(tmp_path / "registry", ("shop/api", "1.5.0"))


@pytest.fixture
def settings(settings: Settings, registry: RegistryServer) -> Settings:
    """The Slack tests' demo settings, with registry.example.com served by the real registry."""
    return settings.model_copy(update={"registries": {
        "registry.example.com": RegistryConfig(url=registry.url)}})


def test_a_missing_tag_is_refused_in_the_message(bot: SlackDriver, sim: SimCluster,
                                                 registry: RegistryServer) -> None:
    before = sim.get(API)
    assert bot.send_command("alice", "deploy shop-api 9.9.9").status_code == 200
    message = bot.finished("deploy shop-api 9.9.9")
    refusal = ("`registry.example.com/shop/api:9.9.9` is not in its registry "
               "(registry.example.com has no such manifest); push it first, or check the tag")
    assert message.text == f"🛑 `deploy shop-api 9.9.9` in *staging*: refused\n{refusal}"
    assert "◻️ Apply" in str(message.blocks)  # never started
    sim.wait_idle()
    assert sim.get(API)["spec"] == before["spec"]

    assert bot.send_command("alice", "deploy shop-api 1.5.0 --dry-run").status_code == 200
    dry = bot.finished("deploy shop-api 1.5.0 --dry-run")
    assert "registry.example.com/shop/api:1.5.0 is in its registry" in str(dry.blocks)
