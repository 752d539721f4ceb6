"""Group commit: writes that must be on disk before an answer (an ack, a 2xx to Alertmanager)
share one transaction with every such write that arrived while the previous commit ran.

A commit costs the same for one row as for fifty, and SQLite has one writer: one thread that
commits everything waiting at once keeps each answer to about one commit's time however many
arrive together, where a commit each would queue them behind each other's lock waits. The
writes are Core statements built once, so a write costs a fraction of an ORM session's
overhead. A write that fails in a group is tried again alone,
so one bad row never fails its neighbours.
"""

from __future__ import annotations

import asyncio
import logging
import queue
import threading
from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

from sqlalchemy import Connection, Engine
from sqlalchemy.pool import StaticPool

from bot.store.db import WRITE_LOCK_OPTION
from bot.store.errors import StoreUnavailable, translated

__all__ = ["MAX_GROUP", "GroupCommit"]

log = logging.getLogger("opsbot.store")

T = TypeVar("T")

#: One transaction holds at most this many writes; more waiting go in the next.
MAX_GROUP = 256


@dataclass(frozen=True)
class _Write(Generic[T]):
    apply: Callable[[Connection], T]
    done: Future[T]


class GroupCommit:
    """A thread that commits queued writes in groups. `submit` a function of a connection
    (inside a transaction that holds SQLite's write lock); its future holds the function's
    result once the transaction that ran it committed, or the store error that stopped it."""

    def __init__(self, engine: Engine, name: str = "opsbot-commit") -> None:
        self._engine = engine
        self._queue: queue.SimpleQueue[_Write[Any] | None] = queue.SimpleQueue()
        self._name = name
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()
        self._closed = False
        # The loop-side path: SQLite files only (an in-memory database shares one connection).
        self._inline = engine.dialect.name == "sqlite" and not isinstance(engine.pool, StaticPool)
        self._loop: asyncio.AbstractEventLoop | None = None
        self._pending: list[_Write[Any]] = []
        self._flush_scheduled = False
        self._loop_connection: Connection | None = None

    def submit(self, apply: Callable[[Connection], T]) -> Future[T]:
        write = _Write(apply, Future[T]())
        if self._closed:
            raise StoreUnavailable("the store is closed")
        loop = self._own_loop()
        if loop is None:
            self._to_thread(write)
            return write.done
        self._pending.append(write)
        if not self._flush_scheduled:
            self._flush_scheduled = True
            loop.call_soon(self._flush)
        return write.done

    def _own_loop(self) -> asyncio.AbstractEventLoop | None:
        """The running loop if writes may be committed on it: the first loop that submits
        owns the loop-side path; others (and plain threads) use the thread."""
        if not self._inline:
            return None
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            return None
        if self._loop is None:
            self._loop = loop
        return loop if loop is self._loop else None

    def _to_thread(self, write: _Write[Any]) -> None:
        with self._lock:
            if self._closed:
                write.done.set_exception(StoreUnavailable("the store is closed"))
                return
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name=self._name, daemon=True)
                self._thread.start()
            self._queue.put(write)

    def _flush(self) -> None:
        """On the loop: commit what this pass submitted without waiting for the write lock;
        what cannot be committed so goes to the thread."""
        self._flush_scheduled = False
        group, self._pending = self._pending, []
        group = [w for w in group if not w.done.cancelled()]
        if not group:
            return
        try:
            connection = self._loop_connect()
            with connection.begin():
                results = [write.apply(connection) for write in group]
        except Exception as exc:
            # Mostly "database is locked" (a writer elsewhere); any other failure is retried
            # by the thread too, which commits each write alone if the group fails again.
            log.debug("a group commit on the loop failed (%s); the thread takes it",
                      type(exc).__name__)
            self._drop_loop_connection()
            for write in group:
                self._to_thread(write)
            return
        for write, result in zip(group, results, strict=True):
            if write.done.set_running_or_notify_cancel():
                write.done.set_result(result)

    def _loop_connect(self) -> Connection:
        if self._loop_connection is None:
            connection = self._engine.connect().execution_options(**{WRITE_LOCK_OPTION: True})
            raw = connection.connection.dbapi_connection
            if raw is None:
                raise StoreUnavailable("no database connection")
            # Never wait for the lock on the loop; checkpoints are left to the other
            # connections (a checkpoint syncs the database file).
            raw.execute("PRAGMA busy_timeout = 0")
            raw.execute("PRAGMA wal_autocheckpoint = 0")
            self._loop_connection = connection
        return self._loop_connection

    def _drop_loop_connection(self) -> None:
        connection, self._loop_connection = self._loop_connection, None
        if connection is not None:
            try:
                # Discarded, never back to the pool: its pragmas would make any other store
                # call fail at once instead of waiting for the lock.
                connection.invalidate()
                connection.close()
            except Exception:  # a broken connection is discarded all the same
                log.debug("closing the loop's store connection failed", exc_info=True)

    def close(self) -> None:
        """Commit what is queued, then stop the thread."""
        with self._lock:
            self._closed = True
            thread = self._thread
            if thread is not None:
                self._queue.put(None)
            pending, self._pending = self._pending, []
        for write in pending:  # submitted in a loop pass that never ended
            write.done.set_exception(StoreUnavailable("the store is closed"))
        if thread is not None:
            thread.join(timeout=30)
        self._drop_loop_connection()

    def _run(self) -> None:
        while True:
            first = self._queue.get()
            if first is None:
                return
            group: list[_Write[Any]] = [first]
            stop = False
            while len(group) < MAX_GROUP:
                try:
                    more = self._queue.get_nowait()
                except queue.Empty:
                    break
                if more is None:
                    stop = True
                    break
                group.append(more)
            # A caller that stopped waiting (its deadline passed) cancelled its write.
            self._commit([w for w in group if w.done.set_running_or_notify_cancel()])
            if stop:
                return

    def _commit(self, group: list[_Write[Any]]) -> None:
        if not group:
            return
        try:
            results = self._transaction(group)
        except Exception as exc:
            if len(group) == 1:
                group[0].done.set_exception(exc)
                return
            log.warning("a group of %d writes failed (%s); committing each alone",
                        len(group), type(exc).__name__)
            for write in group:
                try:
                    result = self._transaction([write])[0]
                except Exception as alone:
                    write.done.set_exception(alone)
                else:
                    write.done.set_result(result)
            return
        for write, result in zip(group, results, strict=True):
            write.done.set_result(result)

    def _transaction(self, group: list[_Write[Any]]) -> list[Any]:
        with translated(), self._engine.connect().execution_options(
                **{WRITE_LOCK_OPTION: True}) as connection, connection.begin():
            return [write.apply(connection) for write in group]
