"""The ack table: signed, unique `/ops status shop-api` slash commands over keep-alive
connections at concurrency 1, 10 and 50, answered by a bare Bolt app acking inline, a bare Bolt
app in its default mode, and `opsbot serve` on the demo world; opsbot's ratios to inline Bolt.

Each row gets its own fresh requests (a trigger id is never sent twice) and a short warm-up that
is not counted. The three servers run side by side and take turns, in five rounds; each figure
of a row is the median of its rounds' (bench/load.py, `Rounds`). opsbot runs every command it
acks; before the next row the bench waits until the Slack stand-in has the final message of
each, so one row's work does not load the next."""

from __future__ import annotations

import asyncio
import time

import httpx

from bench.cli import Context
from bench.load import LoadResult, Request, Rounds, run_load
from bench.procs import Proc, World, start_baseline, start_serve
from bench.report import Section, fmt, goal
from tests.support.signing import SIGNING_SECRET, signed_headers, slash_command_body
from tests.support.slack_standin import FINAL

CONCURRENCY = (1, 10, 50)
ROUNDS = 5
COMMAND = "status shop-api"
KINDS = [("bolt-inline", "bare Bolt AsyncApp, ack inline (process_before_response=True)"),
         ("bolt-default", "bare Bolt AsyncApp, default mode"),
         ("opsbot", "opsbot serve (demo config, simulated cluster)")]


def commands(n: int) -> list[Request]:
    out = []
    for _ in range(n):
        body = slash_command_body("U0ALICE", COMMAND)
        out.append(Request("/slack/events", body.encode(), signed_headers(body, SIGNING_SECRET)))
    return out


def finals(world: World, since: int, seen: set[str]) -> int:
    """Adds to `seen` the messages (by ts) that the stand-in got a final `status shop-api`
    headline for from call `since` on (a message updated again counts once); the next call."""
    nxt, calls = world.calls(since)
    for i, c in enumerate(calls):
        if f"`{COMMAND}`" in (c["headline"] or "") and FINAL.search(c["headline"]):
            seen.add(c["ts"] or f"post-{since + i}")
    return nxt


def drain(world: World, since: int, expected: int, timeout: float) -> tuple[int, float]:
    """Wait until `expected` commands finished (their final message posted); (finished, s)."""
    started, seen, cursor = time.monotonic(), set[str](), since
    while len(seen) < expected and time.monotonic() - started < timeout:
        time.sleep(0.2)
        cursor = finals(world, cursor, seen)
    return len(seen), time.monotonic() - started


def settle(port: int, timeout: float = 30.0) -> float:
    """Wait until opsbot on `port` has no work left (its `/metrics`: no command running or
    waiting, no outbox row undelivered): its final messages arrive before their work ends (the
    delivery's own record, the audit, the collector's sweep of the row's garbage), and a row
    that started meanwhile would share the two cores with it. Seconds waited."""
    started = time.monotonic()
    idle = ("opsbot_triggers_running 0.0", "opsbot_triggers_waiting 0.0", "opsbot_outbox_depth 0.0")
    with httpx.Client(timeout=5) as http:
        while time.monotonic() - started < timeout:
            text = http.get(f"http://127.0.0.1:{port}/metrics").text
            if all(line in text.splitlines() for line in idle):
                break
            time.sleep(0.1)
    time.sleep(0.5)  # what the last delivery set off (its record, the collector) ends too
    return time.monotonic() - started


def run(ctx: Context) -> Section:
    n = ctx.count(600, 30)
    warmup = ctx.count(30, 5)
    rounds = ctx.count(ROUNDS, 1)
    section = Section("ack")
    runs: dict[str, dict[int, list[LoadResult]]] = {kind: {c: [] for c in CONCURRENCY}
                                                    for kind, _ in KINDS}
    drained: dict[int, dict[str, float]] = {}
    procs: dict[str, Proc] = {}
    try:
        for kind, _label in KINDS:
            if kind == "opsbot":
                procs[kind] = start_serve(ctx.world, ctx.workdir, "serve-ack")
                procs[kind].wait_ready("/readyz")
            else:
                procs[kind] = start_baseline(kind, ctx.workdir)
            cursor = ctx.world.calls(0)[0] if kind == "opsbot" else 0
            asyncio.run(run_load("127.0.0.1", procs[kind].port, commands(warmup), 1))
            if kind == "opsbot":
                drain(ctx.world, cursor, warmup, 60)
                settle(procs[kind].port)
        # Rounds, each server in turn at each concurrency: a slow minute on a shared machine
        # lands on every server's round alike, and each figure is the median of the rounds'.
        for _round in range(rounds):
            for conc in CONCURRENCY:
                for kind, _label in KINDS:
                    cursor = ctx.world.calls(0)[0] if kind == "opsbot" else 0
                    result = asyncio.run(
                        run_load("127.0.0.1", procs[kind].port, commands(n), conc))
                    runs[kind][conc].append(result)
                    if kind == "opsbot":
                        # Its work done before the next row, so it loads no other row.
                        done, seconds = drain(ctx.world, cursor, result.ok,
                                              timeout=max(60.0, n * 0.5))
                        drained[conc] = {"finished": done, "seconds": round(seconds, 1),
                                         "settled": round(settle(procs[kind].port), 1)}
    finally:
        for proc in procs.values():
            proc.stop()
    results = {kind: {conc: Rounds(runs[kind][conc]) for conc in CONCURRENCY}
               for kind, _ in KINDS}
    table = section.table(
        f"Ack latency: {n} signed unique `/ops {COMMAND}` per row, keep-alive raw HTTP client; "
        f"each figure the median of {rounds} interleaved round(s)",
        "server", "conc", "p50 ms", "p99 ms", "acks/s", "non-2xx (all rounds)", "p99 vs inline",
        "acks/s vs inline")
    for kind, label in KINDS:
        for conc in CONCURRENCY:
            r = results[kind][conc]
            base = results["bolt-inline"][conc]
            s = r.summary()
            p99_ratio = r.p99_ms() / base.p99_ms() if base.p99_ms() else None
            rate_ratio = r.per_second() / base.per_second() if base.per_second() else None
            p99_cell = rate_cell = ""
            if kind != "bolt-inline":
                p99_cell = f"{fmt(p99_ratio, 2)}x"
                rate_cell = f"{fmt(rate_ratio, 2)}x"
            if kind == "opsbot":
                p99_cell += " " + section.check(
                    f"ack_p99_conc{conc}", goal("p99 <= 1.25x inline Bolt", p99_ratio, 1.25))
                rate_cell += " " + section.check(
                    f"ack_rate_conc{conc}",
                    goal("acks/s >= 0.8x inline Bolt", rate_ratio, 0.8, at_least=True))
            table.add(label if conc == 1 else "", conc, s["p50_ms"], s["p99_ms"],
                      fmt(r.per_second(), 0), r.failed, p99_cell, rate_cell)
            section.data.setdefault(kind, {})[str(conc)] = dict(
                s, p99_vs_inline=p99_ratio, per_second_vs_inline=rate_ratio,
                rounds=[run.summary() for run in runs[kind][conc]])
    section.data["opsbot_work_after_ack"] = {str(k): v for k, v in drained.items()}
    for conc, info in drained.items():
        section.notes.append(
            f"opsbot at concurrency {conc}: {info['finished']:.0f} of the acked commands "
            f"finished (final message at the Slack stand-in) {info['seconds']}s after the last "
            f"ack; idle {info['settled']}s later (no command running, no message waiting)")
    return section
