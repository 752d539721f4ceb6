"""Approval requests for production changes, and their approvals and denial.

Revision ID: 0003
Revises: 0002
Create Date: 2025-12-09

Frozen history, like 0001: plain SQLAlchemy types, no import of ``bot.store.models``.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0003"
down_revision: str | Sequence[str] | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def _time() -> sa.DateTime:
    return sa.DateTime(timezone=True)


def _json() -> sa.types.TypeEngine[object]:
    return sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql")


def upgrade() -> None:
    op.create_table(
        "approval_requests",
        sa.Column("id", sa.String(length=40), nullable=False),
        sa.Column("runbook", sa.String(), nullable=False),
        sa.Column("command", sa.Text(), nullable=False),
        sa.Column("environment", sa.String(), nullable=False),
        sa.Column("target", sa.String(), nullable=True),
        sa.Column("params", _json(), nullable=False),
        sa.Column("reason", sa.Text(), nullable=True),
        sa.Column("requester", sa.String(), nullable=False),
        sa.Column("source", sa.String(), nullable=False),
        sa.Column("channel", sa.String(), nullable=True),
        sa.Column("message_ts", sa.String(), nullable=True),
        sa.Column("plan_text", sa.Text(), nullable=False),
        sa.Column("plan_digest", sa.String(), nullable=False),
        sa.Column("required", sa.Integer(), nullable=False),
        sa.Column("eligible_users", _json(), nullable=False),
        sa.Column("eligible_groups", _json(), nullable=False),
        sa.Column("allow_self", sa.Boolean(), nullable=False),
        sa.Column("emergency", sa.Boolean(), nullable=False),
        sa.Column("status", sa.String(length=20), nullable=False),
        sa.Column("created_at", _time(), nullable=False),
        sa.Column("expires_at", _time(), nullable=False),
        sa.Column("decided_at", _time(), nullable=True),
        sa.Column("execution_id", sa.String(length=40), nullable=True),
        sa.Column("note", sa.Text(), nullable=True),
        sa.Column("cancelled_by", sa.String(), nullable=True),
        sa.CheckConstraint("required >= 1", name=op.f("ck_approval_requests_required_positive")),
        sa.CheckConstraint(
            "status IN ('pending', 'approved', 'denied', 'expired', 'cancelled', 'void',"
            " 'executed')",
            name=op.f("ck_approval_requests_status_known"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_approval_requests")),
    )
    op.create_index(
        op.f("ix_approval_requests_status_expires_at"),
        "approval_requests",
        ["status", "expires_at"],
    )

    op.create_table(
        "approval_decisions",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("request_id", sa.String(length=40), nullable=False),
        sa.Column("actor", sa.String(), nullable=False),
        sa.Column("kind", sa.String(length=10), nullable=False),
        sa.Column("reason", sa.Text(), nullable=True),
        sa.Column("at", _time(), nullable=False),
        sa.CheckConstraint(
            "kind IN ('approve', 'deny')", name=op.f("ck_approval_decisions_kind_known")
        ),
        sa.ForeignKeyConstraint(
            ["request_id"],
            ["approval_requests.id"],
            name=op.f("fk_approval_decisions_request_id_approval_requests"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_approval_decisions")),
        # One approval per user and request, whatever races: approve relies on it.
        sa.UniqueConstraint(
            "request_id",
            "actor",
            "kind",
            name=op.f("uq_approval_decisions_request_id_actor_kind"),
        ),
    )


def downgrade() -> None:
    op.drop_table("approval_decisions")
    op.drop_index(op.f("ix_approval_requests_status_expires_at"), table_name="approval_requests")
    op.drop_table("approval_requests")
