"""`opsbot` command line: serve, shell, run, demo, simcluster, runbooks, audit."""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import sys
from collections.abc import Sequence
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING

from bot import __version__
from bot.errors import ConfigError, OpsbotError, RunbookError
from bot.markup import plain

if TYPE_CHECKING:
    from bot.config import Settings

__all__ = ["main"]


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="opsbot",
        description="ChatOps for Kubernetes: Slack commands and alerts run audited runbooks.",
    )
    parser.add_argument("--version", action="version", version=f"opsbot {__version__}")
    parser.add_argument("--config", help="path of opsbot.yaml (default: $OPSBOT_CONFIG)")
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = parser.add_subparsers(dest="cmd", required=True, metavar="COMMAND")

    sub.add_parser("serve", help="run the bot: Slack (HTTP or Socket Mode), health and metrics")

    p = sub.add_parser("shell", help="interactive console speaking the Slack command language")
    p.add_argument("--as", dest="user", default=None, help="act as this user (handle or id)")

    p = sub.add_parser("run", help="run one command and print the result")
    p.add_argument("command", help='the command text, e.g. "status shop-api"')
    p.add_argument("--as", dest="user", required=True, help="act as this user (handle or id)")

    p = sub.add_parser("demo", help="the whole product on a simulated cluster, no Slack needed")
    p.add_argument("--script", type=Path, help="run `USER: command` lines from FILE and exit")
    p.add_argument("--as", dest="user", default="alice", help="shell user (default: alice)")

    p = sub.add_parser("simcluster", help="run the simulated Kubernetes API on its own")
    p.add_argument("--listen", default="127.0.0.1:6443", help="HOST:PORT (default 127.0.0.1:6443)")
    p.add_argument("--kubeconfig", required=True, help="where to write the kubeconfig")
    p.add_argument("--seed", choices=["demo", "empty"], default="demo")

    p = sub.add_parser("runbooks", help="list or validate runbooks")
    rsub = p.add_subparsers(dest="runbooks_cmd", required=True, metavar="ACTION")
    v = rsub.add_parser(
        "validate", help="check runbooks (built-in and DIR) against schema and handlers"
    )
    v.add_argument("dir", nargs="?", type=Path, help="a directory of runbooks to check")
    rsub.add_parser("list", help="list the runbooks")
    rsub.add_parser("schema", help="print the runbook JSON Schema")

    p = sub.add_parser("audit", help="verify or export the audit log")
    asub = p.add_subparsers(dest="audit_cmd", required=True, metavar="ACTION")
    asub.add_parser("verify", help="check the hash chain; exit 1 on any tampering")
    e = asub.add_parser("export", help="write records as JSON lines")
    e.add_argument("--since", help="ISO 8601 time, e.g. 2026-11-01 or 2026-11-01T12:00:00Z")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG
        if args.verbose
        else logging.WARNING
        if args.cmd in ("run", "demo", "shell")
        else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s %(message)s",
    )
    try:
        return _dispatch(args)
    except RunbookError as exc:
        print("invalid runbooks:", file=sys.stderr)
        for problem in exc.problems:
            print(f"  {problem}", file=sys.stderr)
        return 2
    except ConfigError as exc:
        print(f"opsbot: {exc}", file=sys.stderr)
        return 2
    except OpsbotError as exc:
        print(f"opsbot: {plain(str(exc))}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130


def _dispatch(args: argparse.Namespace) -> int:
    if args.cmd == "simcluster":
        from bot.simcluster import serve_forever

        serve_forever(args.listen, args.kubeconfig, args.seed)
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

    return load_settings(args.config)


def _demo(args: argparse.Namespace) -> int:
    from bot.console.demo import demo_world
    from bot.console.session import run_script, shell, with_background

    with demo_world() as services:
        if args.script:
            try:
                lines = args.script.read_text(encoding="utf-8").splitlines()
            except OSError as exc:
                print(f"opsbot: cannot read {args.script}: {exc.strerror}", file=sys.stderr)
                return 2
            return asyncio.run(with_background(services, run_script(services, lines)))
        print("opsbot demo: a simulated cluster with the demo world (staging and prod).")
        print("Users: alice (deployer), bob and carol (sre-approvers), mallory (viewer).")
        print("Try: status shop-api · diag shop-worker · scale shop-web 3 · restart shop-api")
        return asyncio.run(with_background(services, shell(services, args.user)))


def _validate(args: argparse.Namespace) -> int:
    from bot.registry import Registry
    from bot.runbooks.loader import load_catalog

    registry = Registry.builtin()
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
    from bot.registry import Registry
    from bot.runbooks.loader import load_catalog

    dirs = [settings.resolve_path(d) for d in settings.runbook_dirs] if settings else []
    catalog = load_catalog(dirs, Registry.builtin())
    width = max((len(rb.usage) for rb in catalog), default=0)
    for rb in catalog:
        flag = "mutating" if rb.mutating else "read-only"
        print(f"{rb.usage:<{width}}  {flag:<9}  {rb.description}")
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
