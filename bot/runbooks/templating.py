"""Jinja2 in a sandbox: step arguments are templates; user values are data, never template
source."""

from __future__ import annotations

import functools
from collections.abc import Mapping
from typing import Any

from jinja2 import StrictUndefined, Template, TemplateError, Undefined
from jinja2.environment import TemplateExpression
from jinja2.sandbox import ImmutableSandboxedEnvironment

from bot.errors import PermanentError
from bot.markup import code

__all__ = ["evaluate", "is_template", "render_value"]

# What a template can raise besides TemplateError: arithmetic on values (`x / 0`), lookups
# (`items[9]`), methods called on values ("{0}".format_map(...)) raise Python's own errors. Any
# of them is the template failing, never an internal error of opsbot.
_FAILED = (TemplateError, ArithmeticError, LookupError, TypeError, ValueError)


class _Sandbox(ImmutableSandboxedEnvironment):
    """Jinja's immutable sandbox; subscripting a type (`dict['x']`, which Python answers with
    a generic alias) is undefined too: templates subscript values, never types."""

    def getitem(self, obj: Any, argument: Any) -> Any:
        if isinstance(obj, type):
            return self.undefined(obj=obj, name=str(argument))
        return super().getitem(obj, argument)


_ENV = _Sandbox(undefined=StrictUndefined, autoescape=False)

#: Compiled templates kept, by source text. Their sources are the runbooks' (step arguments,
#: conditions, alert parameters, suggestions), rendered again for every run and every alert:
#: compiling one takes a millisecond or more, rendering it a few microseconds.
COMPILED_KEPT = 1024


@functools.lru_cache(maxsize=COMPILED_KEPT)
def _expression(source: str) -> TemplateExpression:
    return _ENV.compile_expression(source, undefined_to_none=False)


@functools.lru_cache(maxsize=COMPILED_KEPT)
def _template(source: str) -> Template:
    return _ENV.from_string(source)


def is_template(value: Any) -> bool:
    return isinstance(value, str) and ("{{" in value or "{%" in value)


def render_value(value: Any, context: Mapping[str, Any]) -> Any:
    """Render strings (recursively through lists and dicts); a lone `{{ x }}` keeps x's type."""
    if isinstance(value, dict):
        return {key: render_value(item, context) for key, item in value.items()}
    if isinstance(value, list):
        return [render_value(item, context) for item in value]
    if not is_template(value):
        return value
    text = value.strip()
    try:
        if text.startswith("{{") and text.endswith("}}") and text.count("{{") == 1:
            # A single expression: return the native value so ints stay ints.
            result = _expression(text[2:-2].strip())(**context)
            if isinstance(result, Undefined):
                result._fail_with_undefined_error()
            return result
        return _template(value).render(**context)
    except _FAILED as exc:
        raise PermanentError(f"template {code(value)} failed: {_reason(exc)}") from exc


def evaluate(expression: str, context: Mapping[str, Any]) -> bool:
    try:
        return bool(_expression(expression)(**context))
    except _FAILED as exc:
        raise PermanentError(f"condition {code(expression)} failed: {_reason(exc)}") from exc


def _reason(exc: Exception) -> str:
    return str(exc) if isinstance(exc, TemplateError) else f"{type(exc).__name__}: {exc}"


def check_syntax(value: Any) -> str | None:
    """The syntax error in a template value, or None; used when runbooks load."""
    if isinstance(value, dict):
        for item in value.values():
            if problem := check_syntax(item):
                return problem
        return None
    if isinstance(value, list):
        for item in value:
            if problem := check_syntax(item):
                return problem
        return None
    if is_template(value):
        try:
            _ENV.parse(value)
        except TemplateError as exc:
            return str(exc)
    return None
