"""Turns for SQLite's writers within one process.

SQLite has one writer at a time. A connection that meets the write lock held waits in
SQLite's busy handler, which polls: it sleeps 1, 2, 5, 10 ... up to 100 ms between tries,
and a writer that comes along between two polls takes the lock first. Under steady writes
(runbooks' store calls on many threads next to the acks' group commits) a writer can lose
its turn again and again, and an ack that must be on disk before it is sent waits for
hundreds of milliseconds, or past its deadline.

So, within a process, every writer on a database file first takes that file's turn (one
`Turns` per file, shared by the connections to it) and holds it until its transaction ends:
commit, rollback or close. Turns are taken in the order writers asked for them: a turn given
back goes straight to the writer that waited longest, woken at that moment, with no polling,
and nobody who asked later passes it, but for the thread that commits the records answers
wait for (acks): it goes to the front. SQLite's own lock still serializes writers across
processes (the CLI next to `opsbot serve`), through the busy handler as before.

A connection waits for the turn as long as its busy timeout (`wait_s`, which `patient` raises
with it); one with a wait of 0 (the event loop's) only tries, and fails at once with the
error SQLite would give, "database is locked".
"""

from __future__ import annotations

import os
import sqlite3
import threading
import weakref
from collections import deque
from collections.abc import Callable
from typing import Any, TypeVar

__all__ = ["Turns", "WriterConnection", "answers_first", "turns_for"]

T = TypeVar("T")


class Turns:
    """The turn of one database file's writers in this process, taken in the order they
    asked: a turn given back goes straight to the writer that waited longest, so a writer
    that comes later (or the one that just gave it back) cannot pass it."""

    def __init__(self) -> None:
        self._mutex = threading.Lock()
        self._held = False
        self._waiting: deque[threading.Lock] = deque()  # each waiter's gate, first first

    def take(self, wait_s: float, *, first: bool = False) -> bool:
        """Take the turn, waiting at most `wait_s` (0: only if nobody holds or waits for it);
        False if it was not had in time. `first`: ahead of every writer waiting (the records
        an answer waits for)."""
        with self._mutex:
            if not self._held:
                self._held = True
                return True
            if wait_s <= 0:
                return False
            gate = threading.Lock()
            gate.acquire()
            if first:
                self._waiting.appendleft(gate)
            else:
                self._waiting.append(gate)
        if gate.acquire(timeout=wait_s):
            return True  # handed over by `give_back`
        with self._mutex:
            try:
                self._waiting.remove(gate)
            except ValueError:
                return True  # handed over just as the wait ran out: it is ours
            return False

    def give_back(self) -> None:
        """End the holder's turn: the next waiter holds it now, or nobody."""
        with self._mutex:
            if self._waiting:
                self._waiting.popleft().release()
            else:
                self._held = False

    def waiting(self) -> int:
        """How many writers wait for the turn."""
        with self._mutex:
            return len(self._waiting)


_TURNS: weakref.WeakValueDictionary[str, Turns] = weakref.WeakValueDictionary()
_TURNS_LOCK = threading.Lock()


def turns_for(database: str) -> Turns:
    """The turns of `database` (a file's path): one per file in this process, shared by every
    engine on it, as long as one of them lives."""
    key = os.path.realpath(database)
    with _TURNS_LOCK:
        turns = _TURNS.get(key)
        if turns is None:
            turns = _TURNS[key] = Turns()
        return turns


_ANSWERS = threading.local()


def answers_first() -> None:
    """Mark the calling thread as the one that commits the records answers wait for (acks,
    2xx to Alertmanager: bot/store/batch.py): its writers take the next turn, ahead of every
    writer waiting, so an answer waits for one transaction at most, never for the queue of
    running work's store calls."""
    _ANSWERS.first = True


class WriterConnection(sqlite3.Connection):
    """A SQLite connection that takes its file's turn before it writes (`begin_write`, or
    `alone` for one statement in autocommit) and gives it back when its transaction
    ends. Without `turns` (an in-memory database: one connection) it takes none."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.turns: Turns | None = None
        #: How long `take_turn` waits; 0: only tries.
        self.wait_s = 0.0
        self._holds = False

    def take_turn(self) -> None:
        """Hold the file's turn (at once if this connection holds it already), or raise
        SQLite's "database is locked" once `wait_s` has passed."""
        if self.turns is None or self._holds:
            return
        # Where in the queue matters only to a writer that waits (not the loop's).
        first = self.wait_s > 0 and getattr(_ANSWERS, "first", False)
        if not self.turns.take(self.wait_s, first=first):
            raise sqlite3.OperationalError("database is locked")
        self._holds = True

    def end_turn(self) -> None:
        """Give the turn back (nothing if this connection does not hold it)."""
        if self._holds:
            self._holds = False
            assert self.turns is not None
            self.turns.give_back()

    def begin_write(self) -> None:
        """`BEGIN IMMEDIATE` in this connection's turn; the turn is given back if it fails."""
        self.take_turn()
        try:
            self.execute("BEGIN IMMEDIATE")
        except BaseException:
            self.end_turn()
            raise

    def alone(self, write: Callable[[WriterConnection], T]) -> T:
        """`write(self)` in this connection's turn, given back once it returns: a write that
        is its own transaction. A raw write is one statement, and alone SQLite's autocommit
        is its transaction, as BEGIN IMMEDIATE ... COMMIT would be (the connection has no
        driver transactions), in one call instead of three: once it returns, it is
        committed."""
        self.take_turn()
        try:
            return write(self)
        finally:
            if not self.in_transaction:
                self.end_turn()

    def commit(self) -> None:
        try:
            super().commit()
        finally:
            if not self.in_transaction:
                self.end_turn()

    def rollback(self) -> None:
        try:
            super().rollback()
        finally:
            # Even if the rollback failed: a connection that still holds SQLite's lock is
            # waited for by the busy handler, as one in another process would be; a turn
            # never given back would stop every writer of the process.
            self.end_turn()

    def close(self) -> None:
        try:
            super().close()
        finally:
            self.end_turn()

    def __del__(self) -> None:
        # A connection dropped without close (SQLite closes it when it is freed).
        if getattr(self, "_holds", False):
            self.end_turn()
