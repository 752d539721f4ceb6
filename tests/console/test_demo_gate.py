"""`opsbot demo` with its stand-in registry: a deploy of a tag that was never built is refused
before anything changes, one the registry has goes through (examples/demo-gate.txt)."""

from __future__ import annotations

from pathlib import Path

from tests.console.test_demo_verify import ROOT, demo, transcripts


def test_the_demo_refuses_a_tag_that_does_not_exist(tmp_path: Path) -> None:
    empty = tmp_path / "bin"
    empty.mkdir()  # no Prometheus or Alertmanager on PATH: the gate does not need them
    script = (ROOT / "examples" / "demo-gate.txt").read_text()
    result = demo(script, tmp_path, str(empty))
    assert result.returncode == 0, result.stdout + result.stderr
    parts = transcripts(result.stdout)
    missing = parts["deploy shop-api 9.9.9"]
    assert "🛑 `deploy shop-api 9.9.9` in staging: refused" in missing
    assert "`registry.example.com/shop/api:9.9.9` is not in its registry (registry.example.com " \
        "has no such manifest)" in missing
    assert "Apply" not in missing  # refused before anything changes
    there = parts["deploy shop-api 1.5.0"]
    assert "registry.example.com/shop/api:1.5.0 is in its registry" in there
    assert "`deploy shop-api 1.5.0` in staging: done" in there
    assert "Image (api): registry.example.com/shop/api:1.5.0" in parts["status shop-api"]
