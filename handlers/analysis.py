"""`analysis.verify`: after a deploy, measure the app's Prometheus metrics a few times and judge
them as an Argo Rollouts AnalysisRun does, so a bad release is caught (and rolled back by the
runbook) while it is still young. Attaches a graph of the metrics around the deploy.

Per metric, each check is met, missed, or inconclusive (no value, or the query failed). The
analysis fails as soon as a metric has missed more than `failure_limit` checks, and is
inconclusive once one has more than `inconclusive_limit` inconclusive checks, or a query that
can never work (invalid PromQL, a broken condition).
"""

from __future__ import annotations

import asyncio
import math
import re
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, Literal

from pydantic import Field

from bot import messages
from bot.config import AnalysisConfig, AnalysisMetric
from bot.errors import PermanentError, RetryableError
from bot.grafana import explore_link
from bot.graph import render_metrics_png
from bot.markup import code
from bot.prometheus import PrometheusClient
from bot.registry import Attachment, HandlerContext, Params, Result, handler
from bot.runbooks.templating import evaluate, render_value
from handlers.links import dashboard_field

__all__ = ["VerifyParams", "verify"]

Phase = Literal["met", "missed", "inconclusive"]
GRAPH_LOOKBACK = timedelta(minutes=10)  # before the deploy, for a baseline
GRAPH_POINTS = 300
_THRESHOLD = re.compile(r"\s*result\s*(<=|<|>=|>)\s*(-?[0-9.]+(?:[eE][-+]?[0-9]+)?)\s*")


class VerifyParams(Params):
    """Overrides of the app's `analysis` settings; None takes the configured value."""

    interval_seconds: float | None = Field(default=None, gt=0)
    count: int | None = Field(default=None, ge=1)
    failure_limit: int | None = Field(default=None, ge=0)
    inconclusive_limit: int | None = Field(default=None, ge=0)
    initial_delay_seconds: float | None = Field(default=None, ge=0)
    since: datetime | None = None  # when the deploy started: a line on the graph


@dataclass(frozen=True)
class _Plan:
    interval: float
    count: int
    failure_limit: int
    inconclusive_limit: int
    initial_delay: float

    @classmethod
    def of(cls, config: AnalysisConfig, params: VerifyParams) -> _Plan:
        def pick(override: Any, configured: Any) -> Any:
            return configured if override is None else override

        return cls(
            interval=pick(params.interval_seconds, config.interval_seconds),
            count=pick(params.count, config.count),
            failure_limit=pick(params.failure_limit, config.failure_limit),
            inconclusive_limit=pick(params.inconclusive_limit, config.inconclusive_limit),
            initial_delay=pick(params.initial_delay_seconds, config.initial_delay_seconds),
        )


@dataclass(frozen=True)
class Measurement:
    metric: str
    check: int
    time: datetime
    value: float | None
    phase: Phase
    error: str | None = None

    def as_data(self) -> dict[str, Any]:
        return {
            "metric": self.metric,
            "check": self.check,
            "time": self.time.isoformat(),
            "value": self.value,
            "phase": self.phase,
            "error": self.error,
        }


@dataclass
class _Metric:
    spec: AnalysisMetric
    query: str
    measurements: list[Measurement] = field(default_factory=list)
    broken: str | None = None  # an error no retry fixes: stop the analysis

    @property
    def name(self) -> str:
        return self.spec.name

    def count(self, phase: Phase) -> int:
        return sum(1 for m in self.measurements if m.phase == phase)

    @property
    def last(self) -> Measurement | None:
        return self.measurements[-1] if self.measurements else None

    def shown(self, value: float | None) -> str:
        return messages.metric_value(value, self.spec.unit)


@handler("analysis.verify", params=VerifyParams)
async def verify(*, ctx: HandlerContext, params: VerifyParams, **_: object) -> Result:
    """Measure the app's Prometheus metrics after a deploy and judge them (Argo-style)."""
    app = ctx.require_app()
    config = app.analysis
    if not config.metrics:
        return _not_checked(messages.analysis_no_metrics(app.name), "no_metrics")
    url = ctx.settings.prometheus_url
    if not url:
        return _not_checked(messages.analysis_no_prometheus(), "no_prometheus")
    plan = _Plan.of(config, params)
    context = {
        "app": app.name,
        "workload": app.workload_name,
        "namespace": ctx.namespace,
        "env": ctx.environment.name,
    }
    metrics = [_Metric(spec, str(render_value(spec.query, context))) for spec in config.metrics]
    if ctx.dry_run:
        return Result(
            summary=messages.analysis_dry_run(len(metrics), plan.count, plan.interval),
            fields=tuple((m.name, messages.analysis_condition(m.spec.success)) for m in metrics),
            output="\n".join(f"{m.name}: {m.query}" for m in metrics),
            data={"passed": True, "phase": "dry-run", "measurements": []},
        )

    checks = 0
    async with PrometheusClient(url) as prometheus:
        if plan.initial_delay:
            await ctx.progress(messages.analysis_waiting(plan.initial_delay))
            await asyncio.sleep(plan.initial_delay)
        for check in range(1, plan.count + 1):
            checks = check
            for metric in metrics:
                metric.measurements.append(await _measure(prometheus, metric, check))
            await ctx.progress(messages.analysis_progress(check, plan.count, [
                (m.name, m.shown(m.last.value if m.last else None), _mark(m)) for m in metrics
            ]))
            if _verdict(metrics, plan)[0] != "passed" or check == plan.count:
                break
            await asyncio.sleep(plan.interval)
        attachment = await _graph(ctx, prometheus, metrics, params.since, plan)

    phase, culprit = _verdict(metrics, plan)
    summary = _summary(phase, culprit, checks, plan)
    links = _links(ctx, metrics, params.since)
    ctx.log.info("analysis of %s in %s: %s", app.name, ctx.environment.name, summary)
    return Result(
        summary=summary,
        ok=phase == "passed",
        fields=tuple(
            (m.name, messages.analysis_metric_field(
                m.shown(m.last.value if m.last else None), m.spec.success,
                m.count("met"), m.count("missed"), m.count("inconclusive"),
            ))
            for m in metrics
        ) + links,
        data={
            "passed": phase == "passed",
            "phase": phase,
            "checks": checks,
            "measurements": [x.as_data() for m in metrics for x in m.measurements],
        },
        attachments=(attachment,) if attachment else (),
    )


def _links(ctx: HandlerContext, metrics: list[_Metric], since: datetime | None,
           ) -> tuple[tuple[str, str], ...]:
    """With Grafana configured: the dashboard from the deploy to now plus a margin, and an
    Explore link for the PromQL behind each check."""
    end = datetime.now(UTC)
    firsts = [m.measurements[0].time for m in metrics if m.measurements]
    start = _utc(since) if since else min(firsts, default=end) - GRAPH_LOOKBACK
    later = end + timedelta(seconds=ctx.settings.grafana.margin_seconds)
    found = list(dashboard_field(ctx, start, later))
    for metric in metrics:
        link = explore_link(ctx.settings, metric.query, start - GRAPH_LOOKBACK, later)
        if link:
            found.append((messages.grafana_explore(metric.name), link))
    return tuple(found)


def _not_checked(reason: str, why: str) -> Result:
    """The analysis did not run: not a pass. `why` (no_metrics, no_prometheus) is for later
    steps and policies that tell a deliberate absence from a missing setting."""
    return Result(
        summary=messages.not_checked(reason),
        data={"passed": False, "phase": "not_checked", "why": why, "measurements": []},
        not_checked=(messages.analysis_check(reason),),
    )


async def _measure(prometheus: PrometheusClient, metric: _Metric, check: int) -> Measurement:
    now = datetime.now(UTC)
    try:
        value = await prometheus.query(metric.query)
    except RetryableError as exc:
        return Measurement(metric.name, check, now, None, "inconclusive", str(exc))
    except PermanentError as exc:
        metric.broken = str(exc)
        return Measurement(metric.name, check, now, None, "inconclusive", str(exc))
    if value is None or math.isnan(value):
        return Measurement(metric.name, check, now, None, "inconclusive", "no data")
    try:
        met = evaluate(metric.spec.success, {"result": value})
    except PermanentError as exc:
        metric.broken = str(exc)
        return Measurement(metric.name, check, now, value, "inconclusive", str(exc))
    except Exception as exc:  # a condition like `1 / result` raising inside the sandbox
        metric.broken = f"condition {code(metric.spec.success)} failed: {exc}"
        return Measurement(metric.name, check, now, value, "inconclusive", metric.broken)
    return Measurement(metric.name, check, now, value, "met" if met else "missed")


def _mark(metric: _Metric) -> bool | None:
    last = metric.last
    if last is None or last.phase == "inconclusive":
        return None
    return last.phase == "met"


def _verdict(metrics: list[_Metric], plan: _Plan) -> tuple[str, _Metric | None]:
    """"failed", "inconclusive" (with the metric to blame) or "passed" so far."""
    for metric in metrics:
        if metric.count("missed") > plan.failure_limit:
            return "failed", metric
    for metric in metrics:
        if metric.broken or metric.count("inconclusive") > plan.inconclusive_limit:
            return "inconclusive", metric
    return "passed", None


def _summary(phase: str, culprit: _Metric | None, checks: int, plan: _Plan) -> str:
    if culprit is None:
        return messages.analysis_passed(checks, plan.count)
    if phase == "failed":
        missed = [m for m in culprit.measurements if m.phase == "missed"]
        return messages.analysis_failed(
            culprit.name, culprit.shown(missed[-1].value), culprit.spec.success,
            len(missed), checks,
        )
    if culprit.broken:
        return messages.analysis_broken(culprit.name, culprit.broken)
    return messages.analysis_inconclusive(
        culprit.name, culprit.count("inconclusive"), checks, plan.inconclusive_limit
    )


async def _graph(
    ctx: HandlerContext,
    prometheus: PrometheusClient,
    metrics: list[_Metric],
    since: datetime | None,
    plan: _Plan,
) -> Attachment | None:
    """The metrics from before the deploy until now, with the checks marked; None if it fails:
    a missing graph never changes the verdict."""
    app = ctx.require_app()
    end = datetime.now(UTC)
    deploy = _utc(since) if since else None
    firsts = [m.measurements[0].time for m in metrics if m.measurements]
    if deploy is not None:
        start = deploy - GRAPH_LOOKBACK
    else:
        start = min(firsts, default=end) - timedelta(seconds=max(60.0, 3 * plan.interval))
    step = max(1.0, (end - start).total_seconds() / GRAPH_POINTS)
    series: dict[str, list[tuple[datetime, float]]] = {}
    for metric in metrics:
        if metric.broken:
            continue
        try:
            series[metric.name] = await prometheus.query_range(metric.query, start, end, step)
        except (PermanentError, RetryableError) as exc:
            ctx.log.warning("graph of %s left out: %s", metric.name, exc)
    marks = {
        m.name: [(x.time, x.value, x.phase == "met") for x in m.measurements if x.value is not None]
        for m in metrics
    }
    if not any(series.values()) and not any(marks.values()):
        return None
    names = [m.name for m in metrics]
    title = messages.analysis_graph_title(app.name, ctx.environment.name, names)
    thresholds = {m.name: t for m in metrics if (t := threshold(m.spec.success)) is not None}
    try:
        png = await asyncio.to_thread(
            render_metrics_png,
            {name: series.get(name, []) for name in names},
            title=title,
            marker_time=deploy,
            thresholds=thresholds,
            measurements=marks,
            units={m.name: m.spec.unit for m in metrics},
        )
    except Exception:  # matplotlib trouble must not fail a deploy's verification
        ctx.log.exception("rendering the analysis graph failed")
        return None
    return Attachment(
        filename=f"analysis-{app.name}-{ctx.environment.name}.png", content=png, title=title
    )


def threshold(condition: str) -> float | None:
    """The number in a simple condition like `result < 0.01`, drawn as a line on the graph."""
    match = _THRESHOLD.fullmatch(condition)
    if not match:
        return None
    try:
        return float(match.group(2))
    except ValueError:
        return None


def _utc(moment: datetime) -> datetime:
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)
