"""A small async client for the Argo CD API (`/api/v1/applications`), the one place opsbot
talks to Argo CD, so its errors come back as ours and its token never leaves this module.

Shapes follow Argo CD's `server/application/application.proto` (Sync, Rollback, Patch) and
`pkg/apis/application/v1alpha1/types.go` (Application, RevisionHistory, OperationState).
Argo CD's gRPC gateway answers errors as `{"error": ..., "code": <grpc code>, "message": ...}`;
FailedPrecondition (code 9, e.g. "rollback cannot be initiated when auto-sync is enabled") and
InvalidArgument come back as HTTP 400.

Errors raised here:

    PermanentError     a 4xx answer (Argo CD's own message), an invalid application name
    └── NotFound       404: the application does not exist
    RetryableError     transport failures, timeouts, 429 and 5xx
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from typing import Any

from bot.errors import NotFound, PermanentError, RetryableError, UsageError
from bot.lazy import httpx
from bot.markup import code
from bot.names import check_dns1123_subdomain

__all__ = ["Application", "ArgoCDClient", "HistoryEntry"]

log = logging.getLogger("opsbot.argocd")

JSON = dict[str, Any]
RUNNING_PHASES = frozenset({"Running", "Terminating"})
FAILED_PHASES = frozenset({"Failed", "Error"})


@dataclass(frozen=True)
class HistoryEntry:
    """One deployment Argo CD remembers (`status.history[]`); `id` is what rollback takes."""

    id: int
    revision: str
    deployed_at: str
    source: JSON
    initiated_by: str = ""  # Argo CD's account name, "automated sync", or "" (older servers)

    @classmethod
    def from_json(cls, data: JSON) -> HistoryEntry:
        initiator = data.get("initiatedBy") or {}
        by = "automated sync" if initiator.get("automated") else initiator.get("username")
        return cls(
            id=int(data.get("id", 0)),
            revision=str(data.get("revision") or ""),
            deployed_at=str(data.get("deployedAt") or ""),
            source=dict(data.get("source") or {}),
            initiated_by=str(by or ""),
        )


@dataclass(frozen=True)
class Application:
    """Read-only view of an Argo CD Application as the API returns it; `raw` is the JSON."""

    raw: JSON

    @property
    def name(self) -> str:
        return str(self.raw.get("metadata", {}).get("name", ""))

    @property
    def spec(self) -> JSON:
        spec: JSON = self.raw.get("spec") or {}
        return spec

    @property
    def status(self) -> JSON:
        status: JSON = self.raw.get("status") or {}
        return status

    @property
    def source(self) -> JSON:
        source: JSON = self.spec.get("source") or {}
        return source

    @property
    def target_revision(self) -> str:
        """What the app tracks (`spec.source.targetRevision`); empty means HEAD."""
        return str(self.source.get("targetRevision") or "HEAD")

    @property
    def namespace(self) -> str:
        """Where the Application object itself lives (Argo CD's own namespace, `argocd`)."""
        return str(self.raw.get("metadata", {}).get("namespace") or "argocd")

    @property
    def destination_namespace(self) -> str | None:
        namespace = (self.spec.get("destination") or {}).get("namespace")
        return str(namespace) if namespace else None

    @property
    def automated(self) -> JSON | None:
        """`spec.syncPolicy.automated` (prune/selfHeal), or None when auto-sync is off."""
        automated = (self.spec.get("syncPolicy") or {}).get("automated")
        return dict(automated) if isinstance(automated, dict) else None

    @property
    def auto_sync(self) -> bool:
        automated = self.automated
        # Newer Argo CD versions may keep the block with `enabled: false`.
        return automated is not None and automated.get("enabled", True) is not False

    @property
    def sync_status(self) -> str:
        return str((self.status.get("sync") or {}).get("status") or "Unknown")

    @property
    def sync_revision(self) -> str | None:
        revision = (self.status.get("sync") or {}).get("revision")
        return str(revision) if revision else None

    @property
    def health_status(self) -> str:
        return str((self.status.get("health") or {}).get("status") or "Unknown")

    @property
    def health_message(self) -> str:
        return str((self.status.get("health") or {}).get("message") or "")

    @property
    def history(self) -> tuple[HistoryEntry, ...]:
        return tuple(HistoryEntry.from_json(h) for h in self.status.get("history") or [])

    @property
    def current(self) -> HistoryEntry | None:
        """The latest deployment (history is oldest first)."""
        history = self.history
        return history[-1] if history else None

    @property
    def images(self) -> tuple[str, ...]:
        """The images Argo CD saw in the live resources (`status.summary.images`)."""
        return tuple(str(i) for i in (self.status.get("summary") or {}).get("images") or [])

    def history_entry(self, history_id: int) -> HistoryEntry | None:
        return next((h for h in self.history if h.id == history_id), None)

    @property
    def operation_pending(self) -> bool:
        """An operation was requested (`operation` set) and the controller has not taken it."""
        return bool(self.raw.get("operation"))

    @property
    def operation_state(self) -> JSON:
        state: JSON = self.status.get("operationState") or {}
        return state

    @property
    def operation_phase(self) -> str | None:
        phase = self.operation_state.get("phase")
        return str(phase) if phase else None

    @property
    def operation_message(self) -> str:
        return str(self.operation_state.get("message") or "")

    @property
    def operation_revision(self) -> str | None:
        sync = (self.operation_state.get("operation") or {}).get("sync") or {}
        revision = sync.get("revision")
        return str(revision) if revision else None

    @property
    def operation_running(self) -> bool:
        return self.operation_pending or self.operation_phase in RUNNING_PHASES

    @property
    def operation_failed(self) -> bool:
        return self.operation_phase in FAILED_PHASES


class ArgoCDClient:
    """`async with ArgoCDClient(url, token) as argocd: app = await argocd.get_app(name)`."""

    def __init__(
        self,
        base_url: str,
        token: str,
        *,
        timeout: float = 15.0,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        if not token:
            raise PermanentError("no Argo CD token: set ARGOCD_TOKEN")
        self._base_url = base_url.rstrip("/")
        self._http = httpx.AsyncClient(
            base_url=self._base_url,
            headers={"Authorization": f"Bearer {token}", "Accept": "application/json"},
            timeout=httpx.Timeout(timeout, connect=5.0),
            transport=transport,
            follow_redirects=False,
        )

    def __repr__(self) -> str:  # never show the token, even by accident
        return f"ArgoCDClient({self._base_url!r})"

    async def __aenter__(self) -> ArgoCDClient:
        return self

    async def __aexit__(self, *_: object) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        await self._http.aclose()

    # -- the API ------------------------------------------------------------------------

    async def get_app(self, name: str) -> Application:
        return Application(await self._request("GET", _app_path(name), what=name))

    async def sync(
        self, name: str, revision: str | None = None, *, prune: bool = False, dry_run: bool = False
    ) -> Application:
        """Start a sync to `revision` (None: the app's targetRevision); returns at once."""
        body: JSON = {"prune": prune, "dryRun": dry_run}
        if revision:
            body["revision"] = revision
        path = f"{_app_path(name)}/sync"
        return Application(await self._request("POST", path, body, what=name))

    async def rollback(self, name: str, history_id: int, *, prune: bool = False) -> Application:
        """Start a rollback to the deployment `history_id`; refused while auto-sync is on."""
        body = {"id": int(history_id), "prune": prune, "dryRun": False}
        path = f"{_app_path(name)}/rollback"
        return Application(await self._request("POST", path, body, what=name))

    async def set_auto_sync(
        self, name: str, enabled: bool, *, automated: JSON | None = None
    ) -> Application:
        """Turn automated sync on (with `automated`'s prune/selfHeal) or off, by merge patch."""
        value: JSON | None = (automated or {"prune": False, "selfHeal": False}) if enabled else None
        patch = json.dumps({"spec": {"syncPolicy": {"automated": value}}})
        body = {"name": name, "patch": patch, "patchType": "merge"}
        return Application(await self._request("PATCH", _app_path(name), body, what=name))

    # -- plumbing -----------------------------------------------------------------------

    async def _request(
        self, method: str, path: str, body: JSON | None = None, *, what: str
    ) -> JSON:
        log.debug("argocd %s %s", method, path)
        try:
            response = await self._http.request(method, path, json=body)
        except httpx.TimeoutException as exc:
            raise RetryableError(f"Argo CD did not answer in time ({method} {path})") from exc
        except httpx.HTTPError as exc:
            raise RetryableError(
                f"Argo CD is unreachable at {self._base_url}: {type(exc).__name__}", delay=2.0
            ) from exc
        if response.is_success:
            try:
                data = response.json()
            except ValueError as exc:
                raise RetryableError(f"Argo CD sent a malformed answer to {method} {path}") from exc
            if not isinstance(data, dict):
                raise PermanentError(f"Argo CD sent an unexpected answer to {method} {path}")
            return data
        raise _error(response, what)


def _app_path(name: str) -> str:
    """The application URL path; the name is checked first so no text shapes the URL."""
    try:
        check_dns1123_subdomain(name, what="Argo CD application name")
    except UsageError as exc:
        raise PermanentError(str(exc)) from exc
    return f"/api/v1/applications/{name}"


def _error(response: httpx.Response, what: str) -> PermanentError | RetryableError:
    status = response.status_code
    message = _message(response)
    if status == 404:
        return NotFound(f"Argo CD has no application {code(what)}: {message}")
    if status in (401, 403):
        hint = (
            "check ARGOCD_TOKEN"
            if status == 401
            else "the app may not exist, or the token's account may not act on it"
        )
        return PermanentError(f"Argo CD refused access ({status}): {message}; {hint}")
    if status == 429 or status >= 500:
        return RetryableError(f"Argo CD failed ({status}): {message}", delay=2.0)
    return PermanentError(f"Argo CD refused the request ({status}): {message}")


def _message(response: httpx.Response) -> str:
    try:
        data = response.json()
    except ValueError:
        return response.reason_phrase or "error"
    if isinstance(data, dict):
        text = data.get("message") or data.get("error")
        if text:
            return str(text)
    return response.reason_phrase or "error"
