"""`silence`: an Alertmanager silence for one alert in the environment's namespace, recorded with
the person who asked. It changes Alertmanager, not the cluster, so it needs no approval."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from pydantic import Field, field_validator

from bot.alertmanager import AlertmanagerClient, SilenceMatcher, check_label_name
from bot.errors import PermanentError, UsageError
from bot.markup import code
from bot.names import shown
from bot.registry import HandlerContext, Params, Result, handler
from bot.runbooks.params import parse_duration

__all__ = ["MAX_DURATION", "MIN_DURATION", "SilenceParams", "silence"]

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
    fields.append(("Silence id", silence_id))
    return Result(
        summary=silenced(params.alertname, namespace, length, ends, starts),
        fields=tuple(fields),
        data=data | {"silence_id": silence_id},
    )


def _length(text: str) -> timedelta:
    length = parse_duration(text)
    if not MIN_DURATION <= length <= MAX_DURATION:
        raise UsageError(bad_length(text.strip()))
    return length


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


def bad_length(text: str) -> str:
    return (f"a silence lasts from 1m to 7d; {code(shown(text))} is outside that "
            "(write e.g. --for 2h)")


def alertname_twice() -> str:
    return "give the alert name once, as the first argument, not as alertname=..."


def scope(namespace: str, *, given: bool) -> str:
    if given:
        return f"only alerts with namespace={namespace} (as asked)"
    return f"only alerts with namespace={namespace}; other environments still notify"


def silenced(alertname: str, namespace: str, length: timedelta, ends: datetime,
             now: datetime) -> str:
    return f"silenced {shown(alertname)} in {shown(namespace)} for {span(length)} " \
        f"(until {until(ends, now)})"


def would_silence(alertname: str, namespace: str, length: timedelta, ends: datetime,
                  now: datetime) -> str:
    return f"would silence {shown(alertname)} in {shown(namespace)} for {span(length)} " \
        f"(until {until(ends, now)})"


def span(length: timedelta) -> str:
    """`1h`, `1d12h`, `1m30s`: a duration as the command language writes it."""
    seconds = int(length.total_seconds())
    parts = []
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60), ("s", 1)):
        count, seconds = divmod(seconds, size)
        if count:
            parts.append(f"{count}{unit}")
    return "".join(parts) or "0s"


def until(ends: datetime, now: datetime) -> str:
    """`15:04 UTC` today, `Tue 3 Mar 15:04 UTC` on another day."""
    ends, now = ends.astimezone(UTC), now.astimezone(UTC)
    if ends.date() == now.date():
        return f"{ends:%H:%M} UTC"
    return f"{ends:%a} {ends.day} {ends:%b %H:%M} UTC"


def _time(moment: datetime) -> str:
    return f"{moment.astimezone(UTC):%Y-%m-%d %H:%M:%S} UTC"
