"""Errors the store raises, so callers catch ours and not SQLAlchemy's.

StoreError
├── NotFound            (also a LookupError) no execution or step with that id
├── InvalidTransition   the record is not in a state that allows the change
└── AuditChainBroken    the audit head row is gone, so nothing can be appended
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from sqlalchemy.exc import OperationalError, SQLAlchemyError

__all__ = [
    "AuditChainBroken",
    "InvalidTransition",
    "NotFound",
    "StoreError",
    "StoreUnavailable",
    "translated",
]


class StoreError(Exception):
    """Base class of every error raised by ``bot.store``."""


class StoreUnavailable(StoreError):
    """The database could not be reached or stayed locked; retrying later may work."""


class NotFound(StoreError, LookupError):
    """The execution (or step) named does not exist."""


class InvalidTransition(StoreError):
    """E.g. finishing an execution that already finished or was interrupted."""


class AuditChainBroken(StoreError):
    """Appending is refused because the chain's head row is missing."""


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
