"""Acked Slack triggers are queued in their delivery claim: what arrived (the trigger, as
JSON), which replica acked it, and when its work started. A claim with a trigger and no start
was acked but never started: the leader resumes or reports it.

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-04

Frozen history, like 0001: plain SQLAlchemy types, no import of ``bot.store.models``.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0008"
down_revision: str | Sequence[str] | None = "0007"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column("delivery_claims", sa.Column("trigger", sa.Text(), nullable=True))
    op.add_column("delivery_claims", sa.Column("owner", sa.String(length=255), nullable=True))
    op.add_column("delivery_claims",
                  sa.Column("started_at", sa.DateTime(timezone=True), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("delivery_claims") as batch:
        batch.drop_column("started_at")
        batch.drop_column("owner")
        batch.drop_column("trigger")
