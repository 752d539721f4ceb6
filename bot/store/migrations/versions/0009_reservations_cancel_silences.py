"""Locks you can see and control: a target lock may be a prod request's reservation (no
execution yet, the request named), an execution may be asked to cancel (who, when), and the
silences opsbot made are remembered so alert messages can show them.

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-04

Frozen history, like 0001: plain SQLAlchemy types, no import of ``bot.store.models``.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0009"
down_revision: str | Sequence[str] | None = "0008"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def _time() -> sa.DateTime:
    return sa.DateTime(timezone=True)


def _json() -> sa.types.TypeEngine[object]:
    return sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql")


def upgrade() -> None:
    # A reservation holds the target for a pending request before any execution exists.
    with op.batch_alter_table("target_locks") as batch:
        batch.alter_column("execution_id", existing_type=sa.String(length=40), nullable=True)
        batch.add_column(sa.Column("request_id", sa.String(length=40), nullable=True))
        batch.create_index(batch.f("ix_target_locks_request_id"), ["request_id"])
    op.add_column("executions",
                  sa.Column("cancel_requested_by", sa.String(length=255), nullable=True))
    op.add_column("executions", sa.Column("cancel_requested_at", _time(), nullable=True))
    op.create_table(
        "silences",
        sa.Column("id", sa.String(length=64), nullable=False),
        sa.Column("matchers", _json(), nullable=False),
        sa.Column("created_by", sa.String(length=255), nullable=False),
        sa.Column("created_at", _time(), nullable=False),
        sa.Column("ends_at", _time(), nullable=False),
        sa.Column("execution_id", sa.String(length=40), nullable=True),
        sa.Column("expired_by", sa.String(length=255), nullable=True),
        sa.Column("expired_at", _time(), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_silences")),
    )
    op.create_index(op.f("ix_silences_ends_at"), "silences", ["ends_at"])


def downgrade() -> None:
    op.drop_index(op.f("ix_silences_ends_at"), table_name="silences")
    op.drop_table("silences")
    with op.batch_alter_table("executions") as batch:
        batch.drop_column("cancel_requested_at")
        batch.drop_column("cancel_requested_by")
    # Reservations have no execution: they cannot outlive the column that allows that.
    op.execute(sa.text("DELETE FROM target_locks WHERE execution_id IS NULL"))
    with op.batch_alter_table("target_locks") as batch:
        batch.drop_index(batch.f("ix_target_locks_request_id"))
        batch.drop_column("request_id")
        batch.alter_column("execution_id", existing_type=sa.String(length=40), nullable=False)
