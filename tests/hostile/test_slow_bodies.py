"""A body sent slowly, or never, costs a connection for `BODY_SECONDS` at most: then the
request is answered (408 on Slack's endpoint; 503 on Alertmanager's, past its credentials,
which Alertmanager retries), its connection closed, nothing stored, and it no longer counts
as a request in flight (which holds background work back, bot/pacing.py)."""

from __future__ import annotations

import asyncio
import json
import logging
import socket
from urllib.parse import urlsplit

import pytest
from starlette.requests import Request

from bot.bodies import BODY_SECONDS, BodyTooSlow, read_limited
from bot.services import Services
from tests.alerts.conftest import TOKEN
from tests.support.slack_standin import ServerThread

MARK = b"never-logged-body"


def partial_request(url: str, path: str, headers: bytes) -> socket.socket:
    """Headers and the first bytes of a 1,000-byte body, then nothing more."""
    where = urlsplit(url)
    sock = socket.create_connection((where.hostname, where.port))
    sock.settimeout(BODY_SECONDS * 3)  # a bound for a broken server, not a speed check
    sock.sendall(f"POST {path} HTTP/1.1\r\nHost: opsbot\r\nContent-Length: 1000\r\n".encode()
                 + headers + b"\r\n" + MARK)
    return sock


def answer_then_closed(sock: socket.socket) -> bytes:
    """Everything the server sends until it closes the connection."""
    received = b""
    with sock:
        while chunk := sock.recv(65536):
            received += chunk
    return received


@pytest.mark.slow
def test_a_body_that_never_arrives_is_answered_in_10_s_and_its_connection_closed(
        intake: tuple[ServerThread, Services], caplog: pytest.LogCaptureFixture) -> None:
    server, services = intake
    caplog.set_level(logging.DEBUG)
    slack = partial_request(server.url, "/slack/events",
                            b"Content-Type: application/x-www-form-urlencoded\r\n")
    webhook = partial_request(server.url, "/alertmanager",
                              b"Content-Type: application/json\r\n"
                              + f"Authorization: Bearer {TOKEN}\r\n".encode())
    late = f"the body did not arrive within {BODY_SECONDS:g} s"
    for sock, status, key, said in ((slack, b"408", "error", late),
                                    (webhook, b"503", "message", f"{late}; retry later")):
        head, _, body = answer_then_closed(sock).partition(b"\r\n\r\n")
        assert head.startswith(b"HTTP/1.1 " + status + b" "), head
        assert b"\r\nconnection: close" in head.lower()
        assert json.loads(body)[key] == said
    assert services.foreground.in_flight == 0
    assert services.store.unprocessed_notifications() == []
    assert MARK.decode() not in caplog.text


async def test_the_deadline_covers_the_whole_body_not_each_part() -> None:
    """A body trickling in, each part well within the deadline, is cut off all the same."""
    parts = 0

    async def receive() -> dict[str, object]:
        nonlocal parts
        parts += 1
        await asyncio.sleep(0.02)
        return {"type": "http.request", "body": b"x", "more_body": True}

    request = Request({"type": "http", "method": "POST", "headers": []}, receive)
    with pytest.raises(BodyTooSlow):
        await read_limited(request, 1_000_000, seconds=0.2)
    assert 2 < parts < 100

    async def whole() -> dict[str, object]:
        return {"type": "http.request", "body": b"all of it", "more_body": False}

    assert await read_limited(Request({"type": "http", "method": "POST", "headers": []}, whole),
                              100, seconds=0.2) == b"all of it"
