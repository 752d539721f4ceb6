"""`POST /alertmanager`: Alertmanager's webhook, answered 2xx only once the notification is
committed to the store.

Answers: 200 stored; 400 not JSON, not payload version 4, or a field we depend on is wrong
(retrying cannot help, so Alertmanager should not); 401 missing or wrong credentials; 413
body over the configured limit; 503 the store is unavailable (transient: Alertmanager retries,
and the retry is deduplicated by alert state).
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import hmac
import json
import logging
from collections.abc import Callable

from starlette.requests import ClientDisconnect, Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from bot.alerts.payload import BadPayload, parse_notification
from bot.config import Settings
from bot.metrics import ALERT_NOTIFICATIONS
from bot.numbers import is_digits
from bot.store import Store, StoreError

__all__ = ["alertmanager_route", "authorized"]

log = logging.getLogger("opsbot.alerts")


def authorized(header: str, token: str, username: str) -> bool:
    """`Bearer <token>`, or Basic with `username` and the token as password; compared in
    constant time."""
    scheme, _, value = header.strip().partition(" ")
    expected = token.encode()
    if scheme.lower() == "bearer":
        return hmac.compare_digest(value.strip().encode(), expected)
    if scheme.lower() == "basic":
        try:
            decoded = base64.b64decode(value.strip(), validate=True)
        except (binascii.Error, ValueError):
            return False
        user, sep, password = decoded.partition(b":")
        same_user = hmac.compare_digest(user, username.encode())
        same_password = hmac.compare_digest(password, expected)
        return bool(sep) and same_user & same_password
    return False


def alertmanager_route(settings: Settings, store: Store, wake: Callable[[], None]) -> Route:
    limit = settings.alerts.max_body_bytes
    warned = False

    def answer(status: int, outcome: str, message: str, **headers: str) -> Response:
        ALERT_NOTIFICATIONS.labels(outcome=outcome).inc()
        return JSONResponse({"status": outcome, "message": message}, status_code=status,
                            headers=headers or None)

    async def receive(request: Request) -> Response:
        nonlocal warned
        token = settings.alertmanager_token
        if token is None:
            if not warned:
                warned = True
                log.error("an Alertmanager notification was refused: set "
                          "OPSBOT_ALERTMANAGER_TOKEN to accept them")
            return answer(401, "unauthorized", "alert intake is not configured")
        if not authorized(request.headers.get("authorization", ""), token.get_secret_value(),
                          settings.alerts.basic_auth_username):
            return answer(401, "unauthorized", "missing or wrong credentials",
                          **{"WWW-Authenticate": 'Bearer realm="opsbot", Basic realm="opsbot"'})
        declared = request.headers.get("content-length", "")
        if is_digits(declared) and int(declared) > limit:
            return answer(413, "too_large", f"the body is over {limit} bytes")
        body = bytearray()
        try:
            async for chunk in request.stream():
                body += chunk
                if len(body) > limit:
                    return answer(413, "too_large", f"the body is over {limit} bytes")
        except ClientDisconnect:
            return answer(400, "bad_request", "the client went away")
        if b"\\u0000" in body:
            return answer(400, "bad_request", "NUL characters are not accepted")
        try:
            notification = parse_notification(bytes(body))
        except BadPayload as exc:
            log.warning("Alertmanager notification refused: %s", exc)
            return answer(400, "bad_request", str(exc))
        try:
            notification_id = await asyncio.to_thread(
                store.record_notification, group_key=notification.group_key,
                receiver=notification.receiver, status=notification.status,
                payload=json.loads(body),
            )
        except StoreError as exc:
            log.error("an Alertmanager notification could not be stored (%s); Alertmanager "
                      "will retry", type(exc).__name__)
            return answer(503, "unavailable", "the store is unavailable; retry later")
        wake()
        ALERT_NOTIFICATIONS.labels(outcome="stored").inc()
        return JSONResponse({"status": "stored", "id": notification_id})

    return Route("/alertmanager", receive, methods=["POST"])
