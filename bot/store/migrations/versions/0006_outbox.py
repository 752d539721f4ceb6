"""The Slack outbox: every outbound chat effect is a row first, delivered in order per stream
by a sender; and the address book of the messages it posted.

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-03

Frozen history, like 0001: plain SQLAlchemy types, no import of ``bot.store.models``.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0006"
down_revision: str | Sequence[str] | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def _time() -> sa.DateTime:
    return sa.DateTime(timezone=True)


def _json() -> sa.types.TypeEngine[object]:
    return sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql")


def upgrade() -> None:
    op.create_table(
        "outbox",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("stream", sa.String(length=255), nullable=False),
        sa.Column("kind", sa.String(length=20), nullable=False),
        sa.Column("message_key", sa.String(length=255), nullable=True),
        sa.Column("parent_key", sa.String(length=255), nullable=True),
        sa.Column("orphan", sa.String(length=10), nullable=False),
        sa.Column("payload", _json(), nullable=False),
        sa.Column("content", sa.LargeBinary(), nullable=True),
        sa.Column("instead", _json(), nullable=False),
        sa.Column("substituted", sa.Boolean(), nullable=False),
        sa.Column("status", sa.String(length=20), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("not_before", _time(), nullable=False),
        sa.Column("owner", sa.String(length=80), nullable=True),
        sa.Column("lease_until", _time(), nullable=True),
        sa.Column("created_at", _time(), nullable=False),
        sa.Column("finished_at", _time(), nullable=True),
        sa.Column("error", sa.Text(), nullable=True),
        sa.CheckConstraint(
            "status IN ('pending', 'sending', 'delivered', 'coalesced', 'failed', 'dropped')",
            name=op.f("ck_outbox_status_known"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_outbox")),
    )
    op.create_index(op.f("ix_outbox_message_key"), "outbox", ["message_key"])
    op.create_index(op.f("ix_outbox_finished_at"), "outbox", ["finished_at"])
    op.create_index(op.f("ix_outbox_stream_id"), "outbox", ["stream", "id"])
    op.create_index(op.f("ix_outbox_status_not_before"), "outbox", ["status", "not_before"])
    op.create_table(
        "outbox_messages",
        sa.Column("key", sa.String(length=255), nullable=False),
        sa.Column("channel", sa.String(), nullable=True),
        sa.Column("ts", sa.String(), nullable=True),
        sa.Column("thread_ts", sa.String(), nullable=True),
        sa.Column("error", sa.String(), nullable=True),
        sa.Column("at", _time(), nullable=False),
        sa.PrimaryKeyConstraint("key", name=op.f("pk_outbox_messages")),
    )
    op.create_index(op.f("ix_outbox_messages_at"), "outbox_messages", ["at"])


def downgrade() -> None:
    # Messages still waiting in the outbox are lost with it: a downgrade is for going back to
    # a version that posted directly.
    op.drop_index(op.f("ix_outbox_messages_at"), table_name="outbox_messages")
    op.drop_table("outbox_messages")
    op.drop_index(op.f("ix_outbox_status_not_before"), table_name="outbox")
    op.drop_index(op.f("ix_outbox_stream_id"), table_name="outbox")
    op.drop_index(op.f("ix_outbox_finished_at"), table_name="outbox")
    op.drop_index(op.f("ix_outbox_message_key"), table_name="outbox")
    op.drop_table("outbox")
