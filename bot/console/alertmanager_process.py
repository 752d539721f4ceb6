"""A real Alertmanager for `opsbot demo`: the installed binary without clustering, its one
receiver a webhook to the demo's own intake (with a bearer token), grouping and timing set so an
alert reaches the console within seconds of firing. Silences made with `silence` live here."""

from __future__ import annotations

from pathlib import Path

from bot.console.processes import ServerProcess

__all__ = ["BINARIES", "AlertmanagerProcess"]

BINARIES = ("prometheus-alertmanager", "alertmanager")  # Debian's name, then upstream's
RECEIVER = "opsbot-demo"


class AlertmanagerProcess(ServerProcess):
    """Alertmanager delivering every alert to `webhook_url` with `bearer_token`."""

    name = "alertmanager"

    def __init__(self, binary: str, workdir: Path, *, webhook_url: str, bearer_token: str,
                 group_wait: str = "1s", group_interval: str = "2s",
                 repeat_interval: str = "4h") -> None:
        super().__init__(binary, workdir)
        self.webhook_url = webhook_url
        self.bearer_token = bearer_token
        self.route = {"group_wait": group_wait, "group_interval": group_interval,
                      "repeat_interval": repeat_interval}

    def config(self) -> dict[str, object]:
        token = self.secret_file("webhook-token", self.bearer_token)
        return {
            "route": {"receiver": RECEIVER, "group_by": ["alertname", "namespace"],
                      **self.route},
            "receivers": [{"name": RECEIVER, "webhook_configs": [{
                "url": self.webhook_url,
                "send_resolved": True,
                "http_config": {"authorization": {"type": "Bearer",
                                                  "credentials_file": str(token)}},
            }]}],
        }

    def flags(self) -> list[str]:
        return [
            f"--storage.path={self.workdir / 'data'}",
            "--cluster.listen-address=",  # no gossip port: one instance, loopback only
        ]
