"""`history`: an app's revisions with their images and times, and who made each (from the
audit log, not from annotations anyone can edit). Each kind of app lists the numbers its own
`rollback --to` takes: ReplicaSet revisions of a Deployment or an Argo Rollout, Argo CD history
ids of an Argo CD app, ControllerRevisions of a StatefulSet.

Credit comes only from what a change said it made (`details.made` of an execution's audit
record: which revision of which object). Records written before that shape kept every revision
any step reported, reads included (`details.revisions`); of those, only the steps the built-in
runbooks change with are believed (`LEGACY_CHANGE_STEPS`)."""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from pydantic import Field

from bot.markup import code
from bot.registry import HandlerContext, Params, Result, handler
from handlers.deploy import argocd, rollouts
from handlers.deploy.kubernetes import REVISION, owned_replica_sets
from handlers.workload import Workload, read_workload, selector_string

__all__ = ["ControllerRevision", "controller_revisions", "history"]

NOT_OPSBOT = "not deployed through opsbot"
# The outcomes of executions that may have changed what runs (and recorded the revision).
OUTCOMES = ("succeeded", "failed", "interrupted")
# Old-shape records (`details.revisions`, step id -> revision) credit only from the ids of the
# built-in runbooks' deploy.wait and deploy.revert steps (deploy, rollback,
# remediate-crashloop-rollback): the one step in them that made a revision. A `status` (step
# "0") or a fact check ("check") only read one, and must not be taken for its maker.
LEGACY_CHANGE_STEPS = frozenset({"rollout", "revert"})
_SHA = re.compile(r"^[0-9a-f]{40}\Z")


class HistoryParams(Params):
    limit: int = Field(default=10, ge=1, le=50)


@dataclass(frozen=True)
class _Row:
    number: str  # what `rollback --to` takes
    marks: tuple[str, ...]  # current, stable, canary, ...
    what: str  # the images, or an Argo CD revision and its source
    when: str
    key: str  # how the audit log names this revision of the listed object (MadeRevision)
    unknown: str = NOT_OPSBOT  # said when no audit record claims it


@dataclass(frozen=True)
class _Listing:
    kind: str  # the object whose revisions these are, as MadeRevision names it
    name: str
    summary: str
    label: str  # the field title: "Revision 4", "History id 3"
    header: str  # the table's header line
    rows: list[_Row]  # newest first


@handler("deploy.history", params=HistoryParams)
async def history(*, ctx: HandlerContext, params: HistoryParams, **_: object) -> Result:
    """Revisions of the app, newest first, with who deployed each."""
    app = ctx.require_app()
    if app.deploy.strategy == "argocd":
        listing = await _argocd(ctx)
    elif app.deploy.strategy == "argo-rollouts":
        listing = await _rollout(ctx)
    else:
        workload = await read_workload(ctx)
        kind = _statefulset if workload.kind == "StatefulSet" else _deployment
        listing = await kind(ctx, workload)
    records = await ctx.records.audit_records(
        environment=ctx.environment.name, target=app.name, outcomes=OUTCOMES, limit=500
    )
    who = _makers(records, ctx.settings.handle, listing.kind, listing.name)
    shown = [(row, who.get(row.key, row.unknown)) for row in listing.rows[: params.limit]]
    lines = [
        f"{row.number}{_marks(row, ' ')}  {row.what}  {row.when}  {by}" for row, by in shown
    ]
    # The newest five fit in the message; the whole list goes to the thread when longer.
    output = listing.header + "\n" + "\n".join(lines) if len(lines) > 5 else None
    return Result(
        summary=listing.summary,
        output=output,
        fields=tuple(
            (f"{listing.label} {row.number}", f"{_marks(row, '')} {row.what} {row.when} {by}"
             .strip())
            for row, by in shown[:5]
        ),
        data={"entries": [{"number": row.number, "marks": list(row.marks), "what": row.what,
                           "when": row.when, "by": by} for row, by in shown]},
    )


async def _deployment(ctx: HandlerContext, workload: Workload) -> _Listing:
    rows: list[tuple[int, _Row]] = []
    for rs in await owned_replica_sets(ctx, workload):
        try:
            number = int((rs.metadata.annotations or {}).get(REVISION, ""))
        except ValueError:
            continue
        marks = ("current",) if str(number) == workload.revision else ()
        images = ", ".join(c.image for c in rs.spec.template.spec.containers)
        rows.append((number, _Row(str(number), marks, images,
                                  _when(rs.metadata.creation_timestamp), str(number))))
    rows.sort(key=lambda row: row[0], reverse=True)
    app = ctx.require_app()
    return _Listing(
        workload.kind, workload.name,
        f"{app.name} in {ctx.environment.name}: {len(rows)} revisions, current "
        f"{workload.revision}",
        "Revision", "REVISION  IMAGE  CREATED  BY", [row for _, row in rows],
    )


async def _rollout(ctx: HandlerContext) -> _Listing:
    """The Rollout's ReplicaSets by `rollout.argoproj.io/revision`, as `rollback --to` takes."""
    app = ctx.require_app()
    view = await rollouts.read_rollout(ctx, app)
    sets = await rollouts.replica_sets(ctx, view)
    rows, stable = [], None
    for number, rs in sorted(sets.items(), reverse=True):
        pod_hash, marks = rollouts.rs_hash(rs), []
        if str(number) == view.revision:
            marks.append("current")
        if pod_hash == view.stable_hash:
            marks.append("stable")
            stable = number
        elif pod_hash == view.current_hash:
            marks.append("aborted" if view.aborted else "canary")
        containers = rs["spec"]["template"]["spec"]["containers"]
        images = ", ".join(str(c.get("image", "")) for c in containers)
        created = _text_time(str(rs["metadata"].get("creationTimestamp") or ""))
        rows.append(_Row(str(number), tuple(marks), images, created, str(number)))
    summary = (f"{app.name} in {ctx.environment.name}: {len(rows)} revisions of Rollout "
               f"{code(view.name)}, current {view.revision}")
    if stable is not None and str(stable) != view.revision:
        summary += f", stable {stable}"
    return _Listing("Rollout", view.name, summary, "Revision", "REVISION  IMAGE  CREATED  BY",
                    rows)


async def _argocd(ctx: HandlerContext) -> _Listing:
    """The Application's own history (`status.history`), by the ids `rollback --to` takes."""
    app = ctx.require_app()
    application = await argocd.read_app(ctx)
    current = application.current
    rows = []
    for entry in reversed(application.history):
        marks: tuple[str, ...] = ()
        what = f"{_short(entry.revision)} ({_source(entry.source)})"
        if current is not None and entry.id == current.id:
            health = application.health_status
            marks = ("current",) if health == "Healthy" else ("current", health)
            if application.images:
                what += f" running {', '.join(application.images)}"
        unknown = NOT_OPSBOT + (f" (Argo CD: {entry.initiated_by})" if entry.initiated_by else "")
        rows.append(_Row(str(entry.id), marks, what, _text_time(entry.deployed_at),
                         argocd.history_key(application.name, entry), unknown))
    where = f"{app.name} in {ctx.environment.name}"
    if current is None:
        summary = f"{where}: Argo CD has no deployment of {code(application.name)} in its history"
    else:
        summary = (f"{where}: {len(rows)} deployments in the Argo CD history of "
                   f"{code(application.name)}, current #{current.id} ({_short(current.revision)}); "
                   f"{code(f'rollback {app.name} --to ID')} takes these ids")
        if application.auto_sync:
            summary += f" (auto-sync is on: add {code('--disable-autosync')})"
    return _Listing("Application", application.name, summary, "History id",
                    "ID  REVISION (SOURCE)  DEPLOYED  BY", rows)


@dataclass(frozen=True)
class ControllerRevision:
    """One revision of a StatefulSet's pod template, as the StatefulSet controller keeps it."""

    number: int
    name: str  # what status.currentRevision / updateRevision (and the audit log) name
    images: dict[str, str]  # container -> image
    created: datetime | None


async def controller_revisions(ctx: HandlerContext, workload: Workload) -> list[ControllerRevision]:
    """The StatefulSet's ControllerRevisions (matched by selector, then owner uid), newest
    first. Their `data` is the template as a patch: `{"spec": {"template": ...}}`."""
    listed = await ctx.kube.call(
        ctx.kube.apps.list_namespaced_controller_revision,
        workload.namespace,
        label_selector=selector_string(workload),
    )
    uid = workload.obj.metadata.uid
    found = []
    for item in listed.items:
        if not any(r.uid == uid and r.controller for r in item.metadata.owner_references or []):
            continue
        data: Any = item.data if isinstance(item.data, dict) else {}
        spec = ((data.get("spec") or {}).get("template") or {}).get("spec") or {}
        images = {str(c.get("name")): str(c.get("image")) for c in spec.get("containers") or []}
        found.append(ControllerRevision(int(item.revision), item.metadata.name, images,
                                        item.metadata.creation_timestamp))
    return sorted(found, key=lambda r: r.number, reverse=True)


async def _statefulset(ctx: HandlerContext, workload: Workload) -> _Listing:
    """ControllerRevisions, as `kubectl rollout history statefulset` lists them. opsbot does not
    roll StatefulSets back, so the summary says how to go back instead."""
    app = ctx.require_app()
    status = workload.obj.status
    running = status.current_revision if status else None
    updating = status.update_revision if status else None
    rows = []
    current = None
    for revision in await controller_revisions(ctx, workload):
        marks = []
        if revision.name == running:
            marks.append("current")
            current = revision.number
        if revision.name == updating and updating != running:
            marks.append("rolling out")
        images = ", ".join(revision.images.values())
        rows.append(_Row(str(revision.number), tuple(marks), images, _when(revision.created),
                         revision.name))
    return _Listing(
        workload.kind, workload.name,
        f"{app.name} in {ctx.environment.name}: {len(rows)} revisions of StatefulSet "
        f"{code(workload.name)}, current {current if current is not None else running}; "
        f"{code(f'rollback {app.name} --to N')} takes these numbers",
        "Revision", "REVISION  IMAGE  CREATED  BY", rows,
    )


def _makers(records: list[dict[str, Any]], handle: Callable[[str], str], kind: str,
            name: str) -> dict[str, str]:
    """revision -> 'alice: deploy shop-api 1.5.0 (2026-11-26 12:01)' for the revisions of the
    object `kind`/`name` that executions made, oldest record first so the newest claim on a
    revision wins (a rollback re-uses an old ControllerRevision, an undo moves a ReplicaSet)."""
    found: dict[str, str] = {}
    for record in reversed(records):
        details = record.get("details") or {}
        if details.get("dry_run"):
            continue
        when = _text_time(str(record.get("time", "")))
        outcome = record.get("outcome")
        for revision, on_failure in _claims(details, kind, name):
            how = "automatic rollback after " if on_failure else ""
            # An on_failure step's own record says how the change it undid ended; it worked.
            ended = "" if outcome == "succeeded" or on_failure else f", {outcome}"
            found[revision] = (
                f"{how}{handle(record['actor'])}: {record['command']} ({when}{ended})"
            )
    return found


def _claims(details: dict[str, Any], kind: str, name: str) -> list[tuple[str, bool]]:
    """(revision, made by an on_failure step) for each revision of `kind`/`name` a record
    credits its execution with."""
    if "made" in details:
        return [(str(m["revision"]), bool(m.get("on_failure")))
                for m in details["made"] or []
                if m.get("kind") == kind and m.get("name") == name]
    # An old-shape record names revisions only (Argo CD's keys name their Application).
    return [(str(revision), step == "revert")
            for step, revision in (details.get("revisions") or {}).items()
            if step in LEGACY_CHANGE_STEPS]


def _marks(row: _Row, lead: str) -> str:
    return f"{lead}({', '.join(row.marks)})" if row.marks else ""


def _source(source: dict[str, Any]) -> str:
    """Where an Argo CD deployment came from: `charts/x in git.example.com/shop/deploy`."""
    repo = str(source.get("repoURL") or "").removeprefix("https://").removesuffix(".git")
    if source.get("chart"):
        return f"chart {source['chart']} from {repo}"
    path = source.get("path")
    return f"{path} in {repo}" if path else repo or "?"


def _short(revision: str) -> str:
    """A commit SHA as git shows it short; tags and branches as they are."""
    return revision[:10] if _SHA.match(revision) else revision or "?"


def _when(value: datetime | None) -> str:
    return value.strftime("%Y-%m-%d %H:%M") if value else "?"


def _text_time(value: str) -> str:
    """RFC 3339 text (`2024-01-01T10:00:00Z`) as `2024-01-01 10:00`."""
    return value[:16].replace("T", " ") if value else "?"
