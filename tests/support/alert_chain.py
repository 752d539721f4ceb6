"""The real alert chain for tests: exporter → Prometheus (alerting rules) → Alertmanager → webhook.

`AlertExporter` serves one gauge, `opsbot_test_alert{alertname, <any labels>}`; a series at 1
means "this alert should fire". Prometheus (Debian `prometheus`) scrapes it every second and
evaluates `DEFAULT_RULES` (or the rules a test gives) every second: each rule is
`opsbot_test_alert{alertname="<its name>"} > 0` with `for: 0s`, so the alert carries exactly
the series' labels (the scrape's `job`/`instance` are dropped) plus the rule's own labels, and
the rule's annotations. Prometheus pushes to the real Alertmanager (Debian
`prometheus-alertmanager`, clustering off, 127.0.0.1 only), whose single receiver is a webhook to
the test's URL with `Authorization: Bearer <token>`, `send_resolved: true`, `max_alerts: 0`, and
a route grouping by `alertname, namespace` (group_wait 1s, group_interval 2s, repeat 1h).

Timings (measured on a quiet 2-core machine; a loaded one is slower, so wait with `wait_until`
and its 60s deadline, never assert on speed):

- start: about 6s, mostly Prometheus's first 5s service-discovery tick (it finds neither the
  exporter nor the Alertmanager sooner, and 2.42 has no flag for it). `start()` returns once
  Prometheus has scraped, loaded the rules and knows the Alertmanager.
- fire → first delivery: scrape (≤1s) + evaluation (≤1s) + group_wait (1s); measured 1.9-2.3s.
- another alert into a group already notified: at the group's next tick, every group_interval
  (2s) after its first flush.
- clear → `resolved` delivery: the next scrape makes the series stale, the next evaluation
  resolves the alert and Prometheus sends it at once with `endsAt` = now; Alertmanager notifies
  at the group's next tick; measured 1.9-2.0s. `resolve_timeout` (5s) only applies to alerts
  without `endsAt`, which Prometheus never sends.
- a webhook answering 5xx: Alertmanager retries within the same flush with exponential backoff
  (the second attempt came 0.3-0.55s after the first); a flush gives up after at least 10s and
  the next one starts over. A 4xx is not retried within the flush: the notification fails
  (`alertmanager_notifications_failed_total{integration="webhook"}` +1; every HTTP attempt counts
  in `alertmanager_notification_requests_failed_total`) and is tried again at the next tick,
  every 2s, for as long as the alert fires.
- an alert whose firing notification never got through sends no `resolved` one: Alertmanager
  only tells of a resolution to a receiver it told of the firing.
- Prometheus re-sends firing alerts every 2s (`--rules.alert.resend-delay`), so an alert lost on
  the way (an overloaded machine) comes back quickly; Alertmanager only notifies again after
  repeat_interval (1h).

Payload notes (Alertmanager 0.25): firing alerts carry `"endsAt": "0001-01-01T00:00:00Z"`;
`groupKey` reads `{}:{alertname="KubePodCrashLooping", namespace="shop-staging"}`;
`truncatedAlerts` is 0; the User-Agent is `Alertmanager/0.25.0`.

Use: `labels = chain.fire("KubePodCrashLooping", namespace=..., deployment=..., pod=...,
severity=...)` (None leaves a label out; more labels as keywords), later
`chain.resolve(**labels)`; wait with `chain.wait_until(predicate)`, which on timeout reports the
series, both servers' alerts and logs. In an async test whose bot runs in the test's own event
loop, use `await chain.wait_until_async(...)`: `wait_until` would block the loop and the bot.

`chain_starter(workdir)` starts chains and stops them all on exit; the pytest fixtures over it
are in `tests/support/fixtures_alert_chain.py`.
"""

from __future__ import annotations

import asyncio
import re
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol, TypeVar

import httpx
import yaml
from prometheus_client import CollectorRegistry, start_http_server
from prometheus_client.metrics_core import Metric
from prometheus_client.parser import text_string_to_metric_families
from prometheus_client.registry import Collector

from tests.support.prometheus import (
    ALERTMANAGER_BIN,
    PROMETHEUS_BIN,
    STARTUP_TIMEOUT,
    _Process,
    require_binary,
)

__all__ = [
    "DEADLINE",
    "DEFAULT_RULES",
    "METRIC",
    "AlertChain",
    "AlertExporter",
    "AlertRule",
    "StartChain",
    "chain_starter",
    "wait_until",
    "wait_until_async",
]

METRIC = "opsbot_test_alert"
JOB = "opsbot-test-alerts"
RECEIVER = "opsbot"
DEADLINE = 60.0  # for anything a test waits on: the machine is shared and may be slow
RESEND_DELAY = "2s"
_LABEL = re.compile(r"[a-zA-Z_][a-zA-Z0-9_]*")

T = TypeVar("T")


def wait_until(
    predicate: Callable[[], T],
    *,
    timeout: float = DEADLINE,
    interval: float = 0.1,
    message: str | Callable[[], str] = "",
) -> T:
    """Poll `predicate` until it returns something true, and return that; AssertionError after
    `timeout` seconds, with `message` (called then, if callable) appended."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            detail = message() if callable(message) else message
            raise AssertionError(f"condition not met after {timeout:g}s\n{detail}".rstrip())
        time.sleep(interval)


async def wait_until_async(
    predicate: Callable[[], T],
    *,
    timeout: float = DEADLINE,
    interval: float = 0.1,
    message: str | Callable[[], str] = "",
) -> T:
    """`wait_until` for async tests: sleeps without blocking the loop (where the bot may run)."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            detail = message() if callable(message) else message
            raise AssertionError(f"condition not met after {timeout:g}s\n{detail}".rstrip())
        await asyncio.sleep(interval)


# Rules ----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class AlertRule:
    """One Prometheus alerting rule; by default it fires for exporter series of its name."""

    alert: str
    annotations: Mapping[str, str] = field(default_factory=dict)
    labels: Mapping[str, str] = field(default_factory=dict)  # override the series' labels
    expr: str | None = None  # default: f'{METRIC}{{alertname="<alert>"}} > 0'
    for_: str = "0s"

    def to_config(self) -> dict[str, Any]:
        rule: dict[str, Any] = {
            "alert": self.alert,
            "expr": self.expr or f'{METRIC}{{alertname="{self.alert}"}} > 0',
            "for": self.for_,
        }
        if self.labels:
            rule["labels"] = dict(self.labels)
        if self.annotations:
            rule["annotations"] = dict(self.annotations)
        return rule


DEFAULT_RULES: tuple[AlertRule, ...] = (
    AlertRule("KubePodCrashLooping", annotations={
        "summary": "Pod is crash looping.",
        "description": "Pod {{ $labels.namespace }}/{{ $labels.pod }} is in CrashLoopBackOff.",
    }),
    AlertRule("KubeDeploymentReplicasMismatch", annotations={
        "summary": "Deployment has not matched the expected number of replicas.",
        "description": "Deployment {{ $labels.namespace }}/{{ $labels.deployment }} has not "
                       "matched the expected number of replicas.",
    }),
    AlertRule("HighErrorRate", annotations={
        "summary": "5xx above 5%",
        "description": "{{ $labels.deployment }} in {{ $labels.namespace }} answers too many 5xx.",
    }),
)


# The exporter ---------------------------------------------------------------------------------


class _Series(Collector):
    """Serves whatever label sets are set, each its own sample (label names may differ)."""

    def __init__(self) -> None:
        self.values: dict[frozenset[tuple[str, str]], float] = {}
        self.lock = threading.Lock()

    def collect(self) -> Iterator[Metric]:
        metric = Metric(METRIC, "1 while the test wants this alert firing.", "gauge")
        with self.lock:
            for labels, value in self.values.items():
                metric.add_sample(METRIC, dict(sorted(labels)), value)
        yield metric


class AlertExporter:
    """Serves `opsbot_test_alert{alertname, ...}` on 127.0.0.1:<free port>."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self._series = _Series()
        self.registry.register(self._series)
        self._server: Any = None
        self.port = 0

    @property
    def target(self) -> str:
        return f"127.0.0.1:{self.port}"

    def start(self) -> AlertExporter:
        self._server, _ = start_http_server(0, addr="127.0.0.1", registry=self.registry)
        self.port = int(self._server.server_port)
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    def fire(self, **labels: str) -> dict[str, str]:
        """Set the series with exactly these labels to 1; they must include `alertname`."""
        key = _key(labels)
        with self._series.lock:
            self._series.values[key] = 1.0
        return dict(key)

    def clear(self, **labels: str) -> None:
        """Remove the series (it goes stale at the next scrape, which resolves its alert)."""
        key = _key(labels)
        with self._series.lock:
            missing = self._series.values.pop(key, None) is None
        if missing:
            raise KeyError(f"no series {dict(key)}; set: {self.series()}")

    def clear_all(self) -> None:
        with self._series.lock:
            self._series.values.clear()

    def series(self) -> list[dict[str, str]]:
        with self._series.lock:
            return [dict(sorted(key)) for key in self._series.values]


def _key(labels: Mapping[str, str]) -> frozenset[tuple[str, str]]:
    if not labels.get("alertname"):
        raise ValueError("an alert series needs an alertname label")
    for name, value in labels.items():
        if not _LABEL.fullmatch(name) or name.startswith("__"):
            raise ValueError(f"invalid label name {name!r}")
        if not isinstance(value, str):
            raise TypeError(f"label {name} must be a string, not {value!r}")
    return frozenset(labels.items())


# The servers ----------------------------------------------------------------------------------


class _Alertmanager(_Process):
    name = "alertmanager"

    def __init__(self, binary: str, workdir: Path, config: dict[str, Any]) -> None:
        super().__init__(binary, workdir)
        self.config = config

    def args(self) -> list[str]:
        path = self.workdir / "alertmanager.yml"
        path.write_text(yaml.safe_dump(self.config, sort_keys=False))
        return [
            f"--config.file={path}",
            f"--storage.path={self.workdir / 'data'}",
            f"--web.listen-address=127.0.0.1:{self.port}",
            f"--web.external-url=http://127.0.0.1:{self.port}",
            "--cluster.listen-address=",  # no HA: no gossip port, no peer wait before notifying
            "--log.level=debug",  # shows each delivery attempt and why it failed
        ]


class _Prometheus(_Process):
    name = "prometheus"

    def __init__(
        self, binary: str, workdir: Path, exporter: AlertExporter, alertmanager: str,
        rules: Sequence[AlertRule],
    ) -> None:
        super().__init__(binary, workdir)
        self.exporter = exporter
        self.alertmanager = alertmanager
        self.rules = rules

    def args(self) -> list[str]:
        rules_path = self.workdir / "rules.yml"
        rules_path.write_text(yaml.safe_dump({"groups": [{
            "name": "opsbot-test", "interval": "1s",
            "rules": [rule.to_config() for rule in self.rules],
        }]}, sort_keys=False))
        config = {
            "global": {"scrape_interval": "1s", "scrape_timeout": "1s",
                       "evaluation_interval": "1s"},
            "rule_files": [str(rules_path)],
            "alerting": {"alertmanagers": [{
                "api_version": "v2", "timeout": "5s",
                "static_configs": [{"targets": [self.alertmanager]}],
            }]},
            "scrape_configs": [{
                "job_name": JOB,
                "honor_labels": True,  # the test's labels win, even `job` or `instance`
                "static_configs": [{"targets": [self.exporter.target]}],
                # ... and the scrape's own job and instance go, so alerts carry only the test's.
                "metric_relabel_configs": [
                    {"source_labels": [label], "regex": re.escape(value),
                     "target_label": label, "replacement": ""}
                    for label, value in (("job", JOB), ("instance", self.exporter.target))
                ],
            }],
        }
        path = self.workdir / "prometheus.yml"
        path.write_text(yaml.safe_dump(config, sort_keys=False))
        return [
            f"--config.file={path}",
            f"--storage.tsdb.path={self.workdir / 'data'}",
            f"--web.listen-address=127.0.0.1:{self.port}",
            f"--web.external-url=http://127.0.0.1:{self.port}",
            f"--rules.alert.resend-delay={RESEND_DELAY}",
            "--storage.tsdb.retention.time=1h",
            "--log.level=info",
        ]


# The chain ------------------------------------------------------------------------------------


class AlertChain:
    """Exporter, Prometheus and Alertmanager wired to deliver alerts to `url` with `token`."""

    def __init__(
        self,
        url: str,
        token: str,
        *,
        workdir: Path,
        rules: Sequence[AlertRule] = DEFAULT_RULES,
        prometheus_bin: str = PROMETHEUS_BIN,
        alertmanager_bin: str = ALERTMANAGER_BIN,
        group_by: Sequence[str] = ("alertname", "namespace"),
        group_wait: str = "1s",
        group_interval: str = "2s",
        repeat_interval: str = "1h",
        resolve_timeout: str = "5s",
    ) -> None:
        if not rules:
            raise ValueError("an alert chain needs at least one rule")
        self.url = url
        self.token = token
        self.workdir = workdir
        self.rules = tuple(rules)
        self.prometheus_bin = prometheus_bin
        self.exporter = AlertExporter()
        self.alertmanager = _Alertmanager(alertmanager_bin, workdir / "alertmanager", {
            "global": {"resolve_timeout": resolve_timeout},
            "route": {
                "receiver": RECEIVER,
                "group_by": list(group_by),
                "group_wait": group_wait,
                "group_interval": group_interval,
                "repeat_interval": repeat_interval,
            },
            "receivers": [{"name": RECEIVER, "webhook_configs": [{
                "url": url,
                "send_resolved": True,
                "max_alerts": 0,
                "http_config": {"authorization": {"type": "Bearer", "credentials": token}},
            }]}],
        })
        self.prometheus: _Prometheus | None = None

    @property
    def alertmanager_url(self) -> str:
        return self.alertmanager.url

    @property
    def prometheus_url(self) -> str:
        if self.prometheus is None:
            raise RuntimeError("the chain is not started")
        return self.prometheus.url

    # Lifecycle -------------------------------------------------------------------------------

    def start(self) -> AlertChain:
        """Start all three and wait until Prometheus scrapes, has the rules and knows the
        Alertmanager; on failure stop what started and raise with both logs."""
        try:
            self.exporter.start()
            self.alertmanager.start()
            self.prometheus = _Prometheus(
                self.prometheus_bin, self.workdir / "prometheus", self.exporter,
                f"127.0.0.1:{self.alertmanager.port}", self.rules,
            )
            self.prometheus.start()
            wait_until(self._wired, timeout=STARTUP_TIMEOUT, interval=0.1)
        except BaseException as exc:
            logs = self.logs()
            self.stop()
            if isinstance(exc, Exception):
                raise RuntimeError(f"the alert chain did not start: {exc}\n{logs}") from exc
            raise
        return self

    def stop(self) -> None:
        """Stop Prometheus, then Alertmanager, then the exporter; each even if another fails."""
        try:
            if self.prometheus is not None:
                self.prometheus.stop()
        finally:
            try:
                self.alertmanager.stop()
            finally:
                self.exporter.stop()

    def __enter__(self) -> AlertChain:
        return self.start()

    def __exit__(self, *_: object) -> None:
        self.stop()

    def _wired(self) -> bool:
        try:
            up = self._prometheus_get("/api/v1/query", query=f'up{{job="{JOB}"}}')["result"]
            groups = self._prometheus_get("/api/v1/rules", type="alert")["groups"]
            managers = self._prometheus_get("/api/v1/alertmanagers")["activeAlertmanagers"]
        except httpx.HTTPError:
            return False
        loaded = sum(len(group["rules"]) for group in groups)
        return (
            bool(up) and up[0]["value"][1] == "1"
            and loaded == len(self.rules)
            and any(str(self.alertmanager.port) in m["url"] for m in managers)
        )

    # Driving alerts --------------------------------------------------------------------------

    def fire(
        self,
        alertname: str = "KubePodCrashLooping",
        *,
        namespace: str | None = "shop-staging",
        deployment: str | None = "shop-api",
        pod: str | None = None,
        severity: str | None = "warning",
        **labels: str,
    ) -> dict[str, str]:
        """Make the exporter ask for this alert; the series' labels, which the alert carries
        (with its rule's own `labels` on top). None leaves a label out.

        `chain.resolve(**labels)` with the same labels (the return value, say) clears it."""
        if alertname not in {rule.alert for rule in self.rules if rule.expr is None}:
            known = sorted(rule.alert for rule in self.rules if rule.expr is None)
            raise ValueError(f"no rule fires {alertname!r}; rules over the exporter: {known}")
        return self.exporter.fire(
            **_labels(alertname, namespace, deployment, pod, severity, labels)
        )

    def resolve(self, alertname: str = "KubePodCrashLooping", **labels: str) -> dict[str, str]:
        """Clear the series of this alert that has exactly these labels (`fire`'s return value,
        say) or else the only one having them, so the alert resolves; the series' labels."""
        wanted = {"alertname": alertname, **labels}
        series = self.exporter.series()
        matches = [s for s in series if s == wanted] or [
            s for s in series if wanted.items() <= s.items()
        ]
        if len(matches) != 1:
            raise KeyError(f"{len(matches)} series have {wanted}; set: {series}")
        self.exporter.clear(**matches[0])
        return matches[0]

    # Looking at it ---------------------------------------------------------------------------

    def wait_until(
        self, predicate: Callable[[], T], *, timeout: float = DEADLINE, message: str = ""
    ) -> T:
        """`wait_until`, telling on failure what Prometheus and Alertmanager hold and logged."""
        return wait_until(predicate, timeout=timeout, message=lambda: f"{message}\n{self.state()}")

    async def wait_until_async(
        self, predicate: Callable[[], T], *, timeout: float = DEADLINE, message: str = ""
    ) -> T:
        return await wait_until_async(
            predicate, timeout=timeout, message=lambda: f"{message}\n{self.state()}"
        )

    def prometheus_alerts(self) -> list[dict[str, Any]]:
        """Prometheus's pending and firing alerts (`/api/v1/alerts`)."""
        alerts: list[dict[str, Any]] = self._prometheus_get("/api/v1/alerts")["alerts"]
        return alerts

    def alertmanager_alerts(self) -> list[dict[str, Any]]:
        """The alerts Alertmanager holds (`/api/v2/alerts`), with their status."""
        response = httpx.get(f"{self.alertmanager_url}/api/v2/alerts", timeout=10)
        response.raise_for_status()
        alerts: list[dict[str, Any]] = response.json()
        return alerts

    def alertmanager_metric(self, name: str, **labels: str) -> float:
        """The sum of Alertmanager's samples called `name` (with `_total`) having `labels`."""
        response = httpx.get(f"{self.alertmanager_url}/metrics", timeout=10)
        response.raise_for_status()
        return sum(
            sample.value
            for family in text_string_to_metric_families(response.text)
            for sample in family.samples
            if sample.name == name and labels.items() <= sample.labels.items()
        )

    def logs(self, tail: int = 8000) -> str:
        """The end of both servers' logs, for a failure report."""
        parts = []
        for proc in (self.prometheus, self.alertmanager):
            if proc is not None:
                parts.append(f"--- {proc.name} log ({proc.log_path}) ---\n{proc.log()[-tail:]}")
        return "\n".join(parts)

    def state(self) -> str:
        """Series set, Prometheus's alerts, Alertmanager's alerts, and the logs."""
        lines = [f"exporter series: {self.exporter.series()}"]
        for title, read in (("prometheus alerts", self.prometheus_alerts),
                            ("alertmanager alerts", self.alertmanager_alerts)):
            try:
                lines.append(f"{title}: {read()}")
            except Exception as exc:  # a report of a failure must not fail itself
                lines.append(f"{title}: unavailable ({exc!r})")
        lines.append(self.logs())
        return "\n".join(lines)

    def _prometheus_get(self, path: str, **params: str) -> Any:
        response = httpx.get(f"{self.prometheus_url}{path}", params=params, timeout=10)
        response.raise_for_status()
        return response.json()["data"]


def _labels(
    alertname: str, namespace: str | None, deployment: str | None, pod: str | None,
    severity: str | None, extra: Mapping[str, str],
) -> dict[str, str]:
    named = {"alertname": alertname, "namespace": namespace, "deployment": deployment,
             "pod": pod, "severity": severity}
    return {**{k: v for k, v in named.items() if v is not None}, **extra}


# Starting chains ------------------------------------------------------------------------------


class StartChain(Protocol):
    def __call__(
        self, url: str, token: str, rules: Sequence[AlertRule] = ..., **options: Any
    ) -> AlertChain: ...


@contextmanager
def chain_starter(workdir: Path) -> Iterator[StartChain]:
    """A `start` for chains under `workdir`, stopping them all on exit: for a fixture of wider
    scope than `alert_chain` (one chain shared by a module's tests, say)."""
    prometheus = require_binary(PROMETHEUS_BIN, "prometheus")
    alertmanager = require_binary(ALERTMANAGER_BIN, "prometheus-alertmanager")
    chains: list[AlertChain] = []

    with ExitStack() as stack:  # stops every chain, even when one fails to stop

        def start(
            url: str, token: str, rules: Sequence[AlertRule] = DEFAULT_RULES, **options: Any
        ) -> AlertChain:
            chain = AlertChain(
                url, token, rules=rules, workdir=workdir / f"alert-chain-{len(chains)}",
                prometheus_bin=prometheus, alertmanager_bin=alertmanager, **options,
            )
            stack.callback(chain.stop)
            chains.append(chain)
            return chain.start()

        yield start
        for chain in chains:
            print(chain.logs())
