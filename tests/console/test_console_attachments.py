"""The console saves a step's files and says where they went."""

from __future__ import annotations

from pathlib import Path

import pytest

from bot.console.reporter import ConsoleReporter
from bot.registry import Attachment
from bot.reporting import ExecutionView, StepView

GRAPH = Attachment(filename="analysis-shop-api-staging.png", content=b"\x89PNG fake",
                   title="shop-api in staging: error-ratio")


def _view(*attachments: Attachment) -> ExecutionView:
    step = StepView("Verify", status="succeeded", summary="analysis passed: 1/1 checks",
                    attachments=attachments)
    return ExecutionView(execution_id="ex-1", runbook="verify", command="verify shop-api",
                         actor="alice", environment="staging", target="shop-api",
                         dry_run=False, status="succeeded", steps=[step])


async def test_attachments_go_to_the_configured_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("OPSBOT_ATTACHMENTS_DIR", str(tmp_path / "files"))
    lines: list[str] = []
    await ConsoleReporter(lines.append).execution(_view(GRAPH))
    saved = tmp_path / "files" / "ex-1-analysis-shop-api-staging.png"
    assert saved.read_bytes() == GRAPH.content
    text = "\n".join(lines)
    assert f"  📎 shop-api in staging: error-ratio: {saved}" in text
    assert text.index("analysis passed") < text.index("📎")


async def test_hostile_file_names_stay_in_the_directory(tmp_path: Path) -> None:
    evil = Attachment(filename="../../etc/passwd", content=b"x", title="evil")
    lines: list[str] = []
    await ConsoleReporter(lines.append, attachments_dir=tmp_path).execution(_view(evil))
    assert [p.name for p in tmp_path.iterdir()] == ["ex-1-passwd"]


async def test_unwritable_directory_is_reported_not_raised(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    lines: list[str] = []
    await ConsoleReporter(lines.append, attachments_dir=blocker / "sub").execution(_view(GRAPH))
    assert any("📎 shop-api in staging: error-ratio: not saved (" in line for line in lines)


async def test_without_setting_a_temporary_directory_is_used(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("OPSBOT_ATTACHMENTS_DIR", raising=False)
    lines: list[str] = []
    await ConsoleReporter(lines.append).execution(_view(GRAPH))
    line = next(line for line in lines if "📎" in line)
    path = Path(line.split(": ")[-1])
    assert path.name == "ex-1-analysis-shop-api-staging.png" and path.read_bytes() == GRAPH.content
    path.unlink()
    path.parent.rmdir()
