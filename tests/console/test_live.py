"""Background output in the console (alert messages): held while a command runs and printed when
it ends, shown under a waiting prompt (read in a thread, so the event loop goes on), and waited
for by demo scripts with `wait alert NAME [firing|resolved] [--within DURATION]`."""

from __future__ import annotations

import asyncio
import os
import threading

import pytest

from bot.alerts.console import ConsoleAlertBoard
from bot.alerts.view import AlertGroupView, AlertLine
from bot.console.live import LiveOutput, StdinLines
from bot.console.session import run_script, shell
from bot.services import Services


def group(name: str, status: str = "firing", fingerprint: str = "f1") -> AlertGroupView:
    alert = AlertLine(fingerprint, name, status, "critical", "shop-api answers 5xx",
                      "shop-api in staging", "2026-01-01T00:00:00Z", None)
    return AlertGroupView(group_hash=f"g-{name}", title=f"{name} in staging", status=status,
                          alerts=[alert])


def test_background_text_is_held_while_a_command_runs() -> None:
    out: list[str] = []
    live = LiveOutput(out.append)
    live.write("🚨 before")
    with live.command():
        out.append("▶ command")
        live.write("🚨 during")
        out.append("✅ command done")
    live.write("🚨 after")
    assert out == ["🚨 before", "▶ command", "✅ command done", "🚨 during", "🚨 after"]


def test_held_text_is_printed_when_a_command_fails() -> None:
    out: list[str] = []
    live = LiveOutput(out.append)
    with pytest.raises(RuntimeError), live.command():
        live.write("🚨 during")
        raise RuntimeError
    assert out == ["🚨 during"]


async def test_shell_shows_background_text_under_the_waiting_prompt(services: Services) -> None:
    out: list[str] = []
    live = LiveOutput(out.append, show_prompt=lambda prompt: out.append(f"(again) {prompt}"))
    written = threading.Event()
    lines = iter(["quit"])

    def read(prompt: str) -> str:
        out.append(prompt)
        # Blocks its thread, not the loop: the alert below can only arrive if the shell reads
        # the prompt elsewhere than on the event loop.
        assert written.wait(10), "the event loop stood still while the prompt waited"
        return next(lines)

    async def alert_arrives() -> None:
        while "alice> " not in out:
            await asyncio.sleep(0.01)
        live.write("🚨 FIRING HighErrorRate in staging")
        written.set()

    arrival = asyncio.create_task(alert_arrives())
    assert await shell(services, "alice", read=read, write=out.append, live=live) == 0
    await arrival
    assert out[1:] == ["alice> ", "", "🚨 FIRING HighErrorRate in staging", "(again) alice> "]


def test_stdin_lines_reads_lines_then_eof() -> None:
    read_end, write_end = os.pipe()
    os.write(write_end, "status shop-api\r\ndiag shop-wörker\nlast".encode())
    os.close(write_end)
    lines = StdinLines(read_end, encoding="utf-8")
    try:
        assert [lines(""), lines(""), lines("")] == ["status shop-api", "diag shop-wörker", "last"]
        with pytest.raises(EOFError):
            lines("")
    finally:
        os.close(read_end)


async def test_script_waits_for_an_alert_to_be_shown(services: Services) -> None:
    out: list[str] = []
    live = LiveOutput(out.append)
    board = ConsoleAlertBoard(live.write)

    async def fire_then_resolve() -> None:
        while not any(line.startswith("⏳") for line in out):
            await asyncio.sleep(0.01)
        await board.show(group("HighErrorRate"))
        while sum(line.startswith("⏳") for line in out) < 3:
            await asyncio.sleep(0.01)
        await board.show(group("HighErrorRate", "resolved"))

    events = asyncio.create_task(fire_then_resolve())
    script = ["wait alert HighErrorRate --within 30s",
              "wait alert HighErrorRate firing",
              "wait alert HighErrorRate resolved --within=1m"]
    assert await run_script(services, script, out.append, live=live, alerts=board) == 0
    await events
    text = "\n".join(out)
    assert text.index("⏳ waiting up to 30s for alert HighErrorRate to be shown firing") \
        < text.index("🚨 FIRING HighErrorRate in staging") \
        < text.index("⏳ alert HighErrorRate is shown firing above: no need to wait") \
        < text.index("⏳ waiting up to 60s for alert HighErrorRate to be shown resolved") \
        < text.index("🚨 RESOLVED HighErrorRate in staging")


async def test_script_wait_is_bounded(services: Services) -> None:
    out: list[str] = []
    board = ConsoleAlertBoard(out.append)
    await board.show(group("KubePodCrashLooping"))
    status = await run_script(services, ["wait alert HighErrorRate --within 1s",
                                         "wait alert KubePodCrashLooping resolved --within 1s"],
                              out.append, alerts=board)
    assert status == 1
    assert "❌ line 1: alert HighErrorRate was not shown firing within 1s" in out
    assert "❌ line 2: alert KubePodCrashLooping was not shown resolved within 1s" in out


async def test_script_wait_without_alerts_is_skipped(services: Services) -> None:
    out: list[str] = []
    assert await run_script(services, ["wait alert HighErrorRate"], out.append) == 0
    assert out == ["", "⏭ line 1: alerts are off in this demo; not waiting for HighErrorRate"]


@pytest.mark.parametrize("line", [
    "wait", "wait alerts HighErrorRate", "wait alert HighErrorRate soon",
    "wait alert HighErrorRate --within soon", "wait alert HighErrorRate --within 0s",
])
async def test_malformed_wait_lines(services: Services, line: str) -> None:
    out: list[str] = []
    assert await run_script(services, [line], out.append, alerts=ConsoleAlertBoard()) == 1
    assert out == [f"❌ line 1: expected `wait alert NAME [firing|resolved] "
                   f"[--within DURATION]`, got `{line}`"]
