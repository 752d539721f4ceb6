"""The group commit behind acks and Alertmanager's 2xx (bot/store/batch.py): what arrives
together is committed together and answered only once committed; a writer elsewhere never
blocks the event loop; one bad write fails alone; on SQLite and PostgreSQL. On a SQLite file
the loop's raw path writes exactly the rows Core writes."""

from __future__ import annotations

import asyncio
import json
import re
import sqlite3
import threading
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Connection, event, func, select

from bot.store import Store, StoreError, committed, sqlite_url
from bot.store.batch import SERVER_THREADS
from bot.store.models import AlertNotificationRow, DeliveryClaim
from bot.store.writers import WriterConnection


def _commits(store: Store) -> Callable[[], int]:
    """Counts the transactions the store's engine commits from now on, and those its group
    commit made on SQLite's raw connection (which Core does not see)."""
    seen = [0]
    raw_before = store._group.commits["loop_raw"]

    @event.listens_for(store._group_engine, "commit")
    def _on_commit(_conn: Connection) -> None:
        seen[0] += 1

    return lambda: seen[0] + store._group.commits["loop_raw"] - raw_before


def test_what_arrives_together_is_one_transaction_and_each_answer_follows_the_commit(
    open_store: Callable[..., Store],
) -> None:
    store = open_store()
    commits = _commits(store)

    async def arrive_together() -> list[Any]:
        futures = [store.queue_trigger(f"slack:T{i}", f'{{"n": {i}}}') for i in range(20)]
        futures.append(store.queue_trigger("slack:T3", '{"n": "retry"}'))  # Slack's retry
        futures.append(store.queue_notification(group_key="{}:{alertname=\"A\"}",
                                                receiver="opsbot", status="firing",
                                                payload={"version": "4"}))
        return list(await asyncio.gather(*(asyncio.wrap_future(f) for f in futures)))

    answers = asyncio.run(arrive_together())
    assert answers[:20] == [True] * 20
    assert answers[20] is False  # the duplicate in the same group is refused, not queued twice
    assert str(answers[21]).startswith("an-")
    if store._engine.dialect.name == "sqlite":
        assert commits() == 1  # the loop's pass
    else:
        # A commit thread wakes on the first write, while the loop may still be queueing the
        # rest: the writes still share a few transactions, never one each.
        assert commits() <= SERVER_THREADS + 1
    with store._sessions() as session:
        assert session.scalar(select(func.count()).select_from(DeliveryClaim)) == 20
        stored = session.scalar(select(AlertNotificationRow.payload))
    assert stored == {"version": "4"}


def test_a_write_from_a_plain_thread_is_committed_by_the_commit_thread(
    open_store: Callable[..., Store],
) -> None:
    store = open_store()
    assert store.queue_trigger("slack:T1", "{}").result(timeout=10) is True
    assert store.queue_trigger("slack:T1", "{}").result(timeout=10) is False
    assert not store.claim_delivery("slack:T1")


def test_one_bad_write_fails_alone_and_its_neighbours_commit(
    open_store: Callable[..., Store],
) -> None:
    store = open_store()

    def bad(_connection: Connection) -> None:
        raise ValueError("a write that cannot be made")

    async def together() -> list[Any]:
        futures = [store.queue_trigger("slack:A", "{}"), store._group.submit(bad),
                   store.queue_trigger("slack:B", "{}")]
        return await asyncio.gather(*(asyncio.wrap_future(f) for f in futures),
                                    return_exceptions=True)

    first, failed, second = asyncio.run(together())
    assert first is True and second is True
    assert isinstance(failed, ValueError)
    assert not store.claim_delivery("slack:A") and not store.claim_delivery("slack:B")


def test_a_closed_store_refuses_writes_as_unavailable(open_store: Callable[..., Store]) -> None:
    store = open_store()
    store.close()
    with pytest.raises(StoreError):
        store.queue_trigger("slack:late", "{}")


def test_a_writer_elsewhere_never_blocks_the_loop_and_the_answer_waits_for_the_commit(
    tmp_path: Path,
) -> None:
    """SQLite: another process's transaction holds the write lock. The loop goes on serving
    (a callback scheduled meanwhile runs), the write is not answered while the lock is held,
    and is committed once it is released. Afterwards the pool's connections still wait for
    the lock as every store call must (the loop's no-wait connection never goes back)."""
    path = tmp_path / "opsbot.db"
    store = Store.open(sqlite_url(path))
    try:
        holder = sqlite3.connect(path, isolation_level=None)
        holder.execute("BEGIN IMMEDIATE")
        holder.execute("INSERT INTO delivery_claims (key, claimed_at) "
                       "VALUES ('held', '2025-01-01 00:00:00')")
        released = threading.Event()

        async def scenario() -> tuple[bool, bool, bool]:
            write = asyncio.wrap_future(store.queue_trigger("slack:T1", "{}"))
            ran_meanwhile = asyncio.Event()
            asyncio.get_running_loop().call_soon(ran_meanwhile.set)
            await asyncio.wait_for(ran_meanwhile.wait(), 5)
            await asyncio.sleep(0.2)
            answered_while_locked = write.done()
            holder.execute("COMMIT")
            released.set()
            return ran_meanwhile.is_set(), answered_while_locked, await write

        ran, early, first = asyncio.run(scenario())
        assert ran
        assert not early  # no ack before the record is on disk
        assert first is True
        assert not store.claim_delivery("slack:T1")
        # Every connection the pool hands out waits for the lock (none has busy_timeout 0).
        connections = [store._engine.raw_connection() for _ in range(3)]
        try:
            timeouts = [c.driver_connection.execute("PRAGMA busy_timeout").fetchone()[0]
                        for c in connections]
        finally:
            for c in connections:
                c.close()
        assert all(t > 0 for t in timeouts), timeouts
        holder.close()
    finally:
        store.close()


def _rows(path: Path, table: str, skip: tuple[str, ...]) -> list[dict[str, Any]]:
    """The rows as SQLite stores them (text, not what SQLAlchemy reads back), without `skip`."""
    with sqlite3.connect(path) as raw:
        cursor = raw.execute(f"SELECT * FROM {table} ORDER BY 1")
        names = [column[0] for column in cursor.description]
        rows = cursor.fetchall()
    return [{k: v for k, v in zip(names, row, strict=True) if k not in skip} for row in rows]


def test_the_loop_path_writes_on_sqlites_own_connection_exactly_the_rows_core_writes(
    tmp_path: Path, clock: Callable[[], Any],
) -> None:
    paths = {how: tmp_path / how / "opsbot.db" for how in ("core", "raw")}
    stores = {how: Store.open(sqlite_url(path), clock=clock) for how, path in paths.items()}
    payload = {"version": "4", "alerts": [{"labels": {"alertname": "A\u00e9"}}], "n": 1.5}
    try:
        core = stores["core"]
        assert core.accept_trigger("slack:T1", '{"text": "status shop-api"}') is True
        core.record_notification(group_key="{}:{}", receiver="opsbot", status="firing",
                                 payload=payload)
        raw = stores["raw"]
        raw._prune_due()  # the first write of a store prunes, on Core's path; not this one

        async def on_the_loop() -> list[Any]:
            return list(await asyncio.gather(
                committed(raw.queue_trigger("slack:T1", '{"text": "status shop-api"}'), 5),
                committed(raw.queue_trigger("slack:T1", '{"text": "again"}'), 5),
                committed(raw.queue_notification(group_key="{}:{}", receiver="opsbot",
                                                 status="firing", payload=payload), 5)))

        first, duplicate, nid = asyncio.run(on_the_loop())
        assert (first, duplicate) == (True, False) and nid.startswith("an-")
        assert raw._group.commits["loop_raw"] == 1
        assert _rows(paths["raw"], "delivery_claims", ("claimed_at", "owner")) == \
            _rows(paths["core"], "delivery_claims", ("claimed_at", "owner"))
        assert _rows(paths["raw"], "alert_notifications", ("id", "received_at")) == \
            _rows(paths["core"], "alert_notifications", ("id", "received_at"))
        # Times are stored in Core's text form, so every query that compares them still works.
        stored = {how: _rows(path, "delivery_claims", ())[0]["claimed_at"]
                  for how, path in paths.items()}
        assert len(stored["raw"]) == len(stored["core"]) and stored["raw"][10] == " "
        assert raw.unstarted_triggers(timedelta(0))[0].trigger == '{"text": "status shop-api"}'
        assert raw.unprocessed_notifications()[0].payload == payload
    finally:
        for store in stores.values():
            store.close()


def test_a_lone_write_on_the_loop_is_committed_once_answered_and_holds_no_lock(
    tmp_path: Path,
) -> None:
    """A group of one raw write runs in SQLite's autocommit, without BEGIN and COMMIT: once
    its answer comes, the row is on disk for every connection and the write lock is free."""
    path = tmp_path / "opsbot.db"
    store = Store.open(sqlite_url(path))
    other = sqlite3.connect(path, isolation_level=None)
    other.execute("PRAGMA busy_timeout = 0")  # a lock still held fails at once
    store._prune_due()  # the first write of a store prunes, on Core's path; not these
    try:
        async def one_at_a_time() -> list[Any]:
            answers = []
            for write in (lambda: store.queue_trigger("slack:alone", "{}"),
                          lambda: store.queue_trigger("slack:alone", "{}"),  # a duplicate
                          lambda: store.queue_notification(
                              group_key="{}:{}", receiver="opsbot", status="firing",
                              payload={"version": "4"})):
                answers.append(await committed(write(), 5))
                seen = other.execute("SELECT (SELECT count(*) FROM delivery_claims), "
                                     "(SELECT count(*) FROM alert_notifications)").fetchone()
                other.execute("BEGIN IMMEDIATE")  # the loop's connection holds no lock
                other.execute("ROLLBACK")
                answers.append(seen)
            return answers

        first, seen_first, duplicate, seen_duplicate, nid, seen_nid = \
            asyncio.run(one_at_a_time())
        assert (first, duplicate) == (True, False) and str(nid).startswith("an-")
        assert (seen_first, seen_duplicate, seen_nid) == ((1, 0), (1, 0), (1, 1))
        assert store._group.commits["loop_raw"] == 3
    finally:
        other.close()
        store.close()


def test_a_write_nothing_could_join_is_committed_without_waiting_a_loop_pass(
    tmp_path: Path,
) -> None:
    """`committed` commits at once a write that is alone in the loop pass (an ack at
    concurrency 1); a write others are pending with, or with other work due in the pass,
    waits for the pass's flush, to share its commit."""
    store = Store.open(sqlite_url(tmp_path / "opsbot.db"))
    store._prune_due()  # the first write of a store prunes, on Core's path; not these
    group = store._group
    try:
        async def decide() -> dict[str, bool]:
            seen = {}
            alone = store.queue_trigger("slack:alone", "{}")
            group.flush_if_alone(alone)
            seen["alone"] = alone.done()
            first = store.queue_trigger("slack:first", "{}")
            second = store.queue_trigger("slack:second", "{}")
            group.flush_if_alone(first)
            seen["with another pending"] = first.done()
            await committed(second, 5)
            asyncio.get_running_loop().call_soon(lambda: None)  # other work due in this pass
            busy = store.queue_trigger("slack:busy", "{}")
            group.flush_if_alone(busy)
            seen["with other work due"] = busy.done()
            seen["answered"] = await committed(busy, 5)
            seen["lone answered"] = await committed(store.queue_trigger("slack:lone", "{}"), 5)
            return seen

        before = group.commits["loop_raw"]
        assert asyncio.run(decide()) == {"alone": True, "with another pending": False,
                                         "with other work due": False, "answered": True,
                                         "lone answered": True}
        assert group.commits["loop_raw"] - before == 4  # alone; first+second; busy; lone
    finally:
        store.close()


def test_a_write_waited_for_alone_is_committed_on_the_spot_else_with_its_group_or_the_thread(
    tmp_path: Path,
) -> None:
    """`GroupCommit.commit` (an ack's record, a 2xx's notification): alone in the loop pass it
    is committed before the call first yields to the loop; with another write pending, or
    other work due in the pass, it shares the pass's group; while another writer holds the
    lock, the thread commits it once the lock is free."""
    path = tmp_path / "opsbot.db"
    store = Store.open(sqlite_url(path))
    store._prune_due()  # the first write of a store prunes, on Core's path; not these
    group = store._group
    try:
        async def scenario() -> dict[str, Any]:
            seen: dict[str, Any] = {}
            before = dict(group.commits)
            alone = store.commit_trigger("slack:alone", "{}", 5)
            with pytest.raises(StopIteration) as finished:
                alone.send(None)  # one step: it never waited for the loop
            seen["alone"] = finished.value.value
            seen["duplicate"] = await store.commit_trigger("slack:alone", "{}", 5)
            pending = store.queue_trigger("slack:pending", "{}")
            seen["with another pending"] = await store.commit_trigger("slack:joins", "{}", 5)
            seen["pending answered"] = pending.result(timeout=0)
            asyncio.get_running_loop().call_soon(lambda: None)  # other work due in this pass
            seen["with other work due"] = await store.commit_trigger("slack:busy", "{}", 5)
            seen["loop groups"] = group.commits["loop_raw"] - before["loop_raw"]
            kept = group._loop_connection
            holder = sqlite3.connect(path, isolation_level=None)  # another process's writer
            holder.execute("BEGIN IMMEDIATE")
            locked = asyncio.ensure_future(store.commit_trigger("slack:locked", "{}", 5))
            await asyncio.sleep(0.2)
            seen["waited for the lock"] = not locked.done()
            holder.execute("COMMIT")
            holder.close()
            seen["locked"] = await locked
            seen["thread commits"] = group.commits["thread"] - before["thread"]
            seen["connection kept"] = group._loop_connection is kept
            return seen

        assert asyncio.run(scenario()) == {
            "alone": True, "duplicate": False, "with another pending": True,
            "pending answered": True, "with other work due": True,
            "loop groups": 4,  # alone; its duplicate; pending + joins; busy
            "waited for the lock": True, "locked": True, "thread commits": 1,
            "connection kept": True}
        assert not store.claim_delivery("slack:locked")
        assert not store.claim_delivery("slack:joins")
    finally:
        store.close()


def test_committed_answers_from_the_loop_or_the_thread_and_gives_up_at_its_deadline(
    tmp_path: Path,
) -> None:
    path = tmp_path / "opsbot.db"
    store = Store.open(sqlite_url(path))
    try:
        async def on_the_loop() -> bool:
            return await committed(store.queue_trigger("slack:L", "{}"), 5)

        assert asyncio.run(on_the_loop()) is True
        assert sum(store._group.commits[k] for k in ("loop", "loop_raw")) == 1

        async def failing() -> None:
            def bad(_connection: Connection) -> None:
                raise ValueError("a write that cannot be made")
            await committed(store._group.submit(bad), 5)

        with pytest.raises(ValueError):
            asyncio.run(failing())  # another loop: the thread's path

        holder = sqlite3.connect(path, isolation_level=None)
        holder.execute("BEGIN IMMEDIATE")

        async def while_locked() -> Any:
            write = store.queue_trigger("slack:held", "{}")
            with pytest.raises(TimeoutError):
                await committed(write, 0.3)
            return write

        write = asyncio.run(while_locked())
        holder.execute("COMMIT")
        holder.close()
        # Begun before the deadline (it waits for the lock on the thread), it commits after.
        assert write.result(timeout=10) is True
        assert not store.claim_delivery("slack:held")
    finally:
        store.close()


def test_the_loop_keeps_its_connection_when_only_locked_out(tmp_path: Path) -> None:
    """A group the loop cannot commit because another writer holds the lock (another process)
    or the file's turn (this process's running work) goes to the thread, and the loop keeps
    its connection: opening one again would cost the loop more than the write. A connection
    left in a transaction by a failure is dropped."""
    path = tmp_path / "opsbot.db"
    store = Store.open(sqlite_url(path))
    store._prune_due()  # the first write of a store prunes, on Core's path; not these
    group = store._group
    try:
        async def write(key: str) -> Any:
            return await committed(store.queue_trigger(key, "{}"), 5)

        async def scenario() -> list[bool]:
            assert await write("slack:first")
            kept = group._loop_connection
            holder = sqlite3.connect(path, isolation_level=None)  # another process's writer
            holder.execute("BEGIN IMMEDIATE")
            waiting = asyncio.ensure_future(write("slack:locked"))
            await asyncio.sleep(0.2)
            holder.execute("COMMIT")
            holder.close()
            same = [await waiting, group._loop_connection is kept]
            with store._group_engine.connect() as other:  # this process's: the turn is held
                raw = other.connection.dbapi_connection
                assert isinstance(raw, WriterConnection)
                raw.begin_write()
                waiting = asyncio.ensure_future(write("slack:turn"))
                await asyncio.sleep(0.2)
                raw.commit()
            same += [await waiting, group._loop_connection is kept]
            for fail in (no_table, locked_in_a_transaction):
                with pytest.raises(sqlite3.OperationalError):
                    await committed(group.submit(fail, raw=fail), 5)
                same.append(group._loop_connection is not kept)
                same.append(await write(f"slack:after-{fail.__name__}"))
                kept = group._loop_connection
            return same

        def no_table(connection: Any) -> None:  # a failure other than the lock
            raise sqlite3.OperationalError("no such table: nowhere")

        def locked_in_a_transaction(connection: Any) -> None:
            if isinstance(connection, sqlite3.Connection):
                connection.execute("BEGIN")
            raise sqlite3.OperationalError("database is locked")

        threads_before = group.commits["thread"]
        assert asyncio.run(scenario()) == [True] * 8
        # The two locked out commit there; the two failures are tried there again, and fail.
        assert group.commits["thread"] - threads_before == 2
    finally:
        store.close()


def test_notifications_committed_together_on_the_thread_are_one_statement(
    open_store: Callable[..., Store], clock: Callable[[], Any],
) -> None:
    """On the commit thread (PostgreSQL always; SQLite from a plain thread) the rows of one
    plain insert go to the database together: on SQLite in one executemany, on PostgreSQL in
    one multi-row statement; each write still gets its id, and each row is the row Core
    writes for that notification alone."""
    store = open_store(clock=clock)
    statements: list[tuple[bool, int]] = []  # (executemany, rows in the statement)

    @event.listens_for(store._group_engine, "before_cursor_execute")
    def _seen(_conn: Any, _cursor: Any, statement: str, _params: Any, _context: Any,
              executemany: bool) -> None:
        if statement.lstrip().upper().startswith("INSERT INTO ALERT_NOTIFICATIONS"):
            statements.append((executemany, statement.upper().count("CAST(")))

    # Every commit thread busy until the notifications are all queued.
    release = threading.Event()
    postgres = store._engine.dialect.name == "postgresql"
    threads = SERVER_THREADS if postgres else 1
    blockers = []
    for _ in range(threads):
        running = threading.Event()

        def block(_connection: Connection, running: threading.Event = running) -> None:
            running.set()
            release.wait(10)

        blockers.append(store._group.submit(block))
        assert running.wait(10)
    texts = [f'{{"version": "4", "n": {i}, "alerts": [{{"labels": {{"a": "\u00e9{i}"}}}}]}}'
             for i in range(5)]
    futures = [store.queue_notification(group_key=f"{{}}:{{alertname=\"A{i}\"}}",
                                        receiver="opsbot", status="firing",
                                        payload=json.loads(texts[i]), payload_json=texts[i])
               for i in range(5)]
    release.set()
    for blocker in blockers:
        blocker.result(timeout=10)
    ids = [f.result(timeout=10) for f in futures]
    assert len(set(ids)) == 5 and all(i.startswith("an-") for i in ids)
    # Several rows a statement (the threads may share them out): fewer statements than rows.
    assert len(statements) < 5, statements
    if postgres:  # multi-row statements, each row's payload cast from the text received
        assert not any(many for many, _ in statements)
        assert sum(rows for _, rows in statements) == 5, statements
    else:
        assert all(many for many, _ in statements), statements
    stored = [store.get_notification(i) for i in ids]
    assert [n.payload for n in stored if n is not None] == [json.loads(t) for t in texts]
    # Each row as Core writes it alone (`record_notification`), but for its id and time.
    core_id = store.record_notification(group_key="{}:{alertname=\"A0\"}", receiver="opsbot",
                                        status="firing", payload=json.loads(texts[0]))
    columns = [c.key for c in AlertNotificationRow.__table__.columns
               if c.key not in ("id", "received_at")]
    with store._engine.connect() as conn:
        by_id = {row.id: row for row in conn.execute(select(AlertNotificationRow.__table__))}
    assert [getattr(by_id[ids[0]], c) for c in columns] == \
        [getattr(by_id[core_id], c) for c in columns]
    assert by_id[ids[0]].received_at.tzinfo is not None or not postgres
    assert all(by_id[i].received_at < by_id[core_id].received_at for i in ids)


def test_a_notification_keeps_its_received_text_on_postgresql_and_its_document_anywhere(
    open_store: Callable[..., Store],
) -> None:
    """The thread's path: on PostgreSQL the JSON text as received is bound and parsed by the
    server (not dumped again from the parsed document); either way the stored document is
    the one received."""
    store = open_store()
    bound: list[str] = []

    @event.listens_for(store._group_engine, "before_cursor_execute")
    def _seen(_conn: Any, _cursor: Any, statement: str, *_: Any) -> None:
        if "INSERT INTO alert_notifications" in statement:
            bound.append(statement)

    document = {"version": "4", "alerts": [{"labels": {"alertname": "Caf\u00e9"}}], "n": 1.5}
    text = '{"version":"4","alerts":[{"labels":{"alertname":"Caf\u00e9"}}],"n":1.5}'
    # From a plain thread: the commit thread takes it on SQLite too.
    nid = store.queue_notification(group_key="{}:{}", receiver="opsbot", status="firing",
                                   payload=document, payload_json=text).result(timeout=10)
    stored = store.get_notification(nid)
    assert stored is not None and stored.payload == document
    postgres = store._engine.dialect.name == "postgresql"
    assert [("CAST" in s) for s in bound] == [postgres]


@pytest.mark.postgres
def test_a_pooled_connection_that_died_costs_no_write(pg_schemas: Any) -> None:
    """The group's connections are not pinged at checkout: one the server dropped (a restart,
    a failover) fails its group, which is tried again at once on a new connection."""
    from sqlalchemy import create_engine, text

    url = pg_schemas.new_url()
    store = Store.open(url)
    admin = create_engine(url)
    try:
        payload = {"version": "4"}
        store.queue_notification(group_key="{}:{}", receiver="opsbot", status="firing",
                                 payload=payload).result(timeout=10)
        with store._group_engine.connect() as pooled:  # the commit thread's, back in the pool
            pid = pooled.scalar(text("SELECT pg_backend_pid()"))
        with admin.connect() as conn:
            assert conn.scalar(text("SELECT pg_terminate_backend(:pid)"), {"pid": pid})
        nid = store.queue_notification(group_key="{}:{}", receiver="opsbot", status="firing",
                                       payload=payload).result(timeout=10)
        assert str(nid).startswith("an-")
        assert store.get_notification(nid) is not None
    finally:
        admin.dispose()
        store.close()


def test_a_groups_outcomes_wake_the_loop_once(tmp_path: Path) -> None:
    """Outcomes settled by a commit thread reach the loop together: one wake-up (one write
    to its self-pipe) for a group, not one each."""
    wakes: list[int] = []

    class CountingLoop(asyncio.SelectorEventLoop):
        def call_soon_threadsafe(self, callback: Any, *args: Any, context: Any = None) -> Any:
            wakes.append(1)
            return super().call_soon_threadsafe(callback, *args, context=context)

    store = Store.open(sqlite_url(tmp_path / "opsbot.db"))
    futures: list[Any] = []
    release = threading.Event()

    def block(_connection: Connection) -> None:
        release.wait(10)

    async def scenario() -> list[bool]:
        store._group.submit(block)  # holds the commit thread until the waits are set
        futures.extend(store._group.submit(lambda _c, i=i: i) for i in range(20))
        waits = [asyncio.ensure_future(committed(f, 10)) for f in futures]
        await asyncio.sleep(0.05)  # each waits for its write, settled by the thread
        assert not any(w.done() for w in waits)
        release.set()
        return [r == i for i, r in enumerate(await asyncio.gather(*waits))]

    loop = CountingLoop()
    try:
        # Not the store's loop-side path: that loop is the first one that submits on it.
        store._group._loop = asyncio.new_event_loop()
        assert all(loop.run_until_complete(scenario()))
        assert store._group.commits["thread"] >= 1
        assert len(wakes) == 1, len(wakes)
    finally:
        store._group._loop.close()
        loop.close()
        store.close()


def test_a_loop_that_waited_for_the_thread_is_not_kept_alive(tmp_path: Path) -> None:
    """The mailbox through which the commit thread answers a loop holds the loop weakly: a
    finished `asyncio.run` leaves nothing behind."""
    import gc
    import weakref

    store = Store.open(sqlite_url(tmp_path / "opsbot.db"))
    loops: list[weakref.ref[asyncio.AbstractEventLoop]] = []

    async def on_the_thread() -> bool:
        loops.append(weakref.ref(asyncio.get_running_loop()))
        result: bool = await committed(store.queue_trigger("slack:W", "{}"), 10)
        return result

    try:
        store._group._loop = asyncio.new_event_loop()  # another loop owns the loop-side path
        assert asyncio.run(on_the_thread()) is True
        assert store._group.commits["thread"] == 1
        # The commit thread still holds its last group until the next: one more from here.
        assert store.queue_trigger("slack:X", "{}").result(timeout=10) is True
        gc.collect()
        assert loops[0]() is None
    finally:
        store._group._loop.close()
        store.close()


def _notify(store: Store, i: int, text: str | None = None) -> Any:
    text = text if text is not None else f'{{"version": "4", "n": {i}}}'
    payload = json.loads(text) if text.startswith("{") else {"version": "4"}
    return store.queue_notification(group_key=f"{{}}:{{alertname=\"L{i}\"}}", receiver="opsbot",
                                    status="firing", payload=payload, payload_json=text)


def test_server_rows_numbered_are_the_same_statement_with_postgresql_placeholders() -> None:
    """The loop path's form of a multi-row insert (`$1`...: psycopg's raw cursors send it as
    it is) is the format form with each `%s` numbered in order, the parameters unchanged."""
    from sqlalchemy.dialects.postgresql import psycopg as pg_psycopg

    from bot.store.alerts import NOTIFICATION_ROWS

    dialect = pg_psycopg.dialect()
    rows = [{"id": f"an-{i}", "received_at": None, "group_hash": "h", "receiver": "r",
             "status": "firing", "payload_text": "{}", "processed_at": None} for i in range(3)]
    formatted, params = NOTIFICATION_ROWS.statement(dialect, rows)
    numbered, same = NOTIFICATION_ROWS.statement(dialect, rows, numbered=True)
    assert same == params and len(params) == 21
    assert [int(n) for n in re.findall(r"\$(\d+)", numbered)] == list(range(1, 22))
    assert re.sub(r"\$\d+", "%s", numbered) == formatted and "%s" not in numbered
    assert "CAST($6 AS JSON)" in numbered and "CAST($20 AS JSON)" in numbered


@pytest.mark.postgres
def test_postgresql_notifications_from_the_loop_are_sent_from_it_as_one_statement(
    pg_schemas: Any,
) -> None:
    """On PostgreSQL the notifications a loop pass queues are one multi-row statement sent
    from the loop, committed when the server answers (autocommit): no commit thread and no
    transaction of Core's. Those queued while it runs go together in the next. The first has
    63 parameters, more than psycopg parses once and keeps: it is sent with numbered ones."""
    store = Store.open(pg_schemas.new_url())
    transactions = _commits(store)

    async def scenario() -> tuple[list[Any], list[Any]]:
        first = [_notify(store, i) for i in range(9)]
        await asyncio.sleep(0)  # the pass ends: the statement is on its way
        later = [_notify(store, i) for i in range(9, 12)]  # queued while it runs
        return (await asyncio.gather(*(committed(f, 10) for f in first)),
                await asyncio.gather(*(committed(f, 10) for f in later)))

    try:
        first, later = asyncio.run(scenario())
        assert store._group.commits["loop_server"] == 2
        assert store._group.commits["thread"] == 0 and transactions() == 0
        # The second waited for the first's connection (opened meanwhile), not a new one.
        assert store._group._server is not None and len(store._group._server._idle) == 1
        for i, nid in enumerate(first + later):
            stored = store.get_notification(nid)  # read on another connection: committed
            assert stored is not None and stored.payload == {"version": "4", "n": i}
    finally:
        store.close()


@pytest.mark.postgres
def test_a_statement_the_server_refuses_on_the_loop_fails_alone_on_the_threads(
    pg_schemas: Any,
) -> None:
    """A row the server refuses (here a payload text that is not JSON) fails the loop's
    statement; the commit threads take the group and the others are stored. The loop path
    then rests: writes go to the threads meanwhile."""
    store = Store.open(pg_schemas.new_url())

    async def scenario() -> list[Any]:
        futures = [_notify(store, 0), _notify(store, 1, "not json"), _notify(store, 2)]
        return await asyncio.gather(*(committed(f, 10) for f in futures),
                                    return_exceptions=True)

    try:
        good, bad, other = asyncio.run(scenario())
        assert isinstance(bad, StoreError)
        assert store.get_notification(good) is not None
        assert store.get_notification(other) is not None
        assert store._group.commits["loop_server"] == 0
        assert store._group.commits["thread"] == 2  # the group, then each alone
        assert store._group._server is not None and store._group._server.resting()

        async def while_resting() -> Any:
            return await committed(_notify(store, 3), 10)

        assert store.get_notification(asyncio.run(while_resting())) is not None
        assert store._group.commits["thread"] == 3
    finally:
        store.close()


@pytest.mark.postgres
def test_a_loop_connection_the_server_dropped_costs_no_write(pg_schemas: Any) -> None:
    """The loop path's connection, dropped by the server between two groups (a restart, a
    failover): the next group fails on it and is committed by the threads; once the path has
    rested it opens a new connection."""
    from sqlalchemy import create_engine, text

    url = pg_schemas.new_url()
    store = Store.open(url)
    admin = create_engine(url)
    loop = asyncio.new_event_loop()

    def on_the_loop(i: int) -> Any:
        async def one() -> Any:
            return await committed(_notify(store, i), 10)
        return loop.run_until_complete(one())

    try:
        assert on_the_loop(0)
        server = store._group._server
        assert server is not None and store._group.commits["loop_server"] == 1
        [connection] = server._idle

        async def setting() -> Any:
            return await (await connection.execute("SHOW statement_timeout")).fetchone()

        # Opened with the store's settings (Store.open's default timeout of 5 s).
        assert loop.run_until_complete(setting()) == ("5s",)
        with admin.connect() as conn:
            assert conn.scalar(text("SELECT pg_terminate_backend(:pid)"),
                               {"pid": connection.info.backend_pid})
        nid = on_the_loop(1)
        assert store.get_notification(nid) is not None
        assert store._group.commits["thread"] == 1 and server.resting()
        server._rest_until = 0.0  # the rest is over
        nid = on_the_loop(2)
        assert store.get_notification(nid) is not None
        assert store._group.commits["loop_server"] == 2
    finally:
        loop.close()
        admin.dispose()
        store.close()
