"""A local stand-in of the Slack Web API, reached over real HTTP like slack.com.

opsbot's `AsyncWebClient` is pointed at it through `SLACK_API_URL`; it records every call
(method, parameters, auth header), answers as Slack does, keeps each message's current state,
and can be told to fail (a channel the bot is not in, a method that errors) or to be unwell
for a while (`fault`: per method, answer 429 with `Retry-After`, answer 5xx, or hang; `Gate`:
refuse connections altogether).
Like Slack, it
refuses a message or modal over Block Kit's limits (`tests/support/block_kit.py`), so every
test that posts through it checks them; `rejected` keeps what it refused, and why. File uploads
work as `files_upload_v2` does them: `files.getUploadURLExternal` hands out an upload URL on this
stand-in, the bytes are POSTed there, `files.completeUploadExternal` shares them in a channel or
thread; `uploads` keeps each file with its bytes.
Also here: `ServerThread`, which serves any ASGI app on 127.0.0.1 in a background thread.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import re
import socket
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Literal
from urllib.parse import urlencode

import httpx
import uvicorn
from aiohttp import WSMsgType, web
from starlette.applications import Starlette
from starlette.datastructures import UploadFile
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, PlainTextResponse, Response
from starlette.routing import Route
from starlette.types import ASGIApp

from tests.support.block_kit import message_problems, modal_problems
from tests.support.signing import (
    TEAM_ID,
    block_actions_body,
    signed_headers,
    slash_command_body,
)

__all__ = [
    "BOT_TOKEN",
    "CHANNEL",
    "USERS",
    "Call",
    "Fault",
    "Gate",
    "Message",
    "ServerThread",
    "SlackDriver",
    "SlackStandIn",
    "SocketModeStandIn",
    "Upload",
    "button",
]

BOT_TOKEN = "xoxb-standin-token"
APP_TOKEN = "xapp-standin-token"
BOT_USER = "U0OPSBOT"
CHANNEL = "C0OPS"
USERS = {"alice": "U0ALICE", "bob": "U0BOB", "carol": "U0CAROL", "mallory": "U0MALLORY"}
# The end of a final headline: `…: done`, `…: done, not checked: Verify`, `…: refused`, ...
FINAL = re.compile(r": (done|failed|refused|interrupted|cancelled)(, not checked: [^\n]+)?\Z")
DEFAULT_TIMEOUT = 20.0  # generous: a loaded 2-core machine runs this suite


class ServerThread:
    """Serves an ASGI app with uvicorn on 127.0.0.1:<free port> in a daemon thread."""

    def __init__(self, app: ASGIApp, *, lifespan: Literal["on", "off"] = "on") -> None:
        self._socket = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._socket.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._socket.bind(("127.0.0.1", 0))
        self.port: int = self._socket.getsockname()[1]
        config = uvicorn.Config(app, lifespan=lifespan, log_level="warning", access_log=False)
        self.server = uvicorn.Server(config)
        self._thread = threading.Thread(
            target=self.server.run, kwargs={"sockets": [self._socket]}, daemon=True,
            name=f"uvicorn-{self.port}",
        )

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, timeout: float = DEFAULT_TIMEOUT) -> ServerThread:
        self._thread.start()
        deadline = time.monotonic() + timeout
        while not self.server.started:
            if not self._thread.is_alive():
                raise RuntimeError(f"server on port {self.port} did not start")
            if time.monotonic() > deadline:
                raise TimeoutError(f"server on port {self.port} not up after {timeout}s")
            time.sleep(0.01)
        return self

    def stop(self, timeout: float = 30.0) -> None:
        self.server.should_exit = True
        if self._thread.ident is not None:  # started
            self._thread.join(timeout)
        self._socket.close()


@dataclass(frozen=True)
class Call:
    """One Web API call as the stand-in received it; `fault` names the trouble it was answered
    with (None: answered as Slack does), `at` when it arrived (time.monotonic), `peer` the
    client's address and port (one per TCP connection)."""

    method: str
    params: dict[str, Any]
    auth: str | None
    http_method: str
    fault: str | None = None
    at: float = field(default_factory=time.monotonic)
    peer: tuple[str, int] | None = None

    @property
    def text(self) -> str:
        return str(self.params.get("text", ""))

    @property
    def served(self) -> bool:
        return self.fault is None


FaultKind = Literal["ratelimited", "error", "hang"]


@dataclass(frozen=True)
class Fault:
    """Trouble a method answers with until `until` (time.monotonic; None: until healed):
    `ratelimited` is HTTP 429 with `Retry-After: retry_after`; `error` is HTTP `status` with
    an HTML body, as Slack's edge answers; `hang` never answers (the request is then answered
    503 once the fault is over). Nothing a faulted call asked for is done."""

    kind: FaultKind
    retry_after: float = 3.0
    status: int = 500
    until: float | None = None

    def active(self) -> bool:
        return self.until is None or time.monotonic() < self.until


@dataclass
class Upload:
    """A file uploaded through the external upload flow; `channel` is set once it is shared."""

    file_id: str
    filename: str
    length: int
    content: bytes | None = None
    title: str | None = None
    channel: str | None = None
    thread_ts: str | None = None
    initial_comment: str | None = None

    @property
    def completed(self) -> bool:
        return self.channel is not None


@dataclass
class Message:
    """A channel message and what it shows now; `versions` counts postMessage + updates."""

    channel: str
    ts: str
    text: str
    blocks: list[dict[str, Any]]
    thread_ts: str | None
    versions: int = 1
    history: list[str] = field(default_factory=list)


class SlackStandIn:
    """The Web API methods opsbot uses, answered from state the test controls."""

    def __init__(self, token: str = BOT_TOKEN) -> None:
        self.token = token
        self.usergroups: dict[str, list[str]] = {}
        self.unpostable: dict[str, str] = {}  # channel -> error postMessage answers
        self.failing: dict[str, str] = {}  # method -> error it answers
        self.faults: dict[str, Fault] = {}  # method (or "*": every method) -> its trouble
        self.calls: list[Call] = []
        self.messages: dict[str, Message] = {}
        self.uploads: dict[str, Upload] = {}  # by file id
        self.views: list[dict[str, Any]] = []  # modals opened with views.open, in order
        self.rejected: list[tuple[str, str, list[str]]] = []  # (method, error, problems)
        self.upload_status = 200  # what the upload URL answers
        self.socket_mode: SocketModeStandIn | None = None
        self._cond = threading.Condition()
        self._ts = itertools.count(1)
        self._files = itertools.count(1)
        self._thread: ServerThread | None = None
        self.app = Starlette(routes=[
            Route("/api/{method}", self._handle, methods=["GET", "POST"]),
            Route("/upload/{file_id}", self._upload, methods=["POST"]),
        ])

    # running --------------------------------------------------------------------------------

    def bind(self) -> SlackStandIn:
        """Take a port without serving on it: calls to `api_url` are refused, as when Slack is
        unreachable, until `start()`."""
        self._thread = ServerThread(self.app, lifespan="off")
        return self

    def start(self) -> SlackStandIn:
        if self._thread is None:
            self.bind()
        assert self._thread is not None
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._thread is not None:
            self._thread.stop()

    @property
    def api_url(self) -> str:
        assert self._thread is not None, "start() the stand-in first"
        return f"{self._thread.url}/api/"

    def reset(self) -> None:
        with self._cond:
            self.usergroups.clear()
            self.unpostable.clear()
            self.failing.clear()
            self.faults.clear()
            self.calls.clear()
            self.messages.clear()
            self.uploads.clear()
            self.views.clear()
            self.rejected.clear()
            self.upload_status = 200
            self.socket_mode = None

    # being unwell -----------------------------------------------------------------------------

    def fault(self, kind: FaultKind, *methods: str, retry_after: float = 3.0, status: int = 500,
              seconds: float | None = None) -> None:
        """From now on (for `seconds`, or until `heal`), `methods` (default: all) answer with
        `kind` of trouble (see `Fault`)."""
        until = time.monotonic() + seconds if seconds is not None else None
        with self._cond:
            for method in methods or ("*",):
                self.faults[method] = Fault(kind, retry_after, status, until)

    def heal(self) -> None:
        """Every method answers normally again; hung calls are answered 503."""
        with self._cond:
            self.faults.clear()
            self._cond.notify_all()

    def _fault(self, method: str) -> Fault | None:
        fault = self.faults.get(method) or self.faults.get("*")
        return fault if fault is not None and fault.active() else None

    def gate(self) -> Gate:
        """A front door to this API that can be told to refuse connections; point opsbot at
        its `api_url`."""
        assert self._thread is not None, "start() the stand-in first"
        return Gate(self._thread.port).start()

    def served(self, method: str, predicate: Callable[[Call], bool] = lambda _: True,
               ) -> list[Call]:
        """The calls of `method` answered as Slack does (not with a fault), in order."""
        return [c for c in self.calls_to(method) if c.served and predicate(c)]

    # looking at what happened ---------------------------------------------------------------

    def calls_to(self, method: str) -> list[Call]:
        with self._cond:
            return [c for c in self.calls if c.method == method]

    def wait_for(
        self, predicate: Callable[[Call], bool], timeout: float = DEFAULT_TIMEOUT
    ) -> Call:
        """The first call (already made or still to come) matching `predicate`."""
        with self._cond:
            found: list[Call] = []

            def ready() -> bool:
                found[:] = [c for c in self.calls if predicate(c)][:1]
                return bool(found)

            if not self._cond.wait_for(ready, timeout):
                seen = ", ".join(f"{c.method}({c.text[:60]!r})" for c in self.calls)
                raise AssertionError(f"no matching Slack call within {timeout}s; saw: {seen}")
            return found[0]

    def message_ids(self) -> set[str]:
        """The ts of every message posted so far."""
        with self._cond:
            return set(self.messages)

    def wait_message(
        self, predicate: Callable[[Message], bool], timeout: float = DEFAULT_TIMEOUT
    ) -> Message:
        """The first message whose current state matches `predicate`."""
        with self._cond:
            found: list[Message] = []

            def ready() -> bool:
                found[:] = [m for m in self.messages.values() if predicate(m)][:1]
                return bool(found)

            if not self._cond.wait_for(ready, timeout):
                states = "; ".join(m.text[:80] for m in self.messages.values())
                refused = f"; refused: {self.rejected}" if self.rejected else ""
                raise AssertionError(
                    f"no matching message within {timeout}s; have: {states}{refused}")
            return found[0]

    def add_message(self, channel: str, text: str) -> Message:
        """A message as if the bot had posted it earlier (say, before a restart)."""
        with self._cond:
            answer = self._chat_postMessage({"channel": channel, "text": text})
            return self.messages[answer["ts"]]

    def wait_upload(
        self, predicate: Callable[[Upload], bool] = lambda _: True,
        timeout: float = DEFAULT_TIMEOUT,
    ) -> Upload:
        """The first completed (shared) upload matching `predicate`."""
        with self._cond:
            found: list[Upload] = []

            def ready() -> bool:
                found[:] = [u for u in self.uploads.values() if u.completed and predicate(u)][:1]
                return bool(found)

            if not self._cond.wait_for(ready, timeout):
                seen = ", ".join(f"{u.filename}({u.completed})" for u in self.uploads.values())
                raise AssertionError(f"no matching upload within {timeout}s; have: {seen}")
            return found[0]

    def replies(self, ts: str) -> list[Message]:
        with self._cond:
            return sorted((m for m in self.messages.values() if m.thread_ts == ts),
                          key=lambda m: float(m.ts))

    # the API ------------------------------------------------------------------------------

    async def _handle(self, request: Request) -> Response:
        method = request.path_params["method"]
        params: dict[str, Any] = dict(request.query_params)
        body = await request.body()
        if request.headers.get("content-type", "").startswith("application/json"):
            params.update(json.loads(body or b"{}"))
        elif body:
            params.update((await request.form()).items())
        for key in ("blocks", "view"):
            if isinstance(params.get(key), str):
                params[key] = json.loads(params[key])
        auth = request.headers.get("authorization")
        with self._cond:
            fault = self._fault(method)
            peer = (request.client.host, request.client.port) if request.client else None
            self.calls.append(Call(method, params, auth, request.method,
                                   fault=fault.kind if fault else None, peer=peer))
            answer = self._answer(method, params, auth) if fault is None else {}
            self._cond.notify_all()
        if fault is None:
            return JSONResponse(answer)
        if fault.kind == "ratelimited":
            return JSONResponse({"ok": False, "error": "ratelimited"}, status_code=429,
                                headers={"Retry-After": f"{fault.retry_after:g}"})
        if fault.kind == "error":
            return HTMLResponse("<html><body>Slack is having trouble</body></html>",
                                status_code=fault.status)
        while True:  # hang: no answer while the fault lasts
            with self._cond:
                if self._fault(method) is None:
                    break
            await asyncio.sleep(0.05)
        return HTMLResponse("<html><body>gave up</body></html>", status_code=503)

    async def _upload(self, request: Request) -> PlainTextResponse:
        """The upload URL: takes the file's bytes (raw or multipart, as Slack accepts both)."""
        body = await request.body()
        if request.headers.get("content-type", "").startswith("multipart/form-data"):
            form = await request.form()
            part = next(iter(form.values()), None)
            body = await part.read() if isinstance(part, UploadFile) \
                else str(part or "").encode()
        with self._cond:
            upload = self.uploads.get(request.path_params["file_id"])
            if upload is None:
                return PlainTextResponse("unknown upload", status_code=404)
            if self.upload_status != 200:
                return PlainTextResponse("upload failed", status_code=self.upload_status)
            upload.content = body
            self._cond.notify_all()
        return PlainTextResponse(f"OK - {len(body)}")

    def _answer(self, method: str, params: dict[str, Any], auth: str | None) -> dict[str, Any]:
        if method == "apps.connections.open":
            if auth != f"Bearer {APP_TOKEN}" or self.socket_mode is None:
                return {"ok": False, "error": "invalid_auth"}
            return {"ok": True, "url": self.socket_mode.url}
        if auth != f"Bearer {self.token}":
            return {"ok": False, "error": "invalid_auth"}
        if method in self.failing:
            return {"ok": False, "error": self.failing[method]}
        handler = getattr(self, "_" + method.replace(".", "_"), None)
        if handler is None:
            return {"ok": False, "error": "unknown_method"}
        refused = self._refusal(method, params)
        if refused is not None:
            error, problems = refused
            self.rejected.append((method, error, problems))
            return {"ok": False, "error": error,
                    "response_metadata": {"messages": [f"[ERROR] {p}" for p in problems]}}
        result: dict[str, Any] = handler(params)
        return result

    @staticmethod
    def _refusal(method: str, params: dict[str, Any]) -> tuple[str, list[str]] | None:
        """Slack's answer to blocks, text or a view over its limits."""
        if method in ("chat.postMessage", "chat.update", "chat.postEphemeral"):
            return message_problems(params.get("blocks"), str(params.get("text", "")))
        if method == "views.open" and isinstance(params.get("view"), dict):
            problems = modal_problems(params["view"])
            return ("invalid_arguments", problems) if problems else None
        return None

    def _auth_test(self, _: dict[str, Any]) -> dict[str, Any]:
        return {"ok": True, "url": "https://standin.slack.test/", "team": "Stand-in",
                "user": "opsbot", "team_id": "T0STANDIN", "user_id": BOT_USER,
                "bot_id": "B0OPSBOT"}

    def _next_ts(self) -> str:
        return f"1700000000.{next(self._ts):06d}"

    def _chat_postMessage(self, p: dict[str, Any]) -> dict[str, Any]:
        channel = str(p.get("channel", ""))
        if channel in self.unpostable:
            return {"ok": False, "error": self.unpostable[channel]}
        ts = self._next_ts()
        text = str(p.get("text", ""))
        self.messages[ts] = Message(channel, ts, text, list(p.get("blocks") or []),
                                    p.get("thread_ts"), history=[text])
        return {"ok": True, "channel": channel, "ts": ts,
                "message": {"text": text, "ts": ts, "user": BOT_USER}}

    def _chat_update(self, p: dict[str, Any]) -> dict[str, Any]:
        message = self.messages.get(str(p.get("ts")))
        if message is None or message.channel != p.get("channel"):
            return {"ok": False, "error": "message_not_found"}
        message.text = str(p.get("text", ""))
        message.blocks = list(p.get("blocks") or [])
        message.versions += 1
        message.history.append(message.text)
        return {"ok": True, "channel": message.channel, "ts": message.ts, "text": message.text}

    def _chat_postEphemeral(self, p: dict[str, Any]) -> dict[str, Any]:
        channel = str(p.get("channel", ""))
        if self.unpostable.get(channel) == "channel_not_found":
            return {"ok": False, "error": "channel_not_found"}
        return {"ok": True, "message_ts": self._next_ts()}

    def _files_getUploadURLExternal(self, p: dict[str, Any]) -> dict[str, Any]:
        if not p.get("filename") or not str(p.get("length", "")).isdigit():
            return {"ok": False, "error": "invalid_arguments"}
        assert self._thread is not None
        file_id = f"F0{next(self._files):08d}"
        self.uploads[file_id] = Upload(file_id, str(p["filename"]), int(p["length"]))
        return {"ok": True, "file_id": file_id,
                "upload_url": f"{self._thread.url}/upload/{file_id}"}

    def _files_completeUploadExternal(self, p: dict[str, Any]) -> dict[str, Any]:
        files = p.get("files")
        items = json.loads(files) if isinstance(files, str) else files or []
        channel = p.get("channel_id")
        if channel and channel in self.unpostable:
            return {"ok": False, "error": self.unpostable[channel]}
        shared = []
        for item in items:
            upload = self.uploads.get(str(item.get("id")))
            if upload is None or upload.content is None:
                return {"ok": False, "error": "file_not_found"}
            upload.title = item.get("title")
            upload.channel = str(channel or "")
            upload.thread_ts = p.get("thread_ts")
            upload.initial_comment = p.get("initial_comment")
            shared.append({"id": upload.file_id, "name": upload.filename,
                           "title": upload.title, "size": len(upload.content)})
        return {"ok": True, "files": shared}

    def _views_open(self, p: dict[str, Any]) -> dict[str, Any]:
        """Opens a modal; Slack wants a fresh trigger_id and a view with a type."""
        view = p.get("view")
        if not p.get("trigger_id") or not isinstance(view, dict) or "type" not in view:
            return {"ok": False, "error": "invalid_arguments"}
        opened = dict(view, id=f"V0{len(self.views) + 1:08d}")
        self.views.append(opened)
        return {"ok": True, "view": opened}

    def wait_view(self, timeout: float = DEFAULT_TIMEOUT) -> dict[str, Any]:
        """The newest modal opened, waiting for one if none is open yet."""
        with self._cond:
            if not self._cond.wait_for(lambda: bool(self.views), timeout):
                raise AssertionError(f"no views.open within {timeout}s")
            return self.views[-1]

    def _usergroups_users_list(self, p: dict[str, Any]) -> dict[str, Any]:
        group = str(p.get("usergroup", ""))
        if group not in self.usergroups:
            return {"ok": False, "error": "no_such_subteam"}
        return {"ok": True, "users": list(self.usergroups[group])}


def button(message: Message, label: str) -> dict[str, Any]:
    """The button element labelled `label` under `message`, with its block id."""
    for block in message.blocks:
        for element in block.get("elements", []):
            if element.get("type") == "button" and element["text"]["text"] == label:
                return dict(element, block_id=block.get("block_id", ""))
    raise AssertionError(f"no button {label!r} in {message.text!r}")


@dataclass
class SlackDriver:
    """Plays Slack towards a running opsbot: signed commands and clicks in, the stand-in's
    record of what opsbot answered out. Users are named by handle (`alice`) or id."""

    url: str
    http: httpx.Client
    slack: SlackStandIn
    secret: str

    def post(self, body: str, headers: dict[str, str]) -> httpx.Response:
        return self.http.post(f"{self.url}/slack/events", content=body, headers=headers)

    def send_command(self, user: str, text: str, *, channel: str = CHANNEL) -> httpx.Response:
        """`/ops <text>` typed by `user`, signed and delivered."""
        body = slash_command_body(USERS.get(user, user), text, channel_id=channel)
        return self.post(body, signed_headers(body, self.secret))

    def click(self, user: str, message: Message, label: str) -> httpx.Response:
        """`user` clicks the button labelled `label` under `message`."""
        raw: dict[str, Any] = {"type": "message", "ts": message.ts, "text": message.text,
                               "blocks": message.blocks, "user": BOT_USER}
        if message.thread_ts:
            raw["thread_ts"] = message.thread_ts
        body = block_actions_body(USERS.get(user, user), button(message, label),
                                  channel_id=message.channel, message=raw)
        return self.post(body, signed_headers(body, self.secret))

    def submit(self, user: str, view: dict[str, Any],
               values: dict[str, dict[str, dict[str, Any]]]) -> httpx.Response:
        """`user` submits the modal `view` (as views.open got it) with `values`
        (`{block_id: {action_id: {"type": ..., "value": ...}}}`), signed like Slack does."""
        user_id = USERS.get(user, user)
        payload = {
            "type": "view_submission",
            "team": {"id": TEAM_ID, "domain": "standin"},
            "user": {"id": user_id, "username": user_id.lower(), "team_id": TEAM_ID},
            "api_app_id": "A0OPSBOT",
            "token": "deprecated-verification-token",
            "trigger_id": f"{time.monotonic_ns()}.standin.view",
            "view": dict(view, state={"values": values}, team_id=TEAM_ID, app_id="A0OPSBOT",
                         hash=f"{time.time():.6f}.standin"),
            "response_urls": [],
        }
        body = urlencode({"payload": json.dumps(payload)})
        return self.post(body, signed_headers(body, self.secret))

    def finished(self, command: str, timeout: float = DEFAULT_TIMEOUT) -> Message:
        """The message of `command` once its headline shows a final state."""
        return self.slack.wait_message(
            lambda m: f"`{command}`" in m.text and bool(FINAL.search(m.text.split("\n")[0])),
            timeout,
        )

    def ephemeral(self, user: str, predicate: Callable[[str], bool] = lambda _: True) -> str:
        """The text of the first ephemeral reply to `user` that matches `predicate`."""
        user_id = USERS.get(user, user)
        call = self.slack.wait_for(
            lambda c: c.method == "chat.postEphemeral" and c.params.get("user") == user_id
            and predicate(c.text)
        )
        return call.text


class Gate:
    """A TCP front door to a local server that can refuse connections (as an unreachable API
    does: connection refused, open connections cut) and accept them again on the same port."""

    def __init__(self, target_port: int) -> None:
        self._target = target_port
        self._loop = asyncio.new_event_loop()
        self._server: asyncio.Server | None = None
        self._open: set[asyncio.StreamWriter] = set()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True,
                                        name="slack-gate")
        self.port = 0

    @property
    def api_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/api/"

    def start(self) -> Gate:
        self._thread.start()
        self.accept()
        return self

    def stop(self) -> None:
        self.refuse()
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)

    def _run(self, coro: Any) -> Any:
        return asyncio.run_coroutine_threadsafe(coro, self._loop).result(10)

    def accept(self) -> None:
        """Take connections (again, on the same port)."""
        async def listen() -> None:
            if self._server is None:
                self._server = await asyncio.start_server(
                    self._forward, "127.0.0.1", self.port, reuse_address=True)
                self.port = self._server.sockets[0].getsockname()[1]
        self._run(listen())

    def refuse(self) -> None:
        """Refuse new connections and cut the open ones."""
        async def close() -> None:
            if self._server is not None:
                self._server.close()
                await self._server.wait_closed()
                self._server = None
            for writer in list(self._open):
                writer.transport.abort()
            self._open.clear()
        self._run(close())

    async def _forward(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self._target)
        except OSError:
            writer.transport.abort()
            return
        self._open |= {writer, up_writer}

        async def pipe(source: asyncio.StreamReader, sink: asyncio.StreamWriter) -> None:
            try:
                while data := await source.read(65536):
                    sink.write(data)
                    await sink.drain()
            except (ConnectionError, OSError):
                pass
            finally:
                sink.transport.abort()
                self._open.discard(sink)

        await asyncio.gather(pipe(reader, up_writer), pipe(up_reader, writer))


class SocketModeStandIn:
    """Slack's Socket Mode end: `apps.connections.open` hands out this WebSocket; the test
    sends envelopes through it and waits for opsbot's acks."""

    def __init__(self) -> None:
        self._loop = asyncio.new_event_loop()
        self._sockets: list[web.WebSocketResponse] = []
        self.acks: list[dict[str, Any]] = []
        self._cond = threading.Condition()
        self._stop: asyncio.Event | None = None
        self.port = 0
        self._thread = threading.Thread(target=self._run, daemon=True, name="socket-mode")
        self._up = threading.Event()

    @property
    def url(self) -> str:
        return f"ws://127.0.0.1:{self.port}/link"

    def start(self) -> SocketModeStandIn:
        self._thread.start()
        if not self._up.wait(DEFAULT_TIMEOUT):
            raise TimeoutError("socket mode stand-in did not start")
        return self

    def stop(self) -> None:
        if self._stop is not None:
            self._loop.call_soon_threadsafe(self._stop.set)
        self._thread.join(30)

    def _run(self) -> None:
        self._loop.run_until_complete(self._serve())
        self._loop.close()

    async def _serve(self) -> None:
        self._stop = asyncio.Event()
        app = web.Application()
        app.router.add_get("/link", self._link)
        runner = web.AppRunner(app)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        self.port = runner.addresses[0][1]
        self._up.set()
        await self._stop.wait()
        for ws in list(self._sockets):
            await ws.close()
        await runner.cleanup()

    async def _link(self, request: web.Request) -> web.WebSocketResponse:
        ws = web.WebSocketResponse(autoping=True)
        await ws.prepare(request)
        with self._cond:
            self._sockets.append(ws)
            self._cond.notify_all()
        await ws.send_json({"type": "hello", "num_connections": 1,
                            "connection_info": {"app_id": "A0OPSBOT"}})
        async for frame in ws:
            if frame.type == WSMsgType.TEXT:
                with self._cond:
                    self.acks.append(json.loads(frame.data))
                    self._cond.notify_all()
        with self._cond:
            self._sockets.remove(ws)
        return ws

    def wait_connected(self, timeout: float = DEFAULT_TIMEOUT) -> None:
        with self._cond:
            if not self._cond.wait_for(lambda: bool(self._sockets), timeout):
                raise AssertionError("opsbot did not open a Socket Mode connection")

    def send(self, envelope: dict[str, Any]) -> None:
        ws = self._sockets[-1]
        asyncio.run_coroutine_threadsafe(ws.send_json(envelope), self._loop).result(10)

    def wait_ack(self, envelope_id: str, timeout: float = DEFAULT_TIMEOUT) -> dict[str, Any]:
        with self._cond:
            found: list[dict[str, Any]] = []

            def acked() -> bool:
                found[:] = [a for a in self.acks if a.get("envelope_id") == envelope_id]
                return bool(found)

            if not self._cond.wait_for(acked, timeout):
                raise AssertionError(f"envelope {envelope_id} was not acked within {timeout}s")
            return found[0]
