"""Only Slack, holding the signing secret, within five minutes of signing, gets a request
acted on; only Alertmanager, holding the webhook token, gets a notification stored. Everything
else is a 401: a changed body, a replay after the window, a timestamp from the past or the
future, another secret, headers in other digits or scripts, huge headers; for the webhook,
missing or wrong credentials of any form."""

from __future__ import annotations

import base64
import hashlib
import hmac
import time

import httpx
import pytest
from hypothesis import assume, given
from hypothesis import strategies as st

from bot.alerts.intake import authorized
from bot.services import Services
from bot.slack.inbound import SIGNATURE_WINDOW_SECONDS, Rejected, verify_signature
from tests.alerts.conftest import TOKEN
from tests.hostile.conftest import examples
from tests.slack.test_slack_requests import barrier, executions
from tests.support.alert_payloads import alert, notification, to_bytes
from tests.support.signing import SIGNING_SECRET, signed_headers, slash_command_body
from tests.support.slack_standin import ServerThread, SlackDriver

NOW = 1_800_000_000.0
USERNAME = "alertmanager"


def sign(body: bytes, timestamp: str, secret: str = SIGNING_SECRET) -> dict[str, str]:
    base = b"v0:" + timestamp.encode() + b":" + body
    digest = hmac.new(secret.encode(), base, hashlib.sha256).hexdigest()
    return {"x-slack-request-timestamp": timestamp, "x-slack-signature": f"v0={digest}"}


def refused(headers: dict[str, str], body: bytes, now: float = NOW) -> bool:
    try:
        verify_signature(SIGNING_SECRET, headers, body, now)
    except Rejected as exc:
        assert exc.status == 401 and exc.reason
        return True
    return False


bodies = st.binary(max_size=2000)
# Header values as a client may send them: Starlette reads header bytes as latin-1.
header_text = st.one_of(
    st.text(st.characters(max_codepoint=0xFF), max_size=80),
    st.text(max_size=40),
    st.integers(-10**15, 10**15).map(str),
    st.integers(0, 10**6).map(lambda n: "9" * n if n < 70_000 else "9"),
)


@examples(200)
@given(body=bodies, skew=st.integers(-SIGNATURE_WINDOW_SECONDS, SIGNATURE_WINDOW_SECONDS))
def test_a_request_signed_within_the_window_is_accepted(body: bytes, skew: int) -> None:
    assert not refused(sign(body, str(int(NOW) + skew)), body)


@examples(200)
@given(body=bodies, changed=bodies)
def test_any_change_to_a_signed_body_is_refused(body: bytes, changed: bytes) -> None:
    assume(changed != body)
    assert refused(sign(body, str(int(NOW))), changed)


@examples(200)
@given(body=bodies, age=st.integers(SIGNATURE_WINDOW_SECONDS + 1, 10**9),
       sign_of=st.sampled_from([-1, 1]))
def test_a_replay_after_five_minutes_or_a_future_timestamp_is_refused(
        body: bytes, age: int, sign_of: int) -> None:
    # The request as it was signed `age` seconds ago (a replay), or as if from the future.
    assert refused(sign(body, str(int(NOW) - sign_of * age)), body)


@examples(200)
@given(body=bodies, secret=st.text(min_size=1, max_size=64))
def test_a_request_signed_with_another_secret_is_refused(body: bytes, secret: str) -> None:
    assume(secret != SIGNING_SECRET)
    assert refused(sign(body, str(int(NOW)), secret), body)


@examples(300)
@given(body=bodies, timestamp=header_text, signature=header_text)
def test_any_header_text_is_a_401_and_never_an_exception(
        body: bytes, timestamp: str, signature: str) -> None:
    good = sign(body, str(int(NOW)))
    assume(signature != good["x-slack-signature"])
    assert refused({"x-slack-request-timestamp": timestamp, "x-slack-signature": signature},
                   body)
    assert refused({**good, "x-slack-signature": signature}, body)
    digits = {str(int(NOW)), f"{int(NOW)}.0"}
    if timestamp not in digits:  # the right digits, another way, are refused too
        assert refused({**sign(body, timestamp), "x-slack-request-timestamp": timestamp}, body)


@examples(100)
@given(timestamp=st.integers(int(NOW) - 100, int(NOW) + 100).map(str),
       script=st.sampled_from([0x0660, 0x06F0, 0x0966, 0xFF10, 0x1D7CE]))
def test_timestamps_in_other_digits_are_refused(timestamp: str, script: int) -> None:
    other = "".join(chr(script + int(d)) for d in timestamp)
    body = b"text=status"
    assert refused({**sign(body, timestamp), "x-slack-request-timestamp": other}, body)


# -- the Alertmanager webhook ----------------------------------------------------------------

def basic(user: str | bytes, password: str | bytes) -> str:
    raw = (user if isinstance(user, bytes) else user.encode()) + b":" + (
        password if isinstance(password, bytes) else password.encode())
    return "Basic " + base64.b64encode(raw).decode()


credentials = st.one_of(
    header_text,
    header_text.map(lambda t: f"Bearer {t}"),
    st.tuples(header_text, header_text).map(lambda p: basic(*p)),
    st.sampled_from([
        "", "Bearer", "Bearer ", f"Bearer {TOKEN[:-1]}", f"Bearer {TOKEN}x", f"Bearer x{TOKEN}",
        f"Bearer {TOKEN.upper()}", f"Token {TOKEN}", f"Basic {TOKEN}", TOKEN,
        basic(TOKEN, USERNAME), basic("", TOKEN), basic("prometheus", TOKEN),
        basic(USERNAME, TOKEN + "x"), basic(USERNAME, ""), f"Bearer {TOKEN}\x00",
        "Basic " + base64.b64encode(f"{USERNAME}:{TOKEN}".encode()).decode()[:-2],
    ]),
)


@examples(300)
@given(header=credentials)
def test_only_the_token_as_bearer_or_basic_password_is_authorized(header: str) -> None:
    right = {f"Bearer {TOKEN}", basic(USERNAME, TOKEN)}
    assume(header.strip() not in right and header.strip() != f"bearer {TOKEN}"
           and header.strip() != f"BEARER {TOKEN}")
    assert not authorized(header, TOKEN, USERNAME)


def test_the_right_credentials_are_authorized() -> None:
    assert authorized(f"Bearer {TOKEN}", TOKEN, USERNAME)
    assert authorized(f"bearer {TOKEN}", TOKEN, USERNAME)  # the scheme is case-insensitive
    assert authorized(basic(USERNAME, TOKEN), TOKEN, USERNAME)


# -- over a real socket --------------------------------------------------------------------


@examples(10)
@given(header=credentials)
@pytest.mark.slow
def test_the_webhook_refuses_wrong_credentials_with_401_and_stores_nothing(
        intake: tuple[ServerThread, Services], header: str) -> None:
    assume(header.strip() not in {f"Bearer {TOKEN}", basic(USERNAME, TOKEN)})
    server, services = intake
    body = to_bytes(notification([alert({"alertname": "TestCrashLoop"})]))
    sent = {"content-type": "application/json"}
    if header:
        sent["authorization"] = header
    response = httpx.post(f"{server.url}/alertmanager", content=body, timeout=30.0,
                          headers={k: v.encode("latin-1", "replace") for k, v in sent.items()})
    assert response.status_code == 401, response.text
    assert TOKEN not in response.text
    assert services.store.unprocessed_notifications() == []


FORGERIES = ["changed", "replayed", "future", "other secret", "huge header"]


def forged(forge: str, salt: bytes) -> tuple[bytes, dict[str, str]]:
    """A slash command by alice that would scale shop-api, forged as `forge` says."""
    command = slash_command_body("U0ALICE", "scale shop-api 5").encode()
    now = int(time.time())
    if forge == "changed":  # signed, then changed on the way: another user, more fields
        headers = signed_headers(command, SIGNING_SECRET)
        return command.replace(b"U0ALICE", b"U0BOB") + salt, headers
    if forge in ("replayed", "future"):
        age = SIGNATURE_WINDOW_SECONDS + 1 + len(salt)
        return command, signed_headers(
            command, SIGNING_SECRET, timestamp=now - age if forge == "replayed" else now + age)
    if forge == "other secret":
        return command, signed_headers(command, salt.hex())
    # A header as big as the HTTP server reads as one (~8 KB): the check refuses it.
    return command, {**signed_headers(command, SIGNING_SECRET),
                     "X-Slack-Signature": "v0=" + salt.hex() * (4000 // len(salt) + 1)}


@examples(3)
@given(data=st.data())
@pytest.mark.slow
def test_forged_slack_requests_get_401_over_a_socket_and_run_nothing(
        bot: SlackDriver, services: Services, data: st.DataObject) -> None:
    before = executions(services)
    cases = data.draw(st.lists(st.tuples(st.sampled_from(FORGERIES),
                                         st.binary(min_size=1, max_size=300)),
                               min_size=len(FORGERIES), max_size=8), label="forgeries")
    for forge, salt in cases:
        body, headers = forged(forge, salt)
        response = bot.http.post(f"{bot.url}/slack/events", content=body, headers=headers)
        assert response.status_code == 401, (forge, response.text[:200])
    barrier(bot)  # had any of them started something, it would show by now
    assert executions(services) == [("U0ALICE", "status shop-web"), *before]


@pytest.mark.slow
def test_a_header_past_the_http_servers_limit_never_reaches_opsbot(
        bot: SlackDriver, services: Services) -> None:
    """uvicorn refuses it (a 4xx, or the connection closed), and serves the next request."""
    command = slash_command_body("U0ALICE", "scale shop-api 5").encode()
    headers = {**signed_headers(command, SIGNING_SECRET),
               "X-Slack-Signature": "v0=" + "f" * 200_000}
    try:
        response = bot.http.post(f"{bot.url}/slack/events", content=command, headers=headers)
        assert 400 <= response.status_code < 500
    except httpx.TransportError:
        pass  # closed at the HTTP layer, before any of opsbot's code
    replay = signed_headers(command, SIGNING_SECRET,
                            timestamp=int(time.time()) - SIGNATURE_WINDOW_SECONDS - 1)
    assert bot.http.post(f"{bot.url}/slack/events", content=command,
                         headers=replay).status_code == 401
    barrier(bot)
    assert executions(services) == [("U0ALICE", "status shop-web")]
