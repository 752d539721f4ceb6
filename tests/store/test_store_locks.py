"""Target locks: leases that one execution holds, others are refused, and expiry frees."""

from __future__ import annotations

import subprocess
import sys
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, timedelta

import pytest

from bot.store import LockInfo, Store

from .conftest import FakeClock

TARGET = "staging/shop-api"
TTL = 120.0


def _acquire(store: Store, execution_id: str, target: str = TARGET, ttl: float = TTL) -> LockInfo:
    return store.acquire_lock(
        target, execution_id=execution_id, actor=f"U-{execution_id}", ttl_seconds=ttl
    )


def test_acquire_a_free_target(clocked_store: Store, clock: FakeClock) -> None:
    store = clocked_store
    assert store.get_lock(TARGET) is None
    lock = _acquire(store, "ex-A")
    assert (lock.target, lock.execution_id, lock.actor) == (TARGET, "ex-A", "U-ex-A")
    assert lock.acquired_at.tzinfo is UTC and lock.expires_at.tzinfo is UTC
    assert lock.acquired_at == clock.now
    assert lock.expires_at == lock.acquired_at + timedelta(seconds=TTL)
    assert store.get_lock(TARGET) == lock
    # Locks are per target: another app or environment is unaffected.
    assert _acquire(store, "ex-B", "staging/shop-web").execution_id == "ex-B"
    assert _acquire(store, "ex-C", "prod/shop-api").execution_id == "ex-C"


def test_a_held_lock_is_refused_with_its_holder(clocked_store: Store) -> None:
    store = clocked_store
    held = _acquire(store, "ex-A")
    assert _acquire(store, "ex-B") == held
    assert store.get_lock(TARGET) == held


def test_acquiring_again_as_the_holder_extends_the_lease(
    clocked_store: Store, clock: FakeClock
) -> None:
    store = clocked_store
    first = _acquire(store, "ex-A")
    clock.advance(timedelta(seconds=60))
    again = _acquire(store, "ex-A")
    assert again.execution_id == "ex-A"
    assert again.acquired_at == first.acquired_at
    assert again.expires_at == clock.now + timedelta(seconds=TTL)
    assert store.get_lock(TARGET) == again


def test_an_expired_lease_is_taken_over(clocked_store: Store, clock: FakeClock) -> None:
    store = clocked_store
    old = _acquire(store, "ex-A")
    clock.now = old.expires_at - timedelta(milliseconds=2)
    assert store.get_lock(TARGET) == old  # still in force 1 ms before the end
    clock.now = old.expires_at - timedelta(milliseconds=1)
    assert store.get_lock(TARGET) is None  # read exactly at expires_at: over

    new = _acquire(store, "ex-B")
    assert (new.execution_id, new.actor) == ("ex-B", "U-ex-B")
    assert new.acquired_at == clock.now > old.expires_at
    assert store.get_lock(TARGET) == new
    # The crashed holder, back to life, has lost it.
    assert store.renew_lock(TARGET, execution_id="ex-A", ttl_seconds=TTL) is False
    assert store.release_lock(TARGET, execution_id="ex-A") is False
    assert store.get_lock(TARGET) == new


def test_renew_only_by_the_holder_and_only_in_time(clocked_store: Store, clock: FakeClock) -> None:
    store = clocked_store
    assert store.renew_lock(TARGET, execution_id="ex-A", ttl_seconds=TTL) is False  # free
    lock = _acquire(store, "ex-A")
    assert store.renew_lock(TARGET, execution_id="ex-B", ttl_seconds=TTL) is False
    assert store.get_lock(TARGET) == lock

    clock.advance(timedelta(seconds=100))
    assert store.renew_lock(TARGET, execution_id="ex-A", ttl_seconds=300) is True
    renewed = store.get_lock(TARGET)
    assert renewed is not None
    assert renewed.expires_at == clock.now - timedelta(milliseconds=1) + timedelta(seconds=300)
    assert renewed.acquired_at == lock.acquired_at

    clock.advance(timedelta(seconds=301))
    assert store.renew_lock(TARGET, execution_id="ex-A", ttl_seconds=TTL) is False  # too late
    assert store.get_lock(TARGET) is None


def test_release_only_by_the_holder(clocked_store: Store, clock: FakeClock) -> None:
    store = clocked_store
    assert store.release_lock(TARGET, execution_id="ex-A") is False  # free
    lock = _acquire(store, "ex-A")
    assert store.release_lock(TARGET, execution_id="ex-B") is False
    assert store.get_lock(TARGET) == lock
    assert store.release_lock(TARGET, execution_id="ex-A") is True
    assert store.get_lock(TARGET) is None
    assert store.release_lock(TARGET, execution_id="ex-A") is False
    assert _acquire(store, "ex-B").execution_id == "ex-B"

    # Releasing a lease that already ran out reports it was no longer held.
    _acquire(store, "ex-C", "prod/shop-api", ttl=1)
    clock.advance(timedelta(seconds=2))
    assert store.release_lock("prod/shop-api", execution_id="ex-C") is False
    assert store.get_lock("prod/shop-api") is None


def test_force_unlock(clocked_store: Store, clock: FakeClock) -> None:
    store = clocked_store
    assert store.force_unlock(TARGET) is None
    lock = _acquire(store, "ex-A")
    assert store.force_unlock(TARGET) == lock
    assert store.get_lock(TARGET) is None
    assert store.force_unlock(TARGET) is None
    assert store.release_lock(TARGET, execution_id="ex-A") is False
    assert _acquire(store, "ex-B").execution_id == "ex-B"

    _acquire(store, "ex-C", "prod/shop-api", ttl=1)
    clock.advance(timedelta(seconds=2))
    assert store.force_unlock("prod/shop-api") is None  # expired: nothing was holding it


def test_held_locks_are_the_leases_in_force(clocked_store: Store, clock: FakeClock) -> None:
    store = clocked_store
    assert store.held_locks() == []
    lock = _acquire(store, "ex-A")
    _acquire(store, "ex-C", "prod/shop-api", ttl=1)
    assert [held.target for held in store.held_locks()] == ["prod/shop-api", TARGET]
    clock.advance(timedelta(seconds=2))
    assert store.held_locks() == [lock]  # the expired lease is free again


def test_arguments_are_checked(store: Store) -> None:
    for ttl in (0.0, -1.0, float("nan"), float("inf")):
        with pytest.raises(ValueError, match="ttl_seconds"):
            _acquire(store, "ex-A", ttl=ttl)
    with pytest.raises(ValueError, match="must not be empty"):
        _acquire(store, "ex-A", target="")
    with pytest.raises(ValueError, match="at most 255"):
        _acquire(store, "ex-A", target="x" * 256)
    _acquire(store, "ex-A", target="x" * 255)
    with pytest.raises(ValueError, match="ttl_seconds"):
        store.renew_lock("x" * 255, execution_id="ex-A", ttl_seconds=0)
    assert store.get_lock(TARGET) is None


def _race(replicas: list[Store], rounds: list[str], workers: int) -> None:
    """Each round, ``workers`` threads acquire ``target`` at once: exactly one may win."""
    barrier = threading.Barrier(workers, timeout=60)

    def contend(n: int) -> list[LockInfo]:
        got = []
        try:
            for target in rounds:
                barrier.wait()
                got.append(_acquire(replicas[n % len(replicas)], f"ex-{n}", target))
        except BaseException:
            barrier.abort()  # fail the others at once instead of leaving them waiting
            raise
        return got

    with ThreadPoolExecutor(workers) as pool:
        outcomes = list(pool.map(contend, range(workers)))
    for target, column in zip(rounds, zip(*outcomes, strict=True), strict=True):
        winners = {n for n, lock in enumerate(column) if lock.execution_id == f"ex-{n}"}
        assert len(winners) == 1, (target, winners)
        assert {lock.execution_id for lock in column} == {f"ex-{winners.pop()}"}
        assert len(set(column)) == 1  # every loser was shown the very same lease


@pytest.mark.parametrize("replica_count", [1, 3], ids=["one-store", "three-stores"])
def test_race_for_a_free_target(open_store: Callable[..., Store], replica_count: int) -> None:
    replicas = [open_store() for _ in range(replica_count)]
    _race(replicas, [f"staging/app-{i}" for i in range(4)], workers=10)


def test_race_to_take_over_an_expired_lease(
    open_store: Callable[..., Store], clock: FakeClock
) -> None:
    replicas = [open_store(clock=clock) for _ in range(3)]
    targets = [f"staging/app-{i}" for i in range(3)]
    for target in targets:
        _acquire(replicas[0], "ex-crashed", target, ttl=1)
    clock.advance(timedelta(seconds=5))
    _race(replicas, targets, workers=9)
    assert all(replicas[1].get_lock(t).execution_id != "ex-crashed" for t in targets)  # type: ignore[union-attr]


_WORKER = """
import sys, time
from bot.store import Store
url, start, name = sys.argv[1], float(sys.argv[2]), sys.argv[3]
store = Store.open(url)
time.sleep(max(0.0, start - time.time()))
lock = store.acquire_lock("prod/db", execution_id=name, actor=name, ttl_seconds=60)
print(lock.execution_id, flush=True)
store.close()
"""


def test_race_between_processes(open_store: Callable[..., Store], db_url: str) -> None:
    open_store()  # migrate once up front, so the workers only race for the lock
    start = time.time() + 3.0
    names = [f"ex-proc-{i}" for i in range(4)]
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", _WORKER, db_url, str(start), name],
            stdout=subprocess.PIPE,
            text=True,
        )
        for name in names
    ]
    seen = [proc.communicate(timeout=60)[0].strip() for proc in procs]
    assert [proc.returncode for proc in procs] == [0] * len(procs)
    assert len(set(seen)) == 1 and seen[0] in names


def test_interrupt_running_releases_the_locks_it_interrupts(
    open_store: Callable[..., Store], clock: FakeClock
) -> None:
    def create(store: Store, target: str) -> str:
        return store.create_execution(
            runbook="deploy",
            source="slack",
            actor="U0ALICE",
            command=f"deploy {target}",
            environment="staging",
            target=target,
            params={},
            dry_run=False,
        )

    store = open_store(clock=clock)
    crashed = create(store, "shop-api")
    finished = create(store, "shop-web")
    _acquire(store, crashed, "staging/shop-api")
    _acquire(store, finished, "staging/shop-web")  # lingering after its end, say
    store.finish_execution(finished, status="succeeded", summary="ok")
    _acquire(store, "ex-not-recorded", "staging/shop-db")
    store.close()

    restarted = open_store(clock=clock)
    assert [r.id for r in restarted.interrupt_running("opsbot restarted")] == [crashed]
    assert restarted.get_lock("staging/shop-api") is None
    assert _acquire(restarted, "ex-next", "staging/shop-api").execution_id == "ex-next"
    web, db = restarted.get_lock("staging/shop-web"), restarted.get_lock("staging/shop-db")
    assert web is not None and web.execution_id == finished
    assert db is not None and db.execution_id == "ex-not-recorded"
