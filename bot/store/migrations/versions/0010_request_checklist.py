"""Approval requests keep the pre-deploy checklist their approvers must confirm, as it was
when the request was made (a later config change does not change what an approver ticks).

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-04

Frozen history, like 0001: plain SQLAlchemy types, no import of ``bot.store.models``.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0010"
down_revision: str | Sequence[str] | None = "0009"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def _json() -> sa.types.TypeEngine[object]:
    return sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql")


def upgrade() -> None:
    # Nullable: SQLite adds it in place; existing requests read as having no checklist.
    op.add_column("approval_requests", sa.Column("checklist", _json(), nullable=True))


def downgrade() -> None:
    # In place, as 0005: a batch rebuild would drop the recorded decisions by cascade.
    op.drop_column("approval_requests", "checklist")
