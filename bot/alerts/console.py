"""The console's alert board: a group is printed when its alerts or automation decisions change,
with the commands its buttons would run; each run it starts is printed whole when it ends. A
demo script waits on it for an alert to be shown."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

from bot.alerts.view import AlertGroupView, group_lines
from bot.console.render import plain
from bot.console.reporter import ConsoleReporter
from bot.reporting import ExecutionView, Notice, Reporter

__all__ = ["ConsoleAlertBoard"]


class ConsoleAlertBoard:
    def __init__(self, write: Callable[[str], None] = print) -> None:
        self.write = write
        # Per group, what was last printed: its alerts' states and the automation decisions.
        # A run's progress (starting, running, succeeded) is not reprinted: the run's own
        # report says how it ended.
        self._last: dict[str, tuple[object, ...]] = {}
        self._shown: dict[str, set[tuple[str, str]]] = {}  # (alert name, firing|resolved)
        self._changed = asyncio.Event()

    async def show(self, *views: AlertGroupView) -> None:
        for view in views:
            self._show(view)

    def _show(self, view: AlertGroupView) -> None:
        key = (view.status, tuple((a.fingerprint, a.status) for a in view.alerts),
               tuple((r.runbook, r.alertname, r.target, r.decision) for r in view.runs))
        if self._last.get(view.group_hash) != key:
            self._last[view.group_hash] = key
            lines = [plain(line) for line in group_lines(view)]
            lines += [f"  [{button.label}] {button.command}" for button in view.buttons]
            self.write("🚨 " + "\n".join(lines))
            self._shown[view.group_hash] = {(a.name, a.status) for a in view.alerts}
            self._changed.set()
            self._changed = asyncio.Event()

    def reporter(self, view: AlertGroupView) -> Reporter:
        return _WholeRun(self.write)

    async def announce(self, view: AlertGroupView, text: str) -> None:
        self.write("📣 " + plain(text))

    def showing(self, alertname: str, status: str = "firing") -> bool:
        """Whether a group's last printed message shows an alert of that name in that status."""
        return any((alertname, status) in shown for shown in self._shown.values())

    async def wait_shown(self, alertname: str, status: str = "firing",
                         timeout: float = 60.0) -> bool:
        """Until `showing(alertname, status)`; False when `timeout` seconds pass first."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while not self.showing(alertname, status):
            remaining = deadline - loop.time()
            if remaining <= 0:
                return False
            try:
                await asyncio.wait_for(self._changed.wait(), remaining)
            except TimeoutError:
                return False
        return True


class _WholeRun:
    """The console reporter's text of one automatic run, printed in one piece when the run
    ends: runs started by alerts go on side by side, and their steps interleaved could not be
    followed. Notices are printed at once."""

    def __init__(self, write: Callable[[str], None]) -> None:
        self._write = write
        self._lines: list[str] = []
        self._inner = ConsoleReporter(self._lines.append)

    async def execution(self, view: ExecutionView) -> None:
        await self._inner.execution(view)
        if view.finished and self._lines:
            self._write("\n".join(self._lines))
            self._lines.clear()

    async def notice(self, notice: Notice) -> None:
        await ConsoleReporter(self._write).notice(notice)
