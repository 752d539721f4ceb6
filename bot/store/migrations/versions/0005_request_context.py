"""Approval requests keep the run's extra template values (`alert` for a run an alert
started), so an approved run renders the plan its approvers saw.

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-26

Frozen history, like 0001: plain SQLAlchemy types, no import of ``bot.store.models``.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0005"
down_revision: str | Sequence[str] | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def _json() -> sa.types.TypeEngine[object]:
    return sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql")


def upgrade() -> None:
    # A nullable column: SQLite adds it in place, existing requests read as no context.
    op.add_column("approval_requests", sa.Column("context", _json(), nullable=True))


def downgrade() -> None:
    # In place (SQLite 3.35+ drops a column itself): a batch rebuild of approval_requests
    # would drop the old table, and with it, by cascade, every recorded decision.
    op.drop_column("approval_requests", "context")
