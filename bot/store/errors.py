"""Errors the store raises, so callers catch ours and not SQLAlchemy's.

StoreError
├── StoreUnavailable    transient: the database cannot be reached, did not answer, stayed locked
│   └── DatabaseUnreachable  opening the store failed: which database, where, the driver's why
├── BadDatabaseURL      the URL does not parse, or names a driver that is not installed
├── NotFound            (also a LookupError) no execution or step with that id
├── InvalidTransition   the record is not in a state that allows the change
└── AuditChainBroken    the audit head row is gone, so nothing can be appended

TargetHeld (not a StoreError: the store worked) says a request could not reserve its target.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING

from sqlalchemy.exc import OperationalError, SQLAlchemyError

if TYPE_CHECKING:
    from bot.store.records import LockInfo

__all__ = [
    "AuditChainBroken",
    "BadDatabaseURL",
    "DatabaseUnreachable",
    "InvalidTransition",
    "NotFound",
    "StoreError",
    "StoreUnavailable",
    "TargetHeld",
    "translated",
]


class StoreError(Exception):
    """Base class of every error raised by ``bot.store``."""


class StoreUnavailable(StoreError):
    """The database could not be reached or stayed locked; retrying later may work."""


class DatabaseUnreachable(StoreUnavailable):
    """Opening the store failed to reach the database, or it refused us (no such database,
    wrong password). ``url`` has no password; ``host`` and ``port`` are None for SQLite."""

    def __init__(self, url: str, host: str | None, port: int | None, reason: str) -> None:
        where = f" (host {host}, port {port})" if host else ""
        super().__init__(f"cannot use the database {url}{where}: {reason}")
        self.url, self.host, self.port, self.reason = url, host, port, reason


class BadDatabaseURL(StoreError):
    """The database URL cannot be used as written; the message says why, without the URL
    (which may hold a password)."""


class NotFound(StoreError, LookupError):
    """The execution (or step) named does not exist."""


class InvalidTransition(StoreError):
    """E.g. finishing an execution that already finished or was interrupted."""


class AuditChainBroken(StoreError):
    """Appending is refused because the chain's head row is missing."""


class TargetHeld(Exception):
    """The target a request would reserve is held (a running execution, or another request's
    reservation); nothing was recorded."""

    def __init__(self, holder: LockInfo) -> None:
        super().__init__(f"{holder.target} is held")
        self.holder = holder


@contextmanager
def translated() -> Iterator[None]:
    """Re-raise SQLAlchemy errors as store errors, keeping the original as the cause."""
    try:
        yield
    except OperationalError as exc:
        raise StoreUnavailable(f"database unavailable: {exc.orig}") from exc
    except SQLAlchemyError as exc:
        raise StoreError(f"database error: {exc}") from exc
    except UnicodeEncodeError as exc:  # a lone surrogate: the drivers encode before SQLAlchemy
        raise StoreError(f"database error: text the database cannot store ({exc.reason})") \
            from exc
