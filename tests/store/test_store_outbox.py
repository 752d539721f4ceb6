"""The outbox in the store: rows delivered in order per stream, one claim per row (also across
processes sharing the database), updates of one message coalesced, the address of a posted
message recorded where the product reads it, and growth bounded."""

from __future__ import annotations

import threading
from collections import defaultdict
from collections.abc import Callable
from datetime import timedelta

from bot.store import Store
from bot.store.outbox import (
    MessageAddress,
    Outgoing,
    execution_key,
    request_key,
)
from tests.store.conftest import FakeClock

LEASE = 60.0


def post(text: str, **more: object) -> Outgoing:
    return Outgoing("post", {"channel": "C0OPS", "text": text}, **more)  # type: ignore[arg-type]


def show(key: str, text: str, **more: object) -> Outgoing:
    return Outgoing("show", {"channel": "C0OPS", "text": text}, key=key,  # type: ignore[arg-type]
                    **more)


def claim(store: Store, owner: str = "A", limit: int = 10) -> list[tuple[str, str]]:
    """(stream, text) of what `owner` claimed."""
    return [(row.stream, row.payload["text"])
            for row in store.claim_outgoing(owner, limit=limit, lease_seconds=LEASE)]


def deliver_all(store: Store, owner: str = "A") -> list[str]:
    """Claim and deliver until nothing is due; the texts in delivery order."""
    sent = []
    while rows := store.claim_outgoing(owner, limit=10, lease_seconds=LEASE):
        for row in rows:
            sent.append(row.payload["text"])
            assert store.finish_outgoing(row.id, owner, "delivered")
    return sent


def test_a_stream_is_delivered_in_order_one_row_at_a_time(store: Store) -> None:
    for text in ("a1", "a2", "a3"):
        store.enqueue(post(text), stream="A")
    store.enqueue(post("b1"), stream="B")
    store.enqueue(post("b2"), stream="B")

    assert claim(store) == [("A", "a1"), ("B", "b1")]  # only the heads
    assert claim(store, "other") == []  # heads are out; what follows waits for them
    assert store.outbox_stats().waiting == 5


def test_many_effects_enqueued_together_keep_each_streams_order_and_coalesce(
        store: Store) -> None:
    # An alert batch shows its groups in one transaction: as if enqueued one after the other.
    woken: list[int] = []
    store.on_enqueue(lambda: woken.append(1))
    ids = store.enqueue_all([(show("alert-group:g1", "g1 v1"), "G1"), (post("p1"), "P"),
                             (show("alert-group:g2", "g2 v1"), "G2"),
                             (show("alert-group:g1", "g1 v2"), "G1"), (post("p2"), "P")])
    assert ids[0] == ids[3] and len(set(ids)) == 4  # g1's second state took its first's row
    assert woken == [1]  # the sender is told once
    assert store.enqueue_all([]) == []
    sent = deliver_all(store)
    assert sorted(sent) == ["g1 v2", "g2 v1", "p1", "p2"]
    assert [text for text in sent if text.startswith("p")] == ["p1", "p2"]


def test_a_retried_row_keeps_its_place_and_blocks_its_stream(store: Store) -> None:
    store.enqueue(post("a1"), stream="A")
    store.enqueue(post("a2"), stream="A")
    (row,) = store.claim_outgoing("A", limit=10, lease_seconds=LEASE)
    assert store.retry_outgoing(row.id, "A", delay=3600, error="ratelimited")
    assert claim(store) == []  # a1 waits an hour, and a2 behind it
    assert store.outbox_stats().next_due_seconds is not None
    assert store.outbox_stats().next_due_seconds > 3500  # type: ignore[operator]


def test_updates_waiting_at_the_end_of_a_stream_coalesce(store: Store) -> None:
    key = execution_key("ex-1")
    hint = post("cannot post here").action()
    result = post("the result, privately").action()
    first = store.enqueue(show(key, "running", instead=(hint,)), stream="ex")
    assert store.enqueue(show(key, "step 1 done"), stream="ex") == first
    assert store.enqueue(show(key, "done", instead=(result,)), stream="ex") == first
    (row,) = store.claim_outgoing("A", limit=10, lease_seconds=LEASE)
    assert row.id == first and row.payload["text"] == "done"
    assert list(row.instead) == [hint, result]  # both replacements kept, in order


def test_a_coalesced_update_gets_a_whole_retry_budget(clocked_store: Store,
                                                     clock: FakeClock) -> None:
    key = execution_key("ex-1")
    clocked_store.enqueue(show(key, "running"), stream="ex")
    clock.advance(timedelta(minutes=50))
    clocked_store.enqueue(show(key, "done"), stream="ex")
    (row,) = clocked_store.claim_outgoing("A", limit=10, lease_seconds=LEASE)
    assert row.payload["text"] == "done" and row.age_seconds < 60


def test_updates_never_coalesce_across_other_rows(store: Store) -> None:
    key = execution_key("ex-1")
    store.enqueue(show(key, "running"), stream="ex")
    store.enqueue(post("output", parent=key), stream="ex")
    store.enqueue(show(key, "done"), stream="ex")
    assert deliver_all(store) == ["running", "output", "done"]


def test_older_states_behind_a_claimed_one_are_skipped_for_the_newest(store: Store) -> None:
    key = execution_key("ex-1")
    store.enqueue(show(key, "v1"), stream="ex")
    (v1,) = store.claim_outgoing("A", limit=10, lease_seconds=LEASE)
    store.enqueue(show(key, "v2"), stream="ex")  # v1 is out: a new row
    store.enqueue(show(key, "v3"), stream="ex")  # coalesced into v2's
    store.retry_outgoing(v1.id, "A", delay=0, error="ratelimited")
    assert deliver_all(store) == ["v3"]  # v1 went back to waiting and was passed over
    assert store.outbox_stats().by_status == {"coalesced": 1, "delivered": 1}


def test_a_show_without_a_stream_joins_its_message_stream(store: Store) -> None:
    key = execution_key("ex-1")
    store.enqueue(show(key, "running"), stream="report:1")
    store.enqueue(show(key, "interrupted"))  # as recovery does, not knowing the stream
    assert store.message_stream(key) == "report:1"
    assert claim(store) == [("report:1", "interrupted")]
    assert store.message_stream(execution_key("ex-2")) is None


def test_a_lease_that_ran_out_can_be_claimed_again(clocked_store: Store,
                                                   clock: FakeClock) -> None:
    store = clocked_store
    store.enqueue(post("a1"), stream="A")
    (row,) = store.claim_outgoing("dead", limit=10, lease_seconds=LEASE)
    assert claim(store, "alive") == []
    clock.advance(timedelta(seconds=LEASE + 1))
    assert claim(store, "alive") == [("A", "a1")]
    assert not store.finish_outgoing(row.id, "dead", "delivered")  # its claim is gone


def test_a_posted_message_is_recorded_where_the_product_reads_it(store: Store) -> None:
    ex_id = store.create_execution(
        runbook="scale", source="slack", actor="U0ALICE", command="scale shop-api 4",
        environment="staging", target="shop-api", params={}, dry_run=False, channel="C0OPS")
    key = execution_key(ex_id)
    store.enqueue(show(key, "running"), stream=key)
    (row,) = store.claim_outgoing("A", limit=10, lease_seconds=LEASE)
    address = MessageAddress(key, "C0OPS", "1700000000.000001", thread_ts="1699.1")
    assert store.finish_outgoing(row.id, "A", "delivered", message=address)
    assert store.message_address(key) == address
    assert address.root == "1699.1"  # replies to a reply join its thread
    record = store.get_execution(ex_id)
    assert record is not None and (record.channel, record.ts) == ("C0OPS", "1700000000.000001")

    refused = MessageAddress(request_key("rq-1"), error="channel_not_found")
    store.enqueue(show(refused.key, "request"), stream=refused.key)
    (row,) = store.claim_outgoing("A", limit=10, lease_seconds=LEASE)
    assert store.finish_outgoing(row.id, "A", "failed", error="channel_not_found",
                                 message=refused)
    assert store.message_address(refused.key) == refused and refused.root is None


def test_a_row_is_replaced_in_place_by_what_it_carries_instead(store: Store) -> None:
    hint, result = post("hint").action(), post("result").action()
    store.enqueue(show(execution_key("ex-1"), "running", instead=(hint, result)), stream="ex")
    store.enqueue(post("after"), stream="ex")
    (row,) = store.claim_outgoing("A", limit=10, lease_seconds=LEASE)
    assert store.substitute_outgoing(row.id, "A", error="not_in_channel")
    (row,) = store.claim_outgoing("A", limit=10, lease_seconds=LEASE)
    assert (row.kind, row.payload["text"], row.substituted) == ("post", "hint", True)
    assert list(row.instead) == [result] and row.key is None and row.attempts == 1
    assert store.substitute_outgoing(row.id, "A", error=None)
    assert deliver_all(store) == ["result", "after"]
    row_id = store.enqueue(post("plain"), stream="ex")
    (row,) = store.claim_outgoing("A", limit=10, lease_seconds=LEASE)
    assert row.id == row_id and not store.substitute_outgoing(row.id, "A", error="x")


def test_finished_rows_and_old_addresses_are_pruned(clocked_store: Store,
                                                    clock: FakeClock) -> None:
    store = clocked_store
    key = execution_key("ex-1")
    store.enqueue(show(key, "running"), stream=key)
    store.enqueue(post("waiting"), stream="other")
    rows = store.claim_outgoing("A", limit=10, lease_seconds=LEASE)
    shown = next(r for r in rows if r.key == key)
    store.finish_outgoing(shown.id, "A", "delivered", message=MessageAddress(key, "C", "1.1"))
    clock.advance(timedelta(minutes=10))
    stats = store.outbox_stats()
    assert stats.waiting == 1 and 599 < stats.oldest_seconds < 700
    clock.advance(timedelta(days=2))
    assert store.prune_outbox() == 1  # the delivered row; the waiting one stays
    assert store.message_address(key) is not None  # addresses are kept a week
    assert store.outbox_stats().waiting == 1
    clock.advance(timedelta(days=6))
    store.prune_outbox()
    assert store.message_address(key) is None


def test_two_processes_never_claim_the_same_row(open_store: Callable[..., Store]) -> None:
    """Two stores on one database (as two replicas): every row is claimed exactly once, and
    each stream's rows in order."""
    writer = open_store()
    streams = {f"s{n}": [f"s{n}-{i}" for i in range(6)] for n in range(8)}
    for stream, texts in streams.items():
        for text in texts:
            writer.enqueue(post(text), stream=stream)
    claimed: dict[str, list[str]] = defaultdict(list)
    lock = threading.Lock()
    errors: list[BaseException] = []
    barrier = threading.Barrier(2)

    def sender(owner: str) -> None:
        store = open_store()
        try:
            barrier.wait()
            idle = 0
            while idle < 20:
                rows = store.claim_outgoing(owner, limit=3, lease_seconds=LEASE)
                idle = 0 if rows else idle + 1
                for row in rows:
                    with lock:
                        claimed[row.stream].append(row.payload["text"])
                    assert store.finish_outgoing(row.id, owner, "delivered")
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=sender, args=(owner,)) for owner in ("A", "B")]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(120)
    assert errors == []
    assert dict(claimed) == streams  # each row once, each stream in order
    assert writer.outbox_stats().by_status == {"delivered": 48}
