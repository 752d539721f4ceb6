"""Simulated wall clock: real time plus an adjustable offset, so seeds can back-date history
and tests can jump past deadlines (progressDeadlineSeconds, event TTL) without sleeping."""

from __future__ import annotations

import threading
from datetime import UTC, datetime, timedelta


class SimClock:
    """Now = real UTC time + offset. Thread-safe; the offset only ever moves by explicit calls."""

    def __init__(self) -> None:
        self._offset = timedelta(0)
        self._lock = threading.Lock()

    def now(self) -> datetime:
        with self._lock:
            return datetime.now(UTC) + self._offset

    def advance(self, seconds: float) -> None:
        with self._lock:
            self._offset += timedelta(seconds=seconds)

    def set_offset(self, seconds: float) -> None:
        with self._lock:
            self._offset = timedelta(seconds=seconds)

    @property
    def offset_seconds(self) -> float:
        with self._lock:
            return self._offset.total_seconds()

    def stamp(self, delta_seconds: float = 0.0) -> str:
        """RFC 3339 with second precision, as metav1.Time serialises."""
        return fmt_time(self.now() + timedelta(seconds=delta_seconds))


def fmt_time(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def fmt_micro(moment: datetime) -> str:
    """metav1.MicroTime, used by events' eventTime and lease times."""
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def parse_time(text: str) -> datetime:
    value = datetime.fromisoformat(text.replace("Z", "+00:00"))
    return value if value.tzinfo else value.replace(tzinfo=UTC)
