"""Footprint of `opsbot serve`: start to `/readyz` (on new databases, each made at head, and
again and again on one), resident memory when idle, after its first command (which loads the
Kubernetes client, imported on first use) and after the storm (when the storm ran in
the same bench run), and what each heavy dependency costs to import (`python -X importtime` of
a real `opsbot serve` start, up to ready)."""

from __future__ import annotations

import asyncio
import os
import re
import statistics
import time
from collections import defaultdict
from pathlib import Path

from bench.cli import Context
from bench.load import run_load
from bench.procs import proc_status, start_serve
from bench.report import Section, fmt, goal
from bench.sections.ack import commands, drain

HEAVY = ["kubernetes", "slack_bolt", "slack_sdk", "matplotlib", "numpy", "alembic",
         "sqlalchemy", "apscheduler", "pydantic", "starlette", "uvicorn", "httpx", "aiohttp",
         "prometheus_api_client", "pandas", "prometheus_client", "jinja2", "yaml", "psycopg",
         "dateparser", "simcluster", "websockets"]
_LINE = re.compile(r"^import time:\s+(\d+) \|\s+(\d+) \| ( *)(\S+)\s*$")


def import_costs(log: Path) -> dict[str, object]:
    """Per heavy package: cumulative ms where it is first imported, and modules of it loaded."""
    first: dict[str, float] = {}
    modules: defaultdict[str, int] = defaultdict(int)
    total_us, count = 0, 0
    for line in log.read_text(errors="replace").splitlines():
        found = _LINE.match(line)
        if not found:
            continue
        self_us, cumulative_us, name = int(found[1]), int(found[2]), found[4]
        total_us += self_us
        count += 1
        for package in HEAVY:
            if name == package or name.startswith(package + "."):
                modules[package] += 1
                if name == package and package not in first:
                    first[package] = cumulative_us / 1000
    return {"total_ms": round(total_us / 1000, 1), "modules": count,
            "packages": {p: {"cumulative_ms": round(first.get(p, 0.0), 1),
                             "modules": modules[p]} for p in HEAVY if modules[p]}}


def run(ctx: Context) -> Section:
    section = Section("footprint")
    # What earlier sections wrote (the storm's database: hundreds of megabytes) goes to disk
    # first: the syncs of a start would otherwise queue behind that writeback, a cost of the
    # bench's order rather than of opsbot's start (with a gigabyte dirty, a new database's
    # start took 0.93 s against 0.80 s).
    os.sync()
    starts = ctx.count(3, 1)
    db = f"sqlite:///{ctx.workdir / 'footprint.db'}"
    cold: list[float] = []
    warm: list[float] = []
    idle: list[float] = []
    after_command: float | None = None
    # New databases, one each (as many starts as on the existing one, for a median too).
    for i in range(starts):
        proc = start_serve(ctx.world, ctx.workdir, f"serve-footprint-new-{i}",
                           f"sqlite:///{ctx.workdir / f'footprint-new-{i}.db'}")
        try:
            cold.append(proc.wait_ready("/readyz"))
        finally:
            proc.stop()
    for i in range(starts + 1):
        proc = start_serve(ctx.world, ctx.workdir, f"serve-footprint-{i}", db)
        try:
            seconds = proc.wait_ready("/readyz")
            if i > 0:  # the first start makes the database
                warm.append(seconds)
                time.sleep(3)
                idle.append(proc_status(proc.pid, "VmRSS") or 0.0)
            if i == starts:  # the last start: one command, then its memory
                cursor = ctx.world.calls(0)[0]
                asyncio.run(run_load("127.0.0.1", proc.port, commands(1), 1))
                drain(ctx.world, cursor, 1, 60)
                time.sleep(1)
                after_command = proc_status(proc.pid, "VmRSS")
        finally:
            proc.stop()
    traced = start_serve(ctx.world, ctx.workdir, "serve-importtime", db,
                         python_flags=("-X", "importtime"))
    try:
        traced.wait_ready("/readyz")
    finally:
        traced.stop()
    imports = import_costs(traced.log)
    warm_s = statistics.median(warm)
    cold_s = statistics.median(cold)
    idle_mb = statistics.median(idle)
    storm = ctx.results.get("storm")
    after_storm = storm.data["rss_mb"]["after_processing"] if storm else None
    table = section.table("Footprint of opsbot serve", "figure", "value", "goal")
    table.add(f"start -> /readyz, new database (median of {len(cold)})", f"{cold_s:.2f} s",
              section.check("ready_new_db", goal("<= 1 s", cold_s, 1.0)))
    table.add(f"start -> /readyz, existing database (median of {len(warm)})", f"{warm_s:.2f} s",
              section.check("ready", goal("<= 1 s", warm_s, 1.0)))
    table.add("idle RSS (3 s after ready)", f"{idle_mb:.1f} MB",
              section.check("idle_rss", goal("<= 100 MB", idle_mb, 100.0)))
    table.add("RSS after one command (`status shop-api`)", f"{fmt(after_command)} MB", "")
    table.add("RSS after the storm",
              f"{fmt(after_storm)} MB" if storm else "n/a (run with the storm section)", "")
    table.add("imports up to ready", f"{imports['total_ms']:,.0f} ms, {imports['modules']:,} "
              "modules", "")
    costs = section.table("Import cost per dependency (cumulative where first imported; "
                          "includes what it pulls in first)", "package", "ms", "modules")
    packages = imports["packages"]
    assert isinstance(packages, dict)
    for name, cost in sorted(packages.items(), key=lambda kv: -kv[1]["cumulative_ms"]):
        costs.add(name, f"{cost['cumulative_ms']:,.1f}", cost["modules"])
    section.data.update({"ready_seconds_new_db": cold, "ready_seconds_new_db_median": cold_s,
                         "ready_seconds": warm,
                         "ready_seconds_median": warm_s, "idle_rss_mb": idle,
                         "idle_rss_mb_median": idle_mb, "rss_after_command_mb": after_command,
                         "rss_after_storm_mb": after_storm,
                         "imports": imports})
    return section
