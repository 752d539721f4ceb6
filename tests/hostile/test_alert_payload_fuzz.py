"""Any body posted to `POST /alertmanager` with the right credentials gets 200 (stored) or a
4xx that says why, never a 5xx (Alertmanager would retry it for ever) and never a crash: in
the parser, and on the real server on SQLite and PostgreSQL, where an accepted notification is
also processed and shown without an error."""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from hypothesis import event, given
from hypothesis import strategies as st

from bot.alerts.payload import BadPayload, Notification, parse_notification
from bot.services import Services
from bot.slack.app import build_services
from bot.slack.server import create_app
from simcluster import SimCluster
from tests.alerts.conftest import TOKEN, alert_settings_for
from tests.hostile.conftest import examples
from tests.support.alert_payloads import alert, notification
from tests.support.signing import SIGNING_SECRET
from tests.support.slack_standin import BOT_TOKEN, ServerThread, SlackStandIn

# Text as labels carry it, and as an attacker would: any code point (lone surrogates and NUL
# included), markup, template syntax, very long values.
text = st.one_of(
    st.text(max_size=40),
    st.sampled_from(["", "\x00", "\ud800", "{{ 7*7 }}", "<!channel>", "*x*", "shop-staging",
                     "shop-worker-5d8f7c9b6-x2x4q", "critical", "../.."]),
)
long_text = st.integers(9_000, 12_000).map(lambda n: "a" * n)  # around the 10,000 limit
json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | text | long_text,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(text, inner, max_size=4),
    max_leaves=12,
)
LABEL_NAMES = ["alertname", "severity", "namespace", "pod", "deployment", "container", "job",
               "service", "instance", "persistentvolumeclaim", "horizontalpodautoscaler"]
# Mostly text a store keeps (so notifications get through to processing and Slack), sometimes
# anything at all.
storable_text = st.text(st.characters(exclude_categories=["Cs"], exclude_characters="\x00"),
                        max_size=40)
label_text = st.one_of(*[storable_text] * 8, text, long_text)
labels = st.dictionaries(st.one_of(st.sampled_from(LABEL_NAMES), label_text), label_text,
                         max_size=5)
FIELDS = ["version", "groupKey", "truncatedAlerts", "status", "receiver", "groupLabels",
          "commonLabels", "commonAnnotations", "externalURL", "alerts"]
ALERT_FIELDS = ["status", "labels", "annotations", "startsAt", "endsAt", "generatorURL",
                "fingerprint"]


@st.composite
def near_valid(draw: st.DrawFn) -> dict[str, Any]:
    """A notification as Alertmanager sends it, with hostile labels and annotations, and some
    fields replaced by any JSON value or left out."""
    alerts = [alert({"alertname": "TestCrashLoop", **draw(labels)},
                    status=draw(st.sampled_from(["firing", "resolved"])),
                    annotations=draw(labels))
              for _ in range(draw(st.integers(1, 2)))]
    payload = notification(alerts)
    for item in alerts:
        for name in draw(st.lists(st.sampled_from(ALERT_FIELDS), max_size=2) | st.just([])):
            if draw(st.booleans()):
                item[name] = draw(json_values)
            else:
                item.pop(name, None)
    for name in draw(st.lists(st.sampled_from(FIELDS), max_size=2) | st.just([]) | st.just([])):
        if draw(st.booleans()):
            payload[name] = draw(json_values)
        else:
            payload.pop(name, None)
    return payload


def encoded(payload: Any, encoding: str = "utf-8") -> bytes:
    # surrogatepass: a lone surrogate goes out as JSON escapes, as any client may send it.
    return json.dumps(payload).encode(encoding, "surrogatepass")


bodies = st.one_of(
    st.binary(max_size=300),
    json_values.map(encoded),
    near_valid().map(encoded),
    st.tuples(near_valid(), st.sampled_from(["utf-16", "utf-32"])).map(lambda p: encoded(*p)),
)


@st.composite
def storable(draw: st.DrawFn) -> dict[str, Any]:
    """A well-formed notification whose labels and annotations hold any text a store keeps:
    these are accepted, then processed and shown in Slack."""
    kept = st.dictionaries(st.one_of(st.sampled_from(LABEL_NAMES), storable_text),
                           storable_text, max_size=5)
    return notification([alert({"alertname": "TestCrashLoop", **draw(kept)},
                               status=draw(st.sampled_from(["firing", "resolved"])),
                               annotations=draw(kept))
                         for _ in range(draw(st.integers(1, 2)))])


# On the server, half are notifications that get through, so processing is exercised too.
server_bodies = st.one_of(storable().map(encoded), storable().map(encoded), bodies)


@examples(400)
@given(body=bodies)
def test_any_body_parses_or_is_a_bad_payload_that_says_why(body: bytes) -> None:
    try:
        parsed = parse_notification(body)
    except BadPayload as exc:
        assert str(exc).strip() and exc.reason
        event(f"refused: {exc.reason}")
        return
    event("accepted")
    assert isinstance(parsed, Notification)


@examples(150)
@given(payload=near_valid())
def test_hostile_labels_alone_are_accepted_or_refused_by_name(payload: dict[str, Any]) -> None:
    try:
        parse_notification(encoded(payload))
    except BadPayload as exc:
        assert exc.reason in {"invalid", "not_json", "version", "nul_character",
                              "lone_surrogate"}


@pytest.fixture
def intake(sim: SimCluster, tmp_path: Path, slack: SlackStandIn,
           database_url: str) -> Iterator[tuple[ServerThread, Services]]:
    settings = alert_settings_for(sim, tmp_path, environ={
        "SLACK_BOT_TOKEN": BOT_TOKEN, "SLACK_SIGNING_SECRET": SIGNING_SECRET,
        "SLACK_API_URL": slack.api_url, "OPSBOT_DATABASE_URL": database_url})
    built = build_services(settings)
    running = ServerThread(create_app(built, shutdown_grace=10)).start()
    yield running, built
    running.stop()
    built.close()


def processed(services: Services, timeout: float = 30.0) -> bool:
    """True once every stored notification has been processed (alerts recorded, shown)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not services.store.unprocessed_notifications():
            return True
        time.sleep(0.05)
    return False


@examples(16)
@given(body=server_bodies)
@pytest.mark.slow
def test_any_body_gets_200_or_a_4xx_with_a_reason_on_either_database(
        intake: tuple[ServerThread, Services], caplog: pytest.LogCaptureFixture,
        body: bytes) -> None:
    server, services = intake
    caplog.set_level(logging.INFO)
    caplog.clear()
    response = httpx.post(f"{server.url}/alertmanager", content=body, timeout=30.0,
                          headers={"authorization": f"Bearer {TOKEN}",
                                   "content-type": "application/json"})
    assert response.status_code == 200 or 400 <= response.status_code < 500, response.text
    event(f"answered {response.status_code}")  # --hypothesis-show-statistics shows the mix
    answer = response.json()
    if response.status_code == 200:
        assert answer["status"] == "stored"
        assert processed(services), "an accepted notification was never processed"
    else:
        assert answer["message"].strip()
    crashed = [r for r in caplog.records if r.exc_info and r.levelno >= logging.ERROR]
    assert not crashed, crashed[0].getMessage()
