"""Request bodies read with bounds: every POST endpoint of `opsbot serve` refuses an oversized
body from its Content-Length before reading, and while reading one that lies or is chunked, so
a hostile request costs at most `limit` bytes of memory; and a body that has not arrived
`BODY_SECONDS` after the request's headers is refused, so a client sending it slowly, or
never, holds a connection (and counts as a request in flight, bot/pacing.py) no longer."""

from __future__ import annotations

from starlette.requests import Request

from bot.deadlines import Deadline
from bot.numbers import is_digits

__all__ = ["BODY_SECONDS", "BodyGone", "BodyTooLarge", "BodyTooSlow", "read_limited"]

#: How long a body may take to arrive once the headers have. Slack's and Alertmanager's bodies
#: (at most a megabyte, over a data centre's network) arrive in milliseconds.
BODY_SECONDS = 10.0


class BodyTooLarge(Exception):
    """The body is over the endpoint's limit (answer 413)."""

    def __init__(self, limit: int) -> None:
        super().__init__(f"the body is over {limit} bytes")


class BodyTooSlow(Exception):
    """The body did not arrive within the deadline: answer 408 (503 to a client that retries
    only a 5xx, as Alertmanager does), and close the connection."""

    def __init__(self, seconds: float) -> None:
        super().__init__(f"the body did not arrive within {seconds:g} s")


class BodyGone(Exception):
    """The client went away before the body was whole (answer 400)."""

    def __init__(self) -> None:
        super().__init__("the client went away")


async def read_limited(request: Request, limit: int, seconds: float = BODY_SECONDS) -> bytes:
    """The body of `request`, read from its ASGI messages (once: the request's own `body()`
    and `stream()` cannot read it again). A body that came whole in one message, as most do,
    is returned without a copy."""
    declared = request.headers.get("content-length", "")
    if is_digits(declared) and int(declared) > limit:
        raise BodyTooLarge(limit)
    receive = request.receive
    body = bytearray()
    try:
        with Deadline(seconds):
            while True:
                message = await receive()
                if message["type"] == "http.disconnect":
                    raise BodyGone()
                if message["type"] != "http.request":
                    continue
                chunk = message.get("body", b"")
                if not message.get("more_body", False):
                    if not body:
                        if len(chunk) > limit:
                            raise BodyTooLarge(limit)
                        return bytes(chunk)
                    body += chunk
                    break
                body += chunk
                if len(body) > limit:
                    raise BodyTooLarge(limit)
    except TimeoutError:
        raise BodyTooSlow(seconds) from None
    if len(body) > limit:
        raise BodyTooLarge(limit)
    return bytes(body)
