"""A bound on every wait for PostgreSQL, including one the server never answers.

The server's `statement_timeout` ends statements that run too long, and libpq's
`connect_timeout` connections that do not come up; neither helps when the database (or a
proxy in front of it) accepts the connection and then says nothing: psycopg would wait on
the socket for ever, holding the thread that asked. So every psycopg wait (a statement, a
fetch, a commit, the pool's ping) is watched, and a wait still going after its deadline has
its socket shut down: psycopg then fails as on a dropped connection, SQLAlchemy invalidates
it, and the caller gets `StoreUnavailable`. Imported only for PostgreSQL URLs (psycopg is an
optional dependency).
"""

from __future__ import annotations

import contextlib
import logging
import math
import os
import socket
import threading
import time
from collections.abc import Iterator
from typing import Any

import psycopg
from sqlalchemy import Engine, event

__all__ = ["bound_waits", "waits_up_to"]

log = logging.getLogger("opsbot.store")

_local = threading.local()


@contextlib.contextmanager
def waits_up_to(seconds: float) -> Iterator[None]:
    """Waits of this thread are cut after `seconds` meanwhile, instead of the engine's bound:
    for work that may rightly wait long (a migration waiting for another replica's)."""
    before = getattr(_local, "limit", None)
    _local.limit = seconds
    try:
        yield
    finally:
        _local.limit = before


class _Watchdog:
    """One thread that shuts down the sockets of waits past their deadline. It is woken only
    when a new deadline comes before the one it sleeps until: statements one after another
    (each arms and disarms) never wake it."""

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._armed: dict[int, tuple[float, int]] = {}  # token: (deadline, our dup of the fd)
        self._next = 0
        self._thread: threading.Thread | None = None
        self._wake_at = math.inf  # when the thread looks next (inf: once notified)

    def arm(self, fd: int, seconds: float) -> int:
        # A duplicate: if libpq closes its descriptor first, the number may be reused by
        # another socket, which must never be the one cut.
        dup = os.dup(fd)
        deadline = time.monotonic() + seconds
        with self._cond:
            self._next += 1
            self._armed[self._next] = (deadline, dup)
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name="opsbot-db-watchdog",
                                                daemon=True)
                self._thread.start()
            elif deadline < self._wake_at:
                self._cond.notify()
            return self._next

    def disarm(self, token: int) -> None:
        with self._cond:
            armed = self._armed.pop(token, None)
        if armed is not None:
            os.close(armed[1])

    def _run(self) -> None:
        with self._cond:
            while True:
                now = time.monotonic()
                for token, (deadline, dup) in list(self._armed.items()):
                    if deadline <= now:
                        del self._armed[token]
                        _cut(dup)
                if self._armed:
                    self._wake_at = min(d for d, _ in self._armed.values())
                    self._cond.wait(self._wake_at - now)
                else:
                    self._wake_at = math.inf
                    self._cond.wait()


def _cut(fd: int) -> None:
    try:
        sock = socket.socket(fileno=fd)
    except OSError:
        os.close(fd)
        return
    try:
        sock.shutdown(socket.SHUT_RDWR)
    except OSError:
        pass  # already gone
    finally:
        sock.close()
    log.warning("the database did not answer in time; its connection was dropped")


_WATCHDOG = _Watchdog()


class _BoundedConnection(psycopg.Connection[Any]):
    """A psycopg connection whose every wait on the server ends by `wait_limit` seconds."""

    wait_limit = 0.0

    def wait(self, *args: Any, **kwargs: Any) -> Any:
        token = _WATCHDOG.arm(self.fileno(), getattr(_local, "limit", None) or self.wait_limit)
        try:
            return super().wait(*args, **kwargs)
        finally:
            _WATCHDOG.disarm(token)


def bound_waits(engine: Engine, seconds: float) -> None:
    """Connections `engine` makes from now on cut any wait longer than `seconds`."""

    @event.listens_for(engine, "do_connect")
    def _connect(_dialect: Any, _record: Any, cargs: Any, cparams: Any) -> Any:
        connection = _BoundedConnection.connect(*cargs, **cparams)
        connection.wait_limit = seconds
        return connection
