"""A real Prometheus for `opsbot demo`: the installed binary with a temporary TSDB, scraping one
target every second, so demo deploys are verified the way production ones are; with alert rules
and an Alertmanager, it also evaluates the rules every second and sends what fires."""

from __future__ import annotations

from pathlib import Path

import httpx

from bot.console.processes import ServerProcess

__all__ = ["BINARY", "JOB", "PrometheusProcess"]

BINARY = "prometheus"
JOB = "simcluster"
SCRAPE_SECONDS = 1
SAMPLES_TIMEOUT = 15.0
# Prometheus sends a firing alert again after this (default 1m): one fired before it found the
# Alertmanager, a few seconds after its start, reaches it this soon.
RESEND_DELAY = "2s"


class PrometheusProcess(ServerProcess):
    """Prometheus scraping `target` (HOST:PORT, which need not be up yet) every second, and with
    `rules` (a rule file) and `alertmanager` (HOST:PORT) evaluating and sending alerts.
    `wait_for_samples()` returns once it has scraped the target twice,
    `wait_for_alertmanager()` once it knows the Alertmanager. With `ca_file` the target is
    scraped over HTTPS, trusting that CA (the simulated cluster serves TLS as an API server
    does)."""

    name = "prometheus"

    def __init__(self, binary: str, workdir: Path, *, target: str, metrics_path: str,
                 bearer_token: str, rules: Path | None = None,
                 alertmanager: str | None = None, ca_file: Path | None = None) -> None:
        super().__init__(binary, workdir)
        self.ca_file = ca_file
        self.target = target
        self.metrics_path = metrics_path
        self.bearer_token = bearer_token
        self.rules = rules
        self.alertmanager = alertmanager

    def wait_for_samples(self, timeout: float = SAMPLES_TIMEOUT) -> None:
        """Until two scrapes of the target are stored (what a rate needs). Prometheus 2.x hands
        new targets to its scrape loop only after about five seconds, so start it early."""
        self.wait(self._scraped, "did not scrape its target", timeout)

    def wait_for_alertmanager(self, timeout: float = SAMPLES_TIMEOUT) -> None:
        """Until it has loaded the rules and found the Alertmanager (its first discovery, like
        the scrape target's, comes about five seconds after its start)."""
        self.wait(self._alerting, "did not find the Alertmanager", timeout)

    def config(self) -> dict[str, object]:
        token = self.secret_file("scrape-token", self.bearer_token)
        config: dict[str, object] = {
            "global": {"scrape_interval": f"{SCRAPE_SECONDS}s", "scrape_timeout": "1s",
                       "evaluation_interval": f"{SCRAPE_SECONDS}s"},
        }
        if self.rules is not None:
            config["rule_files"] = [str(self.rules)]
        if self.alertmanager is not None:
            config["alerting"] = {"alertmanagers": [{
                "api_version": "v2", "static_configs": [{"targets": [self.alertmanager]}],
            }]}
        scrape: dict[str, object] = {
            "job_name": JOB,
            "scheme": "https" if self.ca_file else "http",
            "metrics_path": self.metrics_path,
            "authorization": {"type": "Bearer", "credentials_file": str(token)},
            "static_configs": [{"targets": [self.target]}],
        }
        if self.ca_file:
            scrape["tls_config"] = {"ca_file": str(self.ca_file)}
        config["scrape_configs"] = [scrape]
        return config

    def flags(self) -> list[str]:
        return [
            f"--storage.tsdb.path={self.workdir / 'data'}",
            "--storage.tsdb.retention.time=1d",
            f"--rules.alert.resend-delay={RESEND_DELAY}",
        ]

    def _scraped(self, http: httpx.Client) -> bool:
        # Two successful scrapes: a rate() has nothing to show before the second one, and the
        # demo's first `metrics` may come within a second of the first.
        query = f'sum_over_time(up{{job="{JOB}"}}[1m]) >= 2'
        answer = http.get(f"{self.url}/api/v1/query", params={"query": query})
        return answer.status_code == 200 and bool(answer.json()["data"]["result"])

    def _alerting(self, http: httpx.Client) -> bool:
        found = http.get(f"{self.url}/api/v1/alertmanagers").json()["data"]
        rules = http.get(f"{self.url}/api/v1/rules", params={"type": "alert"}).json()["data"]
        return bool(found["activeAlertmanagers"]) and any(g["rules"] for g in rules["groups"])
