"""Several replicas: a heartbeat row per running process, the owner of each execution and
alert run, and a claim on each alert notification so one replica processes it.

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-04

Frozen history, like 0001: plain SQLAlchemy types, no import of ``bot.store.models``.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0007"
down_revision: str | Sequence[str] | None = "0006"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def _time() -> sa.DateTime:
    return sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "replicas",
        sa.Column("id", sa.String(length=255), nullable=False),
        sa.Column("started_at", _time(), nullable=False),
        sa.Column("seen_at", _time(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_replicas")),
    )
    # Rows from before this revision have no owner: recovery treats them as orphans.
    op.add_column("executions", sa.Column("owner", sa.String(length=255), nullable=True))
    op.add_column("alert_runs", sa.Column("owner", sa.String(length=255), nullable=True))
    op.add_column("alert_notifications",
                  sa.Column("claimed_by", sa.String(length=255), nullable=True))
    op.add_column("alert_notifications", sa.Column("claimed_until", _time(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("alert_notifications") as batch:
        batch.drop_column("claimed_until")
        batch.drop_column("claimed_by")
    with op.batch_alter_table("alert_runs") as batch:
        batch.drop_column("owner")
    with op.batch_alter_table("executions") as batch:
        batch.drop_column("owner")
    op.drop_table("replicas")
