"""The console's Reporter: prints each step once as it finishes, then the outcome.

Files a step produced (graphs) are written to `$OPSBOT_ATTACHMENTS_DIR`, or a temporary
directory made on first use, and the step's text says where each one went.
"""

from __future__ import annotations

import asyncio
import os
import re
import tempfile
from collections.abc import Callable
from pathlib import Path

from bot import messages
from bot.console.render import execution_end, execution_start, notice_text, step_text
from bot.registry import Attachment
from bot.reporting import ExecutionView, Notice, StepView

__all__ = ["ConsoleReporter"]

ATTACHMENTS_DIR_VAR = "OPSBOT_ATTACHMENTS_DIR"
_UNSAFE = re.compile(r"[^A-Za-z0-9._-]+")
# Finished steps, printed once.
_SHOWN = ("succeeded", "not_checked", "failed", "refused", "skipped")


class ConsoleReporter:
    def __init__(
        self, write: Callable[[str], None] = print, attachments_dir: str | Path | None = None
    ) -> None:
        self._write = write
        self._printed: dict[str, set[int]] = {}
        self._dir = Path(attachments_dir) if attachments_dir else None

    async def execution(self, view: ExecutionView) -> None:
        done = self._printed.get(view.execution_id)
        if done is None:
            done = self._printed[view.execution_id] = set()
            self._write(execution_start(view))
        for index, step in enumerate(view.steps):
            if index not in done and step.status in _SHOWN:
                done.add(index)
                saved = await self._save(view.execution_id, step)
                self._write(step_text(step, saved))
        if view.finished:
            self._write(execution_end(view))
            self._printed.pop(view.execution_id, None)

    async def notice(self, notice: Notice) -> None:
        self._write(notice_text(notice))

    async def _save(self, execution_id: str, step: StepView) -> list[str]:
        lines = []
        for attachment in step.attachments:
            try:
                path = await asyncio.to_thread(self._write_file, execution_id, attachment)
            except OSError as exc:
                lines.append(messages.attachment_not_saved(attachment.title, exc.strerror or
                                                           type(exc).__name__))
            else:
                lines.append(messages.attachment_saved(attachment.title, str(path)))
        return lines

    def _write_file(self, execution_id: str, attachment: Attachment) -> Path:
        if self._dir is None:
            configured = os.environ.get(ATTACHMENTS_DIR_VAR)
            self._dir = (Path(configured) if configured
                         else Path(tempfile.mkdtemp(prefix="opsbot-attachments-")))
        self._dir.mkdir(parents=True, exist_ok=True)
        name = _UNSAFE.sub("_", Path(attachment.filename).name).lstrip(".") or "attachment"
        path = self._dir / f"{execution_id}-{name}"
        path.write_bytes(attachment.content)
        return path
