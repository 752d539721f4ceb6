"""`logs`: an app's pod logs merged by time from the simulated cluster's API (timestamps,
sinceSeconds, tailLines, previous), bounded, the rest as a file; and from Loki (a stand-in
that reads LogQL as Loki does) with every value quoted."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from bot.config import LokiConfig, Settings, load_settings
from bot.dispatcher import Outcome
from bot.registry import Registry
from bot.services import Services
from tests.conftest import DEMO_CONFIG, RecordingReporter, dispatch
from tests.handlers.conftest import Run
from tests.support.loki_standin import LokiStandIn


def _times(output: str) -> list[datetime]:
    return [datetime.fromisoformat(line.split(" ", 1)[0].replace("Z", "+00:00"))
            for line in output.splitlines() if line[:4].isdigit()]


async def test_logs_of_every_pod_merged_by_time(run: Run, sim: Any) -> None:
    sim.clock.advance(600)
    outcome, rep = await run("logs shop-api --tail 12")
    assert outcome.status == "succeeded", rep.final.summary
    step = rep.final.steps[0]
    assert step.summary == "shop-api: 12 log lines from 3 pods"
    assert dict(step.fields)["Source"] == "Kubernetes API, 3 pods"
    assert step.output is not None
    lines = step.output.splitlines()
    assert len(lines) == 12
    times = _times(step.output)
    assert times == sorted(times) and len(times) == 12
    # Lines of several pods, each named.
    assert len({line.split(" ")[1] for line in lines}) == 3
    assert all(line.split(" ")[1].startswith("shop-api-") for line in lines)
    assert not step.attachments


async def test_since_keeps_only_recent_lines(run: Run, sim: Any) -> None:
    sim.clock.advance(3600)
    outcome, rep = await run("logs shop-api --since 10m")
    assert outcome.status == "succeeded", rep.final.summary
    output = rep.final.steps[0].output or ""
    cutoff = sim.clock.now() - timedelta(minutes=10, seconds=1)
    times = _times(output)
    assert times and all(t >= cutoff for t in times)
    assert dict(rep.final.steps[0].fields)["Window"] == "last 10m, at most 5000 lines"


async def test_previous_log_of_a_crashed_container(run: Run) -> None:
    outcome, rep = await run("logs shop-worker --previous")
    assert outcome.status == "succeeded", rep.final.summary
    output = rep.final.steps[0].output or ""
    assert output.splitlines()[-1].endswith(
        "ERROR worker: out of memory while processing batch 8812 (rss=255Mi)")


async def test_previous_without_a_restart_says_so(run: Run) -> None:
    outcome, rep = await run("logs shop-web --previous")
    assert outcome.status == "succeeded", rep.final.summary
    step = rep.final.steps[0]
    assert step.summary == "shop-web: no log lines from 2 pods"
    assert 'previous terminated container "web"' in (step.output or "")


async def test_grep_is_a_plain_substring(run: Run, sim: Any) -> None:
    sim.clock.advance(3600)
    outcome, rep = await run("logs shop-api --since 1h --grep 'GET /api/orders'")
    assert outcome.status == "succeeded", rep.final.summary
    lines = (rep.final.steps[0].output or "").splitlines()
    assert lines and all("GET /api/orders" in line for line in lines)
    # Regex characters are only characters: nothing matches ".*".
    outcome, rep = await run("logs shop-api --since 1h --grep '.*'")
    assert rep.final.steps[0].summary == "shop-api: no log lines from 3 pods"


async def test_unknown_container_is_refused_with_the_containers(run: Run) -> None:
    outcome, rep = await run("logs shop-api --container sidecar")
    assert outcome.status == "refused"
    assert rep.final.steps[0].summary == (
        "shop-api has no container `sidecar`; its containers: `api`")
    outcome, rep = await run("logs shop-api --container api --tail 2")
    assert outcome.status == "succeeded"


@pytest.mark.parametrize(("text", "message"), [
    ("logs shop-api --tail 0", "<tail> must be at least 1"),
    ("logs shop-api --tail 5001", "<tail> must be at most 5000"),
    ("logs shop-api --tail ٣", "<tail>"),
    ("logs shop-api --since 31d", "<since>"),
    ("logs shop-api --container ../x", "<container>"),
])
async def test_bad_values_are_usage_errors(run: Run, sim: Any, text: str, message: str) -> None:
    before = sim.snapshot()
    outcome, rep = await run(text)
    assert outcome.status == "usage"
    assert message in rep.notices[0].text
    assert not rep.views
    assert sim.snapshot() == before


async def test_long_logs_come_as_a_file_with_the_newest_lines_shown(run: Run, sim: Any) -> None:
    sim.clock.advance(6 * 3600)  # 120 recent lines per pod, 3 pods
    outcome, rep = await run("logs shop-api --since 1d")
    assert outcome.status == "succeeded", rep.final.summary
    step = rep.final.steps[0]
    [attachment] = step.attachments
    assert attachment.filename == "logs-shop-api-staging.txt"
    assert attachment.mimetype == "text/plain"
    full = attachment.content.decode().splitlines()
    assert len(full) == 360  # 3 pods × 120 requests (they started more than a day ago)
    shown = (step.output or "").splitlines()
    assert shown[0] == "(the newest 200 of 360 lines; all of them are in the attached file)"
    assert shown[1:] == full[-200:]


async def test_viewers_may_read_logs(run: Run) -> None:
    outcome, _ = await run("logs shop-api --tail 1", user="mallory")
    assert outcome.status == "succeeded"


# Loki -----------------------------------------------------------------------------------------


@pytest.fixture
def loki() -> Iterator[LokiStandIn]:
    standin = LokiStandIn().start()
    try:
        yield standin
    finally:
        standin.stop()


async def _dispatch(settings: Settings, registry: Registry, text: str,
                    ) -> tuple[Outcome, RecordingReporter]:
    services = Services.build(settings, registry=registry)
    try:
        return await dispatch(services, text)
    finally:
        services.close()


def _with_loki(kubeconfig: Path, db_url: str, loki: LokiStandIn, **changes: Any) -> Settings:
    settings = load_settings(DEMO_CONFIG, environ={
        "KUBECONFIG": str(kubeconfig), "OPSBOT_DATABASE_URL": db_url, "LOKI_URL": loki.url})
    if changes:
        settings = settings.model_copy(update={"loki": LokiConfig(url=loki.url, **changes)})
    return settings


async def test_logs_from_loki_with_a_quoted_selector(
        kubeconfig: Path, db_url: str, registry: Registry, loki: LokiStandIn) -> None:
    now = datetime.now(UTC)
    labels = {"namespace": "shop-staging", "app": "shop-api", "pod": "shop-api-1",
              "container": "api"}
    loki.push(labels, [(now - timedelta(minutes=m), f"line {m} say \"hi\" \\ there")
                       for m in range(30, 0, -1)])
    loki.push({**labels, "pod": "shop-api-2"}, [(now - timedelta(seconds=30), "other pod")])
    settings = _with_loki(kubeconfig, db_url, loki)
    assert settings.loki.url == loki.url  # LOKI_URL
    outcome, rep = await _dispatch(settings, registry, "logs shop-api --since 15m --tail 5")
    assert outcome.status == "succeeded", rep.final.summary
    step = rep.final.steps[0]
    assert step.summary == "shop-api: 5 log lines from Loki"
    [query] = loki.queries
    assert query["query"] == '{namespace="shop-staging",app="shop-api"}'
    assert query["limit"] == "5" and query["direction"] == "backward"
    start, end = int(query["start"]), int(query["end"])
    assert 14.9 * 60 <= (end - start) / 1e9 <= 15.1 * 60
    lines = (step.output or "").splitlines()
    assert lines[-1].endswith("shop-api-2/api other pod")
    assert lines[-2].endswith('shop-api-1/api line 1 say "hi" \\ there')
    assert _times(step.output or "") == sorted(_times(step.output or ""))


async def test_label_values_and_grep_cannot_break_out_of_their_quotes(
        kubeconfig: Path, db_url: str, registry: Registry, loki: LokiStandIn) -> None:
    hostile = 'x"} |= "" or {app=~".+'
    template = hostile.replace("{", "{{").replace("}", "}}") + "\\"  # str.format's braces
    settings = _with_loki(kubeconfig, db_url, loki,
                          labels={"namespace": "{namespace}", "team": template})
    grep = 'say "hi" \\ |~ ".*'
    now = datetime.now(UTC)
    loki.push({"namespace": "shop-staging", "team": hostile + "\\"},
              [(now - timedelta(minutes=1), f"before {grep} after"),
               (now - timedelta(minutes=1), "not this one")])
    outcome, rep = await _dispatch(settings, registry, f"logs shop-api --grep '{grep}'")
    assert outcome.status == "succeeded", rep.final.summary
    [parsed] = loki.parsed()  # the stand-in reads it as Loki would: a parse error fails here
    assert parsed.selector == {"namespace": "shop-staging", "team": hostile + "\\"}
    assert parsed.filters == [("|=", grep)]
    assert (rep.final.steps[0].output or "").endswith(f"before {grep} after")


async def test_previous_logs_come_from_the_api_even_with_loki(
        kubeconfig: Path, db_url: str, registry: Registry, loki: LokiStandIn) -> None:
    settings = _with_loki(kubeconfig, db_url, loki)
    outcome, rep = await _dispatch(settings, registry, "logs shop-worker --previous")
    assert outcome.status == "succeeded"
    assert not loki.queries
    assert "out of memory" in (rep.final.steps[0].output or "")


async def test_loki_failure_is_a_failed_step_without_credentials(
        kubeconfig: Path, db_url: str, registry: Registry, loki: LokiStandIn) -> None:
    loki.status = 400
    settings = load_settings(DEMO_CONFIG, environ={
        "KUBECONFIG": str(kubeconfig), "OPSBOT_DATABASE_URL": db_url,
        "LOKI_URL": loki.url.replace("http://", "http://user:s3cret@")})
    outcome, rep = await _dispatch(settings, registry, "logs shop-api")
    assert outcome.status == "failed"
    assert "Loki rejected the query: injected failure" in rep.final.steps[0].summary
    assert "s3cret" not in repr(rep.views)


async def test_diag_adds_the_last_error_lines_from_loki(
        kubeconfig: Path, db_url: str, registry: Registry, loki: LokiStandIn) -> None:
    now = datetime.now(UTC)
    loki.push({"namespace": "shop-staging", "app": "shop-worker", "pod": "shop-worker-1"},
              [(now - timedelta(minutes=3), "INFO all good"),
               (now - timedelta(minutes=2), "ERROR payment failed"),
               (now - timedelta(minutes=1), "panic: nil map")])
    settings = _with_loki(kubeconfig, db_url, loki)
    outcome, rep = await _dispatch(settings, registry, "diag shop-worker")
    assert outcome.status == "succeeded", rep.final.summary
    step = rep.final.steps[0]
    assert dict(step.fields)["Error lines (1 h, Loki)"] == "2"
    output = step.output or ""
    assert "RECENT ERROR LINES (Loki, newest 2)" in output
    assert "shop-worker-1 ERROR payment failed" in output
    assert "all good" not in output
    [parsed] = loki.parsed()
    assert parsed.filters == [("|~", "(?i)(error|fatal|panic|exception)")]
