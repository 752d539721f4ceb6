"""Other packages build on this surface; pin it."""

from __future__ import annotations

import inspect

import simcluster
from simcluster import SimCluster


def test_exports() -> None:
    assert simcluster.__all__ == [
        "BUILTINS", "ControllerRegistry", "Ctx", "FaultHandle", "Faults", "ResourceType",
        "SimCluster", "serve_forever",
    ]


def test_simcluster_surface() -> None:
    for name in ("start", "stop", "write_kubeconfig", "snapshot", "get", "wait_idle",
                 "script_crashloop", "script_image_pull_error", "script_never_ready",
                 "advance", "clear_scripts", "ssl_context"):
        assert callable(getattr(SimCluster, name)), name
    assert list(inspect.signature(SimCluster.script_crashloop).parameters) == [
        "self", "namespace", "workload_name", "container", "reason", "exit_code", "restarts",
        "log", "over_minutes"]
    assert list(inspect.signature(simcluster.serve_forever).parameters) == [
        "listen", "kubeconfig", "seed", "tls"]
    assert list(inspect.signature(SimCluster).parameters) == [
        "seed", "tick_seconds", "token", "tls"]


def test_controller_registry_takes_new_kinds() -> None:
    sim = SimCluster(seed="empty")
    seen: list[str] = []

    @sim.controllers.for_kind("", "Namespace")
    def note(ctx: simcluster.Ctx, obj: dict[str, object]) -> None:
        seen.append(str(obj["metadata"]["name"]))  # type: ignore[index]

    sim.wait_idle()
    assert seen == ["default"]
    assert "note" not in {s.name for s in simcluster.BUILTINS.specs()}
