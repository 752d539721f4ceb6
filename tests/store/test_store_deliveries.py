"""Delivery dedup: first claim wins, exactly once even under a race, old keys pruned."""

from __future__ import annotations

import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta

import pytest

from bot.store import Store

from .conftest import FakeClock


def test_first_claim_wins(store: Store) -> None:
    assert store.claim_delivery("slack:Ev01") is True
    assert store.claim_delivery("slack:Ev01") is False
    assert store.claim_delivery("slack:Ev02") is True
    long_key = "x" * 1000
    assert store.claim_delivery(long_key) is True
    assert store.claim_delivery(long_key) is False
    with pytest.raises(ValueError):
        store.claim_delivery("")


def test_race_between_threads_and_replicas(open_store: Callable[..., Store]) -> None:
    replicas = [open_store() for _ in range(3)]
    workers = 12
    barrier = threading.Barrier(workers)

    def claim(n: int) -> list[bool]:
        results = []
        for key in ("k1", "k2", "k3"):
            barrier.wait()
            results.append(replicas[n % len(replicas)].claim_delivery(key))
        return results

    with ThreadPoolExecutor(workers) as pool:
        outcomes = list(pool.map(claim, range(workers)))
    for column in zip(*outcomes, strict=True):
        assert sum(column) == 1


def test_keys_older_than_a_day_are_pruned(
    open_store: Callable[..., Store], clock: FakeClock
) -> None:
    first = open_store(clock=clock)
    assert first.claim_delivery("retry-me")
    clock.advance(timedelta(hours=23))
    assert open_store(clock=clock).claim_delivery("retry-me") is False
    clock.advance(timedelta(hours=2))
    assert open_store(clock=clock).claim_delivery("retry-me") is True
