"""What operators watch of a running `opsbot serve`: JSON log lines that name the execution and
never a secret, `/metrics` with opsbot's own series, and `/readyz` failing once its PostgreSQL is
out of reach. The server is a separate process on the real PostgreSQL, reached through a proxy
the test can take away."""

from __future__ import annotations

import io
import json
import logging
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from hypothesis import given
from hypothesis import strategies as st
from prometheus_client.parser import text_string_to_metric_families

from bot import logs
from bot.config import load_settings
from bot.logs import JsonFormatter, TextFormatter, forget_secrets, log_context, remember_secrets
from simcluster import SimCluster
from tests.slack.test_slack_serve import serve_process
from tests.store.conftest import PostgresSchemas, pg_schemas  # noqa: F401 - the fixture
from tests.support.alert_payloads import alert, notification, to_bytes
from tests.support.signing import SIGNING_SECRET
from tests.support.slack_standin import BOT_TOKEN, SlackDriver, SlackStandIn
from tests.support.tcp_proxy import FreezableProxy

ROOT = Path(__file__).resolve().parents[2]
AM_TOKEN = "am-operability-token-7c1d"
DB_PASSWORD = "pg-secret-pass-91f0"
SERVE = ("from bot.cli import main; raise SystemExit(main(['serve', '-v', '--log-format', "
         "'json']))")


# -- the formatters, in this process ------------------------------------------------------------


@pytest.fixture
def captured() -> Iterator[tuple[logging.Logger, io.StringIO]]:
    out = io.StringIO()
    handler = logging.StreamHandler(out)
    handler.setFormatter(JsonFormatter())
    logger = logging.getLogger("opsbot.test.operability")
    logger.addHandler(handler)
    logger.setLevel(logging.DEBUG)
    logger.propagate = False
    try:
        yield logger, out
    finally:
        logger.removeHandler(handler)
        forget_secrets()


def lines(out: io.StringIO) -> list[dict[str, Any]]:
    return [json.loads(line) for line in out.getvalue().splitlines()]


def test_json_lines_carry_the_ids_in_context(
        captured: tuple[logging.Logger, io.StringIO]) -> None:
    logger, out = captured
    logger.info("outside")
    with log_context(execution_id="ex-1", request_id="rq-2"):
        logger.warning("inside %s", "both")
        with log_context(execution_id="ex-3"):
            logger.info("nested")
    logger.info("after")
    first, inside, nested, after = lines(out)
    assert set(first) == {"time", "level", "logger", "message"}
    assert first["time"].endswith("Z") and "T" in first["time"]
    assert (first["logger"], first["level"]) == ("opsbot.test.operability", "INFO")
    assert inside == {**inside, "message": "inside both", "level": "WARNING",
                      "execution_id": "ex-1", "request_id": "rq-2"}
    assert (nested["execution_id"], nested["request_id"]) == ("ex-3", "rq-2")
    assert "execution_id" not in after and "request_id" not in after


def test_secrets_never_reach_a_line(captured: tuple[logging.Logger, io.StringIO]) -> None:
    logger, out = captured
    remember_secrets([SIGNING_SECRET, "short", None])
    logger.error("signing with %s", SIGNING_SECRET)
    logger.info("token %s in a header: Authorization: Bearer %s", BOT_TOKEN, AM_TOKEN)
    logger.info("db postgresql+psycopg://opsbot:%s@db:5432/opsbot", DB_PASSWORD)
    logger.info("app token xapp-1-A0123-4567-abcdef and a short word: short")
    try:
        raise RuntimeError(f"boom {SIGNING_SECRET}")
    except RuntimeError:
        logger.exception("failed")
    text = out.getvalue()
    for secret in (SIGNING_SECRET, BOT_TOKEN, AM_TOKEN, DB_PASSWORD, "xapp-1-A0123"):
        assert secret not in text, secret
    records = lines(out)
    assert records[1]["message"].endswith("Authorization: Bearer [redacted]")
    assert records[2]["message"] == "db postgresql+psycopg://opsbot:[redacted]@db:5432/opsbot"
    assert records[3]["message"].endswith("a short word: short")  # too short to be a secret
    assert "RuntimeError: boom [redacted]" in records[4]["exception"]
    # The text format masks the same way.
    record = logging.LogRecord("opsbot.x", logging.INFO, __file__, 1, "t=%s", (BOT_TOKEN,), None)
    assert TextFormatter().format(record).endswith("t=[redacted]")


_PIECES = st.sampled_from(["xoxb-", "xoxp-", "XOXB-", "xapp-", "Bearer ", "bearer\t", "BASIC ",
                           "Basic ", "://", "postgresql://", "u:", "@", "A0123456789-x", "-",
                           " ", "/", "é", "\n", "abc"])


@given(st.one_of(
    st.lists(_PIECES, max_size=12).map("".join),
    # A mark right before what it masks, within other text.
    st.tuples(st.text(max_size=5), st.sampled_from(["xoxb-", "xapp-", "Bearer ", "basic  ",
                                                    "https://user:"]),
              st.sampled_from(["A0123456789", "s3cr3t-pass@host", "short"]), st.text(max_size=5),
              ).map("".join),
))
def test_one_scan_finds_every_line_a_token_pattern_would_mask(text: str) -> None:
    # Lines without any token's mark skip the patterns; masking must not change for it.
    slow = text
    for pattern in logs._PATTERNS:
        slow = pattern.sub(logs._masked, slow)
    assert logs.Redactor()(text) == slow


def test_the_log_format_comes_from_the_flag_the_variable_or_the_config(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    config = tmp_path / "opsbot.yaml"
    config.write_text((ROOT / "examples" / "demo.yaml").read_text() + "\nlog_format: json\n")
    assert load_settings(config, environ={}).log_format == "json"
    assert load_settings(config, environ={"OPSBOT_LOG_FORMAT": "text"}).log_format == "text"
    from bot.cli import main

    for argv, environ in ((["--log-format", "yaml"], "text"), ([], "yaml")):
        monkeypatch.setenv("OPSBOT_LOG_FORMAT", environ)
        with pytest.raises(SystemExit) as exited:
            main([*argv, "runbooks", "list"])
        assert exited.value.code == 2


# -- a running server ---------------------------------------------------------------------------


@pytest.fixture
def database(pg_schemas: PostgresSchemas) -> Iterator[tuple[FreezableProxy, str]]:  # noqa: F811
    proxy, url = FreezableProxy.in_front_of(pg_schemas.new_url())
    try:
        yield proxy, url
    finally:
        proxy.stop()


def samples(text: str) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    return {(s.name, frozenset(s.labels.items())): s.value
            for family in text_string_to_metric_families(text) for s in family.samples}


def value(found: dict[tuple[str, frozenset[tuple[str, str]]], float], name: str,
          **labels: str) -> float:
    return found.get((name, frozenset(labels.items())), 0.0)


def not_ready_soon(http: httpx.Client, url: str, within: float = 15.0) -> str:
    """/readyz's answer once it is 503; the connections the proxy cut may take a moment to be
    noticed (a wait, not a measured time: fails only when it never happens)."""
    deadline = time.monotonic() + within
    while True:
        ready = http.get(f"{url}/readyz")
        if ready.status_code == 503 or time.monotonic() > deadline:
            assert ready.status_code == 503, ready.text
            return ready.text
        time.sleep(0.2)


def test_a_running_server_logs_json_counts_and_fails_ready_without_its_database(
        sim: SimCluster, slack: SlackStandIn, tmp_path: Path,
        database: tuple[FreezableProxy, str]) -> None:
    proxy, url = database
    with serve_process(["-c", SERVE], sim, slack, tmp_path, SLACK_SIGNING_SECRET=SIGNING_SECRET,
                       OPSBOT_DATABASE_URL=url, OPSBOT_ALERTMANAGER_TOKEN=AM_TOKEN) as served:
        with httpx.Client(timeout=30) as http:
            assert http.get(f"{served.url}/readyz").status_code == 200
            bot = SlackDriver(served.url, http, slack, SIGNING_SECRET)
            assert bot.send_command("alice", "scale shop-web 3").status_code == 200
            bot.finished("scale shop-web 3")
            # One Kubernetes API refusal, as RBAC would answer it.
            sim.faults.inject(method="GET", path="/deployments/shop-api$", status=403, times=1)
            assert bot.send_command("alice", "status shop-api").status_code == 200
            bot.finished("status shop-api")
            assert bot.send_command("alice", "scale shop-api 4 --env prod").status_code == 200
            slack.wait_message(lambda m: "`scale shop-api 4 --env prod`" in m.text
                               and "awaiting approval" in m.text)
            stored = http.post(f"{served.url}/alertmanager", headers={
                "authorization": f"Bearer {AM_TOKEN}", "content-type": "application/json"},
                content=to_bytes(notification([alert({"alertname": "Test", "severity": "info",
                                                      "namespace": "shop-staging"})])))
            assert stored.status_code == 200

            metrics = http.get(f"{served.url}/metrics")
            assert metrics.headers["content-type"].startswith("text/plain")
            found = samples(metrics.text)
            assert value(found, "opsbot_ack_seconds_count", transport="http") >= 3
            assert value(found, "opsbot_ack_seconds_bucket", transport="http", le="+Inf") >= 3
            assert value(found, "opsbot_executions_total", runbook="scale",
                         status="succeeded") == 1
            assert value(found, "opsbot_executions_total", runbook="status",
                         status="failed") == 1
            assert value(found, "opsbot_kubernetes_api_errors_total", reason="Forbidden",
                         status="403") == 1
            assert value(found, "opsbot_approvals_total", outcome="requested") == 1
            assert value(found, "opsbot_alert_notifications_total", outcome="stored") == 1
            families = {f.name for f in text_string_to_metric_families(metrics.text)}
            assert {"opsbot_alert_decisions", "opsbot_slack_api_errors"} <= families

            # PostgreSQL out of reach: not ready (Kubernetes stops sending traffic), still alive.
            proxy.stop()
            assert "the store does not answer" in not_ready_soon(http, served.url)
            assert http.get(f"{served.url}/readyz").status_code == 503  # and stays so
            assert http.get(f"{served.url}/healthz").status_code == 200
        served.stop()

    output = served.log.read_text(errors="replace")
    records = []
    for line in output.splitlines():
        try:
            records.append(json.loads(line))
        except ValueError:
            pytest.fail(f"not a JSON line: {line[:200]!r}")
    assert records and all({"time", "level", "logger", "message"} <= set(r) for r in records)
    assert any(r["level"] == "DEBUG" for r in records)  # -v: libraries' records too
    ran = [r for r in records if r["message"] == "runbook scale ended succeeded"]
    assert len(ran) == 1 and ran[0]["execution_id"]
    assert any(r.get("execution_id") == ran[0]["execution_id"] and r["logger"] != ran[0]["logger"]
               for r in records), "only the dispatcher's own lines carry the execution id"
    for secret in (BOT_TOKEN, SIGNING_SECRET, AM_TOKEN):
        assert secret not in output
