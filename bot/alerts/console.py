"""The console's alert board: groups are printed as they change; runs report as text."""

from __future__ import annotations

from collections.abc import Callable

from bot.alerts.view import AlertGroupView, group_lines
from bot.console.render import plain
from bot.console.reporter import ConsoleReporter
from bot.reporting import Reporter

__all__ = ["ConsoleAlertBoard"]


class ConsoleAlertBoard:
    def __init__(self, write: Callable[[str], None] = print) -> None:
        self.write = write
        self._last: dict[str, str] = {}

    async def show(self, view: AlertGroupView) -> None:
        text = "\n".join(plain(line) for line in group_lines(view))
        if self._last.get(view.group_hash) != text:  # print changes only
            self._last[view.group_hash] = text
            self.write("🚨 " + text)

    def reporter(self, view: AlertGroupView) -> Reporter:
        return ConsoleReporter(self.write)

    async def announce(self, view: AlertGroupView, text: str) -> None:
        self.write("📣 " + plain(text))
