"""`SimCluster`, the one object tests, the demo and `opsbot simcluster` use: it wires store,
REST layer, controllers, scripts and faults, seeds a world and serves it over HTTP."""

from __future__ import annotations

import random
import secrets
import ssl
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import yaml

from . import (  # noqa: F401  (the controller modules register themselves)
    admin,
    autoscaling,
    deployments,
    endpoints,
    housekeeping,
    jobs,
    kubelet,
    replicasets,
    rollouts,
    statefulsets,
    volumes,
)
from .access import Access, AccessLog
from .behaviours import CrashLoop, Scripts, workloads_of
from .clock import SimClock
from .controllers import BUILTINS, ControllerManager, ControllerRegistry, Ctx
from .dispatch import Dispatcher, ObjectStorage
from .errors import ApiError
from .faults import Faults
from .podlogs import PodLogs
from .podstate import exposition as pod_state_exposition
from .rbac import Authorizer
from .resources import ResourceRegistry
from .rest import ListQuery, RestApi
from .routing import Route, parse
from .seed import Seeder, run_seed
from .server import ServerThread
from .store import Store, clone
from .tls import Certificates, certificates
from .traffic import DEFAULT_ERROR_RATIO, DEFAULT_P99_SECONDS, Profile, Traffic
from .velero import DEFAULT_FAILURE, Outcome, OutcomeScript, Velero

JSON = dict[str, Any]


class SimCluster:
    """A simulated Kubernetes API server with controllers, seeded with `seed` ("demo" or
    "empty"). Construct, `start()`, point a kubeconfig at it, `stop()`.

    It serves HTTPS, as an API server does, with a CA made for the process (`ca_file`,
    `ssl_context()`, and `certificate-authority-data` in the kubeconfigs it writes); `tls=False`
    serves plain HTTP, for debugging only: kubectl and helm send no token over it."""

    def __init__(self, seed: str = "demo", tick_seconds: float = 0.05,
                 token: str | None = None, tls: bool = True) -> None:
        self.seed_name = seed
        self.tls = tls
        self._certificates: Certificates | None = None
        self.token = token or secrets.token_urlsafe(24)
        self.clock = SimClock()
        self.store = Store()
        self.types = ResourceRegistry.builtin()
        self.scripts = Scripts()
        self.faults = Faults()
        self.api = RestApi(self.store, self.types, self.clock, random.Random(f"simcluster:{seed}"))
        self.api.read_log = PodLogs(self.scripts, self._owner, self.clock)
        self.controllers: ControllerRegistry = BUILTINS.copy()
        self.manager = ControllerManager(Ctx(self.api, self.scripts), self.controllers,
                                         tick_seconds)
        self.traffic = Traffic(self.store, self.types)
        self.velero = Velero()
        self.velero.install(self.controllers)
        self.accesses = AccessLog()
        self.authorizer = Authorizer(self.store, self.types, self.token)
        self._server: ServerThread | None = None
        self._storage: ServerThread | None = None  # Velero's downloads, when serving TLS
        run_seed(seed, Seeder(self.api, self.manager, self.scripts, self.clock,
                              self.traffic.scripts))
        # After seeding: the replayed history served no traffic. Advancing on every pass
        # credits requests to the pods that were ready at the time.
        self.controllers.every_pass(name="traffic")(lambda _ctx: self.traffic.advance())

    # -- lifecycle --------------------------------------------------------------------

    def start(self, host: str = "127.0.0.1", port: int = 0) -> SimCluster:
        dispatcher = Dispatcher(self.api, self.faults, self.token,
                                lambda request: admin.handle(self, request),
                                lambda: self._address, self.velero.download, self.accesses,
                                self.authorizer)
        self.velero.base_url = lambda: self.url
        tls = None
        if self.tls:
            tls = self._serving(host).server_context()
            # Download URLs point at object storage, which is not the API server: plain HTTP
            # on a port of its own, as an in-cluster MinIO serves them.
            self._storage = ServerThread(ObjectStorage(dispatcher), host, 0)
            self._storage.start()
            storage_host, storage_port = self._storage.address
            storage = f"{storage_host}:{storage_port}"
            self.velero.base_url = lambda: f"http://{storage}"
        self._server = ServerThread(dispatcher, host, port, tls)
        self._server.start()
        self.manager.start()
        return self

    def stop(self) -> None:
        self.manager.stop()
        self.store.close()
        if self._server is not None:
            self._server.stop()
            self._server = None
        if self._storage is not None:
            self._storage.stop()
            self._storage = None

    def __enter__(self) -> SimCluster:
        return self if self._server else self.start()

    def __exit__(self, *_: object) -> None:
        self.stop()

    @property
    def _address(self) -> str:
        if self._server is None:
            raise RuntimeError("SimCluster is not started")
        host, port = self._server.address
        return f"{host}:{port}"

    @property
    def url(self) -> str:
        return f"{'https' if self.tls else 'http'}://{self._address}"

    def _serving(self, host: str = "127.0.0.1") -> Certificates:
        if self._certificates is None or (host and host not in self._certificates.names
                                          and host not in ("0.0.0.0", "::")):
            self._certificates = certificates(host)
        return self._certificates

    @property
    def ca_file(self) -> Path:
        """The CA's PEM file, for clients that verify the server (Prometheus, httpx, curl);
        made before `start()` too, for the loopback names."""
        return self._serving(self._server.address[0] if self._server else "127.0.0.1").ca_file

    def ssl_context(self) -> ssl.SSLContext:
        """A client context that trusts this cluster's CA (and nothing else)."""
        return self._serving().client_context()

    def service_account_token(self, namespace: str, name: str) -> str:
        """A bearer token that authenticates as the ServiceAccount: RBAC decides what it may
        do (the admin token may do anything)."""
        return self.authorizer.mint(namespace, name)

    def write_kubeconfig(self, path: str | Path, context: str = "sim",
                         token: str | None = None) -> str:
        """A kubeconfig for this cluster: as the admin, or with `token` (a ServiceAccount's,
        from `service_account_token`)."""
        cluster: dict[str, Any] = {"server": self.url}
        if self.tls:
            cluster["certificate-authority-data"] = self._serving().ca_data
        config = {
            "apiVersion": "v1", "kind": "Config", "preferences": {},
            "clusters": [{"name": context, "cluster": cluster}],
            "users": [{"name": f"{context}-user", "user": {"token": token or self.token}}],
            "contexts": [{"name": context, "context": {"cluster": context,
                                                       "user": f"{context}-user",
                                                       "namespace": "default"}}],
            "current-context": context,
        }
        Path(path).write_text(yaml.safe_dump(config, sort_keys=False))
        return str(path)

    # -- inspection -------------------------------------------------------------------

    def snapshot(self) -> dict[str, JSON]:
        """Deep copy of every object, keyed "group/version/kind/namespace/name" (the core
        group is spelled "core"; cluster-scoped objects have an empty namespace)."""
        return self.store.snapshot()

    def get(self, api_path: str) -> JSON | None:
        """The stored object a REST path names (a List for a collection path), or None."""
        try:
            route = parse(api_path.split("?")[0])
            if not isinstance(route, Route):
                return None
            if route.name is None:
                return self.api.list(route, ListQuery())
            return clone(self.api.get(route))
        except ApiError:
            return None

    @contextmanager
    def recording(self) -> Iterator[list[Access]]:
        """Every request authenticated clients make over HTTP during the block, as RBAC sees it
        (verb, group, resource, subresource, namespace). The controllers, the seed and this
        object's own methods write in-process and are not recorded; neither is `/_sim/`."""
        with self.accesses.recording() as seen:
            yield seen

    def wait_idle(self, timeout: float = 5.0) -> None:
        """Drive controllers until a pass changes nothing (TimeoutError if they never settle)."""
        self.manager.wait_idle(timeout)

    def advance(self, seconds: float) -> None:
        """Move the simulated clock forward (deadlines, event TTL, crash-loop ages)."""
        self.clock.advance(seconds)

    # -- scripted behaviour -----------------------------------------------------------

    def script_crashloop(self, namespace: str, workload_name: str, container: str,
                         reason: str = "OOMKilled", exit_code: int = 137, restarts: int = 7,
                         log: str = "", over_minutes: float = 30) -> None:
        self.scripts.add_crashloop(CrashLoop(namespace, workload_name, container, reason,
                                             exit_code, restarts, log, over_minutes))

    def script_image_pull_error(self, image_substring: str) -> None:
        self.scripts.add_image_pull_error(image_substring)

    def script_never_ready(self, namespace: str, workload_name: str) -> None:
        self.scripts.add_never_ready(namespace, workload_name)

    def script_cpu_utilization(self, namespace: str, workload_name: str, percent: int) -> None:
        """The resource metrics API reports this average CPU utilization (% of requests) for
        the workload's pods, whatever their number; HPAs targeting it scale on it."""
        self.scripts.set_cpu_utilization(namespace, workload_name, percent)

    def script_traffic(self, image_substring: str, error_ratio: float = DEFAULT_ERROR_RATIO,
                       p99_seconds: float = DEFAULT_P99_SECONDS) -> None:
        """Pods running an image containing `image_substring` answer this share of requests
        with 500 and have this 99th percentile latency (ValueError when out of range)."""
        self.traffic.scripts.add(image_substring, Profile(error_ratio, p99_seconds))

    def metrics_text(self) -> str:
        """What `GET /_sim/metrics` serves, in Prometheus text format: the synthetic traffic,
        kube-state-metrics' container series (restarts, waiting reasons, limits) and modelled
        cAdvisor CPU and memory use (`podstate.py`)."""
        return self.traffic.exposition() + pod_state_exposition(
            self.store, self.types, self.clock.now(),
            lambda pod: self.scripts.cpu_utilization_for(
                pod["metadata"].get("namespace", ""), workloads_of(pod, self._owner)))

    def script_backup(self, name_prefix: str, outcome: Outcome, *, errors: int = 1,
                      warnings: int = 0, failure_reason: str = DEFAULT_FAILURE) -> None:
        """Velero backups whose name starts with `name_prefix` end PartiallyFailed (`errors`
        > 0, contents still recorded), Failed (`failureReason`), or "hang" InProgress."""
        self.velero.script_backup(OutcomeScript(name_prefix, outcome, errors, warnings,
                                                failure_reason))

    def script_restore(self, name_prefix: str, outcome: Outcome, *, errors: int = 1,
                       warnings: int = 0, failure_reason: str = DEFAULT_FAILURE) -> None:
        """Velero restores whose name starts with `name_prefix` end PartiallyFailed (objects
        restored, `errors` added), Failed after restoring some, or "hang" InProgress."""
        self.velero.script_restore(OutcomeScript(name_prefix, outcome, errors, warnings,
                                                 failure_reason))

    def run_schedule(self, namespace: str, name: str) -> JSON | None:
        """Fire a Velero Schedule now, as its cron would (the simulation runs no cron): the
        Backup created, or None when one of its backups is still New or InProgress.
        LookupError for a missing Schedule, ValueError for a paused or invalid one."""
        with self.store.lock:
            return self.velero.run_schedule(self.manager.ctx, namespace, name)

    def backup_contents(self, name: str) -> list[JSON] | None:
        """Copies of the objects a completed Velero backup recorded (what the simulated object
        storage holds for it), or None."""
        return self.velero.contents(name)

    def restore_results(self, name: str) -> JSON | None:
        """A finished Velero restore's `{"warnings": ..., "errors": ...}`, each
        `{"velero": [...], "cluster": [...], "namespaces": {ns: [...]}}`, or None."""
        return self.velero.results(name)

    def clear_scripts(self) -> None:
        self.scripts.clear()
        self.traffic.scripts.clear()
        self.velero.clear_scripts()

    def _owner(self, kind: str, namespace: str, name: str) -> JSON | None:
        rtype = self.types.by_kind("apps", kind)
        return self.store.get(rtype, namespace, name) if rtype is not None else None

