"""Alertmanager notifications keep their payload as the JSON text they arrived as (`json` on
PostgreSQL, no longer `jsonb`), and lose the index on `group_hash`, which no query reads.

Both are on the intake's path: each notification is committed before Alertmanager has its 2xx.
PostgreSQL only checks a `json` value, where `jsonb` builds its binary form: about a third of
the server's time per notification (docs/performance.md). opsbot reads a payload whole and never
queries inside one. SQLite stores JSON as text either way; only the index goes there.

Revision ID: 0011
Revises: 0010
Create Date: 2026-12-06

Frozen history, like 0001: plain SQLAlchemy types, no import of ``bot.store.models``.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0011"
down_revision: str | Sequence[str] | None = "0010"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.drop_index(op.f("ix_alert_notifications_group_hash"), table_name="alert_notifications")
    if op.get_bind().dialect.name == "postgresql":
        op.alter_column("alert_notifications", "payload", type_=postgresql.JSON(),
                        existing_type=postgresql.JSONB(astext_type=sa.Text()),
                        existing_nullable=False, postgresql_using="payload::json")


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.alter_column("alert_notifications", "payload",
                        type_=postgresql.JSONB(astext_type=sa.Text()),
                        existing_type=postgresql.JSON(), existing_nullable=False,
                        postgresql_using="payload::jsonb")
    op.create_index(op.f("ix_alert_notifications_group_hash"), "alert_notifications",
                    ["group_hash"])
