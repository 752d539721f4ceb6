"""`opsbot` command line: serve, shell, run, demo, simcluster, runbooks, audit.

What a command prints for its user goes to stdout; below it on stderr, only one-line errors
and (unless --verbose) no library's log. The services (`serve`, `simcluster`) log as
services do. A reader that goes away (`opsbot ... | head`) ends nothing and prints nothing.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import io
import json
import logging
import os
import sys
from collections.abc import Sequence
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, TextIO, cast

from bot import __version__
from bot.errors import ConfigError, OpsbotError, RunbookError
from bot.logs import FORMATS, formatter, remember_secrets
from bot.markup import plain

if TYPE_CHECKING:
    from bot.config import Settings

__all__ = ["main"]

log = logging.getLogger("opsbot.cli")

#: Commands that run until stopped and log as a service does.
SERVICES = ("serve", "simcluster")


def _parser() -> argparse.ArgumentParser:
    # Every command takes -v after its name too; SUPPRESS keeps `opsbot -v CMD` working.
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("-v", "--verbose", action="store_true", default=argparse.SUPPRESS,
                        help="log everything (debug), libraries included, on stderr")
    common.add_argument("--log-format", choices=FORMATS, default=argparse.SUPPRESS,
                        help="text, or one JSON object per line (default: $OPSBOT_LOG_FORMAT "
                             "or text)")
    parser = argparse.ArgumentParser(
        prog="opsbot",
        description="ChatOps for Kubernetes: Slack commands and alerts run audited runbooks.",
    )
    parser.add_argument("--version", action="version", version=f"opsbot {__version__}")
    parser.add_argument("--config", help="path of opsbot.yaml (default: $OPSBOT_CONFIG)")
    parser.add_argument("-v", "--verbose", action="store_true",
                        help="log everything (debug), libraries included, on stderr")
    parser.add_argument("--log-format", choices=FORMATS, default=None,
                        help="text, or one JSON object per line (default: $OPSBOT_LOG_FORMAT "
                             "or text)")
    sub = parser.add_subparsers(dest="cmd", required=True, metavar="COMMAND")

    def command(parent: Any, name: str, **kwargs: Any) -> argparse.ArgumentParser:
        return cast(argparse.ArgumentParser,
                    parent.add_parser(name, parents=[common], **kwargs))

    command(sub, "serve", help="run the bot: Slack (HTTP or Socket Mode), health and metrics")

    p = command(sub, "shell", help="interactive console speaking the Slack command language")
    p.add_argument("--as", dest="user", default=None, help="act as this user (handle or id)")

    p = command(sub, "run", help="run one command and print the result")
    p.add_argument("command", help='the command text, e.g. "status shop-api"')
    p.add_argument("--as", dest="user", required=True, help="act as this user (handle or id)")

    p = command(sub, "demo", help="the whole product on a simulated cluster, no Slack needed")
    p.add_argument("--script", type=Path, help="run `USER: command` lines (and `wait alert "
                   "NAME [firing|resolved] [--within D]` lines) from FILE and exit")
    p.add_argument("--as", dest="user", default="alice", help="shell user (default: alice)")

    p = command(sub, "simcluster", help="run the simulated Kubernetes API on its own")
    p.add_argument("--listen", default="127.0.0.1:6443", help="HOST:PORT (default 127.0.0.1:6443)")
    p.add_argument("--kubeconfig", required=True, help="where to write the kubeconfig")
    p.add_argument("--seed", choices=["demo", "empty"], default="demo")
    p.add_argument("--plain-http", action="store_true",
                   help="serve plain HTTP instead of TLS, for debugging only (kubectl and helm "
                        "send no token over it)")

    p = command(sub, "runbooks", help="list or validate runbooks")
    rsub = p.add_subparsers(dest="runbooks_cmd", required=True, metavar="ACTION")
    v = command(
        rsub, "validate", help="check runbooks (built-in and DIR) against schema and handlers"
    )
    v.add_argument("dir", nargs="?", type=Path, help="a directory of runbooks to check")
    command(rsub, "list", help="list the runbooks")
    command(rsub, "schema", help="print the runbook JSON Schema")

    p = command(sub, "audit", help="verify or export the audit log")
    asub = p.add_subparsers(dest="audit_cmd", required=True, metavar="ACTION")
    command(asub, "verify", help="check the hash chain; exit 1 on any tampering")
    e = command(asub, "export", help="write records as JSON lines")
    e.add_argument("--since", help="ISO 8601 time, e.g. 2026-11-01 or 2026-11-01T12:00:00Z")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    _QuietStdout.install()
    args = _parser().parse_args(argv)
    collecting = gc.isenabled()
    if args.cmd == "serve":
        # Start-up makes its objects (modules, settings, the catalog) without the collector:
        # its ~260 young, 23 middle and 2 full passes over them while `serve` imports found
        # nothing to free, and took about a tenth of the start. `serve` turns it back on once
        # it has frozen what start-up made (bot/slack/server.py); the few cycles start-up
        # leaves (~2,000 objects) are frozen with it.
        gc.disable()
    try:
        return _run(args)
    finally:
        if collecting:
            gc.enable()


def _run(args: argparse.Namespace) -> int:
    _configure_logging(verbose=args.verbose, service=args.cmd in SERVICES,
                       log_format=_log_format(args))
    from bot.store import BadDatabaseURL, DatabaseUnreachable, StoreError

    try:
        return _dispatch(args)
    except RunbookError as exc:
        print("invalid runbooks:", file=sys.stderr)
        for problem in exc.problems:
            print(f"  {problem}", file=sys.stderr)
        return 2
    except (ConfigError, DatabaseUnreachable, BadDatabaseURL) as exc:
        print(f"opsbot: {exc}", file=sys.stderr)
        return 2
    except StoreError as exc:  # the database failed after opening: one line, details with -v
        log.debug("the store failed", exc_info=True)
        print(f"opsbot: {str(exc).splitlines()[0]}", file=sys.stderr)
        return 1
    except OpsbotError as exc:
        print(f"opsbot: {plain(str(exc))}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130
    finally:
        sys.stdout.flush()


def _log_format(args: argparse.Namespace) -> str:
    """--log-format, else OPSBOT_LOG_FORMAT, else text (a config file's `log_format` is applied
    once the configuration is read, see `_settings`)."""
    chosen = args.log_format or os.environ.get("OPSBOT_LOG_FORMAT") or "text"
    if chosen not in FORMATS:
        print(f"opsbot: OPSBOT_LOG_FORMAT must be one of {', '.join(FORMATS)}, not {chosen!r}",
              file=sys.stderr)
        raise SystemExit(2)
    return chosen


_HANDLER_NAME = "opsbot-stderr"


def _configure_logging(*, verbose: bool, service: bool, log_format: str = "text") -> None:
    """Services log INFO and up. Other commands show their user only opsbot's own errors
    below the output, unless --verbose: then everything, at DEBUG."""
    logging.captureWarnings(True)  # Python warnings (urllib3, kubernetes) are log records too
    handler = logging.StreamHandler(sys.stderr)
    handler.set_name(_HANDLER_NAME)
    handler.setFormatter(formatter(log_format))
    root = logging.getLogger()
    if verbose:
        root.setLevel(logging.DEBUG)
    elif service:
        root.setLevel(logging.INFO)
        # Alembic announces each of its plugins at INFO whenever it starts: noise in a
        # service's log (the migrations it runs are still logged).
        logging.getLogger("alembic.runtime.plugins").setLevel(logging.WARNING)
    else:
        root.setLevel(logging.ERROR)
        handler.addFilter(_ours)
    root.addHandler(handler)


def _ours(record: logging.LogRecord) -> bool:
    return record.name == "opsbot" or record.name.startswith("opsbot.")


class _QuietStdout:
    """sys.stdout that goes quiet once its reader has gone: what is printed after is dropped.
    The command itself goes on (a half-done change must finish, and record how it ended), its
    exit code is its own, and no traceback or 'Exception ignored' follows."""

    def __init__(self, stream: TextIO) -> None:
        self._stream = stream
        self.reader_gone = False

    @classmethod
    def install(cls) -> None:
        # Bytes that are not UTF-8 (in any locale) reach the dispatcher, which refuses them
        # with a message, and anything echoed back prints, instead of a UnicodeError.
        if isinstance(sys.stdin, io.TextIOWrapper):
            sys.stdin.reconfigure(errors="surrogateescape")
        if isinstance(sys.stdout, io.TextIOWrapper) and sys.stdout.errors == "strict":
            sys.stdout.reconfigure(errors="backslashreplace")
        if not isinstance(sys.stdout, cls):
            sys.stdout = cast(TextIO, cls(sys.stdout))

    def write(self, text: str) -> int:
        if not self.reader_gone:
            try:
                return self._stream.write(text)
            except BrokenPipeError:
                self._drop()
        return len(text)

    def flush(self) -> None:
        if not self.reader_gone:
            try:
                self._stream.flush()
            except BrokenPipeError:
                self._drop()

    def _drop(self) -> None:
        self.reader_gone = True
        # What the stream still buffers, and Python's own flush at exit, go nowhere.
        devnull = os.open(os.devnull, os.O_WRONLY)
        try:
            os.dup2(devnull, self._stream.fileno())
        finally:
            os.close(devnull)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._stream, name)


def _reader_gone() -> bool:
    return bool(getattr(sys.stdout, "reader_gone", False))


def _dispatch(args: argparse.Namespace) -> int:
    if args.cmd == "simcluster":
        from simcluster import serve_forever

        serve_forever(args.listen, args.kubeconfig, args.seed, tls=not args.plain_http)
        return 0
    if args.cmd == "demo":
        return _demo(args)
    if args.cmd == "runbooks" and args.runbooks_cmd == "schema":
        from bot.runbooks.loader import schema_text

        sys.stdout.write(schema_text())
        return 0
    if args.cmd == "runbooks" and args.runbooks_cmd == "validate":
        return _validate(args)
    if args.cmd == "runbooks" and not (args.config or _env_config()):
        return _list_runbooks(None)  # the built-in runbooks need no configuration
    settings = _settings(args)
    if args.cmd == "serve":
        from bot.slack.server import serve

        serve(settings)
        return 0
    if args.cmd == "runbooks":
        return _list_runbooks(settings)
    if args.cmd == "audit":
        return _audit(settings, args)
    from bot.console.session import exit_code, run_command, shell, with_background
    from bot.services import Services

    services = Services.build(settings)
    try:
        if args.cmd == "run":
            outcome = asyncio.run(
                with_background(services, run_command(services, args.command, args.user)))
            return exit_code(outcome)
        user = args.user or next(iter(settings.directory.users.values()), None)
        if user is None:
            print("opsbot: give --as USER", file=sys.stderr)
            return 2
        return asyncio.run(with_background(services, shell(services, user)))
    finally:
        services.close()


def _settings(args: argparse.Namespace) -> Settings:
    from bot.config import load_settings

    settings = load_settings(args.config)
    remember_secrets(settings.secret_values())
    if settings.log_format != "text" and not (
            args.log_format or os.environ.get("OPSBOT_LOG_FORMAT")):
        for handler in logging.getLogger().handlers:  # the config file's choice
            if handler.get_name() == _HANDLER_NAME:
                handler.setFormatter(formatter(settings.log_format))
    return settings


def _demo(args: argparse.Namespace) -> int:
    from bot import messages
    from bot.console.demo import demo_world
    from bot.console.live import StdinLines
    from bot.console.session import run_script, shell

    lines = None
    if args.script:
        try:
            lines = args.script.read_text(encoding="utf-8").splitlines()
        except OSError as exc:
            print(f"opsbot: cannot read {args.script}: {exc.strerror}", file=sys.stderr)
            return 2
    with demo_world() as demo:
        if lines is not None:
            return asyncio.run(demo.run(run_script(demo.services, lines, live=demo.live,
                                                   alerts=demo.alerts)))
        print("opsbot demo: a simulated cluster with the demo world (staging and prod).")
        print("Users: alice (deployer), bob and carol (sre-approvers), mallory (viewer).")
        print("Try: status shop-api · diag shop-worker · scale shop-web 3 · restart shop-api")
        if demo.alerts is not None:
            print(plain(messages.demo_alerts_howto()))
        return asyncio.run(demo.run(shell(demo.services, args.user, read=StdinLines(),
                                          live=demo.live)))


def _validate(args: argparse.Namespace) -> int:
    from bot.registry import Registry
    from bot.runbooks.loader import load_catalog

    registry = Registry.installed()
    extra = [args.dir] if args.dir else []
    if not extra and (args.config or _env_config()):
        settings = _settings(args)
        extra = [settings.resolve_path(d) for d in settings.runbook_dirs]
    catalog = load_catalog(extra, registry)
    print(f"{len(catalog)} runbooks valid ({', '.join(rb.name for rb in catalog)})")
    return 0


def _env_config() -> str | None:
    import os

    return os.environ.get("OPSBOT_CONFIG")


def _list_runbooks(settings: Settings | None) -> int:
    from bot import messages
    from bot.registry import Registry
    from bot.runbooks.loader import load_catalog

    registry = Registry.installed()
    dirs = [settings.resolve_path(d) for d in settings.runbook_dirs] if settings else []
    catalog = load_catalog(dirs, registry)
    width = max((len(rb.usage) for rb in catalog), default=0)
    for rb in catalog:
        flag = "mutating" if rb.mutating else "read-only"
        print(f"{rb.usage:<{width}}  {flag:<9}  {rb.description}")
    # The steps runbooks may use, and where each comes from (built-in or its distribution).
    print()
    print(messages.handler_list_heading())
    specs = sorted(registry, key=lambda spec: spec.name)
    width = max((len(spec.name) for spec in specs), default=0)
    origins = max((len(registry.origin(spec.name)) for spec in specs), default=0)
    for spec in specs:
        flag = "mutating" if spec.mutating else "read-only"
        print(f"{spec.name:<{width}}  {registry.origin(spec.name):<{origins}}  {flag:<9}  "
              f"{spec.description}")
    return 0


def _audit(settings: Settings, args: argparse.Namespace) -> int:
    from bot.services import default_database_url
    from bot.store import Store

    store = Store.open(settings.database_url or default_database_url())
    try:
        if args.audit_cmd == "verify":
            problems = store.verify_audit()
            for problem in problems:
                print(f"TAMPERED: {problem}")
            if problems:
                return 1
            print("audit log intact")
            return 0
        since = _parse_time(args.since) if args.since else None
        for record in store.export_audit(since):
            if _reader_gone():
                break  # nobody reads the rest (`| head`); no use reading it from the database
            print(json.dumps(record, default=str, sort_keys=True))
        return 0
    finally:
        store.close()


def _parse_time(text: str) -> datetime:
    try:
        value = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise ConfigError(f"--since `{text}` is not an ISO 8601 time") from None
    if value.tzinfo is None:
        from datetime import UTC

        value = value.replace(tzinfo=UTC)
    return value


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
