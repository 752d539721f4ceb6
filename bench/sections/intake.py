"""Alertmanager intake: notifications (10 alerts each) accepted and durably recorded per second
by `opsbot serve` on SQLite and on PostgreSQL, against a bare Starlette endpoint that only
parses the JSON; the count in the store is checked against the count accepted."""

from __future__ import annotations

import asyncio
import time

from bench.alerts import intake_notifications, scalar
from bench.cli import Context
from bench.load import LoadResult, Rounds, run_load
from bench.procs import drop_pg_schema, new_pg_schema, start_baseline, start_serve
from bench.report import Section, fmt, goal

CONCURRENCY = 10
PER = 10
ROUNDS = 5


def settle(db: str, timeout: float = 60.0) -> None:
    """Wait until the warm-up's notifications are processed and their messages sent: its
    work (held while requests come, bot/pacing.py) would otherwise run in the measured round
    on some rounds and not others, as the ack section waits for each row's commands."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        left = scalar(db, "SELECT count(*) FROM alert_notifications WHERE processed_at IS NULL")
        unsent = scalar(db, "SELECT count(*) FROM outbox WHERE finished_at IS NULL")
        if not left and not unsent:
            return
        time.sleep(0.2)
    raise RuntimeError(f"the warm-up's notifications were not processed in {timeout:.0f} s")


def run(ctx: Context) -> Section:
    n = ctx.count(2000, 100)
    rounds = ctx.count(ROUNDS, 1)
    section = Section("intake")
    runs: dict[str, list[LoadResult]] = {}
    stored: dict[str, list[int]] = {}
    backends = ["sqlite"] + (["postgresql"] if ctx.postgres else [])
    # Rounds, each endpoint in turn, each a fresh process (and database): a slow minute on a
    # shared machine lands on every endpoint's round alike; each figure is the median of the
    # rounds' (`Rounds`).
    for round_no in range(rounds):
        bare = start_baseline("starlette", ctx.workdir)
        try:
            asyncio.run(run_load("127.0.0.1", bare.port, intake_notifications(20, tag="w"), 1))
            runs.setdefault("bare", []).append(asyncio.run(run_load(
                "127.0.0.1", bare.port, intake_notifications(n), CONCURRENCY)))
        finally:
            bare.stop()
        for backend in backends:
            schema = None
            url = None
            if backend == "postgresql":
                schema, url = new_pg_schema()
            proc = start_serve(ctx.world, ctx.workdir, f"serve-intake-{backend}-{round_no}", url)
            try:
                proc.wait_ready("/readyz")
                asyncio.run(run_load("127.0.0.1", proc.port,
                                     intake_notifications(20, tag=f"w{backend}"), 1))
                db = proc.info["database_url"]
                settle(db)
                runs.setdefault(backend, []).append(asyncio.run(run_load(
                    "127.0.0.1", proc.port, intake_notifications(n, tag=backend),
                    CONCURRENCY)))
                stored.setdefault(backend, []).append(
                    int(scalar(db, "SELECT count(*) FROM alert_notifications")) - 20)
            finally:
                proc.stop()
                if schema is not None:
                    drop_pg_schema(schema)
    results = {key: Rounds(found) for key, found in runs.items()}
    if not ctx.postgres:
        section.notes.append("PostgreSQL rows skipped (--no-postgres)")
    table = section.table(
        f"Alertmanager intake: {n} notifications x {PER} alerts, {CONCURRENCY} connections; "
        f"each figure the median of {rounds} interleaved round(s)",
        "endpoint", "notifications/s", "alerts/s", "p50 ms", "p99 ms", "accepted (fewest)",
        "in store (fewest)", "vs bare")
    base_rate = results["bare"].per_second()
    for key, label in [("bare", "bare Starlette, parse JSON only"),
                       ("sqlite", "opsbot serve, SQLite"),
                       ("postgresql", "opsbot serve, PostgreSQL")]:
        if key not in results:
            continue
        r = results[key]
        s = r.summary()
        ratio = r.per_second() / base_rate if base_rate else None
        cell = "" if key == "bare" else f"{fmt(ratio, 2)}x " + section.check(
            f"intake_{key}", goal(">= 0.5x bare endpoint", ratio, 0.5, at_least=True))
        kept = None if key not in stored else min(stored[key])
        table.add(label, fmt(r.per_second(), 0), fmt(r.per_second() * PER, 0), s["p50_ms"],
                  s["p99_ms"], r.ok, "n/a" if kept is None else kept, cell)
        section.data[key] = dict(s, alerts_per_second=round(r.per_second() * PER, 1),
                                 stored=kept, vs_bare=ratio,
                                 rounds=[run.summary() for run in runs[key]])
        for accepted, in_store in zip(runs[key], stored.get(key, []), strict=False):
            if in_store != accepted.ok:
                section.notes.append(f"{key}: {accepted.ok} accepted but {in_store} in the "
                                     "store")
    return section
