"""The runbook file format as pydantic models; the published JSON Schema is generated from them."""

from __future__ import annotations

import re
from datetime import timedelta
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

__all__ = [
    "AlertTrigger",
    "CommandTrigger",
    "FollowUp",
    "Mode",
    "ParamType",
    "Parameter",
    "Runbook",
    "Step",
]

ParamType = Literal[
    "string", "int", "bool", "duration", "app", "name", "image", "revision", "replicas",
    "labels",
]
Mode = Literal["active", "shadow"]

_VERB = re.compile(r"^[a-z][a-z0-9-]*( [a-z][a-z0-9-]*)?\Z")
_IDENT = re.compile(r"^[a-z_][a-z0-9_]*\Z")


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Parameter(_Model):
    """A typed runbook parameter; command text is checked against it before anything runs."""

    type: ParamType = "string"
    help: str = ""
    required: bool | None = Field(
        default=None, description="Defaults to true when no default is given."
    )
    default: Any = None
    min: int | str | None = Field(
        default=None, description="The smallest value: a number, or for a duration e.g. `1m`."
    )
    max: int | str | None = Field(
        default=None,
        description="The largest value: a number, or for a duration e.g. `7d` (a duration is "
        "never more than 3650d).",
    )
    choices: list[str] | None = None
    pattern: str | None = Field(default=None, description="A regular expression to fullmatch.")
    flag: str | None = Field(
        default=None,
        description="Command-line flag for this parameter, e.g. `--to`; `--<name>` always works.",
    )
    secret: bool = Field(default=False, description="Redacted in the store, audit log and chat.")

    @property
    def is_required(self) -> bool:
        return self.default is None if self.required is None else self.required

    @property
    def number_bounds(self) -> tuple[int | None, int | None]:
        """`min` and `max` of an int, revision or replicas parameter."""
        low, high = self.min, self.max
        return (low if isinstance(low, int) else None, high if isinstance(high, int) else None)

    @property
    def duration_bounds(self) -> tuple[timedelta | None, timedelta]:
        """`min` and `max` of a duration parameter; the longest is at most LONGEST."""
        from bot.numbers import LONGEST, parse_duration

        low = parse_duration(self.min) if isinstance(self.min, str) else None
        high = parse_duration(self.max) if isinstance(self.max, str) else LONGEST
        return low, high

    @model_validator(mode="after")
    def _bounds_fit_the_type(self) -> Parameter:
        bounds = [(key, getattr(self, key)) for key in ("min", "max")]
        if self.type != "duration":
            for key, value in bounds:
                if value is not None and (not isinstance(value, int) or isinstance(value, bool)):
                    raise ValueError(f"`{key}` is a whole number for type {self.type}")
            low, high = self.number_bounds
            if low is not None and high is not None and low > high:
                raise ValueError(f"`min` ({low}) is greater than `max` ({high})")
            return self
        from bot.errors import UsageError
        from bot.numbers import parse_duration

        try:
            for key, value in bounds:
                if value is not None and not isinstance(value, str):
                    raise ValueError(f"`{key}` of a duration parameter is a duration, e.g. 7d")
                if value is not None:
                    parse_duration(value, what=f"`{key}`")
            shortest, longest = self.duration_bounds
            if shortest is not None and shortest > longest:
                raise ValueError(f"`min` ({self.min}) is longer than `max` ({self.max})")
            if isinstance(self.default, str):
                parse_duration(self.default, shortest=shortest, longest=longest,
                               what="`default`")
        except UsageError as exc:
            raise ValueError(str(exc)) from None
        return self

    @field_validator("pattern")
    @classmethod
    def _compiles(cls, value: str | None) -> str | None:
        if value is not None:
            re.compile(value)
        return value

    @field_validator("flag")
    @classmethod
    def _flag_shape(cls, value: str | None) -> str | None:
        if value is not None and not re.fullmatch(r"--[a-z][a-z0-9-]*", value):
            raise ValueError("a flag looks like --name")
        return value


class CommandTrigger(_Model):
    """How the runbook is invoked from chat: `verb` (one or two words) and positional args."""

    verb: str
    args: list[str] = []
    rest: str | None = Field(
        default=None,
        description="A `labels` parameter that collects the remaining `name=value` words.",
    )

    @field_validator("verb")
    @classmethod
    def _verb_shape(cls, value: str) -> str:
        if not _VERB.match(value):
            raise ValueError(
                "a verb is one or two lowercase words, e.g. `scale` or `backup create`"
            )
        return value


class Step(_Model):
    """One step: a registered handler and its arguments (strings may be Jinja2 templates)."""

    id: str | None = Field(
        default=None, description="Names the step's result for later templates: steps.<id>."
    )
    name: str
    handler: str
    with_: dict[str, Any] = Field(default_factory=dict, alias="with")
    when: str | None = Field(default=None, description="A Jinja2 expression; skip when false.")

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)


class FollowUp(_Model):
    """A button under the finished message; `command` is a template, run as whoever clicks."""

    label: str
    command: str
    when: Literal["always", "succeeded", "failed"] = "always"


class AlertTrigger(_Model):
    """Which Alertmanager alerts start the runbook, how its parameters come from the alert,
    and the guardrails of its automatic runs (per runbook and target)."""

    matchers: list[str] = Field(
        min_length=1,
        description='Alertmanager matchers, all of which must hold: `alertname="X"`, '
        '`severity=~"warning|critical"`, `namespace!=""`, `team!~"db.*"`.',
    )
    params: dict[str, str] = Field(
        default_factory=dict,
        description="Parameter values as templates over `alert` (e.g. `{{ alert.app }}`).",
    )
    cooldown: str = Field(default="15m", description="Minimum time between two runs.")
    max_runs: int = Field(default=3, ge=1, description="Runs allowed per `window`.")
    window: str = Field(default="6h", description="The window `max_runs` counts over.")
    suggest: list[FollowUp] = Field(
        default_factory=list,
        description="Buttons on the alert message: manual runbooks a human may run next.",
    )

    @field_validator("matchers")
    @classmethod
    def _matchers_parse(cls, value: list[str]) -> list[str]:
        from bot.alerts.matchers import parse_matcher

        for text in value:
            parse_matcher(text)
        return value

    @field_validator("cooldown", "window")
    @classmethod
    def _duration(cls, value: str) -> str:
        from bot.errors import UsageError
        from bot.numbers import parse_duration

        try:
            parse_duration(value)
        except UsageError as exc:
            raise ValueError(str(exc)) from None
        return value


class Runbook(_Model):
    """A named, typed, ordered list of handler steps, run by commands (and later alerts)."""

    name: str
    description: str
    mutating: bool = Field(
        default=False, description="Changes the cluster: needs approval where required."
    )
    parameters: dict[str, Parameter] = {}
    command: CommandTrigger | None = None
    steps: list[Step] = Field(min_length=1)
    on_failure: list[Step] = []
    follow_up: list[FollowUp] = []
    auto_approved_in: list[str] = Field(
        default=[],
        description="Environments (names or shell patterns) where runs started by alerts or "
        "schedules need no approval.",
    )
    alerts: list[AlertTrigger] = Field(
        default=[], description="Alerts that run this runbook automatically."
    )
    mode: Mode = Field(
        default="active",
        description="`shadow`: runs started by alerts are dry runs that post what they would "
        "do and change nothing. Config `alerts.modes` overrides it per runbook.",
    )

    @field_validator("name")
    @classmethod
    def _name_shape(cls, value: str) -> str:
        if not re.fullmatch(r"[a-z][a-z0-9-]*(\.[a-z0-9-]+)*", value):
            raise ValueError("a runbook name is lowercase letters, digits, '-' and '.'")
        return value

    @field_validator("parameters")
    @classmethod
    def _param_names(cls, value: dict[str, Parameter]) -> dict[str, Parameter]:
        for name in value:
            if not _IDENT.match(name):
                raise ValueError(f"parameter name `{name}` must be a lowercase identifier")
        return value

    @model_validator(mode="after")
    def _args_are_parameters(self) -> Runbook:
        if self.command:
            for arg in self.command.args:
                if arg not in self.parameters:
                    raise ValueError(f"command argument `{arg}` is not a declared parameter")
        return self

    @model_validator(mode="after")
    def _rest_is_labels(self) -> Runbook:
        if self.command and self.command.rest:
            spec = self.parameters.get(self.command.rest)
            if spec is None or spec.type != "labels":
                raise ValueError(f"command rest `{self.command.rest}` must be a `labels` parameter")
        return self

    @property
    def verb(self) -> str | None:
        return self.command.verb if self.command else None

    @property
    def usage(self) -> str:
        """`scale <app> <replicas> [--reason TEXT]` style usage line."""
        if not self.command:
            return f"run {self.name}" + "".join(f" {k}=..." for k in self.parameters)
        parts = [self.command.verb]
        for arg in self.command.args:
            spec = self.parameters[arg]
            parts.append(f"<{arg}>" if spec.is_required else f"[{arg}]")
        for name, spec in self.parameters.items():
            if name not in self.command.args and name != self.command.rest:
                flag = spec.flag or f"--{name.replace('_', '-')}"
                if spec.type == "bool":
                    parts.append(f"[{flag}]")
                else:
                    shown = f"{flag} {name.upper()}"
                    parts.append(shown if spec.is_required else f"[{shown}]")
        if self.command.rest:
            parts.append("[label=value ...]")
        return " ".join(parts)
