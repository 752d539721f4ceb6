"""The rendered chart and the Dockerfile pass the real scanners: checkov's Kubernetes and
Dockerfile checks (once over every render) with no failure and a reason for every skip, and
hadolint with no finding."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import pytest

from tests.packaging.tools import ROOT, require_tool, run


@pytest.fixture(scope="module")
def checkov_reports(rendered_dir: Path, tmp_path_factory: pytest.TempPathFactory
                    ) -> dict[str, dict[str, Any]]:
    """checkov over every render and the Dockerfile, its reports by framework."""
    checkov = require_tool("checkov")
    scanned = tmp_path_factory.mktemp("scanned")
    for manifest in rendered_dir.iterdir():
        shutil.copy(manifest, scanned / manifest.name)
    shutil.copy(ROOT / "Dockerfile", scanned / "Dockerfile")
    # --skip-download: no guidelines from Prisma Cloud (no network beyond package registries).
    done = run([checkov, "--directory", str(scanned), "--framework", "kubernetes", "dockerfile",
                "--output", "json", "--compact", "--skip-download"], timeout=600)
    assert done.returncode in (0, 1), done.stderr  # 1: failed checks, reported below
    reports = json.loads(done.stdout)
    reports = reports if isinstance(reports, list) else [reports]
    return {report["check_type"]: report for report in reports}


def test_checkov_finds_no_failed_check(checkov_reports: dict[str, dict[str, Any]]) -> None:
    assert set(checkov_reports) == {"kubernetes", "dockerfile"}
    for framework, report in checkov_reports.items():
        assert report["summary"]["parsing_errors"] == 0, framework
        assert report["summary"]["passed"] > 0, framework
        failed = [f"{c['check_id']} {c['resource']} ({c['file_path']}): {c['check_name']}"
                  for c in report["results"]["failed_checks"]]
        assert not failed, f"{framework}:\n" + "\n".join(failed)


def test_every_skip_gives_its_reason(checkov_reports: dict[str, dict[str, Any]]) -> None:
    skipped = [c for report in checkov_reports.values()
               for c in report["results"]["skipped_checks"]]
    assert skipped  # the chart's and the Dockerfile's skips are read, not ignored
    for check in skipped:
        reason = (check.get("check_result") or {}).get("suppress_comment") or ""
        assert len(reason.split()) >= 5, f"{check['check_id']} skipped without a reason"


def test_hadolint_finds_nothing_in_the_dockerfile() -> None:
    hadolint = require_tool("hadolint")
    done = run([hadolint, "--no-color", str(ROOT / "Dockerfile")])
    assert done.returncode == 0 and not done.stdout.strip(), done.stdout + done.stderr
