"""SQLite writers in one process take turns in the order they asked (bot/store/writers.py):
an ack's record is not passed again and again by the writes of work running meanwhile."""

from __future__ import annotations

import asyncio
import functools
import sqlite3
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from sqlalchemy import text

from bot.store import Store, StoreUnavailable, committed, sqlite_url
from bot.store.db import WRITE_LOCK_OPTION, make_engine, patient
from bot.store.writers import Turns, WriterConnection, answers_first, turns_for

_CHECKED_OUT: list[object] = []


def _writer(store: Store) -> WriterConnection:
    """A connection of the store's pool, kept out of it (the pool would roll it back)."""
    pooled = store._engine.raw_connection()
    _CHECKED_OUT.append(pooled)
    raw = pooled.driver_connection
    assert isinstance(raw, WriterConnection)
    return raw


@pytest.fixture(autouse=True)
def _give_back() -> Iterator[None]:
    yield
    while _CHECKED_OUT:
        _CHECKED_OUT.pop().close()  # type: ignore[attr-defined]


def _until(condition: Callable[[], bool], what: str) -> None:
    deadline = time.monotonic() + 10
    while not condition():
        assert time.monotonic() < deadline, f"still waiting for {what}"
        time.sleep(0.002)


def _queue_up(turns: Turns, writers: list[tuple[str, Callable[[], None]]],
              ) -> list[threading.Thread]:
    """Start each writer's thread once the one before waits for the turn."""
    threads = []
    for i, (name, write) in enumerate(writers):
        thread = threading.Thread(target=write)
        thread.start()
        threads.append(thread)
        _until(lambda n=i + 1: turns.waiting() == n, f"{name} to wait")
    return threads


def test_writers_take_the_turn_in_the_order_they_asked(tmp_path: Path) -> None:
    path = tmp_path / "opsbot.db"
    store = Store.open(sqlite_url(path))
    turns = turns_for(str(path))
    order: list[int] = []
    try:
        holder = _writer(store)
        holder.begin_write()

        def write(i: int) -> None:
            conn = _writer(store)
            conn.begin_write()
            order.append(i)
            conn.execute("INSERT INTO delivery_claims (key, claimed_at) "
                         "VALUES (?, '2025-01-01 00:00:00')", (f"w{i}",))
            conn.commit()
            conn.close()

        threads = _queue_up(turns, [(f"writer {i}", functools.partial(write, i))
                                    for i in range(4)])
        # Nobody who asks now passes the queue, not even for a moment.
        late = _writer(store)
        late.wait_s = 0
        with pytest.raises(sqlite3.OperationalError, match="locked"):
            late.begin_write()
        holder.commit()
        for thread in threads:
            thread.join(10)
        assert order == [0, 1, 2, 3]
        late.begin_write()  # the last writer gave the turn back: it is free
        late.rollback()
        assert turns.waiting() == 0
    finally:
        store.close()


def test_the_commit_thread_of_answers_takes_the_next_turn_ahead_of_the_queue(
    tmp_path: Path,
) -> None:
    path = tmp_path / "opsbot.db"
    store = Store.open(sqlite_url(path))
    turns = turns_for(str(path))
    order: list[str] = []
    try:
        holder = _writer(store)
        holder.begin_write()

        def write(name: str, answers: bool) -> None:
            if answers:
                answers_first()
            conn = _writer(store)
            conn.begin_write()
            order.append(name)
            conn.commit()

        threads = _queue_up(turns, [(name, functools.partial(write, name, answers))
                                    for name, answers in [("work-1", False), ("work-2", False),
                                                          ("ack", True)]])
        holder.commit()
        for thread in threads:
            thread.join(10)
        assert order == ["ack", "work-1", "work-2"]
    finally:
        store.close()


def test_an_ack_is_not_passed_by_the_writes_of_running_work(tmp_path: Path) -> None:
    """Three threads write one after the other, each transaction holding the write lock a
    moment (work's store calls); acks arrive on the loop meanwhile. Each ack's record waits
    for the writers already queued, then it is its turn. SQLite's busy handler alone lets
    the writers that come after pass it: its waits grow the longer a writer has waited, so
    the fresh writers poll more often and win the lock again and again."""
    store = Store.open(sqlite_url(tmp_path / "opsbot.db"), timeout_s=2)
    stop = threading.Event()
    lock = threading.Lock()
    others = [0]
    failures: list[BaseException] = []

    def busy(t: int) -> None:
        n = 0
        while not stop.is_set():
            try:
                with store._engine.connect() as conn:
                    conn.execution_options(**{WRITE_LOCK_OPTION: True})
                    with conn.begin():
                        conn.execute(text("INSERT INTO delivery_claims (key, claimed_at) "
                                          "VALUES (:key, '2025-01-01 00:00:00')"),
                                     {"key": f"work:{t}:{n}"})
                        time.sleep(0.005)
            except BaseException as exc:
                failures.append(exc)
                return
            n += 1
            with lock:
                others[0] += 1

    async def acks() -> list[int]:
        passed = []
        for i in range(30):
            with lock:
                before = others[0]
            assert await committed(store.queue_trigger(f"slack:T{i}", "{}"), 10) is True
            with lock:
                passed.append(others[0] - before)
        return passed

    threads = [threading.Thread(target=busy, args=(t,)) for t in range(3)]
    try:
        for thread in threads:
            thread.start()
        _until(lambda: others[0] > 10, "the work to write")
        passed = asyncio.run(acks())
    finally:
        stop.set()
        for thread in threads:
            thread.join(10)
        store.close()
    assert not failures
    # The three writers ahead of it commit once each (then queue behind the ack), and one
    # more may commit while the commit thread wakes to ask for its turn.
    assert max(passed) <= 5, passed


def test_a_failed_begin_gives_the_turn_back(tmp_path: Path) -> None:
    path = tmp_path / "opsbot.db"
    store = Store.open(sqlite_url(path), busy_timeout_ms=100)
    try:
        other_process = sqlite3.connect(path, isolation_level=None)
        other_process.execute("BEGIN IMMEDIATE")
        with pytest.raises(StoreUnavailable):
            store.claim_delivery("slack:A")  # SQLite's lock, held elsewhere, past the timeout
        other_process.execute("ROLLBACK")
        other_process.close()
        assert store.claim_delivery("slack:A") is True  # the turn was given back
        free = _writer(store)
        free.wait_s = 0
        free.begin_write()
        free.rollback()
    finally:
        store.close()


def test_a_failed_commit_keeps_the_turn_until_the_rollback(tmp_path: Path) -> None:
    path = tmp_path / "opsbot.db"
    store = Store.open(sqlite_url(path))
    turns = turns_for(str(path))
    try:
        conn = _writer(store)
        conn.execute("CREATE TABLE parent (id INTEGER PRIMARY KEY)")
        conn.execute("CREATE TABLE child (parent INTEGER REFERENCES parent (id) "
                     "DEFERRABLE INITIALLY DEFERRED)")
        conn.begin_write()
        conn.execute("INSERT INTO child (parent) VALUES (1)")  # checked at COMMIT
        with pytest.raises(sqlite3.IntegrityError):
            conn.commit()
        assert conn.in_transaction
        other = _writer(store)
        other.wait_s = 0
        with pytest.raises(sqlite3.OperationalError, match="locked"):
            other.begin_write()  # the failed transaction is still open, and still its turn
        conn.rollback()
        other.begin_write()
        other.rollback()
        assert turns.waiting() == 0
    finally:
        store.close()


def test_a_migration_waits_its_patient_time_for_the_turn(tmp_path: Path) -> None:
    path = tmp_path / "opsbot.db"
    Store.open(sqlite_url(path)).close()
    engine = make_engine(sqlite_url(path), busy_timeout_ms=100)
    pooled = engine.raw_connection()
    holder = pooled.driver_connection
    assert isinstance(holder, WriterConnection)
    holder.begin_write()
    release = threading.Timer(0.5, holder.commit)
    try:
        with engine.connect() as conn:
            conn.execution_options(**{WRITE_LOCK_OPTION: True})
            with pytest.raises(Exception, match="locked"), conn.begin():
                pass  # the store's own wait (0.1 s) runs out
        release.start()
        with engine.connect() as conn, patient(conn, 10):
            conn.execution_options(**{WRITE_LOCK_OPTION: True})
            with conn.begin():
                conn.execute(text("INSERT INTO delivery_claims (key, claimed_at) "
                                  "VALUES ('migrated', '2025-01-01 00:00:00')"))
            raw = conn.connection.driver_connection
            assert isinstance(raw, WriterConnection)
        assert raw.wait_s == pytest.approx(0.1)  # the store's wait again, after `patient`
    finally:
        release.join()
        pooled.close()
        engine.dispose()
