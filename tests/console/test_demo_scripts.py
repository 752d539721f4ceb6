"""The README's demo scripts run as a user runs them (`opsbot demo --script FILE`) and show
what they promise: logs and metrics on demand, locks with a prod request's reservation."""

from __future__ import annotations

import re
from pathlib import Path

from tests.console.test_demo_alerts import ROOT, bin_dir, run_demo
from tests.support.prometheus import ALERTMANAGER_BIN, PROMETHEUS_BIN, require_binary


def transcript_of(out: str, command: str) -> str:
    """What the demo printed for `user> command`, up to the next command."""
    start = out.index(f"> {command}\n")
    following = re.search(r"^\w+> ", out[start + 1:], re.MULTILINE)
    return out[start:start + 1 + following.start()] if following else out[start:]


def test_demo_observe_shows_logs_metrics_and_a_graph(tmp_path: Path) -> None:
    prometheus = require_binary(PROMETHEUS_BIN, "prometheus")
    alertmanager = require_binary(ALERTMANAGER_BIN, "prometheus-alertmanager")
    result = run_demo(ROOT / "examples" / "demo-observe.txt", tmp_path,
                      bin_dir(tmp_path, prometheus, alertmanager))
    out = result.stdout
    assert result.returncode == 0, out + result.stderr

    tail = transcript_of(out, "logs shop-api --tail 10")
    assert "✅ Logs: shop-api: 10 log lines from 3 pods" in tail
    assert len(re.findall(r"^      \S+Z shop-api-\S+ ", tail, re.MULTILINE)) == 10
    previous = transcript_of(out, "logs shop-worker --previous")
    assert "previous containers of 1 pod" in previous
    assert "ERROR worker: out of memory" in previous
    grep = transcript_of(out, "logs shop-api --since 10m --grep orders")
    lines = re.findall(r"^      \S+Z shop-api-\S+ (.*)$", grep, re.MULTILINE)
    assert lines and all("orders" in line for line in lines)
    assert "shop-api has no container `sidecar`; its containers: `api`" in transcript_of(
        out, "logs shop-api --container sidecar")

    metrics = transcript_of(out, "metrics shop-api --since 5m")
    assert re.search(r"Request rate: [0-9.]+ req/s", metrics)
    assert re.search(r"p99 latency: [0-9.]+ ms", metrics)
    assert re.search(r"CPU of limit: [0-9.]+%", metrics)  # modelled cAdvisor series
    assert "Memory of limit: 55%" in metrics
    pngs = re.findall(r"📎 shop-api in staging, last 5m: (\S+\.png)", metrics)
    assert len(pngs) == 1, metrics + result.stderr[-3000:]  # the demo logs why a graph is left out
    [png] = pngs
    assert Path(png).read_bytes().startswith(b"\x89PNG")
    assert "mallory may not run `graph`" in transcript_of(
        out, 'graph "sum by (code) (rate(http_requests_total[1m]))"')
    graph = transcript_of(out, 'graph "sum by (code) (rate(http_requests_total[1m]))" --since 5m')
    assert re.search(r'\{code="200"\}: [0-9.]+', graph)


def test_demo_locks_shows_a_reservation_and_its_refusal(tmp_path: Path) -> None:
    result = run_demo(ROOT / "examples" / "demo-locks.txt", tmp_path, bin_dir(tmp_path))
    out = result.stdout
    assert result.returncode == 0, out + result.stderr
    [request_id] = set(re.findall(r"request-id: (rq-\w+)", out))
    locks = transcript_of(out, "locks")
    assert f"shop-api in prod: 📝 reserved for alice's request `{request_id}`" in locks
    assert "awaiting approval" in locks
    refused = transcript_of(out, "restart shop-api --env prod")
    assert "shop-api in `prod` is reserved" in refused and "Nothing was changed" in refused
    assert "in prod: approved and run" in transcript_of(out, f"approve {request_id}")
    after = out[out.index("alice> locks"):]
    assert "Locks: No target is locked" in transcript_of(after, "locks")
    assert "scale shop-api 5 --env prod" in transcript_of(
        out, "executions --app shop-api --env prod")
