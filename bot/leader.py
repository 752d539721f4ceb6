"""Which replica leads: a `coordination.k8s.io/v1` Lease, taken and kept as client-go's
leaderelection does, so only one process runs the scheduler and recovery.

A candidate reads the Lease every retry period. It takes it when it is absent (create), has no
holder (released), or has not changed for `leaseDurationSeconds` as measured on our own clock
(client-go's observed time, so replicas' clocks need not agree). The leader renews it every
retry period and steps down when no renewal has succeeded for the renew deadline. Every write
is a replace carrying the `resourceVersion` read: of two racing writers the API server answers
the second with 409 Conflict, and it tries again next period. On shutdown the leader releases
the Lease (holder cleared, duration 1 s) so a follower takes over at once.

`SoleLeader` is the same interface for a process alone on its database (SQLite), which leads
from the start and holds no Lease.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import threading
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Protocol

from bot.kube import client, kube_errors
from bot.metrics import LEADER

__all__ = ["Leadership", "LeaseConfig", "LeaseElector", "SoleLeader", "pod_namespace"]

log = logging.getLogger("opsbot.leader")

_NAMESPACE_FILE = Path("/var/run/secrets/kubernetes.io/serviceaccount/namespace")

Callback = Callable[[], Awaitable[None]]


def pod_namespace(environ: Mapping[str, str] | None = None) -> str:
    """The namespace this pod runs in (`POD_NAMESPACE`, else the service account's), else
    `default`."""
    env = os.environ if environ is None else environ
    if env.get("POD_NAMESPACE"):
        return env["POD_NAMESPACE"]
    with contextlib.suppress(OSError):
        text = _NAMESPACE_FILE.read_text(encoding="utf-8").strip()
        if text:
            return text
    return "default"


class Leadership(Protocol):
    """What the rest of opsbot sees of the election."""

    identity: str

    @property
    def is_leader(self) -> bool: ...

    def detail(self) -> dict[str, Any]: ...

    async def start(self) -> None: ...

    async def stop(self) -> None: ...


@dataclass(frozen=True)
class LeaseConfig:
    name: str
    namespace: str
    identity: str
    lease_duration: float = 15.0
    renew_deadline: float = 10.0
    retry_period: float = 2.0


class SoleLeader:
    """Leads from start to stop: one process alone on its database."""

    def __init__(self, identity: str, on_started: Callback, on_stopped: Callback) -> None:
        self.identity = identity
        self._on_started, self._on_stopped = on_started, on_stopped
        self._leading = False

    @property
    def is_leader(self) -> bool:
        return self._leading

    def detail(self) -> dict[str, Any]:
        return {"leader": self._leading, "identity": self.identity, "election": "none"}

    async def start(self) -> None:
        self._leading = True
        LEADER.set(1)
        await self._on_started()

    async def stop(self) -> None:
        if self._leading:
            self._leading = False
            LEADER.set(0)
            await self._on_stopped()


@dataclass
class _Observed:
    holder: str | None
    renew_time: Any
    resource_version: str | None
    at: float  # our monotonic clock when the record last changed


class LeaseElector:
    """Campaigns for the Lease in the background; `on_started` runs when this replica becomes
    leader, `on_stopped` when it stops being one (lost, or at `stop`)."""

    def __init__(self, api: client.CoordinationV1Api, config: LeaseConfig, *,
                 on_started: Callback, on_stopped: Callback,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.identity = config.identity
        self._api, self._config, self._clock = api, config, clock
        self._on_started, self._on_stopped = on_started, on_stopped
        self._observed: _Observed | None = None
        self._leading = False
        self._last_renew = 0.0
        self._task: asyncio.Task[None] | None = None
        self._failures = 0
        # One read-then-write of the Lease at a time. Cancelling the campaign does not stop a
        # round already in its thread: without this, a renewal that read before the release
        # and wrote after it made the release's write a 409 (the Lease then held until it
        # expired), or, reading after it, took the Lease back for a replica on its way out.
        self._writing = threading.Lock()
        self._stopped = False

    @property
    def is_leader(self) -> bool:
        return self._leading

    def detail(self) -> dict[str, Any]:
        observed = self._observed
        return {
            "leader": self._leading,
            "identity": self.identity,
            "election": "lease",
            "lease": f"{self._config.namespace}/{self._config.name}",
            "holder": observed.holder if observed else None,
        }

    async def start(self) -> None:
        LEADER.set(0)
        self._stopped = False
        if self._task is None:
            self._task = asyncio.create_task(self._campaign(), name="opsbot leader election")

    async def stop(self) -> None:
        """Stop campaigning; a leader runs `on_stopped` (its work ends), then releases."""
        self._stopped = True
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        if self._leading:
            await self._step_down("shutting down")
            await self._release()

    async def _campaign(self) -> None:
        period = self._config.retry_period
        while True:
            try:
                ok = await self._try_acquire_or_renew()
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # the API server is unreachable or refuses: try again
                ok = False
                self._failures += 1
                if self._failures in (1, 10) or self._failures % 100 == 0:
                    log.warning("leader election: the Lease %s/%s could not be read or "
                                "written (%s)", self._config.namespace, self._config.name,
                                _reason(exc))
            else:
                self._failures = 0
            now = self._clock()
            if ok:
                self._last_renew = now
                if not self._leading:
                    self._leading = True
                    LEADER.set(1)
                    log.info("became the leader (Lease %s/%s, identity %s)",
                             self._config.namespace, self._config.name, self.identity)
                    try:
                        await self._on_started()
                    except asyncio.CancelledError:
                        raise
                    except Exception:
                        log.exception("starting the leader's work failed")
            elif self._leading and now - self._last_renew >= self._config.renew_deadline:
                await self._step_down("the Lease could not be renewed in time")
            await asyncio.sleep(period)

    async def _step_down(self, why: str) -> None:
        self._leading = False
        LEADER.set(0)
        log.warning("no longer the leader: %s", why)
        try:
            await self._on_stopped()
        except Exception:
            log.exception("stopping the leader's work failed")

    def _timeout(self) -> float:
        return max(0.5, min(self._config.renew_deadline / 2, 5.0))

    async def _try_acquire_or_renew(self) -> bool:
        return await asyncio.to_thread(self._try_acquire_or_renew_sync)

    def _try_acquire_or_renew_sync(self) -> bool:
        with self._writing:
            if self._stopped:  # stopped while this round waited: it must not write
                return False
            return self._acquire_or_renew()

    def _acquire_or_renew(self) -> bool:
        cfg, now = self._config, _micro_now()
        try:
            lease = self._api.read_namespaced_lease(cfg.name, cfg.namespace,
                                                    _request_timeout=self._timeout())
        except kube_errors.ApiException as exc:
            if exc.status != 404:
                raise
            body = client.V1Lease(
                metadata=client.V1ObjectMeta(name=cfg.name, namespace=cfg.namespace),
                spec=client.V1LeaseSpec(
                    holder_identity=self.identity,
                    lease_duration_seconds=max(1, round(cfg.lease_duration)),
                    acquire_time=now, renew_time=now, lease_transitions=0,
                ),
            )
            try:
                created = self._api.create_namespaced_lease(cfg.namespace, body,
                                                            _request_timeout=self._timeout())
            except kube_errors.ApiException as exc2:
                if exc2.status == 409:  # another replica made it first
                    return False
                raise
            self._observe(created)
            return True
        self._observe(lease)
        spec = lease.spec or client.V1LeaseSpec()
        holder = spec.holder_identity or None
        assert self._observed is not None
        if holder and holder != self.identity:
            duration = float(spec.lease_duration_seconds or cfg.lease_duration)
            if self._observed.at + duration > self._clock():
                return False  # held, and renewed within its duration as we saw it
        if holder == self.identity:
            acquire, transitions = spec.acquire_time or now, spec.lease_transitions or 0
        else:
            acquire, transitions = now, (spec.lease_transitions or 0) + 1
        lease.spec = client.V1LeaseSpec(
            holder_identity=self.identity,
            lease_duration_seconds=max(1, round(cfg.lease_duration)),
            acquire_time=acquire, renew_time=now, lease_transitions=transitions,
        )
        try:
            updated = self._api.replace_namespaced_lease(cfg.name, cfg.namespace, lease,
                                                         _request_timeout=self._timeout())
        except kube_errors.ApiException as exc:
            if exc.status == 409:  # someone wrote it since we read it: their turn
                return False
            raise
        self._observe(updated)
        return True

    def _observe(self, lease: client.V1Lease) -> None:
        spec = lease.spec or client.V1LeaseSpec()
        holder = spec.holder_identity or None
        version = lease.metadata.resource_version if lease.metadata else None
        seen = self._observed
        if seen is None or (seen.holder, seen.renew_time, seen.resource_version) != (
                holder, spec.renew_time, version):
            self._observed = _Observed(holder, spec.renew_time, version, self._clock())

    async def _release(self) -> None:
        """Clear the holder (client-go's release), so the next candidate need not wait out
        the lease duration; a failure only means the others wait for expiry."""
        try:
            await asyncio.to_thread(self._release_sync)
        except Exception as exc:
            log.warning("leader election: the Lease was not released (%s); the others take "
                        "over when it expires", _reason(exc))

    def _release_sync(self) -> None:
        with self._writing:  # after a round still in its thread, never between its two calls
            self._release_now()

    def _release_now(self) -> None:
        cfg, now = self._config, _micro_now()
        lease = self._api.read_namespaced_lease(cfg.name, cfg.namespace,
                                                _request_timeout=self._timeout())
        spec = lease.spec or client.V1LeaseSpec()
        if spec.holder_identity != self.identity:
            return
        lease.spec = client.V1LeaseSpec(
            holder_identity=None, lease_duration_seconds=1, acquire_time=now, renew_time=now,
            lease_transitions=spec.lease_transitions or 0,
        )
        self._api.replace_namespaced_lease(cfg.name, cfg.namespace, lease,
                                           _request_timeout=self._timeout())
        log.info("released the Lease %s/%s", cfg.namespace, cfg.name)


def _micro_now() -> datetime:
    return datetime.now(UTC)


def _reason(exc: BaseException) -> str:
    if isinstance(exc, kube_errors.ApiException):
        return f"HTTP {exc.status} {exc.reason}"
    return type(exc).__name__
