"""`scripts/bench [SECTION ...] [--quick] [--out FILE]`: runs the sections (all by default),
prints each one's table as it finishes and writes every figure to `--out` as JSON."""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from bench.procs import ROOT, World
from bench.report import Section

__all__ = ["Context", "main"]

SECTIONS = ["ack", "burst", "intake", "storm", "footprint", "scale", "e2e"]


@dataclass
class Context:
    """What every section gets: the scale, a scratch directory, the shared world process and
    the results of sections that ran before it in this run."""

    quick: bool
    workdir: Path
    postgres: bool = True
    results: dict[str, Section] = field(default_factory=dict)
    _world: World | None = None

    def count(self, full: int, quick: int) -> int:
        return quick if self.quick else full

    @property
    def world(self) -> World:
        if self._world is None:
            self._world = World(self.workdir)
        return self._world

    def close(self) -> None:
        if self._world is not None:
            self._world.stop()


def _runner(name: str) -> Callable[[Context], Section]:
    module = __import__(f"bench.sections.{name}", fromlist=["run"])
    run: Callable[[Context], Section] = module.run
    return run


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="scripts/bench", description=__doc__)
    parser.add_argument("sections", nargs="*", metavar="SECTION",
                        help=f"one or more of {', '.join(SECTIONS)} (default: all)")
    parser.add_argument("--quick", action="store_true",
                        help="every count scaled down 10-50x: a smoke run")
    parser.add_argument("--out", default=str(ROOT / "bench" / "results" / "latest.json"),
                        help="where the JSON goes (default bench/results/latest.json)")
    parser.add_argument("--no-postgres", action="store_true",
                        help="skip the PostgreSQL rows (127.0.0.1:5432, db test)")
    parser.add_argument("--keep", action="store_true", help="keep the scratch directory")
    args = parser.parse_args(argv)
    unknown = [s for s in args.sections if s not in SECTIONS]
    if unknown:
        parser.error(f"unknown section {', '.join(unknown)}; choose from {', '.join(SECTIONS)}")
    chosen = list(args.sections or SECTIONS)
    # The storm's memory figure belongs in the footprint table: run the storm first.
    if "storm" in chosen and "footprint" in chosen:
        chosen = [s for s in chosen if s != "storm"]
        chosen.insert(chosen.index("footprint"), "storm")
    workdir = Path(tempfile.mkdtemp(prefix="opsbot-bench-"))
    ctx = Context(quick=args.quick, workdir=workdir, postgres=not args.no_postgres)
    started = datetime.now(UTC)
    document: dict[str, Any] = {
        "started": started.isoformat(timespec="seconds"),
        "quick": args.quick,
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version(),
                    "load_average": os.getloadavg(), "platform": platform.platform()},
        "sections": {},
    }
    failed: list[str] = []
    try:
        for name in chosen:
            print(f"== {name}{' (quick)' if args.quick else ''} ...", flush=True)
            began = time.monotonic()
            try:
                section = _runner(name)(ctx)
            except Exception as exc:  # one broken section must not lose the others' figures
                failed.append(name)
                print(f"!! {name} failed: {type(exc).__name__}: {exc}", flush=True)
                document["sections"][name] = {"error": f"{type(exc).__name__}: {exc}"}
                continue
            ctx.results[name] = section
            print(section.render(), flush=True)
            print(f"   ({time.monotonic() - began:.0f}s)\n", flush=True)
            document["sections"][name] = section.as_json()
    finally:
        ctx.close()
        document["finished"] = datetime.now(UTC).isoformat(timespec="seconds")
        document["machine"]["load_average_after"] = os.getloadavg()
        out = Path(args.out)
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps(document, indent=2, default=str) + "\n")
        print(f"figures written to {out}")
        if args.keep:
            print(f"scratch directory kept: {workdir}")
        else:
            shutil.rmtree(workdir, ignore_errors=True)
    goals = [g for s in ctx.results.values() for g in s.goals.values()]
    met = sum(g.met for g in goals)
    print(f"goals: {met} of {len(goals)} met" + (f"; sections failed: {', '.join(failed)}"
                                                  if failed else ""))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
