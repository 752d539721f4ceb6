"""Loading runbooks from YAML: schema errors and handler argument errors carry file:line.

A catalog that fails to load stops startup: a broken runbook never silently disappears.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

import yaml
from pydantic import TypeAdapter, ValidationError

from bot.errors import RunbookError, UnknownName
from bot.names import closest
from bot.registry import Registry
from bot.runbooks.models import Runbook, Step
from bot.runbooks.templating import check_syntax, is_template

__all__ = ["Catalog", "LoadedRunbook", "builtin_dir", "load_catalog", "runbook_json_schema"]

Path_ = tuple[str | int, ...]


@dataclass(frozen=True)
class LoadedRunbook:
    runbook: Runbook
    source: str  # file path, for messages


class Catalog:
    """All runbooks by name and by verb; later directories override earlier ones by name."""

    def __init__(self, runbooks: Iterable[LoadedRunbook]) -> None:
        self._by_name: dict[str, LoadedRunbook] = {}
        for loaded in runbooks:
            self._by_name[loaded.runbook.name] = loaded
        self._by_verb: dict[str, Runbook] = {}
        for loaded in self._by_name.values():
            if loaded.runbook.verb:
                self._by_verb[loaded.runbook.verb] = loaded.runbook

    def __iter__(self) -> Any:
        return iter(sorted((lr.runbook for lr in self._by_name.values()), key=lambda r: r.name))

    def __len__(self) -> int:
        return len(self._by_name)

    def by_name(self, name: str) -> Runbook:
        if name not in self._by_name:
            raise UnknownName("runbook", name, closest(name, self._by_name))
        return self._by_name[name].runbook

    def source(self, name: str) -> str:
        return self._by_name[name].source

    def verbs(self) -> list[str]:
        return sorted(self._by_verb)

    def match_verb(self, words: Sequence[str]) -> tuple[Runbook, int] | None:
        """The runbook whose verb is the longest prefix of `words`, and the words it used."""
        for size in (2, 1):
            if len(words) >= size:
                verb = " ".join(words[:size])
                if verb in self._by_verb:
                    return self._by_verb[verb], size
        return None


def builtin_dir() -> Path:
    return Path(str(resources.files("runbooks")))


def load_catalog(
    directories: Sequence[Path | str], registry: Registry, *, include_builtin: bool = True
) -> Catalog:
    """Load and check every `*.yaml` runbook; raise RunbookError listing all problems."""
    dirs = ([builtin_dir()] if include_builtin else []) + [Path(d) for d in directories]
    loaded: list[LoadedRunbook] = []
    problems: list[str] = []
    for directory in dirs:
        if not directory.is_dir():
            problems.append(f"{directory}: not a directory")
            continue
        for file in sorted([*directory.glob("*.yaml"), *directory.glob("*.yml")]):
            runbook, file_problems = load_file(file, registry)
            problems.extend(file_problems)
            if runbook is not None:
                loaded.append(LoadedRunbook(runbook, str(file)))
    problems.extend(_verb_clashes(loaded))
    if problems:
        raise RunbookError(problems)
    return Catalog(loaded)


def load_file(file: Path, registry: Registry) -> tuple[Runbook | None, list[str]]:
    try:
        text = file.read_text(encoding="utf-8")
        node, data = _parse(text)
    except OSError as exc:
        return None, [f"{file}: cannot read: {exc.strerror}"]
    except yaml.MarkedYAMLError as exc:
        line = exc.problem_mark.line + 1 if exc.problem_mark else 1
        return None, [f"{file}:{line}: invalid YAML: {exc.problem}"]
    if node is None:
        return None, [f"{file}:1: empty runbook file"]
    lines: dict[Path_, int] = {}
    _index_lines(node, (), lines)

    def where(path: Path_) -> str:
        for size in range(len(path), -1, -1):
            if path[:size] in lines:
                return f"{file}:{lines[path[:size]]}"
        return f"{file}:1"

    try:
        runbook = Runbook.model_validate(data)
    except ValidationError as exc:
        return None, [
            f"{where(tuple(err['loc']))}: {_loc_text(err['loc'])}{err['msg']}"
            for err in exc.errors()
        ]
    problems = []
    for section in ("steps", "on_failure"):
        for index, step in enumerate(getattr(runbook, section)):
            for problem, subpath in check_step(step, registry):
                problems.append(
                    f"{where((section, index, *subpath))}: {section}[{index}] "
                    f"`{step.name}`: {problem}"
                )
    for index, trigger in enumerate(runbook.alerts):
        for name, template in trigger.params.items():
            at = where(("alerts", index, "params", name))
            if name not in runbook.parameters:
                problems.append(f"{at}: alerts[{index}].params: `{name}` is not a parameter")
            elif syntax := check_syntax(template):
                problems.append(f"{at}: alerts[{index}].params.{name}: template error: {syntax}")
        for number, suggestion in enumerate(trigger.suggest):
            if syntax := check_syntax(suggestion.command):
                at = where(("alerts", index, "suggest", number))
                problems.append(
                    f"{at}: alerts[{index}].suggest[{number}]: template error: {syntax}"
                )
        missing = [
            name for name, spec in runbook.parameters.items()
            if spec.is_required and name not in trigger.params
        ]
        if missing:
            problems.append(f"{where(('alerts', index))}: alerts[{index}]: required parameter "
                            f"`{missing[0]}` gets no value from the alert (add it to params)")
    return (runbook if not problems else None), problems


# libyaml when pyyaml was built with it (several times faster); the same safe subset either way.
_LOADER: Any = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


def _parse(text: str) -> tuple[yaml.Node | None, Any]:
    """The document's node tree (for line numbers) and its data, from one parse."""
    loader = _LOADER(text)
    try:
        node = loader.get_single_node()
        return node, (loader.construct_document(node) if node is not None else None)
    finally:
        loader.dispose()


def check_step(step: Step, registry: Registry) -> list[tuple[str, Path_]]:
    """Check a step against its handler's params model; templated values are checked later."""
    spec = registry.get(step.handler)
    if spec is None:
        hint = closest(step.handler, registry.names())
        suffix = f" (did you mean {', '.join(hint)}?)" if hint else ""
        return [(f"unknown handler `{step.handler}`{suffix}", ("handler",))]
    problems: list[tuple[str, Path_]] = []
    fields = spec.params.model_fields
    for key, value in step.with_.items():
        if key not in fields:
            problems.append(
                (
                    f"handler `{step.handler}` has no argument `{key}` "
                    f"(it takes: {', '.join(fields) or 'none'})",
                    ("with", key),
                )
            )
            continue
        if syntax := check_syntax(value):
            problems.append((f"argument `{key}`: template error: {syntax}", ("with", key)))
            continue
        if not _contains_template(value):
            try:
                TypeAdapter(fields[key].annotation or Any).validate_python(value)
            except ValidationError as exc:
                msg = exc.errors()[0]["msg"]
                problems.append((f"argument `{key}`: {msg}", ("with", key)))
    for name, info in fields.items():
        if info.is_required() and name not in step.with_:
            problems.append((f"handler `{step.handler}` needs argument `{name}`", ("with",)))
    if not problems and not _contains_template(step.with_):
        # Every argument is literal: what the model checks across them (a `json` patch is a
        # list) is known now, not only when the step runs.
        try:
            spec.params.model_validate(step.with_)
        except ValidationError as exc:
            for err in exc.errors():
                at = tuple(str(p) for p in err["loc"])
                where = f"argument `{'.'.join(at)}`: " if at else ""
                problems.append((f"{where}{err['msg']}", ("with", *at)))
    if step.when and (syntax := check_syntax("{{ " + step.when + " }}")):
        problems.append((f"`when` is not a valid expression: {syntax}", ("when",)))
    return problems


def runbook_json_schema() -> dict[str, Any]:
    schema = Runbook.model_json_schema(by_alias=True)
    schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    schema["$id"] = "https://opsbot.dev/schemas/runbook.schema.json"
    schema["title"] = "opsbot runbook"
    return schema


def schema_text() -> str:
    return json.dumps(runbook_json_schema(), indent=2, sort_keys=True) + "\n"


def _contains_template(value: Any) -> bool:
    if isinstance(value, dict):
        return any(_contains_template(v) for v in value.values())
    if isinstance(value, list):
        return any(_contains_template(v) for v in value)
    return is_template(value)


def _verb_clashes(loaded: list[LoadedRunbook]) -> list[str]:
    # Overrides replace by name; two *different* names claiming one verb is an error.
    final: dict[str, LoadedRunbook] = {lr.runbook.name: lr for lr in loaded}
    owners: dict[str, LoadedRunbook] = {}
    problems = []
    for lr in final.values():
        verb = lr.runbook.verb
        if verb is None:
            continue
        if verb in owners:
            problems.append(
                f"{lr.source}:1: verb `{verb}` is already used by runbook "
                f"`{owners[verb].runbook.name}` ({owners[verb].source})"
            )
        else:
            owners[verb] = lr
    return problems


def _loc_text(loc: Sequence[str | int]) -> str:
    return ("`" + ".".join(str(p) for p in loc) + "`: ") if loc else ""


def _index_lines(node: yaml.Node, path: Path_, out: dict[Path_, int]) -> None:
    out[path] = node.start_mark.line + 1
    if isinstance(node, yaml.MappingNode):
        for key_node, value_node in node.value:
            key = key_node.value
            out[(*path, key)] = key_node.start_mark.line + 1
            _index_lines(value_node, (*path, key), out)
            out[(*path, key)] = key_node.start_mark.line + 1
    elif isinstance(node, yaml.SequenceNode):
        for index, item in enumerate(node.value):
            _index_lines(item, (*path, index), out)
