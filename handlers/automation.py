"""`automation pause|resume|status`: people stop and restart what alerts do on their own.

Pausing is the safe direction, so `automation pause` without `--env` pauses every environment
(the reply says so); `--env` narrows it. Resuming also closes the circuit breakers of the
scope, which is how a human hands a target back to automation after taking over.
"""

from __future__ import annotations

from datetime import timedelta

from pydantic import Field

from bot.markup import code
from bot.numbers import parse_duration
from bot.registry import HandlerContext, Params, Result, handler

__all__ = ["pause", "resume", "status"]

# As the automation-pause runbook bounds --for; this holds for other runbooks calling it.
PAUSE_SHORTEST, PAUSE_LONGEST = timedelta(minutes=1), timedelta(days=30)


class ScopeParams(Params):
    all_environments: bool = Field(
        default=False, description="Every environment, not only the one the run targets."
    )


class PauseParams(ScopeParams):
    duration: str | None = Field(default=None, description="How long; none: until resumed.")


def _scope(ctx: HandlerContext, params: ScopeParams) -> tuple[str, str]:
    if params.all_environments:
        return "*", "every environment"
    return ctx.environment.name, ctx.environment.name


@handler("automation.pause", params=PauseParams)
async def pause(*, ctx: HandlerContext, params: PauseParams, **_: object) -> Result:
    """Stop automatic runs (alerts are still recorded and posted)."""
    scope, shown = _scope(ctx, params)
    span = None
    if params.duration:
        span = parse_duration(params.duration, shortest=PAUSE_SHORTEST, longest=PAUSE_LONGEST,
                              what="a pause")
    if ctx.dry_run:
        lasting = f"for {params.duration}" if span else "until someone resumes it"
        return Result(summary=f"would pause automation in {shown} {lasting}")
    who = ctx.settings.handle(ctx.actor)
    until = await ctx.records.pause_automation(scope=scope, duration=span, actor=who,
                                               reason=None)
    lasting = f"until {until:%Y-%m-%d %H:%M} UTC" if until else "until someone resumes it"
    ctx.log.warning("automation paused in %s by %s", shown, who)
    return Result(
        summary=f"Automation paused in {shown} {lasting}. Alerts are still recorded and "
        "posted; nothing runs on its own.",
        fields=(("Scope", shown), ("Until", lasting)),
        data={"scope": scope, "until": until.isoformat() if until else None},
    )


@handler("automation.resume", params=ScopeParams)
async def resume(*, ctx: HandlerContext, params: ScopeParams, **_: object) -> Result:
    """Lift pauses and close open circuit breakers."""
    scope, shown = _scope(ctx, params)
    if ctx.dry_run:
        return Result(summary=f"would resume automation in {shown} and close its open "
                      "circuit breakers")
    done = await ctx.records.resume_automation(scope=scope)
    closed = [f"{b['target']} in {b['environment']}" for b in done["closed"]]
    lifted = ["every environment" if s == "*" else s for s in done["lifted"]]
    if not lifted and not closed:
        return Result(summary=f"Automation was not paused in {shown} and no circuit breaker "
                      "was open.", data=done)
    parts = []
    if lifted:
        parts.append(f"pause lifted for {', '.join(lifted)}")
    if closed:
        parts.append(f"circuit breakers closed for {', '.join(closed)}")
    still = ""
    if scope != "*" and "*" not in done["lifted"]:
        status_now = await ctx.records.automation_status()
        if any(p["scope"] == "*" for p in status_now["pauses"]):
            still = (f" Automation is still paused everywhere: {code('automation resume')} "
                     "without --env.")
    return Result(summary="Automation resumed: " + "; ".join(parts) + "." + still, data=done)


@handler("automation.status")
async def status(*, ctx: HandlerContext, **_: object) -> Result:
    """Pauses in force, open circuit breakers, and the latest automation decisions."""
    now = await ctx.records.automation_status()
    fields = []
    for item in now["pauses"]:
        where = "every environment" if item["scope"] == "*" else item["scope"]
        until = f"until {item['until']:%Y-%m-%d %H:%M} UTC" if item["until"] else "until resumed"
        fields.append((f"Paused: {where}", f"{until} (by {item['actor']})"))
    for item in now["breakers"]:
        fields.append((f"Breaker open: {item['target']} in {item['environment']}",
                       f"{item['failures']} failed remediations in a row"))
    summary = "Automation is on everywhere; no circuit breaker is open." if not fields \
        else f"{len(now['pauses'])} pause(s), {len(now['breakers'])} open circuit breaker(s)"
    lines = [
        f"{r['at']:%Y-%m-%d %H:%M} UTC  {r['alertname'][:40]} -> {r['runbook']}"
        f"{' on ' + r['target'] if r['target'] else ''}"
        f"{' in ' + r['environment'] if r['environment'] else ''}: {r['decision']}"
        f"{' (' + r['status'] + ')' if r['decision'] in ('run', 'shadow') else ''}"
        for r in now["recent"]
    ]
    return Result(summary=summary, fields=tuple(fields),
                  output="Latest automation decisions:\n" + "\n".join(lines) if lines else None,
                  data={})
