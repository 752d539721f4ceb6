"""An alert storm: notifications over a set of fingerprints (crash-looping pods of the demo
apps), each fingerprint firing and resolving again and again, every state sent twice (as
Alertmanager repeats), posted over 10 connections as fast as `opsbot serve` accepts them.

Then, from the store: every distinct alert state recorded once (none lost), the automatic
runs decided against what the guardrails (cooldown, runs per window, concurrency) allow, and
the serve process's memory before, after and at its peak (VmRSS / VmHWM in /proc)."""

from __future__ import annotations

import asyncio
import itertools
import math
import threading
import time
from collections import defaultdict
from datetime import UTC, datetime, timedelta
from typing import Any

from bench.alerts import post, rows, scalar
from bench.cli import Context
from bench.load import Request, run_load
from bench.procs import proc_status, start_serve
from bench.report import Section, fmt
from tests.support.alert_payloads import alert, fingerprint, notification

CONCURRENCY = 10
APPS = ("shop-worker", "shop-api", "shop-web")
RAN = ("run", "shadow")
BASE = datetime(2026, 11, 26, 10, 0, tzinfo=UTC)


def iso(value: datetime) -> str:
    return value.isoformat().replace("+00:00", "Z")


def storm(fingerprints: int, notifications: int) -> tuple[list[Request], set[str]]:
    """The notifications in the order sent, and the distinct alert states among them (as the
    store keys them: fingerprint|status|startsAt)."""
    labels = [{"alertname": "KubePodCrashLooping", "namespace": "shop-staging",
               "pod": f"{APPS[f % len(APPS)]}-5c9d7b-s{f:04d}", "container": "main",
               "severity": "warning"} for f in range(fingerprints)]
    out: list[Request] = []
    states: set[str] = set()
    cycle = 0
    while len(out) < notifications:
        starts = BASE + timedelta(minutes=cycle)
        for status in ("firing", "firing", "resolved", "resolved"):
            for lab in labels:
                if len(out) >= notifications:
                    break
                ends = iso(starts + timedelta(seconds=30)) if status == "resolved" else None
                item = alert(lab, status=status, starts_at=iso(starts), ends_at=ends)
                out.append(post(notification([item], group_labels={
                    k: lab[k] for k in ("alertname", "namespace", "pod")})))
                states.add(f"{fingerprint(lab)}|{status}|{starts.isoformat()}")
        cycle += 1
    return out, states


def guardrail_limits() -> dict[str, dict[str, Any]]:
    """Each built-in runbook's alert-trigger guardrails, by runbook name."""
    from bot.numbers import parse_duration
    from bot.registry import Registry
    from bot.runbooks.loader import load_catalog

    limits = {}
    for loaded in load_catalog([], Registry.builtin()):
        runbook = getattr(loaded, "runbook", loaded)
        for trigger in runbook.alerts:
            limits[runbook.name] = {"cooldown": parse_duration(trigger.cooldown),
                                    "max_runs": trigger.max_runs,
                                    "window": parse_duration(trigger.window)}
    return limits


def check_guardrails(runs: list[Any]) -> dict[str, Any]:
    """Automatic runs against what each runbook's guardrails allow per target over the storm."""
    limits = guardrail_limits()
    runs = [(*r[:4], r[4] if isinstance(r[4], datetime) else datetime.fromisoformat(str(r[4])))
            for r in runs]
    decided: defaultdict[str, int] = defaultdict(int)
    by_target: defaultdict[tuple[str, str, str], list[datetime]] = defaultdict(list)
    for runbook, environment, target, decision, at in runs:
        decided[decision] += 1
        if decision in RAN:
            by_target[(runbook, environment or "", target or "")].append(at)
    times = [r[4] for r in runs]
    span = (max(times) - min(times)).total_seconds() if times else 0.0
    allowed, broken = 0, []
    pairs = {(r[0], r[1] or "", r[2] or "") for r in runs if r[3] not in ("no_target",)}
    for key in pairs:
        limit = limits.get(key[0])
        if limit is None:
            continue
        cooldown = limit["cooldown"].total_seconds()
        allowed += min(limit["max_runs"], math.floor(span / cooldown) + 1 if cooldown else
                       limit["max_runs"])
        ran = sorted(by_target.get(key, []))
        for a, b in itertools.pairwise(ran):
            if (b - a).total_seconds() < cooldown:
                broken.append(f"{key}: two runs {b - a} apart (cooldown {limit['cooldown']})")
        for i, start in enumerate(ran):
            inside = [t for t in ran[i:] if t - start < limit["window"]]
            if len(inside) > limit["max_runs"]:
                broken.append(f"{key}: {len(inside)} runs in {limit['window']}")
    return {"decisions": dict(decided), "automatic_runs": sum(decided[d] for d in RAN),
            "allowed_at_most": allowed, "targets": len(pairs), "violations": broken}


def run(ctx: Context) -> Section:
    fingerprints = ctx.count(500, 50)
    n = ctx.count(50_000, 1_000)
    wait = ctx.count(1800, 300)
    section = Section("storm")
    requests, states = storm(fingerprints, n)
    proc = start_serve(ctx.world, ctx.workdir, "serve-storm")
    peak = [0.0]
    stop = threading.Event()

    def sample() -> None:
        while not stop.wait(0.2):
            peak[0] = max(peak[0], proc_status(proc.pid, "VmRSS") or 0.0)

    try:
        proc.wait_ready("/readyz")
        time.sleep(2)
        idle = proc_status(proc.pid, "VmRSS")
        sampler = threading.Thread(target=sample, daemon=True)
        sampler.start()
        posted = asyncio.run(run_load("127.0.0.1", proc.port, requests, CONCURRENCY))
        after_posting = proc_status(proc.pid, "VmRSS")
        db = proc.info["database_url"]
        in_store = int(scalar(db, "SELECT count(*) FROM alert_notifications"))
        began, backlog = time.monotonic(), None
        while time.monotonic() - began < wait:
            backlog = int(scalar(db, "SELECT count(*) FROM alert_notifications "
                                     "WHERE processed_at IS NULL"))
            active = int(scalar(db, "SELECT count(*) FROM alert_runs WHERE status IN "
                                    "('pending', 'running')"))
            if backlog == 0 and active == 0:
                break
            time.sleep(1)
        processing = time.monotonic() - began
        after = proc_status(proc.pid, "VmRSS")
        hwm = proc_status(proc.pid, "VmHWM")
        recorded = {r[0] for r in rows(db, "SELECT key FROM alert_states")}
        runs = rows(db, "SELECT runbook, environment, target, decision, at FROM alert_runs")
        executions = int(scalar(db, "SELECT count(*) FROM executions WHERE source = 'alert'"))
    finally:
        stop.set()
        proc.stop()
    lost = states - recorded
    guard = check_guardrails(runs)
    s = posted.summary()
    section.data.update({
        "fingerprints": fingerprints, "notifications": n, "distinct_states": len(states),
        "post": s, "notifications_in_store": in_store, "processing_seconds": round(processing, 1),
        "backlog_left": backlog, "states_recorded": len(recorded & states),
        "states_lost": len(lost), "lost_examples": sorted(lost)[:5],
        "automatic_executions": executions, "guardrails": guard,
        "rss_mb": {"idle": idle, "after_posting": after_posting, "after_processing": after,
                   "peak_sampled": peak[0], "vm_hwm": hwm},
    })
    table = section.table(
        f"Alert storm: {n:,} notifications over {fingerprints} fingerprints, firing and "
        f"resolved, each state sent twice, {CONCURRENCY} connections", "figure", "value")
    table.add("accepted (2xx) / posted", f"{posted.ok:,} / {n:,} in {s['seconds']:.1f}s "
              f"({s['per_second']:,.0f}/s, p99 {s['p99_ms']} ms)")
    table.add("notifications in the store", f"{in_store:,}")
    done = "all processed" if backlog == 0 else f"{backlog:,} still unprocessed (stopped waiting)"
    table.add("processing after the last post", f"{processing:.1f}s, {done}")
    table.add("distinct alert states recorded / sent",
              f"{len(recorded & states):,} / {len(states):,}; lost {len(lost):,}"
              + ("" if backlog == 0 else " (unprocessed notifications count as lost)"))
    table.add("automatic runs decided (run + shadow)",
              f"{guard['automatic_runs']} (guardrails allow at most {guard['allowed_at_most']} "
              f"for {guard['targets']} runbook/target pairs); violations: "
              f"{len(guard['violations'])}")
    table.add("decisions", ", ".join(f"{k} {v:,}" for k, v in sorted(guard["decisions"].items())))
    table.add("executions started by alerts", executions)
    table.add("RSS idle -> after posting -> after processing",
              f"{fmt(idle)} -> {fmt(after_posting)} -> {fmt(after)} MB (peak {fmt(hwm)} MB)")
    if idle is not None and after is not None:
        section.data["rss_growth_mb"] = round(after - idle, 1)
    for problem in guard["violations"][:5]:
        section.notes.append(f"guardrail violated: {problem}")
    return section
