"""Leader election on a Lease served by the simulated cluster over HTTP, with a clock the test
moves: one leader at a time, renewal, takeover only after the lease duration without renewal,
release on stop, and a write on a stale read refused (409) instead of two leaders."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from kubernetes import client

from bot.kube import KubeFactory
from bot.leader import LeaseConfig, LeaseElector, SoleLeader, pod_namespace
from bot.metrics import LEADER
from simcluster import SimCluster

LEASE = "/apis/coordination.k8s.io/v1/namespaces/default/leases/opsbot"


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


class Replica:
    """One candidate: its elector and what its callbacks saw."""

    def __init__(self, api: client.CoordinationV1Api, name: str, clock: Clock) -> None:
        self.events: list[str] = []

        async def started() -> None:
            self.events.append("started")

        async def stopped() -> None:
            self.events.append("stopped")

        config = LeaseConfig(name="opsbot", namespace="default", identity=name,
                             lease_duration=15, renew_deadline=10, retry_period=2)
        self.elector = LeaseElector(api, config, on_started=started, on_stopped=stopped,
                                    clock=clock)

    async def round(self) -> bool:
        """One campaign round, as the loop runs it every retry period."""
        return await self.elector._try_acquire_or_renew()


@pytest.fixture
def sim() -> Iterator[SimCluster]:
    cluster = SimCluster(seed="empty").start(host="127.0.0.1", port=0)
    yield cluster
    cluster.stop()


@pytest.fixture
def api(sim: SimCluster, tmp_path: Path) -> Iterator[client.CoordinationV1Api]:
    factory = KubeFactory(sim.write_kubeconfig(str(tmp_path / "kubeconfig")))
    yield factory.for_context(None).coordination
    factory.close()


def spec(sim: SimCluster) -> dict[str, Any]:
    lease = sim.get(LEASE)
    assert lease is not None
    found: dict[str, Any] = lease["spec"]
    return found


async def test_one_leader_renews_and_another_takes_over_only_after_expiry(
    sim: SimCluster, api: client.CoordinationV1Api,
) -> None:
    clock = Clock()
    a, b = Replica(api, "pod-a", clock), Replica(api, "pod-b", clock)
    assert await a.round() is True  # absent: created
    assert spec(sim)["holderIdentity"] == "pod-a" and spec(sim)["leaseDurationSeconds"] == 15
    assert await b.round() is False  # held, and fresh as b sees it
    clock.now += 10
    assert await a.round() is True  # renewed: the record changed
    clock.now += 10
    assert await b.round() is False  # b sees the renewal now (its clock, not a's)
    # a stops renewing (killed): b waits out the duration from when it saw the last change.
    clock.now += 14.5
    assert await b.round() is False
    clock.now += 0.5
    assert await b.round() is True
    taken = spec(sim)
    assert taken["holderIdentity"] == "pod-b" and taken["leaseTransitions"] == 1
    assert await a.round() is False  # the old leader, back, finds it held


async def test_stop_releases_the_lease_and_the_next_candidate_takes_it_at_once(
    sim: SimCluster, api: client.CoordinationV1Api,
) -> None:
    clock = Clock()
    a, b = Replica(api, "pod-a", clock), Replica(api, "pod-b", clock)
    await a.elector.start()
    await _until(lambda: a.elector.is_leader)
    assert a.events == ["started"] and LEADER._value.get() == 1
    assert a.elector.detail()["holder"] == "pod-a"
    await a.elector.stop()
    assert a.events == ["started", "stopped"] and not a.elector.is_leader
    assert LEADER._value.get() == 0
    assert "holderIdentity" not in spec(sim) or not spec(sim)["holderIdentity"]
    assert await b.round() is True  # no wait for the duration: nobody holds it
    assert spec(sim)["holderIdentity"] == "pod-b"


async def test_stop_while_a_renewal_is_in_its_thread_still_releases_the_lease(
    sim: SimCluster, api: client.CoordinationV1Api,
) -> None:
    """Cancelling the campaign does not stop a renewal already in its thread. Here its read
    of the Lease is slow (a delay fault), so it finishes after `stop` began: the release waits
    for it, and it does not write the Lease back for a replica on its way out."""
    clock = Clock()
    a, b = Replica(api, "pod-a", clock), Replica(api, "pod-b", clock)
    await a.elector.start()
    await _until(lambda: a.elector.is_leader)
    slow = sim.faults.inject("GET", "/leases/opsbot$", status=None, delay_seconds=1.0)
    await _until(lambda: slow.hits >= 1)  # the next renewal is waiting for its read
    await a.elector.stop()
    assert a.events == ["started", "stopped"]
    assert "holderIdentity" not in spec(sim) or not spec(sim)["holderIdentity"]
    await asyncio.sleep(1.5)  # the slow read has long returned: nothing wrote after it
    assert "holderIdentity" not in spec(sim) or not spec(sim)["holderIdentity"]
    assert await b.round() is True


async def test_a_write_on_a_stale_read_is_refused_not_a_second_leader(
    sim: SimCluster, api: client.CoordinationV1Api,
) -> None:
    clock = Clock()
    a = Replica(api, "pod-a", clock)
    assert await a.round() is True
    stale = api.read_namespaced_lease("opsbot", "default")
    assert await a.round() is True  # renewed: a new resourceVersion
    stale.spec.holder_identity = "pod-b"
    with pytest.raises(client.ApiException) as refused:
        api.replace_namespaced_lease("opsbot", "default", stale)
    assert refused.value.status == 409
    assert spec(sim)["holderIdentity"] == "pod-a"


async def test_a_leader_that_cannot_renew_steps_down_after_the_deadline(
    sim: SimCluster, api: client.CoordinationV1Api,
) -> None:
    clock = Clock()
    a = Replica(api, "pod-a", clock)
    a.elector._config = LeaseConfig(name="opsbot", namespace="default", identity="pod-a",
                                    lease_duration=3, renew_deadline=2, retry_period=0.05)
    await a.elector.start()
    try:
        await _until(lambda: a.elector.is_leader)
        # Another writer takes the Lease from under it (as after a partition): every renewal
        # now finds it held, and after the renew deadline a steps down.
        lease = api.read_namespaced_lease("opsbot", "default")
        lease.spec.holder_identity = "pod-b"
        api.replace_namespaced_lease("opsbot", "default", lease)
        clock.now += 2.5
        await _until(lambda: not a.elector.is_leader)
        assert a.events == ["started", "stopped"]
    finally:
        await a.elector.stop()
    assert spec(sim)["holderIdentity"] == "pod-b"  # not released: it was not ours


async def test_a_sole_leader_leads_from_start_to_stop() -> None:
    events: list[str] = []

    async def started() -> None:
        events.append("started")

    async def stopped() -> None:
        events.append("stopped")

    sole = SoleLeader("alone", started, stopped)
    await sole.start()
    assert sole.is_leader and LEADER._value.get() == 1
    assert sole.detail() == {"leader": True, "identity": "alone", "election": "none"}
    await sole.stop()
    assert events == ["started", "stopped"] and LEADER._value.get() == 0


async def _until(predicate: Any, timeout: float = 30.0) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not predicate():
        assert loop.time() < deadline, "condition not met"
        await asyncio.sleep(0.02)


def test_the_lease_namespace_is_the_pods() -> None:
    assert pod_namespace({"POD_NAMESPACE": "opsbot"}) == "opsbot"
    # Outside a pod (no service account mounted here): `default`.
    assert pod_namespace({}) == "default"
