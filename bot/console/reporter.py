"""The console's Reporter: prints each step once as it finishes, then the outcome."""

from __future__ import annotations

from collections.abc import Callable

from bot.console.render import execution_end, execution_start, notice_text, step_text
from bot.reporting import ExecutionView, Notice

__all__ = ["ConsoleReporter"]


class ConsoleReporter:
    def __init__(self, write: Callable[[str], None] = print) -> None:
        self._write = write
        self._printed: dict[str, set[int]] = {}

    async def execution(self, view: ExecutionView) -> None:
        done = self._printed.get(view.execution_id)
        if done is None:
            done = self._printed[view.execution_id] = set()
            self._write(execution_start(view))
        for index, step in enumerate(view.steps):
            if index not in done and step.status in ("succeeded", "failed", "skipped"):
                done.add(index)
                self._write(step_text(step))
        if view.finished:
            self._write(execution_end(view))
            self._printed.pop(view.execution_id, None)

    async def notice(self, notice: Notice) -> None:
        self._write(notice_text(notice))
