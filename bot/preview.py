"""A preview is a dry run of a runbook that nobody sees run: its plan is what approvers
approve, and its digest is how a change of target voids an approval."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from bot.markup import plain
from bot.reporting import ExecutionView, Notice

if TYPE_CHECKING:
    from bot.errors import Refused
    from bot.registry import HandlerSpec, Result
    from bot.runbooks.models import Step

__all__ = ["SILENT", "Preview"]


class _Silent:
    async def execution(self, view: ExecutionView) -> None:
        return None

    async def notice(self, notice: Notice) -> None:
        return None


SILENT = _Silent()


@dataclass(frozen=True)
class Preview:
    ok: bool
    lines: tuple[str, ...]  # the plan, one line per change, as approvers read it
    digest: str
    problem: str | None = None  # why the dry run failed (then nothing is requested)
    refusal: Refused | None = None  # a step refused: the command is refused, not requested

    @classmethod
    def of(
        cls,
        view: ExecutionView,
        ok: bool,
        steps: Sequence[tuple[Step, Result, HandlerSpec | None]],
        refusal: Refused | None = None,
    ) -> Preview:
        # What binds the approval: the plan digests steps publish, and what changing steps
        # say they would do. Read-only checks (health, alerts) vary and are left out.
        material: list[object] = []
        lines: list[str] = []
        for step, result, spec in steps:
            digest = result.data.get("digest")
            if digest is None and not (spec and spec.mutating):
                # A check may still show approvers what they accept (a deploy's vulnerability
                # counts): those lines are shown, and what is accepted binds the approval.
                shown = [str(line) for line in result.data.get("for_approvers") or ()]
                accepted = [str(line) for line in result.data.get("accepted") or ()]
                if accepted:
                    material.append({"step": step.name, "accepted": accepted})
                lines.extend(shown)
                continue
            # As the console shows them: how a front end formats the plan binds nothing.
            material.append({"step": step.name, "digest": digest,
                             "fields": [(plain(k), plain(v)) for k, v in result.fields],
                             "summary": None if digest else plain(result.summary)})
            lines.append(result.summary)
            lines.extend(f"{name}: {value}" for name, value in result.fields
                         if name not in ("Plan",))
        text = json.dumps(material, sort_keys=True, separators=(",", ":"), default=str)
        failed = next((s for s in view.steps if s.status == "failed"), None)
        problem = f"{failed.name}: {failed.summary}" if failed else None
        return cls(ok, tuple(lines), hashlib.sha256(text.encode()).hexdigest(), problem,
                   refusal)
