"""The interactive console: `opsbot shell` and `opsbot demo` read commands, switch users and
decide approval requests as Slack users would (`as bob`, `bob: ...`, `... --as bob`)."""

from __future__ import annotations

import re
from collections.abc import Callable

import pytest

from bot.console.session import as_suffix, shell
from bot.services import Services
from simcluster import SimCluster
from tests.console.test_cli import opsbot


class Terminal:
    """Typed lines go in one by one (each may look at what the shell printed so far); printed
    lines and prompts are kept, and go to stdout too, where the approval board prints
    requests and their runs. Running out of lines is Ctrl-D."""

    def __init__(self, lines: list[str | Callable[[str], str]]) -> None:
        self.lines = list(lines)
        self.out: list[str] = []
        self.prompts: list[str] = []

    @property
    def text(self) -> str:
        return "\n".join(self.out)

    def read(self, prompt: str) -> str:
        self.prompts.append(prompt)
        if not self.lines:
            raise EOFError
        line = self.lines.pop(0)
        return line(self.text) if callable(line) else line

    def write(self, text: str) -> None:
        self.out.append(text)
        print(text)


def newest_request(printed: str) -> str:
    return re.findall(r"request-id: (rq-[\w-]+)", printed)[-1]


def replicas(sim: SimCluster, namespace: str, name: str) -> int:
    obj = sim.get(f"/apis/apps/v1/namespaces/{namespace}/deployments/{name}")
    assert obj is not None
    return int(obj["spec"]["replicas"])


def test_as_suffix() -> None:
    assert as_suffix("approve rq-1 --as bob", "alice") == ("approve rq-1", "bob")
    assert as_suffix("approve rq-1 --as=U0BOB", "alice") == ("approve rq-1", "U0BOB")
    assert as_suffix("deny rq-1 not now --as carol", "alice") == ("deny rq-1 not now", "carol")
    assert as_suffix("status shop-api", "alice") == ("status shop-api", "alice")
    assert as_suffix("--as bob", "alice") == ("--as bob", "alice")  # no command: usage error


async def test_shell_switches_users_and_decides_requests(
    services: Services, sim: SimCluster, capsys: pytest.CaptureFixture[str]
) -> None:
    term = Terminal([
        "status shop-api",
        "scale shop-web 3 --env prod",               # alice asks
        lambda out: f"approve {newest_request(out)}",  # alice may not approve her own
        lambda out: f"approve {newest_request(out)} --as mallory",
        lambda out: f"approve {newest_request(out)} --as bob",
        "as eve",                                     # unknown: stays alice
        "as mallory",
        "scale shop-web 4",                           # mallory is a viewer
        "carol: status shop-web",                     # one line as carol
        "",
        "quit",
        "status shop-api",                            # never read
    ])
    assert await shell(services, "alice", read=term.read, write=term.write) == 0
    out = capsys.readouterr().out
    assert "✅ `status shop-api` in staging: done" in out
    assert "you cannot approve your own request" in out
    assert "mallory may not approve" in out
    assert "Approvals: 1 of 1 (bob at" in out and "approved and run" in out
    assert replicas(sim, "shop-prod", "shop-web") == 3
    assert "unknown user `eve`" in out
    assert "mallory may not run `scale` in `staging`" in out
    assert replicas(sim, "shop-staging", "shop-web") == 2
    assert "`status shop-web` in staging: done" in out
    assert term.prompts[-1] == "mallory> " and len(term.lines) == 1
    approvals = [r for r in services.store.export_audit() if r["request_id"]]
    actors = {(r["actor"], r["outcome"]) for r in approvals}
    assert ("U0BOB", "approved") in actors
    assert not any(a == "U0MALLORY" and o == "approved" for a, o in actors)


async def test_shell_deny_cancel_and_pending(
    services: Services, sim: SimCluster, capsys: pytest.CaptureFixture[str]
) -> None:
    term = Terminal([
        "restart shop-api --env prod",
        "pending",
        lambda out: f"deny {newest_request(out)} not during the sale --as carol",
        "scale shop-web 5 --env prod",
        lambda out: f"cancel {newest_request(out)} --as bob",   # only the requester cancels
        lambda out: f"cancel {newest_request(out)}",
        "pending",
    ])
    assert await shell(services, "alice", read=term.read, write=term.write) == 0  # EOF: 0
    out = capsys.readouterr().out
    first, second = re.findall(r"request-id: (rq-[\w-]+)", out)
    listings = out.split("Pending approval requests")
    assert len(listings) == 3
    assert f"`{first}` `restart shop-api --env prod` in prod by alice" in listings[1]
    assert listings[2].split("\n")[1].strip() == "none"
    assert "Denied by carol" in out and "not during the sale" in out
    assert f"only alice, who asked, can cancel `{second}`" in out
    assert replicas(sim, "shop-prod", "shop-web") == 2
    statuses = {rid: services.store.get_request(rid) for rid in (first, second)}
    assert {rid: r.status for rid, r in statuses.items() if r} == {
        first: "denied", second: "cancelled"}


def test_demo_reads_commands_from_the_terminal() -> None:
    typed = "status shop-api\nas bob\nrestart shop-web\nas nobody\nmallory: scale shop-web 3\n"
    result = opsbot("demo", input_text=typed)
    assert result.returncode == 0, result.stderr
    out = result.stdout
    assert "opsbot shell as alice" in out
    assert "✅ `status shop-api` in staging: done" in out
    assert "restarted shop-web" in out and "by bob" in out
    assert "unknown user `nobody`" in out
    assert "mallory may not run `scale`" in out
