from __future__ import annotations

import pytest

from bot.errors import PermanentError
from bot.runbooks.templating import evaluate, render_value


def test_single_expression_keeps_type() -> None:
    assert render_value("{{ params.replicas }}", {"params": {"replicas": 5}}) == 5


def test_mixed_text_renders_string() -> None:
    assert render_value("x-{{ a }}", {"a": 1}) == "x-1"


def test_nested_structures() -> None:
    assert render_value({"a": ["{{ n + 1 }}"]}, {"n": 1}) == {"a": [2]}


def test_user_values_are_data_not_templates() -> None:
    # A chat value containing template syntax is never evaluated.
    value = "{{ ''.__class__.__mro__ }}"
    assert render_value("{{ params.text }}", {"params": {"text": value}}) == value


def test_sandbox_blocks_attribute_escape() -> None:
    with pytest.raises(PermanentError):
        render_value("{{ ''.__class__.__mro__[1].__subclasses__() }}", {})


def test_undefined_is_an_error() -> None:
    with pytest.raises(PermanentError, match="missing"):
        render_value("{{ params.missing }}", {"params": {}})


def test_when_expression() -> None:
    assert evaluate("dry_run", {"dry_run": True}) is True
    assert evaluate("steps.a.ok and not dry_run", {"steps": {"a": {"ok": True}}, "dry_run": False})


def test_a_template_is_compiled_once_and_rendered_with_each_context() -> None:
    # Alert routing renders the same runbook templates for every alert.
    from bot.runbooks import templating

    source = "{{ alert.labels.pod | length }}-compiled-once"
    before = templating._template.cache_info()
    results = [render_value(source, {"alert": {"labels": {"pod": pod}}})
               for pod in ("a", "bb", "ccc")]
    after = templating._template.cache_info()
    assert results == ["1-compiled-once", "2-compiled-once", "3-compiled-once"]
    assert (after.misses - before.misses, after.hits - before.hits) == (1, 2)
    # What failed is not kept: it fails again, each time with its own reason.
    for context in ({}, {"alert": {}}):
        with pytest.raises(PermanentError, match="failed"):
            render_value(source, context)
    with pytest.raises(PermanentError, match="condition"):
        evaluate("{{", {})
    with pytest.raises(PermanentError, match="condition"):
        evaluate("{{", {})
