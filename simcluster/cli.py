"""`opsbot simcluster`: run the simulated cluster in the foreground until SIGINT/SIGTERM."""

from __future__ import annotations

import signal
import threading
from types import FrameType

from .cluster import SimCluster


def parse_listen(listen: str) -> tuple[str, int]:
    host, sep, port = listen.rpartition(":")
    if not sep or not (port.isascii() and port.isdigit()):
        raise ValueError(f"--listen wants HOST:PORT, got {listen!r}")
    return host.strip("[]") or "127.0.0.1", int(port)


def serve_forever(listen: str, kubeconfig: str, seed: str, tls: bool = True) -> None:
    host, port = parse_listen(listen)
    sim = SimCluster(seed=seed, tls=tls).start(host=host, port=port)
    stop = threading.Event()

    def _on_signal(signum: int, frame: FrameType | None) -> None:
        stop.set()

    previous = {sig: signal.signal(sig, _on_signal) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        path = sim.write_kubeconfig(kubeconfig)
        print(f"simcluster listening on {sim.url}, kubeconfig written to {path}", flush=True)
        while not stop.wait(0.5):
            pass
    finally:
        sim.stop()
        for sig, handler in previous.items():
            signal.signal(sig, handler)
