"""`POST /alertmanager` on the running server, over a real socket: authentication, limits,
strict parsing, 2xx only after the commit, and the alert-group message in the Slack stand-in
(posted, updated in place, remediation in its thread, buttons that work)."""

from __future__ import annotations

import base64
import codecs
import json
import re
import sqlite3
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from bot.config import Settings
from bot.services import Services
from bot.slack.app import build_services
from bot.slack.server import create_app
from bot.store import Store
from simcluster import SimCluster
from tests.alerts.conftest import TOKEN, alert_settings_for
from tests.support.alert_payloads import alert, notification, to_bytes
from tests.support.block_kit import pings, shown, text_objects
from tests.support.signing import SIGNING_SECRET
from tests.support.slack_standin import BOT_TOKEN, ServerThread, SlackDriver, SlackStandIn

WORKER_POD = "shop-worker-5d8f7c9b6-x2x4q"
ALERTS = "C0ALERTS"


def slack_settings(sim: SimCluster, tmp_path: Path, slack: SlackStandIn, **alerts: Any) -> Settings:
    return alert_settings_for(sim, tmp_path, environ={
        "SLACK_BOT_TOKEN": BOT_TOKEN, "SLACK_SIGNING_SECRET": SIGNING_SECRET,
        "SLACK_API_URL": slack.api_url}, **alerts)


@pytest.fixture
def services(alert_sim: SimCluster, tmp_path: Path, slack: SlackStandIn) -> Iterator[Services]:
    built = build_services(slack_settings(alert_sim, tmp_path, slack))
    yield built
    built.close()


@pytest.fixture
def server(services: Services) -> Iterator[ServerThread]:
    running = ServerThread(create_app(services, shutdown_grace=10)).start()
    yield running
    running.stop()


@pytest.fixture
def http() -> Iterator[httpx.Client]:
    with httpx.Client(timeout=30.0) as client:
        yield client


def post(http: httpx.Client, server: ServerThread, body: bytes,
         auth: str | None = f"Bearer {TOKEN}", **headers: str) -> httpx.Response:
    sent = {"content-type": "application/json", **headers}
    if auth is not None:
        sent["authorization"] = auth
    return http.post(f"{server.url}/alertmanager", content=body, headers=sent)


def crashloop(status: str = "firing") -> dict[str, Any]:
    return alert({"alertname": "TestCrashLoop", "severity": "warning",
                  "namespace": "shop-staging", "pod": WORKER_POD}, status=status)


def basic(user: str, password: str) -> str:
    return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()


def test_a_notification_is_stored_then_answered(http: httpx.Client, server: ServerThread,
                                                services: Services) -> None:
    response = post(http, server, to_bytes(notification([crashloop()])))
    assert response.status_code == 200
    assert response.headers["content-type"] == "application/json"
    assert response.json() == {"status": "stored", "id": response.json()["id"]}
    assert re.fullmatch(r"an-[0-9A-Z]{26}", response.json()["id"])
    stored = services.store.get_notification(response.json()["id"])
    assert stored is not None and stored.payload["alerts"][0]["labels"]["pod"] == WORKER_POD


@pytest.mark.parametrize("auth", [
    None, "Bearer wrong-token", f"Bearer {TOKEN}x", f"Token {TOKEN}", basic("alertmanager", "x"),
    basic("someone", TOKEN), "Basic !!!not-base64", "Bearer",
])
def test_bad_credentials_are_refused_and_nothing_is_stored(
        http: httpx.Client, server: ServerThread, services: Services, auth: str | None) -> None:
    response = post(http, server, to_bytes(notification([crashloop()])), auth=auth)
    assert response.status_code == 401
    assert "Bearer" in response.headers["www-authenticate"]
    assert services.store.unprocessed_notifications() == []
    assert services.store.audit_records(limit=10) == []


def test_basic_auth_with_the_token_as_password(http: httpx.Client, server: ServerThread) -> None:
    response = post(http, server, to_bytes(notification([crashloop()])),
                    auth=basic("alertmanager", TOKEN))
    assert response.status_code == 200


def test_without_a_configured_token_every_notification_is_refused(
        alert_sim: SimCluster, tmp_path: Path, slack: SlackStandIn, http: httpx.Client) -> None:
    settings = slack_settings(alert_sim, tmp_path, slack).model_copy(
        update={"alertmanager_token": None})
    built = build_services(settings)
    running = ServerThread(create_app(built, shutdown_grace=5)).start()
    try:
        response = post(http, running, to_bytes(notification([crashloop()])))
        assert response.status_code == 401
        assert built.store.unprocessed_notifications() == []
    finally:
        running.stop()
        built.close()


def test_bodies_over_the_limit_get_413(http: httpx.Client, server: ServerThread,
                                       services: Services) -> None:
    big = notification([crashloop()], padding="x" * 1_100_000)
    assert post(http, server, to_bytes(big)).status_code == 413

    def chunks() -> Iterator[bytes]:  # no Content-Length: the stream is cut at the limit
        yield b'{"version": "4", "padding": "'
        for _ in range(300):
            yield b"y" * 4096
        yield b'"}'

    response = http.post(f"{server.url}/alertmanager", content=chunks(),
                         headers={"authorization": f"Bearer {TOKEN}"})
    assert response.status_code == 413
    assert services.store.unprocessed_notifications() == []


@pytest.mark.parametrize("body, why", [
    (b"{not json", "not JSON"),
    (b"[]", "not a JSON object"),
    (to_bytes({**notification([crashloop()]), "version": "3"}), "version"),
    (to_bytes({k: v for k, v in notification([crashloop()]).items() if k != "groupKey"}),
     "groupKey"),
    (to_bytes(notification([{k: v for k, v in crashloop().items() if k != "fingerprint"}])),
     "fingerprint"),
    (to_bytes(notification([{**crashloop(), "status": "exploded"}])), "status"),
    (to_bytes(notification([{**crashloop(), "startsAt": "yesterday"}])), "startsAt"),
    (to_bytes(notification([{**crashloop(), "labels": {"a": 1}}])), "abels.a"),
    (to_bytes(notification([alert({"alertname": "X\u0000"})])), "NUL"),
])
def test_malformed_payloads_get_400_and_nothing_is_stored(
        http: httpx.Client, server: ServerThread, services: Services, body: bytes,
        why: str) -> None:
    response = post(http, server, body)
    assert response.status_code == 400
    assert why in response.json()["message"]
    assert services.store.unprocessed_notifications() == []


def refused_count(http: httpx.Client, server: ServerThread, reason: str) -> float:
    line = f'opsbot_alert_notifications_refused_total{{reason="{reason}"}} '
    text = http.get(f"{server.url}/metrics").text
    return next((float(row.removeprefix(line)) for row in text.splitlines()
                 if row.startswith(line)), 0.0)


@pytest.fixture
def on_backend(alert_sim: SimCluster, tmp_path: Path, slack: SlackStandIn,
               database_url: str) -> Iterator[tuple[ServerThread, Services]]:
    """The server on either database, for answers that must not depend on it."""
    settings = alert_settings_for(alert_sim, tmp_path, environ={
        "SLACK_BOT_TOKEN": BOT_TOKEN, "SLACK_SIGNING_SECRET": SIGNING_SECRET,
        "SLACK_API_URL": slack.api_url, "OPSBOT_DATABASE_URL": database_url})
    built = build_services(settings)
    running = ServerThread(create_app(built, shutdown_grace=10)).start()
    yield running, built
    running.stop()
    built.close()


MARK = "POISON-MARK"


def poisoned(where: str, text: str) -> dict[str, Any]:
    labels = {"alertname": "TestCrashLoop", "severity": "warning", "namespace": "shop-staging",
              "pod": WORKER_POD}
    if where == "label":
        return notification([alert({**labels, "pod": text})])
    if where == "label name":
        return notification([alert({**labels, text: "x"})])
    if where == "annotation":
        return notification([alert(labels, annotations={"summary": text})])
    if where == "group key":
        return {**notification([alert(labels)]), "groupKey": text}
    return notification([alert(labels, someFutureField={"deep": [text]})])  # not even read


@pytest.mark.parametrize("where", ["label", "label name", "annotation", "group key",
                                   "unknown field"])
@pytest.mark.parametrize(("text", "encoding", "reason"), [
    (f"{MARK}\ud800", "utf-8", "lone_surrogate"),
    (f"{MARK}\udfff{MARK}", "utf-16", "lone_surrogate"),
    (f"{MARK}\u0000", "utf-8", "nul_character"),
    (f"{MARK}\u0000", "utf-16", "nul_character"),
    (f"{MARK}\u0000", "utf-32", "nul_character"),
], ids=["surrogate", "surrogate-utf16", "nul", "nul-utf16", "nul-utf32"])
def test_text_no_store_keeps_gets_400_on_either_database(
        http: httpx.Client, on_backend: tuple[ServerThread, Services], where: str, text: str,
        encoding: str, reason: str, caplog: pytest.LogCaptureFixture) -> None:
    """PostgreSQL refuses these where SQLite kept them: refused up front, the same on both, and
    never with a 5xx (Alertmanager would retry the group for ever)."""
    server, services = on_backend
    before = refused_count(http, server, reason)
    body = json.dumps(poisoned(where, text)).encode(encoding)
    response = post(http, server, body)
    assert response.status_code == 400, response.text
    assert ("NUL" if reason == "nul_character" else "surrogate") in response.json()["message"]
    assert MARK not in response.text
    assert services.store.unprocessed_notifications() == []
    assert refused_count(http, server, reason) == before + 1
    assert not [r for r in caplog.records if MARK in r.getMessage()]  # the body is not logged


@pytest.mark.parametrize("literal", [
    "NaN", "Infinity", "-Infinity", "1e999", "-1e999", "1e-20000", "0." + "0" * 17_000 + "1",
], ids=["nan", "infinity", "-infinity", "huge", "-huge", "tiny-exponent", "long-fraction"])
def test_numbers_json_does_not_have_or_no_store_keeps_get_400_on_either_database(
        http: httpx.Client, on_backend: tuple[ServerThread, Services], literal: str) -> None:
    """Python's JSON reader takes NaN and Infinity, which PostgreSQL refuses, and turns numbers
    out of a double's range into infinity or zero, not what was sent. Refused up front on both
    databases, never a 503 (Alertmanager would retry the group for ever)."""
    server, services = on_backend
    body = json.dumps(notification([crashloop()], someFutureField="FIELD")).replace(
        '"FIELD"', literal).encode()
    response = post(http, server, body)
    assert response.status_code == 400, response.text
    assert "not JSON" in response.json()["message"]
    assert services.store.unprocessed_notifications() == []


def test_ordinary_numbers_anywhere_are_stored_on_either_database(
        http: httpx.Client, on_backend: tuple[ServerThread, Services]) -> None:
    server, services = on_backend
    # (The payload is kept as its text on either database; a jsonb column would keep a
    # number's value instead: 1e308 would come back as 309 digits, an int to Python.)
    numbers = [0, -1, 1.5, 2.5e-30, -7e20, 10**400, "1e308"]
    body = json.dumps(notification([crashloop()], someFutureField=numbers)).encode()
    response = post(http, server, body)
    assert response.status_code == 200, response.text
    stored = services.store.get_notification(response.json()["id"])
    assert stored is not None and stored.payload["someFutureField"] == numbers


def test_a_literal_backslash_u0000_is_text_like_any_other(
        http: httpx.Client, on_backend: tuple[ServerThread, Services]) -> None:
    server, services = on_backend
    literal = "C:\\u0000\\x00 is not a NUL"
    payload = notification([{**crashloop(), "annotations": {"summary": literal}}])
    response = post(http, server, to_bytes(payload))
    assert response.status_code == 200, response.text
    stored = services.store.get_notification(response.json()["id"])
    assert stored is not None
    assert stored.payload["alerts"][0]["annotations"]["summary"] == literal


@pytest.mark.parametrize("encode", [
    lambda text: text.encode(),
    lambda text: codecs.BOM_UTF8 + text.encode(),
    lambda text: text.encode("utf-16"),
], ids=["utf-8", "utf-8 with a byte order mark", "utf-16"])
def test_the_payload_is_stored_as_read_whatever_json_encoding_it_came_in(
        http: httpx.Client, on_backend: tuple[ServerThread, Services],
        encode: Callable[[str], bytes]) -> None:
    # On SQLite a UTF-8 body is stored as received; any other as parsed. Either reads back
    # as the same payload.
    server, services = on_backend
    payload = notification([{**crashloop(), "annotations": {"summary": "café \u00e9 ✓"}}])
    response = post(http, server, encode(json.dumps(payload, indent=2, ensure_ascii=False)))
    assert response.status_code == 200, response.text
    stored = services.store.get_notification(response.json()["id"])
    assert stored is not None and stored.payload == payload


def test_nesting_deeper_than_json_reads_gets_400(http: httpx.Client, server: ServerThread) -> None:
    body = b'{"version": "4", "x": ' + b"[" * 100_000 + b"]" * 100_000 + b"}"
    response = post(http, server, body)
    assert response.status_code == 400
    assert "nested too deeply" in response.json()["message"]


def test_unknown_fields_from_newer_alertmanagers_are_tolerated(
        http: httpx.Client, server: ServerThread) -> None:
    payload = notification([{**crashloop(), "silencedBy": [], "someFutureField": {"x": 1}}],
                           anotherNewField=True)
    assert post(http, server, to_bytes(payload)).status_code == 200


def test_a_store_that_cannot_commit_gets_503(alert_sim: SimCluster, tmp_path: Path,
                                             slack: SlackStandIn, http: httpx.Client) -> None:
    settings = slack_settings(alert_sim, tmp_path, slack)
    store = Store.open(settings.database_url or "", busy_timeout_ms=100)
    built = Services.build(settings, store=store)
    running = ServerThread(create_app(built, shutdown_grace=5)).start()
    blocker = sqlite3.connect(str(tmp_path / "opsbot.db"), isolation_level=None)
    try:
        blocker.execute("BEGIN EXCLUSIVE")
        response = post(http, running, to_bytes(notification([crashloop()])))
        assert response.status_code == 503
        blocker.execute("ROLLBACK")
        assert built.store.unprocessed_notifications() == []
        assert post(http, running, to_bytes(notification([crashloop()]))).status_code == 200
    finally:
        blocker.close()
        running.stop()
        built.close()


def test_one_message_per_group_updated_in_place_with_the_run_in_its_thread(
        http: httpx.Client, server: ServerThread, slack: SlackStandIn) -> None:
    assert post(http, server, to_bytes(notification([crashloop()]))).status_code == 200
    message = slack.wait_message(
        lambda m: m.channel == ALERTS and "ran, succeeded" in json.dumps(m.blocks))
    assert message.text.startswith("FIRING TestCrashLoop in staging")
    run = slack.wait_message(lambda m: m.thread_ts == message.ts and "done" in m.text)
    assert "k8s.diag" in json.dumps(run.blocks) or "Diagnose" in json.dumps(run.blocks)

    assert post(http, server, to_bytes(notification([crashloop("resolved")]))).status_code == 200
    resolved = slack.wait_message(lambda m: m.ts == message.ts and m.text.startswith("RESOLVED"))
    assert resolved.versions > 1
    posted = [c for c in slack.calls_to("chat.postMessage") if c.params.get("channel") == ALERTS
              and not c.params.get("thread_ts")]
    assert len(posted) == 1  # one message for the group, updated since


def test_the_diagnose_button_runs_as_whoever_clicks(
        http: httpx.Client, server: ServerThread, slack: SlackStandIn) -> None:
    assert post(http, server, to_bytes(notification([crashloop()]))).status_code == 200
    message = slack.wait_message(
        lambda m: m.channel == ALERTS and "Diagnose shop-worker" in json.dumps(m.blocks))
    bot = SlackDriver(server.url, http, slack, SIGNING_SECRET)
    assert bot.click("alice", message, "Diagnose shop-worker").status_code == 200
    done = bot.finished("diag shop-worker --env staging")
    assert "alice" in json.dumps(done.blocks)
    assert bot.click("mallory", message, "Silence 1h").status_code == 200
    assert "may not run `silence`" in bot.ephemeral("mallory")


def test_label_text_cannot_ping_or_link(http: httpx.Client, server: ServerThread,
                                        slack: SlackStandIn) -> None:
    hostile = alert({"alertname": "TestCrashLoop", "severity": "warning",
                     "namespace": "shop-staging", "pod": WORKER_POD},
                    annotations={"summary": "<!channel> see <https://evil.example|here>"})
    assert post(http, server, to_bytes(notification([hostile]))).status_code == 200
    message = slack.wait_message(lambda m: m.channel == ALERTS)
    text = json.dumps(message.blocks)
    assert "<!channel>" not in text and "&lt;!channel&gt;" in text


def test_a_group_of_hostile_alerts_is_shown_within_slacks_limits(
        http: httpx.Client, server: ServerThread, slack: SlackStandIn) -> None:
    """Issue 10, items 3 and 15: an alertname over 3,000 characters made a block Slack refused,
    and the group was never shown; alert text could format, ping or link."""
    hostile = "*b* _i_ ~s~ `t` <x> & <!channel> <@U123> <http://x|y> :fire:"
    long_name = "Hostile" + "N" * 3500
    alerts = [alert({"alertname": long_name, "severity": "critical",
                     "namespace": "shop-staging", "pod": f"pod-{i}"},
                    annotations={"summary": f"{hostile}\n> quoted {i}"}) for i in range(60)]
    assert post(http, server, to_bytes(notification(alerts))).status_code == 200
    message = slack.wait_message(lambda m: m.channel == ALERTS)
    assert message.text.startswith("FIRING Hostile")
    people = [shown(t["text"]) for t in text_objects(message.blocks)]
    assert people[0].endswith("(60 firing, 0 resolved)")
    assert any(f"{hostile}\n> quoted " in p for p in people)  # as typed, not a quote
    assert any("… and 45 more" in p for p in people)
    assert not [p for t in text_objects(message.blocks) for p in pings(t["text"])]
    assert slack.rejected == []
