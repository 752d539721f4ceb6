"""The bench harness works: one quick section runs end to end (its own `opsbot serve`, the
world process, -X importtime) and writes its figures as JSON. Speed is never asserted here;
the bench reports it (docs/performance.md)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from bench.load import LoadResult, Rounds
from bench.sections.e2e import final_state

ROOT = Path(__file__).resolve().parents[2]


def _quick(section: str, tmp_path: Path, timeout: float,
           ) -> tuple[subprocess.CompletedProcess[str], dict[str, Any]]:
    """`scripts/bench <section> --quick --no-postgres`, as a user runs it (no SLACK_* or
    OPSBOT_* of the test's): its output, and the JSON it wrote."""
    out = tmp_path / "bench.json"
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SLACK_", "OPSBOT_"))}
    env["PYTHONPATH"] = str(ROOT)
    done = subprocess.run(
        [sys.executable, "-m", "bench", section, "--quick", "--no-postgres", "--out", str(out)],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=timeout, check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    return done, json.loads(out.read_text())


@pytest.mark.slow
def test_quick_footprint_section_runs_and_writes_json(tmp_path: Path) -> None:
    done, document = _quick("footprint", tmp_path, 240)
    assert "Footprint of opsbot serve" in done.stdout
    assert document["quick"] is True
    figures = document["sections"]["footprint"]["figures"]
    assert figures["ready_seconds_median"] > 0 and figures["ready_seconds_new_db_median"] > 0
    assert figures["idle_rss_mb_median"] > 0
    # A real serve start was traced: the heavy dependencies it imports are named.
    assert "sqlalchemy" in figures["imports"]["packages"]
    goals = document["sections"]["footprint"]["goals"]
    assert set(goals) == {"ready_new_db", "ready", "idle_rss"}
    assert all(isinstance(goal["met"], bool) for goal in goals.values())


@pytest.mark.slow
def test_quick_burst_section_finds_every_acked_command_run_once(tmp_path: Path) -> None:
    _, document = _quick("burst", tmp_path, 300)
    section = document["sections"]["burst"]
    figures = section["figures"]
    assert figures["ok"] == figures["commands"] == 300
    assert sum(figures["executions"].values()) == 300 and figures["unstarted"] == 0
    assert len(figures["by_tenth"]) == 10
    assert {key: goal["met"] for key, goal in section["goals"].items()} == {
        "burst_lost": True, "burst_unstarted": True, "burst_early_acks": True}


def test_an_unknown_section_is_a_usage_error(tmp_path: Path) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "bench", "nonsense", "--out", str(tmp_path / "x.json")],
        cwd=ROOT, env=dict(os.environ, PYTHONPATH=str(ROOT)), capture_output=True, text=True,
        timeout=60, check=False,
    )
    assert done.returncode == 2
    assert "unknown section nonsense" in done.stderr
    assert not (tmp_path / "x.json").exists()


def test_a_repeated_row_reports_the_median_of_each_figure() -> None:
    def round_at(per_second: int, slowest_ms: float, failed: int = 0) -> LoadResult:
        # One second of answers at 1 ms, the slowest 2% at `slowest_ms`: p99 is that.
        result = LoadResult(seconds=1.0)
        slow = per_second // 50
        result.latencies = [0.001] * (per_second - slow) + [slowest_ms / 1000] * slow
        result.statuses[200] = per_second - failed
        result.statuses[500] = failed
        return result

    # The fastest round has the worst tail: the row's p99 is not the median round's.
    rounds = Rounds([round_at(900, 9.0), round_at(300, 3.0, failed=2), round_at(600, 2.0)])
    assert rounds.per_second() == 600
    assert rounds.p99_ms() == 3.0
    assert rounds.p50_ms() == 1.0
    assert rounds.ok == 298 and rounds.failed == 2
    summary = rounds.summary()
    assert summary["rounds"] == 3 and summary["max_ms"] == 9.0
    # Of two, the lower; a rate counts 2xx answers only.
    assert Rounds(rounds.rounds[:2]).per_second() == 298
    assert Rounds(rounds.rounds[:2]).p99_ms() == 3.0


def test_the_end_to_end_table_shows_what_the_final_headline_says_of_the_run() -> None:
    headline = "✅ `deploy shop-api 1.5.0` in *staging*: done, not checked: Pre-checks, Verify"
    assert final_state(headline) == "done, not checked: Pre-checks, Verify"
    assert final_state("something else entirely") == "something else entirely"
