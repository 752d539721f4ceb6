"""The console's approval board: requests are printed; approved executions report as text."""

from __future__ import annotations

from collections.abc import Callable

from bot import messages
from bot.approvals.view import ApprovalView
from bot.console.render import notice_text, plain
from bot.console.reporter import ConsoleReporter
from bot.reporting import Notice, Reporter

__all__ = ["ConsoleBoard"]


class ConsoleBoard:
    def __init__(self, write: Callable[[str], None] = print) -> None:
        self.write = write

    async def show(self, view: ApprovalView) -> None:
        lines = [plain(messages.approval_headline(
            view.status, view.command, view.environment, view.emergency))]
        lines += ["  " + plain(line) for line in messages.approval_lines(view)]
        self.write("\n".join(lines))

    async def tell(self, user: str, view: ApprovalView, notice: Notice) -> None:
        self.write(f"(to {view.requester}) " + notice_text(notice))

    def reporter(self, view: ApprovalView) -> Reporter:
        return ConsoleReporter(self.write)

    async def announce(self, view: ApprovalView, text: str) -> None:
        self.write("📣 " + plain(text))
