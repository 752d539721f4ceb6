"""`POST /alertmanager`: Alertmanager's webhook, answered 2xx only once the notification is
committed to the store.

Answers: 200 stored; 400 not JSON, not payload version 4, a field we depend on is wrong, or
text anywhere in it that no store keeps (NUL, lone surrogates: see bot/storable.py), since
retrying cannot help, so Alertmanager should not; 401 missing or wrong credentials; 413 body
over the configured limit; 503 the store is unavailable, or the body did not all arrive within
`BODY_SECONDS` (transient: Alertmanager retries, and the retry is deduplicated by alert
state). Every 4xx is counted by reason in `/metrics`.
"""

from __future__ import annotations

import base64
import binascii
import codecs
import hmac
import logging
from collections.abc import Callable

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from bot.alerts.payload import BadPayload, read_notification
from bot.bodies import BodyGone, BodyTooLarge, BodyTooSlow, read_limited
from bot.config import Settings
from bot.metrics import ALERT_NOTIFICATIONS, ALERT_NOTIFICATIONS_REFUSED
from bot.pacing import Foreground
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


def _text(body: bytes) -> str | None:
    """The body as the JSON text it is, to be stored as received; None when it is JSON only
    to `json.loads` of bytes (UTF-16 or 32, or a byte order mark), which is then stored as
    read."""
    if body.startswith(codecs.BOM_UTF8):
        return None
    try:
        return body.decode("utf-8")
    except UnicodeDecodeError:
        return None


def alertmanager_route(settings: Settings, store: Store, wake: Callable[[], None],
                       foreground: Foreground | None = None) -> Route:
    limit = settings.alerts.max_body_bytes
    warned = False
    stored = ALERT_NOTIFICATIONS.labels(outcome="stored")  # every 2xx counts here

    def answer(status: int, outcome: str, message: str, **headers: str) -> Response:
        ALERT_NOTIFICATIONS.labels(outcome=outcome).inc()
        return JSONResponse({"status": outcome, "message": message}, status_code=status,
                            headers=headers or None)

    def refuse(status: int, outcome: str, reason: str, message: str,
               **headers: str) -> Response:
        ALERT_NOTIFICATIONS_REFUSED.labels(reason=reason).inc()
        return answer(status, outcome, message, **headers)

    async def receive(request: Request) -> Response:
        # In flight until answered: processing waits for the intake (bot/pacing.py).
        if foreground is None:
            return await take(request)
        foreground.begin()
        try:
            return await take(request)
        finally:
            foreground.end()

    async def take(request: Request) -> Response:
        nonlocal warned
        token = settings.alertmanager_token
        if token is None:
            if not warned:
                warned = True
                log.error("an Alertmanager notification was refused: set "
                          "OPSBOT_ALERTMANAGER_TOKEN to accept them")
            return refuse(401, "unauthorized", "unauthorized", "alert intake is not configured")
        if not authorized(request.headers.get("authorization", ""), token.get_secret_value(),
                          settings.alerts.basic_auth_username):
            return refuse(401, "unauthorized", "unauthorized", "missing or wrong credentials",
                          **{"WWW-Authenticate": 'Bearer realm="opsbot", Basic realm="opsbot"'})
        try:
            body = await read_limited(request, limit)
        except BodyTooLarge as exc:
            return refuse(413, "too_large", "too_large", str(exc))
        except BodyGone as exc:
            return refuse(400, "bad_request", "disconnected", str(exc))
        except BodyTooSlow as exc:
            # Past the credentials, a stuck body is most likely the network's fault, and
            # Alertmanager retries a 5xx only (a 408 would drop the notification).
            return answer(503, "too_slow", f"{exc}; retry later", Connection="close")
        try:
            raw, notification = read_notification(body)
        except BadPayload as exc:
            # What was wrong, never the body: it may be anything, up to a megabyte.
            log.warning("Alertmanager notification refused (%s): %s", exc.reason, exc)
            return refuse(400, "bad_request", exc.reason, str(exc))
        try:
            # The store bounds its own waits; this bounds ours, so a database that never
            # answers costs Alertmanager a few seconds and a retry, not a hung request.
            # Committed with the notifications arriving meanwhile (bot/store/batch.py).
            notification_id = await store.commit_notification(
                group_key=notification.group_key, receiver=notification.receiver,
                status=notification.status, payload=raw, payload_json=_text(body),
                timeout=store.deadline)
        except (StoreError, TimeoutError) as exc:
            log.error("an Alertmanager notification could not be stored (%s); Alertmanager "
                      "will retry", type(exc).__name__)
            return answer(503, "unavailable", "the store is unavailable; retry later")
        wake()
        stored.inc()
        # JSONResponse's bytes, without encoding them again: an id is letters, digits and '-'.
        return Response(b'{"status":"stored","id":"%s"}' % notification_id.encode(),
                        media_type="application/json")

    return Route("/alertmanager", receive, methods=["POST"])
