"""Every store call ends: a statement waiting on a lock ends at the server's statement timeout,
and a database that accepts connections but never answers (a frozen proxy in front of the
real PostgreSQL) costs a call its timeout, then the connection, never the calling thread."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator

import pytest
from sqlalchemy import create_engine, text

from bot.store import AuditEntry, Store, StoreUnavailable
from tests.store.conftest import PostgresSchemas
from tests.support.tcp_proxy import FreezableProxy

pytestmark = pytest.mark.postgres

TIMEOUT_S = 2.0
# A hang detector, not a speed requirement: without bounds these calls never end.
ENDS_WITHIN = 15.0


@pytest.fixture
def proxied(pg_schemas: PostgresSchemas) -> Iterator[tuple[FreezableProxy, str, str]]:
    """A proxy in front of a fresh schema: (proxy, URL through it, direct URL)."""
    direct = pg_schemas.new_url()
    proxy, url = FreezableProxy.in_front_of(direct)
    yield proxy, url, direct
    proxy.stop()


def ends(call: object) -> float:
    started = time.monotonic()
    with pytest.raises(StoreUnavailable):
        call()  # type: ignore[operator]
    took = time.monotonic() - started
    assert took < ENDS_WITHIN
    return took


def test_calls_on_a_frozen_database_fail_and_free_their_thread(
        proxied: tuple[FreezableProxy, str, str]) -> None:
    proxy, url, _ = proxied
    with Store.open(url, timeout_s=TIMEOUT_S) as store:
        assert store.claim_delivery("before")  # leaves a pooled connection to ping
        proxy.freeze()
        ends(lambda: store.claim_delivery("pooled connection"))
        ends(lambda: store.recent_executions(1))
        # Called from threads that nobody waits for: each ends on its own.
        results: list[BaseException | None] = []

        def call() -> None:
            try:
                store.get_lock("shop-api")
                results.append(None)
            except BaseException as exc:
                results.append(exc)

        threads = [threading.Thread(target=call) for _ in range(3)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(ENDS_WITHIN)
        assert not any(t.is_alive() for t in threads)
        assert all(isinstance(r, StoreUnavailable) for r in results)
        proxy.thaw()
        assert store.claim_delivery("after")


def test_a_statement_waiting_on_a_lock_ends_at_the_statement_timeout(
        proxied: tuple[FreezableProxy, str, str]) -> None:
    _, _, direct = proxied
    with Store.open(direct, timeout_s=TIMEOUT_S) as store:
        entry = AuditEntry(actor="U0ALICE", source="console", command="status shop-api",
                           environment="staging", target="shop-api", outcome="succeeded")
        store.audit(entry)
        holder = create_engine(direct)
        try:
            with holder.connect() as conn, conn.begin():
                conn.execute(text("SELECT * FROM audit_head FOR UPDATE"))
                assert ends(lambda: store.audit(entry)) >= TIMEOUT_S * 0.8
            assert store.audit(entry) == 2  # the same connections serve on
        finally:
            holder.dispose()


def test_the_watchdog_cuts_a_short_wait_armed_while_it_sleeps_for_a_long_one() -> None:
    # It sleeps until the earliest deadline and is woken only for an earlier one: the short
    # wait is cut on time, the long one (still within its deadline) is left alone.
    from bot.store.postgres import _Watchdog

    dog = _Watchdog()
    long_side, long_peer = socket.socketpair()
    short_side, short_peer = socket.socketpair()
    with long_side, long_peer, short_side, short_peer:
        long_wait = dog.arm(long_side.fileno(), 60)
        time.sleep(0.1)  # the thread asleep until the long deadline
        short_wait = dog.arm(short_side.fileno(), 0.2)
        short_peer.settimeout(5)
        assert short_peer.recv(1) == b""  # its socket was shut down
        dog.disarm(short_wait)
        dog.disarm(long_wait)
        long_peer.sendall(b"x")
        long_side.settimeout(5)
        assert long_side.recv(1) == b"x"
