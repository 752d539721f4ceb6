"""What front ends show: a neutral execution view and notices, and the one Reporter interface.

The dispatcher updates an ExecutionView as steps progress and hands it to the reporter; Slack
renders it as Block Kit (updated in place), the console as text.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Literal, Protocol

if TYPE_CHECKING:
    from bot.registry import Announcement, Attachment

__all__ = [
    "Button",
    "ExecutionView",
    "Notice",
    "Reporter",
    "StepStatus",
    "StepView",
]

StepStatus = Literal[
    "pending", "running", "succeeded", "not_checked", "failed", "refused", "skipped",
    "interrupted",
]
# not_checked: the step ended without failing, but a check it was to make did not run (its
# summary says which and why); it is never shown or stored as passed.
# refused: a step refused before anything was changed (a no-op, a policy); nothing ran after it.
# cancelled: `cancel <execution-id>` stopped it between steps (its on_failure steps ran).
ExecutionStatus = Literal["running", "succeeded", "failed", "refused", "interrupted",
                          "cancelled"]


@dataclass
class StepView:
    name: str
    status: StepStatus = "pending"
    summary: str = ""
    fields: tuple[tuple[str, str], ...] = ()
    output: str | None = None
    progress: str | None = None
    on_failure: bool = False
    attachments: tuple[Attachment, ...] = ()
    announcements: tuple[Announcement, ...] = ()  # messages to other channels (`notify`)


@dataclass(frozen=True)
class Button:
    """A follow-up command offered under a message; clicking it runs `command` as the clicker."""

    label: str
    command: str
    style: Literal["primary", "danger"] | None = None


@dataclass
class ExecutionView:
    execution_id: str
    runbook: str
    command: str
    actor: str  # display name
    environment: str
    target: str | None
    dry_run: bool
    reason: str | None = None
    status: ExecutionStatus = "running"
    steps: list[StepView] = field(default_factory=list)
    summary: str = ""
    buttons: list[Button] = field(default_factory=list)
    request_id: str | None = None  # the approval request this execution carries out
    # After a change succeeded: what its requester ticks once done (environments.<env>.checklist)
    checklist: tuple[str, ...] = ()
    requester: str | None = None  # the user id who asked (a person, not a display name)

    @property
    def finished(self) -> bool:
        return self.status != "running"

    @property
    def not_checked(self) -> list[StepView]:
        """Steps that ended with a check not run."""
        return [step for step in self.steps if step.status == "not_checked"]


@dataclass(frozen=True)
class Notice:
    """A reply only the asker sees: an error, a denial, a refusal, help."""

    kind: Literal["error", "denied", "refused", "info"]
    text: str
    hint: str | None = None
    details: tuple[str, ...] = ()


class Reporter(Protocol):
    async def execution(self, view: ExecutionView) -> None:
        """Post the execution message the first time, update it in place afterwards."""

    async def notice(self, notice: Notice) -> None:
        """Tell only the asker (Slack: ephemeral)."""
