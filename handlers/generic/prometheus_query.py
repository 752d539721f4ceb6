"""`prometheus.query`: one PromQL check in a runbook: an instant query whose single value must
meet a `success` expression over `result`, judged as `analysis.verify` judges its metrics. No
Prometheus configured is "not checked", never passed. It only reads, so a dry run queries too
(the plan then shows what later steps' `when` would decide) but never fails on the answer: a
check meant for after a change can only read the world before it."""

from __future__ import annotations

import math

from pydantic import Field, field_validator

from bot import messages
from bot.errors import PermanentError
from bot.prometheus import PrometheusClient
from bot.registry import HandlerContext, Params, Result, handler
from bot.runbooks.templating import evaluate
from handlers.generic.common import expression

__all__ = ["PrometheusQueryParams", "prometheus_query"]


class PrometheusQueryParams(Params):
    query: str = Field(min_length=1)  # PromQL returning one value (aggregate it)
    success: str  # an expression over `result`, e.g. `result < 0.05`
    # false: an unmet condition does not fail the step; later steps read `data.met`.
    fail: bool = True
    # What no data means: a failure (default), or the condition is checked against 0.
    no_data: float | None = None

    @field_validator("success")
    @classmethod
    def _success(cls, value: str) -> str:
        return expression(value, what="success")


@handler("prometheus.query", params=PrometheusQueryParams)
async def prometheus_query(*, ctx: HandlerContext, params: PrometheusQueryParams,
                           **_: object) -> Result:
    """Run an instant PromQL query and check its value against a success expression."""
    fields = ((messages.promql_query_field(), params.query),
              (messages.promql_success_field(), params.success))
    url = ctx.settings.prometheus_url
    if not url:
        return Result(summary=messages.not_checked(messages.analysis_no_prometheus()),
                      fields=fields, data={"met": None, "value": None},
                      not_checked=(messages.promql_check(messages.analysis_no_prometheus()),))
    # Read-only: a dry run measures too, so its plan shows what later steps (`when`) would do.
    async with PrometheusClient(url) as prometheus:
        value = await prometheus.query(params.query)
    if value is None or math.isnan(value):
        if params.no_data is None:
            if ctx.dry_run:  # a check after a change reads the world before it: never fatal
                return Result(summary=messages.promql_no_data_yet(), fields=fields,
                              data={"met": None, "value": None})
            raise PermanentError(messages.promql_no_data(params.query))
        value = params.no_data
    met = bool(evaluate(params.success, {"result": value}))
    ctx.log.info("prometheus.query: %s = %s (%s)", params.query, value,
                 "met" if met else "not met")
    summary = messages.promql_result(f"{value:g}", params.success, met)
    if ctx.dry_run:
        return Result(summary=messages.promql_now(summary), fields=fields,
                      data={"met": met, "value": value})
    return Result(summary=summary, fields=fields, ok=met or not params.fail,
                  data={"met": met, "value": value})
