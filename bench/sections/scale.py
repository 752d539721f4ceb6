"""Scale: the audit log at 1,000,000 records (a throwaway SQLite file, bulk-inserted through the
store's own table with a valid hash chain), `history`'s audit query, `audit export --since`,
`audit verify` per 100k records; and alert-to-runbook matching among 1,000 generated runbooks."""

from __future__ import annotations

import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from functools import partial
from pathlib import Path
from types import SimpleNamespace
from typing import Any

from sqlalchemy import insert, update

from bench.cli import Context
from bench.procs import DEMO_CONFIG, ROOT, child_env
from bench.report import Section, goal

APPS = ["shop-api", "shop-web", "shop-worker"] + [f"svc-{i:02d}" for i in range(47)]
OUTCOMES = ["succeeded"] * 12 + ["failed", "refused", "interrupted", "pending_approval",
                                 "approved", "denied", "dry_run", "cancelled"]
HISTORY_OUTCOMES = ("succeeded", "failed", "interrupted")  # handlers/history.py OUTCOMES


def timed(fn: Callable[[], Any], repeat: int) -> tuple[list[float], Any]:
    out, value = [], None
    for _ in range(repeat):
        started = time.perf_counter()
        value = fn()
        out.append(time.perf_counter() - started)
    return out, value


def count_export(store: Any, since: datetime) -> int:
    return sum(1 for _ in store.export_audit(since))


def fill_audit(url: str, n: int, now: datetime) -> float:
    """`n` chained audit records spread over the last year; seconds taken."""
    from bot.store import Store
    from bot.store.audit import canonical_json, compute_hash
    from bot.store.models import GENESIS_HASH, AuditHead, AuditRecord

    started = time.perf_counter()
    store = Store.open(url)
    try:
        span = timedelta(days=365)
        prev = GENESIS_HASH
        batch: list[dict[str, Any]] = []
        with store.engine.begin() as conn:
            for seq in range(1, n + 1):
                app = APPS[seq % len(APPS)]
                env = "prod" if seq % 3 == 0 else "staging"
                outcome = OUTCOMES[seq % len(OUTCOMES)]
                details = {"runbook": "deploy", "made": [{"kind": "Deployment", "name": app,
                                                          "revision": str(seq % 97)}]}
                row = SimpleNamespace(
                    seq=seq, time=(now - span + span * seq / n).astimezone(UTC),
                    actor="U0ALICE", source="slack", command=f"deploy {app} 1.{seq % 50}.0",
                    environment=env, target=app, outcome=outcome,
                    execution_id=f"ex-bench-{seq:08d}", request_id=None,
                )
                row.hash = compute_hash(prev, row, details)  # type: ignore[arg-type]
                batch.append({**vars(row), "details": canonical_json(details), "prev_hash": prev})
                prev = row.hash
                if len(batch) == 20_000:
                    conn.execute(insert(AuditRecord), batch)
                    batch.clear()
            if batch:
                conn.execute(insert(AuditRecord), batch)
            values = {"seq": n, "hash": prev, "updated_at": now}
            changed = conn.execute(update(AuditHead).where(AuditHead.id == 1).values(**values))
            if changed.rowcount == 0:
                conn.execute(insert(AuditHead).values(id=1, **values))
    finally:
        store.close()
    return time.perf_counter() - started


def write_runbooks(directory: Path, n: int) -> None:
    directory.mkdir(parents=True, exist_ok=True)
    for i in range(n):
        (directory / f"bench-rb-{i:04d}.yaml").write_text(f"""\
name: bench-rb-{i:04d}
description: Generated for the bench ({i}).
parameters:
  app:
    type: app
    help: the app
alerts:
  - matchers:
      - alertname="BenchAlert{i:04d}"
      - namespace!=""
    params:
      app: "{{{{ alert.app }}}}"
steps:
  - name: Read workload
    handler: k8s.status
""")


def runbook_matching(ctx: Context, n: int) -> dict[str, Any]:
    from bot.alerts.payload import Notification
    from bot.alerts.routing import route
    from bot.config import load_settings
    from bot.registry import Registry
    from bot.runbooks.loader import load_catalog
    from tests.support.alert_payloads import alert, notification

    directory = ctx.workdir / "runbooks"
    write_runbooks(directory, n)
    settings = load_settings(DEMO_CONFIG, environ={})
    load_s, catalog = timed(lambda: load_catalog([directory], Registry.builtin()), 1)

    def item(name: str) -> Any:
        labels = {"alertname": name, "namespace": "shop-staging", "pod": "shop-api-5c9d-x1"}
        return Notification.model_validate(notification([alert(labels)])).alerts[0]

    out: dict[str, Any] = {"runbooks": len(catalog), "load_seconds": round(load_s[0], 3)}
    for key, name in [("last", f"BenchAlert{n - 1:04d}"), ("none", "NoSuchAlert"),
                      ("builtin", "KubePodCrashLooping")]:
        alert_item = item(name)
        times, routes = timed(partial(route, alert_item, catalog, settings), 50)
        out[key] = {"median_ms": round(statistics.median(times) * 1000, 3),
                    "max_ms": round(max(times) * 1000, 3), "routes": len(routes)}
    return out


def history_command(ctx: Context, url: str, repeat: int) -> tuple[list[float], str]:
    """`history shop-api` as alice, the whole command in this process (dispatcher, runbook,
    the simulated cluster's revisions over HTTP, the audit query); the last outcome."""
    import asyncio

    from bot.config import load_settings
    from bot.console.session import run_command
    from bot.services import Services

    settings = load_settings(DEMO_CONFIG, environ={"KUBECONFIG": ctx.world.kubeconfig,
                                                   "OPSBOT_DATABASE_URL": url})
    services = Services.build(settings)

    async def measure() -> tuple[list[float], str]:
        status = ""
        await run_command(services, "history shop-api", "alice", write=lambda _: None)
        out = []
        for _ in range(repeat):
            started = time.perf_counter()
            outcome = await run_command(services, "history shop-api", "alice",
                                        write=lambda _: None)
            out.append(time.perf_counter() - started)
            status = outcome.status
        return out, status

    try:
        return asyncio.run(measure())
    finally:
        services.close()


def run(ctx: Context) -> Section:
    from bot.store import Store

    n = ctx.count(1_000_000, 20_000)
    runbooks = 1000 if not ctx.quick else 100
    section = Section("scale")
    url = f"sqlite:///{ctx.workdir / 'audit.db'}"
    now = datetime.now(UTC)
    fill_seconds = fill_audit(url, n, now)
    store = Store.open(url)
    try:
        history, records = timed(lambda: store.audit_records(
            environment="staging", target="shop-api", outcomes=HISTORY_OUTCOMES, limit=500), 20)
        exports = {}
        for label, days in [("24h", 1), ("30d", 30)]:
            since = now - timedelta(days=days)
            times, count = timed(partial(count_export, store, since), 3)
            exports[label] = {"records": count, "median_s": round(statistics.median(times), 3)}
        verify_s, problems = timed(store.verify_audit, 1)
    finally:
        store.close()
    command_s, command_status = history_command(ctx, url, 20)
    env = child_env(OPSBOT_CONFIG=str(DEMO_CONFIG), OPSBOT_DATABASE_URL=url)
    since_text = (now - timedelta(days=1)).strftime("%Y-%m-%dT%H:%M:%SZ")
    started = time.perf_counter()
    cli = subprocess.run([sys.executable, "-m", "bot.cli", "audit", "export", "--since",
                          since_text], env=env, cwd=ROOT, capture_output=True, check=False)
    cli_s = time.perf_counter() - started
    cli_lines = cli.stdout.count(b"\n")
    matching = runbook_matching(ctx, runbooks)
    history_ms = statistics.median(history) * 1000
    command_ms = statistics.median(command_s) * 1000
    per_100k = verify_s[0] / n * 100_000
    table = section.table(f"Scale: {n:,} audit records (SQLite, filled in {fill_seconds:.0f}s), "
                          f"{matching['runbooks']:,} runbooks", "figure", "value", "goal")
    table.add(f"history shop-api, whole command ({command_status}), median of 20",
              f"{command_ms:.1f} ms (max {max(command_s) * 1000:.1f})",
              section.check("history", goal("<= 50 ms", command_ms, 50.0)))
    table.add(f"  of which its audit query ({len(records)} rows), median of 20",
              f"{history_ms:.1f} ms (max {max(history) * 1000:.1f})", "")
    for label, info in exports.items():
        table.add(f"audit export --since {label} (store API, {info['records']:,} records)",
                  f"{info['median_s'] * 1000:,.0f} ms", "")
    table.add(f"opsbot audit export --since 24h (whole command, {cli_lines:,} lines, exit "
              f"{cli.returncode})", f"{cli_s:.2f} s", "")
    table.add(f"audit verify ({'intact' if not problems else f'{len(problems)} problems'})",
              f"{verify_s[0]:.1f} s total, {per_100k:.2f} s per 100k records", "")
    table.add(f"load and check {matching['runbooks']:,} runbooks",
              f"{matching['load_seconds']:.2f} s", "")
    for key, what in [("last", "the last generated runbook"), ("none", "no runbook"),
                      ("builtin", "built-in KubePodCrashLooping")]:
        info = matching[key]
        table.add(f"route an alert matching {what} ({info['routes']} routes)",
                  f"{info['median_ms']:.2f} ms (max {info['max_ms']:.2f})", "")
    section.data.update({
        "audit_records": n, "fill_seconds": round(fill_seconds, 1),
        "history_command_ms": {"median": round(command_ms, 2),
                               "max": round(max(command_s) * 1000, 2), "status": command_status},
        "history_query_ms": {"median": round(history_ms, 2),
                             "max": round(max(history) * 1000, 2), "rows": len(records)},
        "export": exports, "cli_export_24h": {"seconds": round(cli_s, 2), "lines": cli_lines,
                                              "exit": cli.returncode},
        "verify": {"seconds": round(verify_s[0], 2), "per_100k_seconds": round(per_100k, 3),
                   "problems": len(problems)},
        "runbook_matching": matching,
    })
    if ctx.quick:
        section.notes.append(f"--quick: {n:,} records, not 1,000,000; {runbooks} runbooks")
    return section
