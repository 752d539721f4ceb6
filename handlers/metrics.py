"""`metrics` and `graph`: an app's golden signals from Prometheus as numbers and one PNG, and an
ad-hoc PromQL graph with a query timeout and a bound on series.

A signal without data says "no data", never 0: an empty answer is not a healthy one. The
queries are configuration (`metrics`, per environment and per app), rendered with label values
already quoted as PromQL strings.
"""

from __future__ import annotations

import asyncio
import math
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from pydantic import Field, field_validator

from bot import messages
from bot.errors import PermanentError, Refused, RetryableError, UsageError
from bot.grafana import dashboard_link, explore_link
from bot.graph import render_metrics_png, render_series_png
from bot.numbers import parse_duration
from bot.prometheus import PrometheusClient, promql_string
from bot.registry import Attachment, HandlerContext, Params, Result, handler
from bot.runbooks.templating import render_value

__all__ = ["SIGNALS", "GraphParams", "MetricsParams", "Signal", "graph", "measure", "metrics"]

SIGNALS = ("request_rate", "error_ratio", "p99_latency", "cpu", "memory", "restarts")
GRAPHED = ("request_rate", "error_ratio", "p99_latency", "cpu", "memory")
UNITS = {"request_rate": "req/s", "error_ratio": "ratio", "p99_latency": "s", "cpu": "ratio",
         "memory": "ratio"}
GRAPH_POINTS = 240
MAX_SERIES = 10
QUERY_TIMEOUT = 15.0


def _check_since(value: str) -> str:
    try:
        parse_duration(value, shortest=timedelta(minutes=1), longest=timedelta(days=30),
                       what="--since")
    except UsageError as exc:
        raise ValueError(str(exc)) from None
    return value


class MetricsParams(Params):
    since: str = "1h"  # the graph's range, and the restarts' window

    @field_validator("since")
    @classmethod
    def _since(cls, value: str) -> str:
        return _check_since(value)


class GraphParams(Params):
    query: str = Field(min_length=1, max_length=1000)
    since: str = "1h"
    max_series: int = Field(default=MAX_SERIES, ge=1, le=50)
    timeout_seconds: float = Field(default=QUERY_TIMEOUT, gt=0, le=120)

    @field_validator("since")
    @classmethod
    def _since(cls, value: str) -> str:
        return _check_since(value)


@dataclass(frozen=True)
class Signal:
    name: str
    query: str
    value: float | None = None
    error: str | None = None

    @property
    def shown(self) -> str:
        if self.error is not None:
            return messages.signal_failed(self.error)
        return messages.signal_value(self.name, self.value)

    @property
    def measured(self) -> bool:
        return self.error is None and self.value is not None and not math.isnan(self.value)


def queries(ctx: HandlerContext, since: str, names: tuple[str, ...] = SIGNALS,
            ) -> dict[str, str]:
    """The app's PromQL per signal (empty ones left out), label values quoted."""
    app = ctx.require_app()
    config = ctx.settings.metrics_for(app, ctx.environment)
    # A workload name is a DNS name: `.` is its only regex character.
    pods = app.workload_name.replace(".", "\\.") + "-.*"
    context = {
        "app": app.name,
        "namespace": ctx.namespace,
        "env": ctx.environment.name,
        "workload": app.workload_name,
        "selector": f"namespace={promql_string(ctx.namespace)},app={promql_string(app.name)}",
        "pods": f"namespace={promql_string(ctx.namespace)},pod=~{promql_string(pods)}",
        "window": config.window,
        "since": since,
    }
    found = {}
    for name in names:
        template = getattr(config, name)
        if template.strip():
            found[name] = str(render_value(template, context)).strip()
    return found


async def measure(prometheus: PrometheusClient, promql: dict[str, str]) -> list[Signal]:
    """Each signal's value now; a query that fails is shown as not measured, with why."""
    measured = []
    for name, query in promql.items():
        try:
            value = await prometheus.query(query)
        except (PermanentError, RetryableError) as exc:
            measured.append(Signal(name, query, error=str(exc)))
            continue
        measured.append(Signal(name, query, value=None if value is None or math.isnan(value)
                               else value))
    return measured


@handler("prometheus.metrics", params=MetricsParams)
async def metrics(*, ctx: HandlerContext, params: MetricsParams, **_: object) -> Result:
    """The app's golden signals from Prometheus as numbers, and one PNG graph."""
    app = ctx.require_app()
    url = ctx.settings.prometheus_url
    if not url:
        raise Refused(messages.metrics_no_prometheus())
    promql = queries(ctx, params.since)
    end = datetime.now(UTC)
    start = end - parse_duration(params.since)
    async with PrometheusClient(url) as prometheus:
        signals = await measure(prometheus, promql)
        if signals and all(s.error and "unreachable" in s.error for s in signals):
            raise RetryableError(signals[0].error or "", delay=2.0)
        await ctx.progress(messages.metrics_summary(
            app.name, ctx.environment.name, sum(s.measured for s in signals), len(signals)))
        attachment = await _golden_graph(ctx, prometheus, promql, start, end, params.since)
    fields = [(_label(s.name, params.since), s.shown) for s in signals]
    link = dashboard_link(ctx.settings, app, ctx.namespace, start, end)
    if link:
        fields.append((messages.grafana_dashboard(), link))
    return Result(
        summary=messages.metrics_summary(app.name, ctx.environment.name,
                                         sum(s.measured for s in signals), len(signals)),
        fields=tuple(fields),
        output="\n".join(f"{s.name}: {s.query}" for s in signals) or None,
        attachments=(attachment,) if attachment else (),
        data={"signals": {s.name: s.value for s in signals}},
    )


def _label(signal: str, since: str) -> str:
    if signal == "restarts":
        return messages.metrics_restarts_label(since)
    return messages.SIGNAL_NAMES.get(signal, signal)


async def _golden_graph(ctx: HandlerContext, prometheus: PrometheusClient,
                        promql: dict[str, str], start: datetime, end: datetime,
                        since: str) -> Attachment | None:
    """The graphed signals over the range; None when none has data or drawing fails."""
    step = max(1.0, (end - start).total_seconds() / GRAPH_POINTS)
    series: dict[str, list[tuple[datetime, float]]] = {}
    for name in GRAPHED:
        if name not in promql:
            continue
        try:
            points = await prometheus.query_range(promql[name], start, end, step)
        except (PermanentError, RetryableError) as exc:
            ctx.log.warning("graph of %s left out: %s", name, exc)
            continue
        series[messages.SIGNAL_NAMES[name]] = [(t, v) for t, v in points if not math.isnan(v)]
    if not any(series.values()):
        return None
    app = ctx.require_app()
    title = messages.metrics_graph_title(app.name, ctx.environment.name, since)
    units = {messages.SIGNAL_NAMES[n]: UNITS[n] for n in GRAPHED}
    try:
        png = await asyncio.to_thread(render_metrics_png, series, title=title, units=units)
    except Exception:  # a missing graph leaves the numbers standing
        ctx.log.exception("rendering the metrics graph failed")
        return None
    return Attachment(filename=f"metrics-{app.name}-{ctx.environment.name}.png", content=png,
                      title=title)


@handler("prometheus.graph", params=GraphParams)
async def graph(*, ctx: HandlerContext, params: GraphParams, **_: object) -> Result:
    """An ad-hoc PromQL range query as one PNG: bounded series, with a query timeout."""
    url = ctx.settings.prometheus_url
    if not url:
        raise Refused(messages.metrics_no_prometheus())
    end = datetime.now(UTC)
    start = end - parse_duration(params.since)
    step = max(1.0, (end - start).total_seconds() / GRAPH_POINTS)
    async with PrometheusClient(url, timeout=params.timeout_seconds + 5) as prometheus:
        found = await prometheus.range_series(params.query, start, end, step,
                                              timeout=params.timeout_seconds)
    found.sort(key=lambda item: _series_name(item[0]))
    drawn = found[:params.max_series]
    named = [(_series_name(labels), points) for labels, points in drawn]
    fields: list[tuple[str, str]] = []
    link = explore_link(ctx.settings, params.query, start, end)
    if link:
        fields.append((messages.grafana_explore("query"), link))
    attachment = None
    if named:
        title = messages.graph_title(params.query)
        try:
            png = await asyncio.to_thread(render_series_png, named, title=title)
            attachment = Attachment(filename="graph.png", content=png, title=title)
        except Exception:
            ctx.log.exception("rendering the graph failed")
    last = [f"{name}: {messages.metric_value(points[-1][1]) if points else 'no data'}"
            for name, points in named]
    return Result(
        summary=messages.graph_summary(len(found), len(drawn), params.since),
        fields=tuple(fields),
        output="\n".join(last) or None,
        attachments=(attachment,) if attachment else (),
        data={"series": len(found), "drawn": len(drawn)},
    )


def _series_name(labels: dict[str, str]) -> str:
    name = labels.get("__name__", "")
    rest = ",".join(f"{k}={promql_string(v)}" for k, v in sorted(labels.items())
                    if k != "__name__")
    return f"{name}{{{rest}}}" if rest or not name else name
