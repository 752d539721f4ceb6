"""Heartbeats of running opsbot processes, so recovery can tell a dead replica's runs from a
live one's: each process refreshes its row while it runs and deletes it when it stops."""

from __future__ import annotations

import os
import socket
from datetime import datetime

from sqlalchemy import delete, select, update
from sqlalchemy.orm import Session, sessionmaker

from bot.store.db import read_session, write_session
from bot.store.models import ReplicaRow

__all__ = ["beat", "forget", "live", "this_replica"]


def this_replica() -> str:
    """This process's name among replicas: `POD_NAME` when set (the chart sets it), else
    hostname and process id."""
    pod = os.environ.get("POD_NAME", "").strip()
    name = pod or f"{socket.gethostname()}-{os.getpid()}"
    return name[:200]


def beat(factory: sessionmaker[Session], now: datetime, replica: str) -> None:
    """Say `replica` is alive at `now` (made on its first beat)."""
    with write_session(factory) as session:
        updated = session.execute(
            update(ReplicaRow).where(ReplicaRow.id == replica).values(seen_at=now)
            .returning(ReplicaRow.id).execution_options(synchronize_session=False)
        ).first()
        if updated is None:
            session.add(ReplicaRow(id=replica, started_at=now, seen_at=now))


def forget(factory: sessionmaker[Session], replica: str) -> None:
    with write_session(factory) as session:
        session.execute(delete(ReplicaRow).where(ReplicaRow.id == replica))


def live(factory: sessionmaker[Session], since: datetime) -> set[str]:
    """Replicas whose last heartbeat is at or after `since`."""
    with read_session(factory) as session:
        return set(session.scalars(select(ReplicaRow.id).where(ReplicaRow.seen_at >= since)))
