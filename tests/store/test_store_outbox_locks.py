"""The outbox on PostgreSQL: a sender claiming a stream's head while an enqueue holds that
stream's lock does not wait for it holding the head's row lock (the enqueue may be about to
coalesce into that very row): it leaves the head for its next round. Waiting was a deadlock,
which PostgreSQL broke by failing one side, so a final message was never sent (found by the
secrets scenario in tests/hostile, where commands and alerts report at once)."""

from __future__ import annotations

import threading
from collections.abc import Iterator

import pytest
from sqlalchemy import create_engine, func, select, text, update

from bot.store import Store
from bot.store.models import OutboxRow
from bot.store.outbox import _STREAM_LOCK_CLASS, Claimed, Outgoing
from tests.store.conftest import PostgresSchemas

pytestmark = pytest.mark.postgres


@pytest.fixture
def pg_url(pg_schemas: PostgresSchemas) -> str:
    return pg_schemas.new_url()


@pytest.fixture
def store(pg_url: str) -> Iterator[Store]:
    opened = Store.open(pg_url)
    yield opened
    opened.close()


def test_a_claim_never_waits_on_an_enqueue_holding_the_stream(store: Store, pg_url: str) -> None:
    key = "execution:ex-1"
    row_id = store.enqueue(Outgoing("show", {"channel": "C0OPS", "text": "running"}, key=key))
    stream = key  # a message's rows form the stream named by its key
    engine = create_engine(pg_url)
    claimed: list[list[Claimed]] = []
    errors: list[BaseException] = []
    try:
        with engine.connect() as enqueuer:
            # An enqueue in progress on the stream: it holds the stream's lock...
            enqueuer.execute(select(func.pg_advisory_xact_lock(_STREAM_LOCK_CLASS,
                                                               func.hashtext(stream))))

            def sender() -> None:
                try:
                    claimed.append(store.claim_outgoing("A", limit=10, lease_seconds=60))
                except BaseException as exc:
                    errors.append(exc)

            thread = threading.Thread(target=sender)
            thread.start()
            thread.join(30)  # bounded only so that a wait shows as a failure, not a hang
            waited = thread.is_alive()
            # ...and coalesces the newer state into the waiting row, as `_coalesce` does.
            enqueuer.execute(text("SET LOCAL lock_timeout = '5s'"))
            enqueuer.execute(update(OutboxRow).where(OutboxRow.id == row_id,
                                                     OutboxRow.status == "pending")
                             .values(payload={"channel": "C0OPS", "text": "done"}))
            enqueuer.commit()
            thread.join(30)
        assert not waited, "the claim waited for the stream's lock while holding its head"
        assert errors == [] and claimed == [[]]
        [row] = store.claim_outgoing("A", limit=10, lease_seconds=60)
        assert row.payload["text"] == "done"  # the newest state, and nothing lost
    finally:
        engine.dispose()
