"""Alert intake and automation guardrails: notifications, alert states, groups, runs, pauses
and circuit breakers.

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-26

Frozen history, like 0001: plain SQLAlchemy types, no import of ``bot.store.models``.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0004"
down_revision: str | Sequence[str] | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def _time() -> sa.DateTime:
    return sa.DateTime(timezone=True)


def _json() -> sa.types.TypeEngine[object]:
    return sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql")


def upgrade() -> None:
    op.create_table(
        "alert_notifications",
        sa.Column("id", sa.String(length=40), nullable=False),
        sa.Column("received_at", _time(), nullable=False),
        sa.Column("group_hash", sa.String(length=64), nullable=False),
        sa.Column("receiver", sa.String(), nullable=False),
        sa.Column("status", sa.String(length=20), nullable=False),
        sa.Column("payload", _json(), nullable=False),
        sa.Column("processed_at", _time(), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_alert_notifications")),
    )
    op.create_index(op.f("ix_alert_notifications_group_hash"), "alert_notifications",
                    ["group_hash"])
    op.create_index(op.f("ix_alert_notifications_processed_at_received_at"),
                    "alert_notifications", ["processed_at", "received_at"])
    op.create_table(
        "alert_states",
        sa.Column("key", sa.String(length=255), nullable=False),
        sa.Column("notification_id", sa.String(length=40), nullable=False),
        sa.Column("seen_at", _time(), nullable=False),
        sa.PrimaryKeyConstraint("key", name=op.f("pk_alert_states")),
    )
    op.create_index(op.f("ix_alert_states_seen_at"), "alert_states", ["seen_at"])
    op.create_table(
        "alert_groups",
        sa.Column("group_hash", sa.String(length=64), nullable=False),
        sa.Column("group_key", sa.Text(), nullable=False),
        sa.Column("receiver", sa.String(), nullable=False),
        sa.Column("status", sa.String(length=20), nullable=False),
        sa.Column("alerts", _json(), nullable=False),
        sa.Column("channel", sa.String(), nullable=True),
        sa.Column("message_ts", sa.String(), nullable=True),
        sa.Column("created_at", _time(), nullable=False),
        sa.Column("updated_at", _time(), nullable=False),
        sa.PrimaryKeyConstraint("group_hash", name=op.f("pk_alert_groups")),
    )
    op.create_table(
        "alert_runs",
        sa.Column("id", sa.String(length=40), nullable=False),
        sa.Column("at", _time(), nullable=False),
        sa.Column("state_key", sa.String(length=255), nullable=False),
        sa.Column("group_hash", sa.String(length=64), nullable=False),
        sa.Column("fingerprint", sa.String(length=64), nullable=False),
        sa.Column("alertname", sa.String(), nullable=False),
        sa.Column("runbook", sa.String(), nullable=False),
        sa.Column("environment", sa.String(), nullable=True),
        sa.Column("target", sa.String(), nullable=True),
        sa.Column("mutating", sa.Boolean(), nullable=False),
        sa.Column("decision", sa.String(length=20), nullable=False),
        sa.Column("detail", sa.Text(), nullable=False),
        sa.Column("status", sa.String(length=20), nullable=False),
        sa.Column("execution_id", sa.String(length=40), nullable=True),
        sa.Column("request_id", sa.String(length=40), nullable=True),
        sa.Column("finished_at", _time(), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_alert_runs")),
        sa.UniqueConstraint("state_key", "runbook", name=op.f("uq_alert_runs_state_key_runbook")),
    )
    op.create_index(op.f("ix_alert_runs_group_hash"), "alert_runs", ["group_hash"])
    op.create_index(op.f("ix_alert_runs_runbook_environment_target_at"), "alert_runs",
                    ["runbook", "environment", "target", "at"])
    op.create_index(op.f("ix_alert_runs_status"), "alert_runs", ["status"])
    op.create_table(
        "automation_pauses",
        sa.Column("scope", sa.String(), nullable=False),
        sa.Column("until", _time(), nullable=True),
        sa.Column("actor", sa.String(), nullable=False),
        sa.Column("reason", sa.Text(), nullable=True),
        sa.Column("at", _time(), nullable=False),
        sa.PrimaryKeyConstraint("scope", name=op.f("pk_automation_pauses")),
    )
    op.create_table(
        "automation_breakers",
        sa.Column("environment", sa.String(), nullable=False),
        sa.Column("target", sa.String(), nullable=False),
        sa.Column("failures", sa.Integer(), nullable=False),
        sa.Column("opened_at", _time(), nullable=True),
        sa.Column("updated_at", _time(), nullable=False),
        sa.PrimaryKeyConstraint("environment", "target", name=op.f("pk_automation_breakers")),
    )


def downgrade() -> None:
    op.drop_table("automation_breakers")
    op.drop_table("automation_pauses")
    op.drop_index(op.f("ix_alert_runs_status"), table_name="alert_runs")
    op.drop_index(op.f("ix_alert_runs_runbook_environment_target_at"), table_name="alert_runs")
    op.drop_index(op.f("ix_alert_runs_group_hash"), table_name="alert_runs")
    op.drop_table("alert_runs")
    op.drop_table("alert_groups")
    op.drop_index(op.f("ix_alert_states_seen_at"), table_name="alert_states")
    op.drop_table("alert_states")
    op.drop_index(op.f("ix_alert_notifications_processed_at_received_at"),
                  table_name="alert_notifications")
    op.drop_index(op.f("ix_alert_notifications_group_hash"), table_name="alert_notifications")
    op.drop_table("alert_notifications")
