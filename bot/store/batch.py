"""Group commit: writes that must be on disk before an answer (an ack, a 2xx to Alertmanager)
share one transaction with every such write that arrived while the previous commit ran.

A commit costs the same for one row as for fifty, and SQLite has one writer: one thread that
commits everything waiting at once keeps each answer to about one commit's time however many
arrive together, where a commit each would queue them behind each other's lock waits. The
writes are Core statements built once, so a write costs a fraction of an ORM session's
overhead; on a SQLite file, a write that also comes as a `SqliteStatement` skips even Core's
per-statement work on the loop (most of a small insert's cost). A write that fails in a group is
tried again alone, so one bad row never fails its neighbours.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import queue
import sqlite3
import threading
import weakref
from collections.abc import Callable, Collection, Iterator, Mapping, Sequence
from concurrent.futures import Future
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

from sqlalchemy import Connection, Dialect, Engine, Table
from sqlalchemy.dialects import sqlite
from sqlalchemy.exc import DBAPIError
from sqlalchemy.pool import StaticPool
from sqlalchemy.sql.dml import Insert

from bot.deadlines import Deadline
from bot.store.db import DEFAULT_TIMEOUT_S, WRITE_LOCK_OPTION, server_connect_params
from bot.store.errors import StoreError, StoreUnavailable, translated
from bot.store.loopcommit import LoopConnections
from bot.store.writers import WriterConnection, answers_first

__all__ = ["MAX_GROUP", "SERVER_THREADS", "GroupCommit", "PlainInsert", "RawWrite",
           "ServerRows", "SqliteStatement", "committed"]

log = logging.getLogger("opsbot.store")

T = TypeVar("T")

#: One transaction holds at most this many writes; more waiting go in the next.
MAX_GROUP = 256
#: Commit threads on a database server (PostgreSQL); SQLite gets one.
SERVER_THREADS = 2


async def committed(write: Future[T], timeout: float) -> T:
    """Wait at most `timeout` (then TimeoutError) for a write `submit` returned; a write not
    begun by then is cancelled. A write committed on the loop's own thread (the loop-side
    path) wakes its waiter there and then, without `asyncio.wrap_future`'s trip through the
    loop's self-pipe: an ack waits one loop pass less. A write no other could join in this
    loop pass is committed at once (`GroupCommit.flush_if_alone`), without waiting at all."""
    if isinstance(write, _WriteFuture):
        write.group.flush_if_alone(write)
    if write.done():  # committed (or failed) on the loop just now: nothing to wait for
        return write.result()
    loop = asyncio.get_running_loop()
    waiter: asyncio.Future[T] = loop.create_future()
    loop_thread = threading.get_ident()

    def settled(done: Future[T]) -> None:
        if threading.get_ident() == loop_thread:
            _copy_outcome(done, waiter)
        else:
            _mailbox(loop).post(done, waiter)

    write.add_done_callback(settled)
    try:
        with Deadline(timeout):  # as asyncio.timeout, without a timer a use (bot/deadlines.py)
            return await waiter
    except (asyncio.CancelledError, TimeoutError):
        write.cancel()
        raise


class _Mailbox:
    """Outcomes a commit thread hands to one event loop: a group's writes, settled one after
    the other, wake the loop once at the end of the group (one write to its self-pipe), not
    once each, and the loop does not stop the thread mid-group to take each."""

    def __init__(self) -> None:
        # No reference to its loop: the loop is the key of `_MAILBOXES`, held weakly.
        self._lock = threading.Lock()
        self._outcomes: list[tuple[Future[Any], asyncio.Future[Any]]] = []

    def post(self, done: Future[T], waiter: asyncio.Future[T]) -> None:
        with self._lock:
            self._outcomes.append((done, waiter))
            if len(self._outcomes) > 1:
                return  # the loop is already told (or will be, at the end of the group)
        held: dict[_Mailbox, asyncio.AbstractEventLoop] | None = getattr(_GROUP, "boxes", None)
        if held is not None:
            held[self] = waiter.get_loop()  # told once the whole group is settled
        else:
            self.tell(waiter.get_loop())

    def tell(self, loop: asyncio.AbstractEventLoop) -> None:
        with contextlib.suppress(RuntimeError):  # the loop is closed: nobody waits any more
            loop.call_soon_threadsafe(self._deliver)

    def _deliver(self) -> None:
        with self._lock:
            outcomes, self._outcomes = self._outcomes, []
        for done, waiter in outcomes:
            _copy_outcome(done, waiter)


_MAILBOXES: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, _Mailbox] = \
    weakref.WeakKeyDictionary()
_MAILBOXES_LOCK = threading.Lock()


# The mailboxes a commit thread posted to while it settles a group, each told once at its end.
_GROUP = threading.local()


@contextlib.contextmanager
def _one_wake_per_loop() -> Iterator[None]:
    boxes: dict[_Mailbox, asyncio.AbstractEventLoop] = {}
    _GROUP.boxes = boxes
    try:
        yield
    finally:
        _GROUP.boxes = None
        for box, loop in boxes.items():
            box.tell(loop)


def _mailbox(loop: asyncio.AbstractEventLoop) -> _Mailbox:
    with _MAILBOXES_LOCK:
        box = _MAILBOXES.get(loop)
        if box is None:
            box = _MAILBOXES[loop] = _Mailbox()
        return box


def _copy_outcome(done: Future[T], waiter: asyncio.Future[T]) -> None:
    if waiter.done():
        return
    if done.cancelled():
        waiter.cancel()
        return
    error = done.exception()
    if error is not None:
        waiter.set_exception(error)
    else:
        waiter.set_result(done.result())


#: A write on SQLite's own connection: one statement (fully read, so it is done when the
#: call returns), in a transaction the group commit began, or alone in SQLite's autocommit.
RawWrite = Callable[[sqlite3.Connection], T]


class SqliteStatement:
    """An insert compiled once for SQLite's DBAPI connection, with its columns' bind
    processors (what SQLAlchemy would do to each value): run on a raw connection, it writes
    exactly the row Core would, without Core's per-statement work."""

    def __init__(self, stmt: Insert, table: Table, keys: Sequence[str]) -> None:
        dialect = sqlite.dialect()
        compiled = stmt.compile(dialect=dialect, column_keys=list(keys))
        self.sql = compiled.string
        self._binds = [(key, table.c[key].type.bind_processor(dialect))
                       for key in compiled.positiontup or ()]

    def __call__(self, raw: sqlite3.Connection, values: Mapping[str, Any],
                 as_stored: Collection[str] = ()) -> Any:
        """The first row the statement returns (RETURNING), or None. The values of
        `as_stored` are already in the column's stored form (a JSON column's text)."""
        params = [values[key] if process is None or key in as_stored else process(values[key])
                  for key, process in self._binds]
        return raw.execute(self.sql, params).fetchone()


class ServerRows:
    """A plain insert's rows as one multi-row `INSERT ... VALUES` for a database server: a
    group's rows in one statement, where psycopg's executemany sends a statement a row and
    waits on each in its pipeline, at about twice the commit thread's CPU (which holds the
    interpreter's lock the event loop needs). `columns` are (column, key of the row's values,
    the SQL type the value is cast to or None): a cast value is bound as it is (a JSON text,
    parsed by the server), every other through its column's bind processor, as Core would."""

    def __init__(self, table: Table, columns: Sequence[tuple[str, str, str | None]]) -> None:
        self._table = table
        self._columns = list(columns)
        # Per driver: (the statement's head, one row's placeholders, the bind processors).
        self._forms: dict[tuple[str, str], _ServerForm] = {}

    def statement(self, dialect: Dialect, rows: Sequence[Mapping[str, Any]],
                  numbered: bool = False) -> tuple[str, tuple[Any, ...]]:
        """The SQL for `rows` and its parameters: in the format paramstyle (psycopg's `%s`),
        or `numbered` (PostgreSQL's own `$1`, for psycopg's raw cursors, which send the SQL
        as it is: the format's is parsed again at every statement of more than 50
        parameters, about 0.15 ms of the event loop for ten notifications)."""
        form = self._forms.get((dialect.name, dialect.driver))
        if form is None:
            form = self._forms[(dialect.name, dialect.driver)] = self._compile(dialect)
        sql = form.sql.get((len(rows), numbered))
        if sql is None:
            values = ", ".join([form.row] * len(rows))
            if numbered:  # the same statement, its placeholders numbered in order
                first, *rest = values.split("%s")
                values = first + "".join(f"${n}{part}" for n, part in enumerate(rest, 1))
            sql = form.sql[(len(rows), numbered)] = form.head + values
        return sql, tuple([value if process is None else process(value)
                           for row in rows for key, process in form.binds
                           for value in (row[key],)])

    def _compile(self, dialect: Dialect) -> _ServerForm:
        quote = dialect.identifier_preparer
        names = ", ".join(quote.quote(column) for column, _, _ in self._columns)
        return _ServerForm(
            head=f"INSERT INTO {quote.format_table(self._table)} ({names}) VALUES ",
            row="(" + ", ".join("%s" if cast is None else f"CAST(%s AS {cast})"
                                for _, _, cast in self._columns) + ")",
            binds=[(key, None if cast is not None
                    else self._table.c[column].type.bind_processor(dialect))
                   for column, key, cast in self._columns])


@dataclass(frozen=True)
class _ServerForm:
    head: str
    row: str
    binds: list[tuple[str, Callable[[Any], Any] | None]]
    sql: dict[tuple[int, bool], str] = field(default_factory=dict)  # by rows, numbered


@dataclass(frozen=True)
class PlainInsert(Generic[T]):
    """A write that is one row inserted by `statement` (no RETURNING) and answers `result`:
    on the thread, a group's rows of one statement go in one round trip to a database
    server, as one multi-row statement (`server`, when the statement has that form) or one
    executemany."""

    statement: Insert
    values: dict[str, Any]
    result: T
    server: ServerRows | None = None


class _WriteFuture(Future[T]):
    """The future `submit` returns, knowing its group commit (for `committed`)."""

    def __init__(self, group: GroupCommit) -> None:
        super().__init__()
        self.group = group


@dataclass(frozen=True)
class _Write(Generic[T]):
    apply: Callable[[Connection], T]
    done: Future[T]
    raw: RawWrite[T] | None = None
    row: PlainInsert[T] | None = None


class GroupCommit:
    """Threads (one on SQLite) that commit queued writes in groups. `submit` a function of a
    connection (inside a transaction that holds SQLite's write lock); its future holds the
    function's result once the transaction that ran it committed, or the store error that
    stopped it. `timeout_s` is the store's bound on a wait, which `engine` was made with: the
    loop path's own PostgreSQL connections get the same."""

    def __init__(self, engine: Engine, name: str = "opsbot-commit",
                 timeout_s: float = DEFAULT_TIMEOUT_S) -> None:
        self._engine = engine
        self._queue: queue.SimpleQueue[_Write[Any] | None] = queue.SimpleQueue()
        self._name = name
        self._threads: list[threading.Thread] = []
        self._lock = threading.Lock()
        self._closed = False
        # The loop-side path: SQLite files only (an in-memory database shares one connection).
        self._inline = engine.dialect.name == "sqlite" and not isinstance(engine.pool, StaticPool)
        self._loop: asyncio.AbstractEventLoop | None = None
        self._pending: list[_Write[Any]] = []
        self._flush: asyncio.Handle | None = None  # scheduled to commit `_pending`
        self._loop_connection: Connection | None = None
        # PostgreSQL through psycopg: groups of plain inserts with a multi-row form are sent
        # from the loop (bot/store/loopcommit.py); every other write goes to the threads.
        settings = server_connect_params(engine, timeout_s) \
            if engine.dialect.driver == "psycopg" else None
        self._server = None if settings is None else LoopConnections(*settings)
        self._server_pending: list[_Write[Any]] = []
        self._server_flush: asyncio.Handle | None = None
        self._server_tasks: set[asyncio.Task[None]] = set()
        #: Transactions committed so far: on the loop (SQLite's `raw` ones apart, and a
        #: server's statements sent from it) and on the thread.
        self.commits = {"loop": 0, "loop_raw": 0, "loop_server": 0, "thread": 0}

    def submit(self, apply: Callable[[Connection], T], raw: RawWrite[T] | None = None,
               row: PlainInsert[T] | None = None) -> Future[T]:
        """`raw`, the same write as one statement on SQLite's DBAPI connection, is used on
        the loop when every write of the group has one; `row`, the same write as a plain
        insert, on the thread."""
        write = _Write(apply, _WriteFuture[T](self), raw, row)
        if self._closed:
            raise StoreUnavailable("the store is closed")
        if self._server is not None and row is not None and row.server is not None \
                and not self._server.resting():
            server_loop = self._owned_loop()
            if server_loop is not None:
                self._server_pending.append(write)
                if self._server_flush is None:
                    self._server_flush = server_loop.call_soon(self._flush_server)
                return write.done
        loop = self._own_loop()
        if loop is None:
            self._to_thread(write)
            return write.done
        self._pending.append(write)
        if self._flush is None:
            self._flush = loop.call_soon(self._flush_pending)
        return write.done

    async def commit(self, apply: Callable[[Connection], T], timeout: float,
                     raw: RawWrite[T] | None = None, row: PlainInsert[T] | None = None) -> T:
        """`submit` the write and wait for it (`committed`, with its `timeout`), for a caller
        that waits for its write at once (an ack, a 2xx to Alertmanager). A write with a `raw`
        form that is alone on the loop path (no write pending, nothing else due in this loop
        pass, so nothing could join its group) is committed right here, as `flush_if_alone`
        would commit it a step later, without a group's future, handle and callbacks: they
        cost about half as much as the insert itself, on every ack at concurrency 1. If the
        loop cannot commit it (the write lock is held elsewhere), the thread does."""
        if raw is None or not self._alone():
            return await committed(self.submit(apply, raw, row), timeout)
        try:
            connection = self._loop_connect()
            result = _writer(connection).alone(raw)
        except Exception as exc:
            self._loop_failed(exc)
            write = _Write(apply, _WriteFuture[T](self), raw, row)
            self._to_thread(write)
            return await committed(write.done, timeout)
        self.commits["loop_raw"] += 1
        return result

    def _alone(self) -> bool:
        """Whether a write submitted now would be committed on the loop by `flush_if_alone`:
        on the loop that owns the loop path, with no write pending and nothing in the loop's
        ready queue (read as `flush_if_alone` reads it)."""
        if not self._inline or self._pending or self._closed:
            return False
        loop = self._own_loop()
        ready = getattr(loop, "_ready", None)
        return ready is not None and not ready

    def flush_if_alone(self, done: Future[Any]) -> None:
        """Commit now, on the loop, the one pending write whose future is `done` when nothing
        else is due in this loop pass but its flush: no other write could join its group
        before the flush, so the caller need not wait a pass for it (and another for its
        answer). A request alone (an ack at concurrency 1) is answered in one pass; requests
        that arrive together are still committed together. Reads the loop's ready queue, an
        attribute of asyncio's own loops; a loop without one is never flushed early."""
        handle = self._flush
        if handle is None or len(self._pending) != 1 or self._pending[0].done is not done:
            return
        loop = asyncio.get_running_loop()
        if loop is not self._loop:  # only the loop that owns the pending writes flushes them
            return
        ready = getattr(loop, "_ready", None)
        if ready is None or len(ready) != 1 or ready[0] is not handle:
            return
        handle.cancel()
        self._flush_pending()

    def _own_loop(self) -> asyncio.AbstractEventLoop | None:
        """The running loop if writes may be committed on it: the first loop that submits
        owns the loop-side path; others (and plain threads) use the thread."""
        return self._owned_loop() if self._inline else None

    def _owned_loop(self) -> asyncio.AbstractEventLoop | None:
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            return None
        if self._loop is None:
            self._loop = loop
        return loop if loop is self._loop else None

    def _flush_server(self) -> None:
        """On the loop: send what is waiting for the server path, a statement per group of
        writes of one statement, while a connection is free; the rest waits for the next
        statement to return (and grows meanwhile)."""
        self._server_flush = None
        server = self._server
        assert server is not None
        while self._server_pending:
            if server.resting():  # the path failed a moment ago: the threads take it all
                waiting, self._server_pending = self._server_pending, []
                for write in waiting:
                    self._to_thread(write)
                return
            if not server.free():
                return
            statement = self._server_pending[0].row.statement  # type: ignore[union-attr]
            group: list[_Write[Any]] = []
            rest: list[_Write[Any]] = []
            for write in self._server_pending:
                same = write.row is not None and write.row.statement is statement
                (group if same and len(group) < MAX_GROUP else rest).append(write)
            self._server_pending = rest
            # A caller that stopped waiting (its deadline passed) cancelled its write.
            group = [w for w in group if not w.done.cancelled()]
            if not group:
                continue
            try:
                sql = _one_statement(self._engine.dialect, group, numbered=True)
            except Exception:  # a value its column cannot bind: the threads say which
                sql = None
            if sql is None:
                for write in group:
                    self._to_thread(write)
                continue
            server.reserve()
            task = asyncio.get_running_loop().create_task(
                self._commit_on_loop(server, group, sql), name="opsbot-commit-loop")
            self._server_tasks.add(task)
            task.add_done_callback(self._server_tasks.discard)

    async def _commit_on_loop(self, server: LoopConnections, group: list[_Write[Any]],
                              sql: tuple[str, tuple[Any, ...]]) -> None:
        try:
            await server.run(*sql)
        except Exception:
            # Whatever stopped it (the server's error, a dead connection, the deadline): the
            # threads try the group again, then each write alone.
            for write in group:
                self._to_thread(write)
        except BaseException:  # cancelled: the loop is closing; the threads take it
            for write in group:
                self._to_thread(write)
            raise
        else:
            self.commits["loop_server"] += 1
            for write in group:
                if write.done.set_running_or_notify_cancel():
                    write.done.set_result(write.row.result)  # type: ignore[union-attr]
        # What gathered meanwhile goes now (or to the threads, if the path now rests).
        if self._server_pending and self._server_flush is None and not self._closed:
            self._flush_server()

    def _to_thread(self, write: _Write[Any]) -> None:
        with self._lock:
            if self._closed:
                write.done.set_exception(StoreUnavailable("the store is closed"))
                return
            if not self._threads:
                # SQLite has one writer: one thread. A server commits a group while it
                # syncs the last one's: two threads keep its commits overlapping.
                count = 1 if self._engine.dialect.name == "sqlite" else SERVER_THREADS
                self._threads = [threading.Thread(target=self._run, name=f"{self._name}-{i}",
                                                  daemon=True) for i in range(count)]
                for thread in self._threads:
                    thread.start()
            self._queue.put(write)

    def _flush_pending(self) -> None:
        """On the loop: commit what this pass submitted without waiting for the write lock;
        what cannot be committed so goes to the thread."""
        self._flush = None
        group, self._pending = self._pending, []
        group = [w for w in group if not w.done.cancelled()]
        if not group:
            return
        try:
            connection = self._loop_connect()
            if all(write.raw is not None for write in group):
                results = _raw_transaction(connection, group)
                self.commits["loop_raw"] += 1
            else:
                with connection.begin():
                    results = [write.apply(connection) for write in group]
                self.commits["loop"] += 1
        except Exception as exc:
            self._loop_failed(exc)
            for write in group:
                self._to_thread(write)
            return
        for write, result in zip(group, results, strict=True):
            if write.done.set_running_or_notify_cancel():
                write.done.set_result(result)

    def _loop_failed(self, exc: Exception) -> None:
        """A commit on the loop failed; its writes go to the thread. Mostly "database is
        locked" (a writer elsewhere), and the connection is kept; any other failure is retried
        by the thread too, which commits each write alone if the group fails again."""
        log.debug("a group commit on the loop failed (%s); the thread takes it",
                  type(exc).__name__)
        if not _only_locked_out(exc, self._loop_connection):
            self._drop_loop_connection()

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
            if isinstance(raw, WriterConnection):
                raw.wait_s = 0  # nor for this process's other writers' turn
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
        """Commit what is queued, then stop the threads."""
        with self._lock:
            self._closed = True
            threads = list(self._threads)
            if threads:
                self._queue.put(None)  # each thread that meets it puts it back for the next
            pending, self._pending = self._pending, []
        pending += self._server_pending
        self._server_pending = []
        if self._server_flush is not None:
            self._server_flush.cancel()
        for write in pending:  # submitted in a loop pass that never ended
            write.done.set_exception(StoreUnavailable("the store is closed"))
        if self._server is not None:
            self._server.close()
        for thread in threads:
            thread.join(timeout=30)
        self._drop_loop_connection()

    def _run(self) -> None:
        answers_first()  # the records an answer waits for go before running work's writes
        while True:
            first = self._queue.get()
            if first is None:
                self._queue.put(None)
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
            with _one_wake_per_loop():
                self._commit([w for w in group if w.done.set_running_or_notify_cancel()])
            if stop:
                self._queue.put(None)
                return

    def _commit(self, group: list[_Write[Any]]) -> None:
        if not group:
            return
        try:
            results = self._transaction_anew(group)
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

    def _transaction_anew(self, group: list[_Write[Any]]) -> list[Any]:
        """`_transaction`, once more on a new connection if the pooled one had died (a
        database restart or failover): no ping tests them at checkout on a server."""
        try:
            return self._transaction(group)
        except StoreError as exc:
            cause = exc.__cause__
            if not (isinstance(cause, DBAPIError) and cause.connection_invalidated):
                raise
            log.info("a store connection had died (%s); the group is tried on a new one",
                     type(cause.orig).__name__)
            return self._transaction(group)

    def _transaction(self, group: list[_Write[Any]]) -> list[Any]:
        single = _one_statement(self._engine.dialect, group)
        if single is not None:
            # One statement is a transaction of its own: in autocommit it is committed when
            # it returns, in one round trip to the server where BEGIN, it and COMMIT take three
            # (each a wait for this thread and a hand-over of the interpreter's lock).
            with translated(), self._engine.connect().execution_options(
                    isolation_level="AUTOCOMMIT") as connection:
                connection.exec_driver_sql(*single)
            self.commits["thread"] += 1
            return [write.row.result for write in group if write.row is not None]
        with translated(), self._engine.connect().execution_options(
                **{WRITE_LOCK_OPTION: True}) as connection, connection.begin():
            results = _apply(connection, group)
        self.commits["thread"] += 1
        return results


def _one_statement(dialect: Dialect, group: list[_Write[Any]], numbered: bool = False,
                   ) -> tuple[str, tuple[Any, ...]] | None:
    """The group as one multi-row statement (SQL and parameters, `numbered` as
    `ServerRows.statement`) when every write in it is a plain insert of the same statement
    with a `ServerRows` form, on psycopg; else None."""
    first = group[0].row
    if first is None or first.server is None or dialect.driver != "psycopg":
        return None
    rows = []
    for write in group:
        if write.row is None or write.row.statement is not first.statement:
            return None
        rows.append(write.row.values)
    return first.server.statement(dialect, rows, numbered)


def _apply(connection: Connection, group: list[_Write[Any]]) -> list[Any]:
    """The group's writes in the caller's transaction: plain inserts of one statement
    together, after the others."""
    results = []
    rows: dict[Insert, list[dict[str, Any]]] = {}
    server: dict[Insert, ServerRows | None] = {}
    for write in group:
        if write.row is None:
            results.append(write.apply(connection))
        else:
            rows.setdefault(write.row.statement, []).append(write.row.values)
            server[write.row.statement] = write.row.server
            results.append(write.row.result)
    for statement, values in rows.items():
        form = server[statement]
        # The multi-row form is written in psycopg's placeholders; any other driver gets the
        # statement as Core runs it.
        if form is None or connection.dialect.driver != "psycopg":
            connection.execute(statement, values)
        else:
            connection.exec_driver_sql(*form.statement(connection.dialect, values))
    return results


def _only_locked_out(exc: Exception, connection: Connection | None) -> bool:
    """The write failed because another writer held SQLite's lock or this process's turn,
    and left `connection` as it was (no transaction open): kept for the next flush. Closing
    and opening it again costs the loop a millisecond or more, each time running work holds
    the lock as a group comes."""
    error = exc.orig if isinstance(exc, DBAPIError) else exc
    if not isinstance(error, sqlite3.OperationalError) or connection is None \
            or connection.invalidated:
        return False
    code = getattr(error, "sqlite_errorcode", None)
    busy = (code & 0xFF) == sqlite3.SQLITE_BUSY if code is not None \
        else str(error) == "database is locked"  # a turn not had (bot/store/writers.py)
    raw = connection.connection.dbapi_connection
    return busy and not connection.in_transaction() and raw is not None \
        and not raw.in_transaction


def _raw_transaction(connection: Connection, group: list[_Write[Any]]) -> list[Any]:
    """The group on the connection's SQLite connection, begun and committed here (the
    connection is never in a Core transaction between flushes)."""
    raw = _writer(connection)
    if len(group) == 1 and group[0].raw is not None:
        return [raw.alone(group[0].raw)]
    raw.begin_write()
    try:
        results = [write.raw(raw) for write in group if write.raw is not None]
        raw.commit()
    except BaseException:
        with contextlib.suppress(sqlite3.Error):
            raw.rollback()
        raise
    return results


def _writer(connection: Connection) -> WriterConnection:
    """The loop path's SQLite connection under `connection`."""
    raw = connection.connection.dbapi_connection
    if not isinstance(raw, WriterConnection):
        raise StoreUnavailable("no database connection")
    return raw
