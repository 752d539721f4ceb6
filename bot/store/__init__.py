"""Persistent store of opsbot: executions, target locks, approval requests, delivery dedup,
the chat outbox and the audit log.

SQLite by default, PostgreSQL for several replicas; schema managed by the Alembic
migrations shipped in ``bot/store/migrations``. See docs/store.md.
"""

from __future__ import annotations

from bot.store.audit import AuditEntry, AuditProblem
from bot.store.batch import committed
from bot.store.db import sqlite_url
from bot.store.errors import (
    AuditChainBroken,
    BadDatabaseURL,
    DatabaseUnreachable,
    InvalidTransition,
    NotFound,
    StoreError,
    StoreUnavailable,
    TargetHeld,
)
from bot.store.records import (
    ApprovalOutcome,
    ApprovalRequest,
    Decision,
    ExecutionRecord,
    LockInfo,
    SilenceRecord,
    StepRecord,
)
from bot.store.store import Store

__all__ = [
    "ApprovalOutcome",
    "ApprovalRequest",
    "AuditChainBroken",
    "AuditEntry",
    "AuditProblem",
    "BadDatabaseURL",
    "DatabaseUnreachable",
    "Decision",
    "ExecutionRecord",
    "InvalidTransition",
    "LockInfo",
    "NotFound",
    "SilenceRecord",
    "StepRecord",
    "Store",
    "StoreError",
    "StoreUnavailable",
    "TargetHeld",
    "committed",
    "sqlite_url",
]
