"""`opsbot demo`: the whole product on embedded defaults, with no Slack and no cluster.

A simulated cluster seeded with the demo world, a SQLite store in a temp dir and the console.
When the binaries are installed, a real Prometheus scrapes the simulated cluster, so deploys are
verified (and a bad release rolled back) as in production, and evaluates the demo's alert rules;
a real Alertmanager posts what fires to a loopback intake of the demo (the `/alertmanager` code
of `opsbot serve`, feeding the same store and alert worker), so alerts reach the console,
`silence` works and the deploy pre-check reads critical alerts. A stand-in registry
(`simcluster/registry.py`) answers for registry.example.com's images, so a deploy of a tag that
was never built is refused.
"""

from __future__ import annotations

import asyncio
import secrets
import shutil
import signal
import socket
import tempfile
import threading
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from contextlib import ExitStack, asynccontextmanager, contextmanager
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import TypeVar

import uvicorn
from starlette.applications import Starlette

from bot import messages
from bot.alerts.console import ConsoleAlertBoard
from bot.alerts.intake import alertmanager_route
from bot.config import RegistryConfig, load_settings
from bot.console.alertmanager_process import BINARIES as ALERTMANAGER_BINARIES
from bot.console.alertmanager_process import AlertmanagerProcess
from bot.console.live import LiveOutput
from bot.console.processes import ServerStartError, find_binary, free_port
from bot.console.prometheus_process import BINARY as PROMETHEUS_BINARY
from bot.console.prometheus_process import PrometheusProcess
from bot.console.session import with_background
from bot.markup import plain
from bot.services import Services
from simcluster import SimCluster
from simcluster.registry import RegistryStandIn

__all__ = ["DEMO_REGISTRY", "Demo", "demo_config_path", "demo_rules_path", "demo_world"]

T = TypeVar("T")

METRICS_PATH = "/_sim/metrics"
INTAKE_GRACE_SECONDS = 5
DEMO_REGISTRY = "registry.example.com"  # the demo world's images' registry host


def demo_config_path() -> Path:
    return Path(str(resources.files("bot.examples").joinpath("demo.yaml")))


def demo_rules_path() -> Path:
    return Path(str(resources.files("bot.examples").joinpath("demo-alert-rules.yaml")))


@dataclass
class Demo:
    """The demo's services; `live` takes background output (alert messages) for the console;
    `alerts` is the board they are shown on, None when alerts are off."""

    services: Services
    live: LiveOutput
    alerts: ConsoleAlertBoard | None = None
    intake: socket.socket | None = None

    async def run(self, work: Awaitable[T]) -> T:
        """`work` with the demo's background: the scheduler and, when alerts are on, the alert
        worker and the intake Alertmanager posts to. A SIGTERM meanwhile cancels it."""
        with _TERMINATION.cancels():
            return await with_background(self.services, self._with_intake(work),
                                         alerts=self.alerts is not None)

    async def _with_intake(self, work: Awaitable[T]) -> T:
        if self.intake is None:
            return await work
        async with _serving(self.services, self.intake):
            return await work


@contextmanager
def demo_world(tell: Callable[[str], None] = print,
               write: Callable[[str], None] = print) -> Iterator[Demo]:
    """Start the demo; `tell` gets one line on whether deploys are verified and one on whether
    alerts are on, `write` the alert messages. Everything started is stopped on the way out,
    however it is left (SIGTERM too), and the temporary directory removed."""
    def notice(text: str) -> None:  # the lines are sentences of bot.messages: shown plain
        tell(plain(text))

    with ExitStack() as stack:
        stack.enter_context(_sigterm_unwinds())
        workdir = Path(tempfile.mkdtemp(prefix="opsbot-demo-"))
        stack.callback(shutil.rmtree, workdir, ignore_errors=True)
        prometheus_binary = find_binary(PROMETHEUS_BINARY)
        token, port = secrets.token_urlsafe(24), free_port()  # the cluster's (scrapes too)
        intake_token = secrets.token_urlsafe(24)  # Alertmanager's, to post to the intake
        # Alertmanager first, as Prometheus is told its address; then Prometheus before the
        # world: it scrapes its first target (and finds the Alertmanager) only ~5 s after it
        # starts, and seeding the world takes some of that time.
        intake = stack.enter_context(socket.create_server(("127.0.0.1", 0)))
        alertmanager, alerts_off = _start_alertmanager(
            stack, workdir, intake.getsockname()[1], intake_token, prometheus_binary)
        sim = SimCluster(seed="demo", token=token)

        def start_prometheus(target: str) -> PrometheusProcess | None:
            if prometheus_binary is None:
                notice(messages.demo_no_prometheus())
                return None
            return _start_prometheus(stack, prometheus_binary, workdir, target, token, sim.ca_file,
                                     alertmanager, notice)

        prometheus = start_prometheus(f"127.0.0.1:{port}")
        stack.callback(sim.stop)
        try:
            sim.start(host="127.0.0.1", port=port)
        except OSError:  # the port was taken while the world was seeded
            sim.start(host="127.0.0.1", port=0)
            if prometheus is not None:
                prometheus.stop()
                prometheus = start_prometheus(sim.url.split("://", 1)[1])
        environ = {
            "KUBECONFIG": sim.write_kubeconfig(str(workdir / "kubeconfig")),
            "OPSBOT_DATABASE_URL": f"sqlite:///{workdir / 'opsbot.db'}",
        }
        if prometheus is not None and not _scraping(prometheus, notice):
            prometheus = None
        if prometheus is not None:
            environ["PROMETHEUS_URL"] = prometheus.url
        if alertmanager is not None:
            alerts_off = _alerting(prometheus) if prometheus is not None \
                else messages.demo_alerts_need_prometheus()
        if alerts_off is None:
            assert alertmanager is not None
            environ["ALERTMANAGER_URL"] = alertmanager.url
            environ["OPSBOT_ALERTMANAGER_TOKEN"] = intake_token
            notice(messages.demo_alerts_on(alertmanager.url))
        else:
            if alertmanager is not None:
                alertmanager.stop()
            notice(alerts_off)
        live = LiveOutput(write)
        board = ConsoleAlertBoard(live.write)
        # The demo's registry: its loopback address is known only now, so it is set here
        # (examples/demo.yaml shows the entry an operator writes for a real registry).
        registry = RegistryStandIn().start()
        stack.callback(registry.stop)
        settings = load_settings(demo_config_path(), environ=environ)
        settings = settings.model_copy(update={"registries": {
            **settings.registries, DEMO_REGISTRY: RegistryConfig(url=registry.url)}})
        services = Services.build(settings, alert_board=board)
        stack.callback(services.close)
        if alerts_off is None:
            yield Demo(services, live, board, intake)
        else:
            yield Demo(services, live)


def _start_alertmanager(stack: ExitStack, workdir: Path, intake_port: int, token: str,
                        prometheus_binary: str | None
                        ) -> tuple[AlertmanagerProcess | None, str | None]:
    """Alertmanager posting to the intake on `intake_port`, or None and why alerts are off."""
    binary = find_binary(*ALERTMANAGER_BINARIES)
    if binary is None:
        return None, messages.demo_no_alertmanager()
    if prometheus_binary is None:
        return None, messages.demo_alerts_need_prometheus()
    process = AlertmanagerProcess(
        binary, workdir / "alertmanager", bearer_token=token,
        webhook_url=f"http://127.0.0.1:{intake_port}/alertmanager")
    stack.callback(process.stop)
    try:
        return process.start(), None
    except (ServerStartError, OSError) as exc:
        return None, messages.demo_alertmanager_failed(_problem(exc))


def _start_prometheus(stack: ExitStack, binary: str, workdir: Path, target: str, token: str,
                      ca_file: Path, alertmanager: AlertmanagerProcess | None,
                      notice: Callable[[str], None]) -> PrometheusProcess | None:
    """Prometheus scraping the simulated cluster at `target` and, with an Alertmanager, sending
    it what the demo's rules fire; or None (said in one line)."""
    rules = None
    if alertmanager is not None:
        rules = workdir / "alert-rules.yaml"
        rules.write_text(demo_rules_path().read_text(encoding="utf-8"), encoding="utf-8")
    process = PrometheusProcess(
        binary, workdir / "prometheus", target=target, metrics_path=METRICS_PATH,
        bearer_token=token, rules=rules, ca_file=ca_file,
        alertmanager=alertmanager.address if alertmanager else None)
    stack.callback(process.stop)
    try:
        return process.start()
    except (ServerStartError, OSError) as exc:
        notice(messages.demo_prometheus_failed(_problem(exc)))
        return None


def _scraping(prometheus: PrometheusProcess, notice: Callable[[str], None]) -> bool:
    try:
        prometheus.wait_for_samples()
    except ServerStartError as exc:
        prometheus.stop()
        notice(messages.demo_prometheus_failed(_problem(exc)))
        return False
    notice(messages.demo_prometheus_on(prometheus.url))
    return True


def _alerting(prometheus: PrometheusProcess) -> str | None:
    """None once Prometheus has the rules and knows the Alertmanager, else why alerts are off."""
    try:
        prometheus.wait_for_alertmanager()
    except ServerStartError as exc:
        return messages.demo_alertmanager_failed(_problem(exc))
    return None


def _problem(exc: ServerStartError | OSError) -> str:
    if isinstance(exc, ServerStartError):
        return exc.summary
    return exc.strerror or type(exc).__name__


class _IntakeServer(uvicorn.Server):
    """uvicorn without its signal handlers: Ctrl-C and SIGTERM end the whole demo."""

    @contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


@asynccontextmanager
async def _serving(services: Services, sock: socket.socket) -> AsyncIterator[None]:
    """The alert intake on `sock` (bound and listening on 127.0.0.1 since the start, so
    Alertmanager may connect before this serves), in this event loop."""
    app = Starlette(routes=[
        alertmanager_route(services.settings, services.store, services.alerts.wake)])
    config = uvicorn.Config(app, lifespan="off", log_config=None, log_level="warning",
                            access_log=False, timeout_graceful_shutdown=INTAKE_GRACE_SECONDS)
    server = _IntakeServer(config)
    task = asyncio.create_task(server.serve(sockets=[sock]), name="opsbot-demo-intake")
    try:
        yield
    finally:
        server.should_exit = True
        await task


class _Termination:
    """What a SIGTERM does: while the demo's event loop runs its work, what Ctrl-C does in
    `asyncio.run`: the work's task is cancelled from the loop, so every `finally` runs there
    in order and nothing stops halfway through a loop callback (a store write, a message).
    Otherwise (setting up, tearing down, a second SIGTERM) SystemExit at once."""

    def __init__(self) -> None:
        self._task: asyncio.Task[object] | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self.signum: int | None = None

    @contextmanager
    def cancels(self) -> Iterator[None]:
        """Within: a SIGTERM cancels the current task (one at a time)."""
        task = asyncio.current_task()
        if task is None or self._task is not None:
            yield
            return
        self._task, self._loop = task, task.get_loop()
        try:
            yield
        finally:
            self._task = self._loop = None

    def handle(self, signum: int, _frame: object) -> None:
        task, loop = self._task, self._loop
        if task is None or loop is None or task.done() or self.signum is not None:
            raise SystemExit(128 + signum)
        self.signum = signum
        loop.call_soon_threadsafe(task.cancel)


_TERMINATION = _Termination()


@contextmanager
def _sigterm_unwinds() -> Iterator[None]:
    """SIGTERM ends the demo as Ctrl-C does, through every cleanup, rather than at once; the
    process then exits with 128 + SIGTERM."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    _TERMINATION.signum = None
    previous = signal.signal(signal.SIGTERM, _TERMINATION.handle)
    try:
        yield
    except asyncio.CancelledError:
        if _TERMINATION.signum is None:
            raise
        raise SystemExit(128 + _TERMINATION.signum) from None
    finally:
        signal.signal(signal.SIGTERM, previous)
