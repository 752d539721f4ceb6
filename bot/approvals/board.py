"""Where approval requests are shown and updated, and where approved executions report.

Slack posts the request in its channel and updates it in place; the console prints it.
"""

from __future__ import annotations

from typing import Protocol

from bot.approvals.view import ApprovalView
from bot.reporting import Notice, Reporter

__all__ = ["Board"]


class Board(Protocol):
    async def show(self, view: ApprovalView) -> None:
        """Post the request the first time, update it after (Slack records where it went on
        the request once it is posted)."""

    async def tell(self, user: str, view: ApprovalView, notice: Notice) -> None:
        """Tell one person (the requester) about their request."""

    def reporter(self, view: ApprovalView) -> Reporter:
        """Where the execution of an approved request reports."""

    async def announce(self, view: ApprovalView, text: str) -> None:
        """Say it loudly where everyone looks (break-glass): the configured channel."""
