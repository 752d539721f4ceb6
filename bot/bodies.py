"""Request bodies read with a bound: every POST endpoint of `opsbot serve` refuses an oversized
body from its Content-Length before reading, and while reading one that lies or is chunked, so
a hostile request costs at most `limit` bytes of memory."""

from __future__ import annotations

from starlette.requests import ClientDisconnect, Request

from bot.numbers import is_digits

__all__ = ["BodyGone", "BodyTooLarge", "read_limited"]


class BodyTooLarge(Exception):
    """The body is over the endpoint's limit (answer 413)."""

    def __init__(self, limit: int) -> None:
        super().__init__(f"the body is over {limit} bytes")


class BodyGone(Exception):
    """The client went away before the body was whole (answer 400)."""

    def __init__(self) -> None:
        super().__init__("the client went away")


async def read_limited(request: Request, limit: int) -> bytes:
    declared = request.headers.get("content-length", "")
    if is_digits(declared) and int(declared) > limit:
        raise BodyTooLarge(limit)
    body = bytearray()
    try:
        async for chunk in request.stream():
            body += chunk
            if len(body) > limit:
                raise BodyTooLarge(limit)
    except ClientDisconnect:
        raise BodyGone() from None
    return bytes(body)
