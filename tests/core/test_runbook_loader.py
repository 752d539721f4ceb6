from __future__ import annotations

import json
from pathlib import Path

import pytest

from bot.errors import RunbookError
from bot.registry import Registry
from bot.runbooks.loader import load_catalog, runbook_json_schema

GOOD = """\
name: web-status
description: Status of the web app.
parameters:
  app:
    type: app
    default: shop-web
command:
  verb: webstatus
steps:
  - name: Read
    handler: k8s.status
"""


def _write(tmp_path: Path, name: str, text: str) -> Path:
    (tmp_path / name).write_text(text)
    return tmp_path


def test_builtin_runbooks_load(registry: Registry) -> None:
    catalog = load_catalog([], registry)
    assert {"status", "diag", "scale", "restart"} <= set(catalog.verbs())


def test_extra_directory_adds_runbook(tmp_path: Path, registry: Registry) -> None:
    catalog = load_catalog([_write(tmp_path, "web.yaml", GOOD)], registry)
    assert catalog.by_name("web-status").verb == "webstatus"


def test_override_by_name_replaces_builtin(tmp_path: Path, registry: Registry) -> None:
    text = GOOD.replace("name: web-status", "name: status").replace(
        "verb: webstatus", "verb: status"
    )
    catalog = load_catalog([_write(tmp_path, "status.yaml", text)], registry)
    assert catalog.by_name("status").description == "Status of the web app."


def test_unknown_handler_reported_with_file_and_line(tmp_path: Path, registry: Registry) -> None:
    bad = GOOD.replace("handler: k8s.status", "handler: k8s.stauts")
    with pytest.raises(RunbookError) as err:
        load_catalog([_write(tmp_path, "bad.yaml", bad)], registry)
    [problem] = err.value.problems
    assert problem.startswith(f"{tmp_path / 'bad.yaml'}:11:")
    assert "unknown handler `k8s.stauts`" in problem and "k8s.status" in problem


def test_bad_handler_argument_type(tmp_path: Path, registry: Registry) -> None:
    bad = GOOD.replace("handler: k8s.status", "handler: k8s.scale\n    with:\n      replicas: lots")
    with pytest.raises(RunbookError) as err:
        load_catalog([_write(tmp_path, "bad.yaml", bad)], registry)
    assert any(":13:" in p and "argument `replicas`" in p for p in err.value.problems)


def test_unknown_and_missing_handler_arguments(tmp_path: Path, registry: Registry) -> None:
    bad = GOOD.replace("handler: k8s.status", "handler: k8s.scale\n    with:\n      replica: 3")
    with pytest.raises(RunbookError) as err:
        load_catalog([_write(tmp_path, "bad.yaml", bad)], registry)
    text = "\n".join(err.value.problems)
    assert "has no argument `replica`" in text and "needs argument `replicas`" in text


def test_schema_error_points_at_line(tmp_path: Path, registry: Registry) -> None:
    bad = GOOD.replace("    type: app", "    type: colour")
    with pytest.raises(RunbookError) as err:
        load_catalog([_write(tmp_path, "bad.yaml", bad)], registry)
    assert any(p.startswith(f"{tmp_path / 'bad.yaml'}:5:") for p in err.value.problems)


def test_template_syntax_error(tmp_path: Path, registry: Registry) -> None:
    bad = GOOD.replace(
        "handler: k8s.status",
        "handler: k8s.scale\n    with:\n      replicas: '{{ params.replicas '",
    )
    with pytest.raises(RunbookError, match="template error"):
        load_catalog([_write(tmp_path, "bad.yaml", bad)], registry)


def test_invalid_yaml(tmp_path: Path, registry: Registry) -> None:
    with pytest.raises(RunbookError, match=r"bad.yaml:2: invalid YAML"):
        load_catalog([_write(tmp_path, "bad.yaml", "name: x\n  - : [\n")], registry)


def test_two_runbooks_one_verb(tmp_path: Path, registry: Registry) -> None:
    clash = GOOD.replace("verb: webstatus", "verb: status")
    with pytest.raises(RunbookError, match="verb `status` is already used"):
        load_catalog([_write(tmp_path, "clash.yaml", clash)], registry)


def test_published_schema_matches_models() -> None:
    published = json.loads((Path(__file__).parents[2] / "docs" / "runbook.schema.json").read_text())
    assert published == runbook_json_schema(), (
        "run `opsbot runbooks schema > docs/runbook.schema.json`"
    )


def test_schema_validates_builtin_runbooks() -> None:
    import yaml
    from jsonschema import Draft202012Validator

    validator = Draft202012Validator(runbook_json_schema())
    for file in (Path(__file__).parents[2] / "runbooks").glob("*.yaml"):
        assert not list(validator.iter_errors(yaml.safe_load(file.read_text()))), file


PAUSE = """\
name: pause-for
description: Pause automation for a while.
parameters:
  duration:
    type: duration
{bounds}
command:
  verb: pause-for
steps:
  - name: Pause
    handler: automation.pause
    with:
      duration: "{{{{ params.duration }}}}"
"""


@pytest.mark.parametrize(("bounds", "said"), [
    ("    max: 10", "`max` of a duration parameter is a duration"),
    ("    min: 1h\n    max: 1m", "`min` (1h) is longer than `max` (1m)"),
    ("    max: 99999999999d", "`max` is at most 3650d"),
    ("    max: 1h\n    default: 2h", "`default` is at most 1h; `2h` is longer"),
])
def test_duration_bounds_are_checked_at_load(tmp_path: Path, registry: Registry, bounds: str,
                                             said: str) -> None:
    with pytest.raises(RunbookError) as err:
        load_catalog([_write(tmp_path, "pause.yaml", PAUSE.format(bounds=bounds))], registry)
    assert said in "\n".join(err.value.problems)


def test_number_bounds_are_numbers(tmp_path: Path, registry: Registry) -> None:
    bad = GOOD.replace("    default: shop-web\n", "    default: shop-web\n  count:\n"
                       "    type: int\n    max: 7d\n")
    with pytest.raises(RunbookError) as err:
        load_catalog([_write(tmp_path, "bad.yaml", bad)], registry)
    assert "`max` is a whole number for type int" in "\n".join(err.value.problems)


def test_a_huge_alert_cooldown_is_a_load_error(tmp_path: Path, registry: Registry) -> None:
    # It was an OverflowError out of the loader, not a problem with file and line.
    text = GOOD + ('alerts:\n  - matchers: [\'alertname="X"\']\n'
                   "    cooldown: 99999999999d\n")
    with pytest.raises(RunbookError) as err:
        load_catalog([_write(tmp_path, "alert.yaml", text)], registry)
    assert "is at most 3650d" in "\n".join(err.value.problems)
