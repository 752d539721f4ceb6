"""The runbook file format as pydantic models; the published JSON Schema is generated from them."""

from __future__ import annotations

import re
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
    min: int | None = None
    max: int | None = None
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
        from bot.runbooks.params import parse_duration

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
