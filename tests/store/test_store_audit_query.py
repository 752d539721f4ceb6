"""``audit_records``: the audit log read back for history views, newest first, filtered."""

from __future__ import annotations

import pytest

from bot.store import AuditEntry, Store


def _record(store: Store, environment: str | None, target: str | None, outcome: str) -> int:
    return store.audit(
        AuditEntry(
            actor="U0ALICE",
            source="slack",
            command=f"deploy {target}",
            environment=environment,
            target=target,
            outcome=outcome,
            details={"n": 1},
        )
    )


@pytest.fixture
def filled(clocked_store: Store) -> Store:
    rows = [
        ("staging", "shop-api", "succeeded"),  # 1
        ("prod", "shop-api", "failed"),  # 2
        ("staging", "shop-web", "succeeded"),  # 3
        ("staging", "shop-api", "refused"),  # 4
        (None, None, "succeeded"),  # 5
        ("staging", "shop-api", "failed"),  # 6
    ]
    for seq, (environment, target, outcome) in enumerate(rows, start=1):
        assert _record(clocked_store, environment, target, outcome) == seq
    return clocked_store


def _seqs(records: list[dict[str, object]]) -> list[object]:
    return [r["seq"] for r in records]


def test_newest_first_with_a_limit(filled: Store) -> None:
    assert _seqs(filled.audit_records()) == [6, 5, 4, 3, 2, 1]
    assert _seqs(filled.audit_records(limit=2)) == [6, 5]
    assert filled.audit_records(limit=0) == []


def test_same_shape_as_export(filled: Store) -> None:
    exported = {r["seq"]: r for r in filled.export_audit()}
    for record in filled.audit_records():
        assert record == exported[record["seq"]]


def test_filters(filled: Store) -> None:
    assert _seqs(filled.audit_records(environment="staging")) == [6, 4, 3, 1]
    assert _seqs(filled.audit_records(target="shop-api")) == [6, 4, 2, 1]
    assert _seqs(filled.audit_records(environment="staging", target="shop-api")) == [6, 4, 1]
    assert _seqs(filled.audit_records(outcomes=["failed"])) == [6, 2]
    assert _seqs(
        filled.audit_records(
            environment="staging", target="shop-api", outcomes=("succeeded", "failed"), limit=1
        )
    ) == [6]
    assert filled.audit_records(outcomes=[]) == []
    assert filled.audit_records(environment="dev") == []


def test_bad_arguments(store: Store) -> None:
    with pytest.raises(TypeError, match="not one string"):
        store.audit_records(outcomes="failed")
    with pytest.raises(ValueError, match="negative"):
        store.audit_records(limit=-1)


def test_empty_log(store: Store) -> None:
    assert store.audit_records(environment="staging", target="shop-api") == []
