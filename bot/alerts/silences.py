"""The silences opsbot made, as an alert-group message shows them: who silenced which of its
alerts until when (with an Expire button), or who expired the silence. A silence covers an
alert when each of its (equality) matchers equals the alert's label."""

from __future__ import annotations

import shlex
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from bot import messages
from bot.reporting import Button
from bot.store import SilenceRecord

__all__ = ["SilenceMarks", "covers", "marks"]


def covers(matchers: Mapping[str, str], labels: Mapping[str, str]) -> bool:
    return bool(matchers) and all(labels.get(k) == v for k, v in matchers.items())


@dataclass(frozen=True)
class SilenceMarks:
    notes: list[str]
    buttons: list[Button]
    silenced: set[str]  # fingerprints of alerts a silence in force covers


def marks(silences: Iterable[SilenceRecord], states: list[dict[str, Any]],
          handle: Callable[[str], str], now: datetime) -> SilenceMarks:
    """Notes and Expire buttons for the silences covering any alert of the group."""
    notes: list[str] = []
    buttons: list[Button] = []
    silenced: set[str] = set()
    for silence in silences:
        covered = [s for s in states if covers(silence.matchers, s.get("labels") or {})]
        if not covered:
            continue
        in_force = silence.expired_at is None and silence.ends_at > now
        if in_force:
            silenced.update(s["fingerprint"] for s in covered)
            notes.append(messages.alert_silence_note(handle(silence.created_by),
                                                     silence.ends_at, now))
            env = next((s["env"] for s in covered if s.get("env")), None)
            command = f"unsilence {shlex.quote(silence.id)}"
            buttons.append(Button(messages.expire_silence_label(),
                                  f"{command} --env {env}" if env else command))
        elif silence.expired_by and silence.expired_at:
            notes.append(messages.alert_silence_expired_note(handle(silence.expired_by),
                                                             silence.expired_at, now))
    return SilenceMarks(notes, buttons, silenced)
