"""Every malformed, oversized or unsigned request to /slack/events gets a 4xx at once from the
real server, is logged in one line and never with its body, and runs nothing. Each request
carries MARK; it must not reach any log record, at any level."""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator
from typing import Any
from urllib.parse import parse_qsl, urlencode

import httpx
import pytest

from bot.config import Settings
from bot.services import Services
from bot.slack.app import build_services
from bot.slack.server import create_app
from tests.slack.test_slack_requests import barrier, executions
from tests.support.signing import block_actions_body, signed_headers, slash_command_body
from tests.support.slack_standin import ServerThread, SlackDriver

MARK = "zq-body-marker-7f3a"
FORM = "application/x-www-form-urlencoded"
Case = tuple[str, bytes, dict[str, Any]]  # name, body, headers (str, or raw bytes)


def command(**changes: str | None) -> dict[str, str]:
    """A slash command's fields; a None value leaves the field out."""
    fields = dict(parse_qsl(slash_command_body("U0ALICE", f"scale shop-api 7 --reason {MARK}")))
    fields.update({k: v for k, v in changes.items() if v is not None})
    return {k: v for k, v in fields.items() if changes.get(k, "") is not None}


def click(**changes: Any) -> dict[str, Any]:
    """A click on a follow-up button whose message carries MARK; a None value leaves it out."""
    action = {"type": "button", "action_id": "opsbot_run_1", "value": "scale shop-api 7",
              "text": {"type": "plain_text", "text": "Scale"}}
    message = {"type": "message", "ts": "1700000000.000001", "text": MARK, "blocks": []}
    body = block_actions_body("U0ALICE", action, channel_id="C0OPS", message=message)
    payload: dict[str, Any] = json.loads(dict(parse_qsl(body))["payload"])
    payload.update({k: v for k, v in changes.items() if v is not None})
    return {k: v for k, v in payload.items() if changes.get(k, "") is not None}


def deny_form(view: dict[str, Any] | None) -> dict[str, Any]:
    """A submitted modal; `view` (None: none at all) is given its type."""
    return {"type": "view_submission", "user": {"id": "U0BOB"}, "trigger_id": "1.2.x",
            "view": None if view is None else {"type": "modal", **view}, "mark": MARK}


def form(fields: dict[str, str]) -> bytes:
    return urlencode(fields).encode()


def payload(value: Any) -> bytes:
    return form({"payload": value if isinstance(value, str) else json.dumps(value)})


def signed(name: str, raw: bytes, content_type: str = FORM, secret: str = "") -> Case:
    return name, raw, signed_headers(raw, secret or "standin-signing-secret",
                                     content_type=content_type)


def post(bot: SlackDriver, raw: bytes, headers: dict[str, Any]) -> httpx.Response:
    return bot.http.post(f"{bot.url}/slack/events", content=raw, headers=headers)


def outcome(bot: SlackDriver, caplog: pytest.LogCaptureFixture, case: Case) -> tuple[int, int]:
    """The status of `case` and how many log lines said it was refused; checks that no record
    holds MARK (or the signing secret) and none is an error with a traceback."""
    name, raw, headers = case
    caplog.clear()
    response = post(bot, raw, headers)
    records = list(caplog.records)
    for record in records:
        text = record.getMessage() + (record.exc_text or "")
        assert MARK not in text, f"{name}: the body reached the log: {text[:200]}"
        assert bot.secret not in text, f"{name}: the signing secret reached the log"
        assert record.exc_info is None and record.levelno < logging.ERROR, \
            f"{name}: {record.levelname} {text[:200]}"
    refusals = [r for r in records if "refused" in r.getMessage()]
    assert all("\n" not in r.getMessage() for r in refusals)
    return response.status_code, len(refusals)


def statuses(bot: SlackDriver, caplog: pytest.LogCaptureFixture,
             cases: list[Case]) -> dict[str, tuple[int, int]]:
    caplog.set_level(logging.DEBUG)
    return {case[0]: outcome(bot, caplog, case) for case in cases}


def test_bad_or_missing_signature_headers_get_401(
        bot: SlackDriver, services: Services, caplog: pytest.LogCaptureFixture) -> None:
    raw = form(command())
    good = signed_headers(raw, bot.secret)
    now = good["X-Slack-Request-Timestamp"]
    cases: list[Case] = [
        ("timestamp not a number", raw, {**good, "X-Slack-Request-Timestamp": "abc"}),
        ("timestamp missing", raw, {k: v for k, v in good.items()
                                    if k != "X-Slack-Request-Timestamp"}),
        ("timestamp in other digits", raw, {**good, "X-Slack-Request-Timestamp":
                                            "".join(chr(0x0660 + int(d)) for d in now).encode()}),
        ("timestamp with a sign", raw, {**good, "X-Slack-Request-Timestamp": f"+{now}"}),
        ("timestamp far too long", raw, {**good, "X-Slack-Request-Timestamp": "9" * 40}),
        ("signature missing", raw, {k: v for k, v in good.items() if k != "X-Slack-Signature"}),
        ("signature not ASCII", raw, {**good, "X-Slack-Signature": "v0=\u00fc\u00e9".encode()}),
        ("signature of another scheme", raw,
         {**good, "X-Slack-Signature": good["X-Slack-Signature"].replace("v0=", "v1=")}),
        ("no Slack headers", raw, {"Content-Type": FORM}),
        ("another secret", raw, signed_headers(raw, "not-the-signing-secret")),
        ("unsigned and not UTF-8", b"text=\xff\xfe" + MARK.encode(), {"Content-Type": FORM}),
        ("unsigned JSON", json.dumps({"type": "url_verification", "challenge": MARK}).encode(),
         {"Content-Type": "application/json"}),
    ]
    results = statuses(bot, caplog, cases)
    assert results == {name: (401, 1) for name, _, _ in cases}
    answer = post(bot, raw, {**good, "X-Slack-Request-Timestamp": "abc"})
    assert "X-Slack-Request-Timestamp" in answer.json()["error"]
    barrier(bot)
    assert executions(services) == [("U0ALICE", "status shop-web")]


def test_signed_but_malformed_requests_get_400_at_once(
        bot: SlackDriver, services: Services, caplog: pytest.LogCaptureFixture) -> None:
    state = {"values": {"reason": {"reason": "not an object"}}}
    deep = "[" * 5000 + "]" * 5000
    cases: list[Case] = [
        signed("payload not JSON", payload("{" + MARK)),
        signed("payload a JSON array", payload([MARK])),
        signed("payload without a type", payload({"user": {"id": "U0ALICE"}, "m": MARK})),
        signed("payload of a type opsbot does not handle",
               payload({"type": "shortcut", "user": {"id": "U0ALICE"}, "callback_id": MARK})),
        signed("payload nested too deep", payload('{"type": "block_actions", "x": ' + deep + "}")),
        signed("block_actions with no actions", payload(click(actions=[]))),
        signed("block_actions with no user", payload(click(user=None))),
        signed("block_actions user without id", payload(click(user={"name": MARK}))),
        signed("block_actions without trigger_id", payload(click(trigger_id=None))),
        signed("block_actions action value a number",
               payload(click(actions=[{"action_id": "opsbot_run_1", "value": 7}]))),
        signed("block_actions action without action_id",
               payload(click(actions=[{"value": MARK}]))),
        signed("block_actions channel a string", payload(click(channel=MARK))),
        signed("view_submission without view", payload(deny_form(None))),
        signed("view_submission view without type",
               payload(deny_form({"callback_id": "opsbot_deny_modal"}) | {"view": {"id": "V"}})),
        signed("view_submission of a legacy workflow step", payload(deny_form(
            {"callback_id": "opsbot_deny_modal"}) | {"view": {"type": "workflow_step",
                                                             "callback_id": MARK}})),
        signed("view_submission view without callback_id",
               payload(deny_form({"id": "V1", "private_metadata": MARK}))),
        signed("view_submission state of the wrong shape",
               payload(deny_form({"callback_id": "opsbot_deny_modal", "state": state}))),
        signed("command without user_id", form(command(user_id=None))),
        signed("command without trigger_id", form(command(trigger_id=None))),
        signed("command without channel_id", form(command(channel_id=None))),
        signed("command with an empty user_id", form(command(user_id=""))),
        # Text a person typed with a NUL or a lone surrogate is answered by the dispatcher with a
        # usage message (test_slack_unstorable.py); in Slack's own fields it is refused here.
        signed("command with a NUL in its user_id", form(command(user_id=f"U0ALICE\x00{MARK}"))),
        signed("a click with a lone surrogate in its channel", payload(click(
            channel={"id": "C0OPS\ud800"}))),
        signed("a form with a NUL in its metadata", payload(deny_form({
            "callback_id": "opsbot_deny_modal", "private_metadata": "rq-abcd1234|C0OPS\x00",
            "state": {"values": {"reason": {"reason": {"value": MARK}}}}}))),
        # opsbot takes its own command without Bolt (see the test below); another goes to Bolt.
        signed("another command with authorizations Bolt cannot read",
               form(command(command="/other", authorizations=MARK))),
        signed("a form field given twice", form(command()) + b"&user_id=U0BOB"),
        signed("a form with too many fields",
               form({**command(), **{f"f{i}": MARK for i in range(100)}})),
        signed("not a well-formed form", MARK.encode()),
        signed("an empty body", b""),
        signed("a form that is not UTF-8", b"command=%2Fops&text=\xff" + MARK.encode()),
        signed("percent-escapes that are not UTF-8", form(command()) + b"&x=%ff%fe"),
        signed("JSON that is not an object", json.dumps([MARK]).encode(), "application/json"),
        signed("JSON that does not parse", b"{" + MARK.encode(), "application/json"),
        signed("an Events API event", json.dumps(
            {"type": "event_callback", "event": MARK}).encode(), "application/json"),
        signed("url_verification without challenge", json.dumps(
            {"type": "url_verification", "token": MARK}).encode(), "application/json"),
    ]
    media: list[Case] = [
        signed("plain text", form(command()), "text/plain"),
        signed("no content type", form(command()), ""),
        signed("multipart", form(command()), "multipart/form-data; boundary=x"),
    ]
    results = statuses(bot, caplog, cases + media)
    assert results == {name: (400, 1) for name, _, _ in cases} | \
                      {name: (415, 1) for name, _, _ in media}
    barrier(bot)
    assert executions(services) == [("U0ALICE", "status shop-web")]
    assert not [c for c in bot.slack.calls if c.params.get("user") == "U0BOB"]


def test_a_command_with_a_field_opsbot_does_not_read_is_run(
        bot: SlackDriver, services: Services) -> None:
    # Slack adds fields over time; opsbot's own command is taken without Bolt, which could
    # not read this one (the case above).
    raw = form(command(text="status shop-worker", authorizations="not Bolt's shape"))
    assert post(bot, raw, signed("", raw)[2]).status_code == 200
    bot.finished("status shop-worker")  # its own message: a barrier may finish first
    assert ("U0ALICE", "status shop-worker") in executions(services)


def test_a_signed_request_no_listener_handles_gets_404_in_one_line(
        bot: SlackDriver, services: Services, caplog: pytest.LogCaptureFixture) -> None:
    cases = [
        signed("another slash command", form(command(command="/other"))),
        signed("a button that is not opsbot's",
               payload(click(actions=[{"action_id": "someone_elses", "value": MARK}]))),
        signed("a form that is not opsbot's", payload(deny_form({"callback_id": MARK}))),
    ]
    assert statuses(bot, caplog, cases) == {name: (404, 1) for name, _, _ in cases}
    barrier(bot)
    assert executions(services) == [("U0ALICE", "status shop-web")]


def test_bodies_over_one_mib_get_413_before_they_are_read(
        bot: SlackDriver, services: Services, caplog: pytest.LogCaptureFixture) -> None:
    big = form(command(text=f"status shop-api --reason {MARK}{'x' * 1_100_000}"))

    def chunks() -> Iterator[bytes]:  # no Content-Length: cut while streaming
        yield form(command())
        for _ in range(300):
            yield MARK.encode() * 400

    caplog.set_level(logging.DEBUG)
    cases: list[Case] = [
        ("unsigned", big, {"Content-Type": FORM}),
        signed("signed", big),
    ]
    results = statuses(bot, caplog, cases)
    assert results == {"unsigned": (413, 1), "signed": (413, 1)}
    caplog.clear()
    chunked = bot.http.post(f"{bot.url}/slack/events", content=chunks(),
                            headers={"Content-Type": FORM})
    assert chunked.status_code == 413
    assert "over 1048576 bytes" in chunked.json()["error"]
    assert MARK not in caplog.text
    barrier(bot)
    assert executions(services) == [("U0ALICE", "status shop-web")]


def test_slacks_unsigned_ssl_check_gets_an_empty_200_and_nothing_else(
        bot: SlackDriver, services: Services) -> None:
    probe = post(bot, b"ssl_check=1&token=verification-token", {"Content-Type": FORM})
    assert (probe.status_code, probe.content) == (200, b"")
    # Fields smuggled next to ssl_check=1 are never acted on.
    smuggled = post(bot, b"ssl_check=1&" + form(command()), {"Content-Type": FORM})
    assert (smuggled.status_code, smuggled.content) == (200, b"")
    not_a_probe = post(bot, b"ssl_check=0&" + form(command()), {"Content-Type": FORM})
    assert not_a_probe.status_code == 401
    barrier(bot)
    assert executions(services) == [("U0ALICE", "status shop-web")]


def test_a_signed_url_verification_is_answered_with_its_challenge(bot: SlackDriver) -> None:
    raw = json.dumps({"type": "url_verification", "token": "t", "challenge": "c-123"}).encode()
    response = post(bot, raw, signed_headers(raw, bot.secret, content_type="application/json"))
    assert response.status_code == 200
    assert response.json() == {"challenge": "c-123"}


def test_a_command_whose_text_says_payload_runs(bot: SlackDriver, services: Services) -> None:
    """Bolt's own parser took any form containing "payload" for an interactivity payload."""
    assert bot.send_command("alice", "status shop-api --reason payload").status_code == 200
    message = bot.finished("status shop-api --reason payload")
    assert message.text.split("\n")[0].endswith(": done")


@pytest.fixture
def unsecured(settings: Settings) -> Iterator[ServerThread]:
    """The server built without a signing secret (`serve` refuses this; `create_app` must
    still not accept anything)."""
    bare = settings.model_copy(update={"slack": settings.slack.model_copy(
        update={"signing_secret": None})})
    services = build_services(bare)
    running = ServerThread(create_app(services, shutdown_grace=5)).start()
    yield running
    running.stop()
    services.close()


def test_without_a_signing_secret_nothing_is_accepted(unsecured: ServerThread) -> None:
    raw = form(command(text="status shop-api"))
    with httpx.Client(timeout=30) as http:
        response = http.post(f"{unsecured.url}/slack/events", content=raw,
                             headers=signed_headers(raw, ""))
    assert response.status_code == 401


def test_the_refusals_are_counted(bot: SlackDriver) -> None:
    post(bot, form(command()), {"Content-Type": FORM, "X-Slack-Request-Timestamp": "abc"})
    metrics = bot.http.get(f"{bot.url}/metrics").text
    assert 'opsbot_slack_requests_refused_total{status="401"}' in metrics
