"""Target locks (leases per environment/app), and an index for per-target audit history.

Revision ID: 0002
Revises: 0001
Create Date: 2025-12-02

Frozen history, like 0001: plain SQLAlchemy types, no import of ``bot.store.models``.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0002"
down_revision: str | Sequence[str] | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "target_locks",
        sa.Column("target", sa.String(length=255), nullable=False),
        sa.Column("execution_id", sa.String(length=40), nullable=False),
        sa.Column("actor", sa.String(), nullable=False),
        sa.Column("acquired_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("target", name=op.f("pk_target_locks")),
    )
    op.create_index(op.f("ix_target_locks_execution_id"), "target_locks", ["execution_id"])
    op.create_index(
        op.f("ix_audit_records_environment_target_seq"),
        "audit_records",
        ["environment", "target", "seq"],
    )


def downgrade() -> None:
    op.drop_index(op.f("ix_audit_records_environment_target_seq"), table_name="audit_records")
    op.drop_index(op.f("ix_target_locks_execution_id"), table_name="target_locks")
    op.drop_table("target_locks")
