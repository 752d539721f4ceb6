"""Initial schema: executions and their steps, delivery dedup, hash-chained audit log.

Revision ID: 0001
Revises:
Create Date: 2025-11-26

Migrations are frozen history: they spell column types out with plain SQLAlchemy
types rather than importing ``bot.store.models``, which will keep changing.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0001"
down_revision: str | Sequence[str] | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

GENESIS_HASH = "0" * 64


def _time() -> sa.DateTime:
    return sa.DateTime(timezone=True)


def _json() -> sa.types.TypeEngine[object]:
    return sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql")


def upgrade() -> None:
    op.create_table(
        "executions",
        sa.Column("id", sa.String(length=40), nullable=False),
        sa.Column("runbook", sa.String(), nullable=False),
        sa.Column("source", sa.String(), nullable=False),
        sa.Column("actor", sa.String(), nullable=False),
        sa.Column("command", sa.Text(), nullable=False),
        sa.Column("environment", sa.String(), nullable=True),
        sa.Column("target", sa.String(), nullable=True),
        sa.Column("params", _json(), nullable=False),
        sa.Column("dry_run", sa.Boolean(), nullable=False),
        sa.Column("request_id", sa.String(), nullable=True),
        sa.Column("channel", sa.String(), nullable=True),
        sa.Column("message_ts", sa.String(), nullable=True),
        sa.Column("status", sa.String(length=20), nullable=False),
        sa.Column("summary", sa.Text(), nullable=True),
        sa.Column("started_at", _time(), nullable=False),
        sa.Column("finished_at", _time(), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_executions")),
    )
    op.create_index(
        op.f("ix_executions_environment_target_started_at"),
        "executions",
        ["environment", "target", "started_at"],
    )
    op.create_index(op.f("ix_executions_started_at"), "executions", ["started_at"])
    op.create_index(op.f("ix_executions_status"), "executions", ["status"])

    op.create_table(
        "execution_steps",
        sa.Column("execution_id", sa.String(length=40), nullable=False),
        sa.Column("step_index", sa.Integer(), nullable=False),
        sa.Column("name", sa.String(), nullable=False),
        sa.Column("handler", sa.String(), nullable=False),
        sa.Column("status", sa.String(length=20), nullable=False),
        sa.Column("summary", sa.Text(), nullable=True),
        sa.Column("output", sa.Text(), nullable=True),
        sa.Column("error", sa.Text(), nullable=True),
        sa.Column("started_at", _time(), nullable=False),
        sa.Column("finished_at", _time(), nullable=True),
        sa.ForeignKeyConstraint(
            ["execution_id"],
            ["executions.id"],
            name=op.f("fk_execution_steps_execution_id_executions"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("execution_id", "step_index", name=op.f("pk_execution_steps")),
    )

    op.create_table(
        "delivery_claims",
        sa.Column("key", sa.String(length=255), nullable=False),
        sa.Column("claimed_at", _time(), nullable=False),
        sa.PrimaryKeyConstraint("key", name=op.f("pk_delivery_claims")),
    )
    op.create_index(op.f("ix_delivery_claims_claimed_at"), "delivery_claims", ["claimed_at"])

    op.create_table(
        "audit_records",
        sa.Column("seq", sa.Integer(), autoincrement=False, nullable=False),
        sa.Column("time", _time(), nullable=False),
        sa.Column("actor", sa.String(), nullable=False),
        sa.Column("source", sa.String(), nullable=False),
        sa.Column("command", sa.Text(), nullable=False),
        sa.Column("environment", sa.String(), nullable=True),
        sa.Column("target", sa.String(), nullable=True),
        sa.Column("outcome", sa.String(), nullable=False),
        sa.Column("execution_id", sa.String(length=40), nullable=True),
        sa.Column("request_id", sa.String(), nullable=True),
        sa.Column("details", sa.Text(), nullable=False),
        sa.Column("prev_hash", sa.String(length=64), nullable=False),
        sa.Column("hash", sa.String(length=64), nullable=False),
        sa.PrimaryKeyConstraint("seq", name=op.f("pk_audit_records")),
    )
    op.create_index(op.f("ix_audit_records_execution_id"), "audit_records", ["execution_id"])
    op.create_index(op.f("ix_audit_records_time"), "audit_records", ["time"])

    audit_head = op.create_table(
        "audit_head",
        sa.Column("id", sa.Integer(), autoincrement=False, nullable=False),
        sa.Column("seq", sa.Integer(), nullable=False),
        sa.Column("hash", sa.String(length=64), nullable=False),
        sa.Column("updated_at", _time(), nullable=False),
        sa.CheckConstraint("id = 1", name=op.f("ck_audit_head_single_row")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_audit_head")),
    )
    # The head row exists from the start: appenders lock it, verify compares against it.
    op.bulk_insert(
        audit_head,
        [{"id": 1, "seq": 0, "hash": GENESIS_HASH, "updated_at": datetime.now(UTC)}],
    )


def downgrade() -> None:
    op.drop_table("audit_head")
    op.drop_index(op.f("ix_audit_records_time"), table_name="audit_records")
    op.drop_index(op.f("ix_audit_records_execution_id"), table_name="audit_records")
    op.drop_table("audit_records")
    op.drop_index(op.f("ix_delivery_claims_claimed_at"), table_name="delivery_claims")
    op.drop_table("delivery_claims")
    op.drop_table("execution_steps")
    op.drop_index(op.f("ix_executions_status"), table_name="executions")
    op.drop_index(op.f("ix_executions_started_at"), table_name="executions")
    op.drop_index(op.f("ix_executions_environment_target_started_at"), table_name="executions")
    op.drop_table("executions")
