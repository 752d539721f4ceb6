"""End to end: `/ops deploy shop-api <tag>` in staging, from the signed slash command to the
final message at the Slack stand-in, against the simulated cluster (without PROMETHEUS_URL the
deploy is not verified). The time is split into the waits (the steps that wait for the cluster:
`deploy.wait`, and `analysis.verify` when it runs, by their timings in the store) and opsbot's
own share (everything else: ack, planning, pre-checks, the change, reporting)."""

from __future__ import annotations

import statistics
import time
from datetime import datetime
from typing import Any

import httpx

from bench.alerts import rows
from bench.cli import Context
from bench.procs import start_serve
from bench.report import Section
from tests.support.signing import SIGNING_SECRET, signed_headers, slash_command_body
from tests.support.slack_standin import FINAL

WAITS = ("deploy.wait", "analysis.verify")


def _time(value: Any) -> datetime:
    return value if isinstance(value, datetime) else datetime.fromisoformat(str(value))


def deploy(ctx: Context, http: httpx.Client, url: str, db: str, tag: str) -> dict[str, Any]:
    command = f"deploy shop-api {tag}"
    cursor = ctx.world.calls(0)[0]
    body = slash_command_body("U0ALICE", command)
    headers = signed_headers(body, SIGNING_SECRET)
    sent = time.monotonic()
    answer = http.post(f"{url}/slack/events", content=body, headers=headers)
    acked = time.monotonic()
    final: dict[str, Any] | None = None
    while final is None and time.monotonic() - sent < 120:
        cursor, calls = ctx.world.calls(cursor)
        for call in calls:
            head = call["headline"] or ""
            if f"`{command}`" in head and FINAL.search(head):
                final = call
                break
        if final is None:
            time.sleep(0.02)
    if final is None:
        raise TimeoutError(f"no final message for {command} within 120s")
    total = final["at"] - sent
    steps = rows(db, "SELECT s.name, s.handler, s.status, s.started_at, s.finished_at "
                     "FROM execution_steps s JOIN executions e ON e.id = s.execution_id "
                     f"WHERE e.command LIKE '{command}%' ORDER BY s.step_index")
    timings = []
    waits = 0.0
    for name, handler, status, started, finished in steps:
        seconds = (_time(finished) - _time(started)).total_seconds() if finished else 0.0
        timings.append({"step": name, "handler": handler, "status": status,
                        "seconds": round(seconds, 3)})
        if handler in WAITS:
            waits += seconds
    return {"command": command, "status_code": answer.status_code,
            "ack_ms": round((acked - sent) * 1000, 1), "total_s": round(total, 3),
            "waits_s": round(waits, 3), "opsbot_s": round(total - waits, 3),
            "final": final["headline"], "steps": timings}


def run(ctx: Context) -> Section:
    runs = ctx.count(3, 1)
    section = Section("e2e")
    proc = start_serve(ctx.world, ctx.workdir, "serve-e2e")
    results = []
    try:
        proc.wait_ready("/readyz")
        with httpx.Client(timeout=60) as http:
            for i in range(runs):
                results.append(deploy(ctx, http, proc.url, proc.info["database_url"],
                                      f"1.5.{i}"))
    finally:
        proc.stop()
    table = section.table("End to end: a deploy in staging on the simulated cluster, slash "
                          "command to final message", "command", "ack ms", "total s",
                          "waits s", "opsbot s", "opsbot share", "final state")
    for r in results:
        share = r["opsbot_s"] / r["total_s"] if r["total_s"] else 0.0
        table.add(r["command"], r["ack_ms"], f"{r['total_s']:.2f}", f"{r['waits_s']:.2f}",
                  f"{r['opsbot_s']:.2f}", f"{share:.0%}", final_state(r["final"]))
    steps = section.table("Step timings of the last deploy (from the store)", "step", "handler",
                          "status", "s")
    for step in results[-1]["steps"]:
        steps.add(step["step"], step["handler"], step["status"], f"{step['seconds']:.3f}")
    section.data.update({"deploys": results,
                         "median_total_s": statistics.median(r["total_s"] for r in results),
                         "median_opsbot_s": statistics.median(r["opsbot_s"] for r in results)})
    return section


def final_state(headline: str) -> str:
    """What a final headline says of the run (`✅ `deploy …` in *staging*: done, not checked:
    Verify` gives `done, not checked: Verify`), at most 60 characters."""
    return headline.partition("*: ")[2][:60] or headline[:60]
