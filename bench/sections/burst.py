"""A burst of commands longer than the acks' pacing: one row of signed, unique
`/ops status shop-api` at concurrency 1, long enough that the work the first acks started runs
while the last ones still arrive (`MAX_DEFER_S`, 2 s, after the first). The ack latency by tenths
of the row shows what running work costs the acks; then the bench waits for every command's
final message and reads the database: every acked command ran once (an execution each, no
trigger left unstarted), and no ack went out before its record (the log would say so)."""

from __future__ import annotations

import asyncio
from typing import Any

from bench.alerts import rows, scalar
from bench.cli import Context
from bench.load import percentile, run_load
from bench.procs import start_serve
from bench.report import Section, fmt, goal
from bench.sections.ack import commands, drain

TENTHS = 10


def run(ctx: Context) -> Section:
    n = ctx.count(5000, 300)
    section = Section("burst")
    proc = start_serve(ctx.world, ctx.workdir, "serve-burst")
    try:
        proc.wait_ready("/readyz")
        cursor = ctx.world.calls(0)[0]
        result = asyncio.run(run_load("127.0.0.1", proc.port, commands(n), 1))
        finished, seconds = drain(ctx.world, cursor, result.ok, timeout=max(120.0, n * 0.15))
        url = proc.info["database_url"]
        unstarted = scalar(url, "SELECT count(*) FROM delivery_claims "
                                "WHERE trigger IS NOT NULL AND started_at IS NULL")
        executions = dict(rows(url, "SELECT status, count(*) FROM executions GROUP BY status"))
    finally:
        proc.stop()
    log = proc.log.read_text(errors="replace")
    early = log.count("acked before it was recorded")
    failed_sends = log.count("TimeoutError")
    ran = sum(executions.values())
    lost = result.ok - ran
    table = section.table(
        f"A burst: {n} signed unique `/ops status shop-api` at concurrency 1, "
        f"{fmt(result.per_second(), 0)} acks/s over {fmt(result.seconds)} s; ack latency by "
        "tenth of the row (the work starts 2 s in, or once the acks pause)",
        "tenth", "p50 ms", "p99 ms", "max ms")
    size = max(1, len(result.latencies) // TENTHS)
    by_tenth: list[dict[str, Any]] = []
    for i in range(TENTHS):
        part = sorted(result.latencies[i * size:(i + 1) * size])
        if not part:
            continue
        figures = {"p50_ms": percentile(part, 50) * 1000, "p99_ms": percentile(part, 99) * 1000,
                   "max_ms": part[-1] * 1000}
        by_tenth.append(figures)
        table.add(i + 1, fmt(figures["p50_ms"], 2), fmt(figures["p99_ms"], 2),
                  fmt(figures["max_ms"], 1))
    outcome = section.table("Every acked command, after the drain", "figure", "value", "goal")
    outcome.add("acked (2xx)", result.ok, "")
    outcome.add("final message at the Slack stand-in", f"{finished} ({fmt(seconds)} s after "
                "the last ack)", "")
    outcome.add("executions recorded", ran, "")
    outcome.add("acked and not run (or not yet)", lost,
                section.check("burst_lost", goal("none", lost, 0)))
    outcome.add("triggers never started", unstarted,
                section.check("burst_unstarted", goal("none", unstarted, 0)))
    outcome.add("acks sent before their record", early,
                section.check("burst_early_acks", goal("none", early, 0)))
    outcome.add("store calls timed out (log)", failed_sends, "")
    section.data.update({"commands": n, "ok": result.ok, "acks_per_second": result.per_second(),
                         "by_tenth": by_tenth, "finished": finished, "drain_seconds": seconds,
                         "executions": executions, "unstarted": unstarted,
                         "acked_before_recorded": early, "timeouts_logged": failed_sends})
    return section
