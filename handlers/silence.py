"""`silence`, `silences`, `unsilence`: Alertmanager silences for alerts in the environment's
namespace, recorded with the person who asked, listed, and expired. They change Alertmanager,
not the cluster, so they need no approval; each run is audited like every execution, and the
silences opsbot makes or expires are remembered so alert messages show them."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from pydantic import Field, field_validator

from bot import messages
from bot.alertmanager import (
    AlertmanagerClient,
    Silence,
    SilenceMatcher,
    check_label_name,
    check_silence_id,
)
from bot.errors import NotFound, PermanentError, UsageError
from bot.names import shown
from bot.numbers import duration_text, parse_duration
from bot.registry import HandlerContext, Params, Result, handler

__all__ = [
    "MAX_DURATION",
    "MIN_DURATION",
    "SilenceParams",
    "SilencesParams",
    "UnsilenceParams",
    "belongs_to",
    "silence",
    "silences",
    "unsilence",
]

MIN_DURATION = timedelta(minutes=1)
MAX_DURATION = timedelta(days=7)


class SilenceParams(Params):
    alertname: str = Field(min_length=1, max_length=200)
    labels: dict[str, str] = Field(default_factory=dict)  # extra equality matchers
    duration: str  # `30m`, `2h`, `1d`: from now, between MIN_DURATION and MAX_DURATION
    comment: str | None = None  # the --reason, if any

    @field_validator("alertname")
    @classmethod
    def _not_blank(cls, value: str) -> str:
        if not value.strip():
            raise ValueError("the alert name is empty")
        return value


@handler("alertmanager.silence", params=SilenceParams)
async def silence(*, ctx: HandlerContext, params: SilenceParams, **_: object) -> Result:
    """Silence an alert in the environment's namespace for a while, in Alertmanager."""
    length = _length(params.duration)
    matchers = _matchers(ctx, params)
    url = ctx.settings.alertmanager_url
    if not url:
        raise PermanentError(no_alertmanager())
    starts = datetime.now(UTC).replace(microsecond=0)
    ends = starts + length
    created_by = author(ctx)
    comment = silence_comment(params.comment, ctx.execution_id)
    as_text = ", ".join(str(SilenceMatcher(name, value)) for name, value in matchers.items())
    namespace = matchers["namespace"]
    fields = [
        ("Matchers", as_text),
        ("Starts", _time(starts)),
        ("Ends", _time(ends)),
        ("Created by", created_by),
        ("Scope", scope(namespace, given="namespace" in params.labels)),
    ]
    data: dict[str, object] = {
        "silence_id": None,
        "matchers": matchers,
        "ends_at": ends.isoformat(),
    }
    if ctx.dry_run:
        return Result(
            summary=would_silence(params.alertname, namespace, length, ends, starts),
            fields=tuple(fields),
            data=data,
        )
    token = ctx.settings.alertmanager_token
    async with AlertmanagerClient(url, token.get_secret_value() if token else None) as client:
        silence_id = await client.create_silence(
            matchers, starts_at=starts, ends_at=ends, created_by=created_by, comment=comment
        )
    ctx.log.info("silence %s created for %s until %s by %s",
                 silence_id, as_text, ends.isoformat(), created_by)
    await ctx.records.silence_made(silence_id=silence_id, matchers=matchers,
                                   created_by=ctx.actor, ends_at=ends,
                                   execution_id=ctx.execution_id)
    fields.append(("Silence id", silence_id))
    return Result(
        summary=silenced(params.alertname, namespace, length, ends, starts),
        fields=tuple(fields),
        data=data | {"silence_id": silence_id},
    )


class SilencesParams(Params):
    app: str = Field(default="", description="Only silences that match this app's alerts.")


SHOWN = 10  # in the message; all of them in the output


@handler("alertmanager.silences", params=SilencesParams)
async def silences(*, ctx: HandlerContext, params: SilencesParams, **_: object) -> Result:
    """Active and pending silences in Alertmanager, the latest to end first; with an app,
    those whose matchers could match its alerts in this environment."""
    async with _client(ctx) as client:
        found = await client.silences()
    if params.app:
        app = ctx.settings.app(params.app, ctx.environment.name)
        found = [s for s in found if belongs_to(s, ctx.namespace, app.name, app.workload_name)]
    now = datetime.now(UTC)
    rows = [(s.id, messages.silence_line(
        matchers=", ".join(str(m) for m in s.matchers), created_by=s.created_by,
        ends=s.ends_at, comment=s.comment, state=s.state, now=now)) for s in found]
    output = "\n".join(f"{sid}  {line}" for sid, line in rows) if len(rows) > SHOWN else None
    return Result(
        summary=messages.silences_summary(len(rows), params.app or None, ctx.environment.name),
        fields=tuple(rows[:SHOWN]),
        output=output,
        data={"silences": [{"id": s.id, "state": s.state, "created_by": s.created_by,
                            "comment": s.comment, "matchers": [str(m) for m in s.matchers],
                            "ends_at": s.ends_at.isoformat() if s.ends_at else None}
                           for s in found]},
    )


def belongs_to(found: Silence, namespace: str, *names: str) -> bool:
    """Whether a silence could silence an app's alerts: no namespace matcher or this
    namespace's, and an equality matcher naming the app or its workload (`deployment=`,
    `app=`, ...), or a `pod` matcher on one of its pods (`<workload>-...`)."""
    labels = found.labels
    if "namespace" in labels and labels["namespace"] != namespace:
        return False
    for label, value in labels.items():
        if label in ("namespace", "alertname"):
            continue
        if value in names or (label == "pod" and any(value.startswith(f"{n}-") for n in names)):
            return True
    return False


class UnsilenceParams(Params):
    silence_id: str = Field(min_length=1, max_length=100)

    @field_validator("silence_id")
    @classmethod
    def _uuid(cls, value: str) -> str:
        # Checked again by the client; a bad id never reaches a URL path either way.
        try:
            return check_silence_id(value)
        except PermanentError as exc:
            raise ValueError(str(exc)) from None


@handler("alertmanager.unsilence", params=UnsilenceParams)
async def unsilence(*, ctx: HandlerContext, params: UnsilenceParams, **_: object) -> Result:
    """Expire one silence in Alertmanager now."""
    silence_id = params.silence_id
    async with _client(ctx) as client:
        current = {s.id: s for s in await client.silences(states=("active", "pending",
                                                                   "expired"))}
        found = current.get(silence_id)
        if found is None:
            raise NotFound(messages.no_such_silence(silence_id))
        fields = (("Matchers", ", ".join(str(m) for m in found.matchers)),
                  ("Created by", found.created_by))
        if found.state == "expired":
            return Result(summary=messages.silence_already_expired(silence_id), fields=fields)
        if ctx.dry_run:
            return Result(summary=messages.would_unsilence(silence_id), fields=fields)
        await client.expire_silence(silence_id)
    ctx.log.info("silence %s expired by %s", silence_id, ctx.actor)
    await ctx.records.silence_expired(silence_id=silence_id, by=ctx.actor)
    return Result(summary=messages.unsilenced(silence_id), fields=fields,
                  data={"silence_id": silence_id})


def _client(ctx: HandlerContext) -> AlertmanagerClient:
    url = ctx.settings.alertmanager_url
    if not url:
        raise PermanentError(no_alertmanager())
    token = ctx.settings.alertmanager_token
    return AlertmanagerClient(url, token.get_secret_value() if token else None)


def _length(text: str) -> timedelta:
    # The silence runbook bounds --for the same way before anything runs; this holds for
    # runbooks that call the handler with a duration of their own.
    return parse_duration(text, shortest=MIN_DURATION, longest=MAX_DURATION, what="a silence")


def _matchers(ctx: HandlerContext, params: SilenceParams) -> dict[str, str]:
    # The namespace matcher keeps a silence asked for in one environment off the others.
    if "alertname" in params.labels:
        raise UsageError(alertname_twice())
    for name in params.labels:
        check_label_name(name)
    matchers = {"alertname": params.alertname, **params.labels}
    matchers.setdefault("namespace", ctx.namespace)
    return matchers


def author(ctx: HandlerContext) -> str:
    """Who a silence is recorded as created by: the person, by handle and Slack id."""
    handle = ctx.settings.handle(ctx.actor)
    person = handle if handle == ctx.actor else f"{handle} ({ctx.actor})"
    return f"{person} via opsbot"


# What the silence says to people (also shown in Alertmanager's UI) ---------------------------


def silence_comment(reason: str | None, execution_id: str) -> str:
    reason = (reason or "").strip()
    return f"{reason} (opsbot execution {execution_id})" if reason \
        else f"silenced from opsbot (execution {execution_id})"


def no_alertmanager() -> str:
    return "silences need Alertmanager: set ALERTMANAGER_URL (and OPSBOT_ALERTMANAGER_TOKEN " \
        "if it asks for a token)"


def alertname_twice() -> str:
    return "give the alert name once, as the first argument, not as alertname=..."


def scope(namespace: str, *, given: bool) -> str:
    if given:
        return f"only alerts with namespace={namespace} (as asked)"
    return f"only alerts with namespace={namespace}; other environments still notify"


def silenced(alertname: str, namespace: str, length: timedelta, ends: datetime,
             now: datetime) -> str:
    return f"silenced {shown(alertname)} in {shown(namespace)} for {duration_text(length)} " \
        f"(until {until(ends, now)})"


def would_silence(alertname: str, namespace: str, length: timedelta, ends: datetime,
                  now: datetime) -> str:
    return f"would silence {shown(alertname)} in {shown(namespace)} for {duration_text(length)} " \
        f"(until {until(ends, now)})"


def until(ends: datetime, now: datetime) -> str:
    """`15:04 UTC` today, `Tue 3 Mar 15:04 UTC` on another day."""
    ends, now = ends.astimezone(UTC), now.astimezone(UTC)
    if ends.date() == now.date():
        return f"{ends:%H:%M} UTC"
    return f"{ends:%a} {ends.day} {ends:%b %H:%M} UTC"


def _time(moment: datetime) -> str:
    return f"{moment.astimezone(UTC):%Y-%m-%d %H:%M:%S} UTC"
