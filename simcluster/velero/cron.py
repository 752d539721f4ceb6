"""Go durations and robfig/cron schedules, parsed as Velero parses them, so a Backup's
`spec.ttl` and a Schedule's `spec.schedule` fail validation with Velero's own messages."""

from __future__ import annotations

import re

_UNITS = {"ns": 1e-9, "us": 1e-6, "µs": 1e-6, "μs": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0,
          "h": 3600.0}


_MAX_SECONDS = (2**63 - 1) / 1e9


def parse_duration(text: str) -> float:
    """Seconds in a Go duration (`720h0m0s`, `24h`, `1.5h`); ValueError with Go's message."""
    rest = text
    sign = -1.0 if rest.startswith("-") else 1.0
    rest = rest[1:] if rest[:1] in ("+", "-") else rest
    if rest == "0":
        return 0.0
    if not rest:
        raise ValueError(f'time: invalid duration "{text}"')
    total = 0.0
    while rest:
        number = re.match(r"([0-9]*)(\.[0-9]*)?", rest)
        digits = number.group(0) if number else ""
        if digits in ("", "."):
            raise ValueError(f'time: invalid duration "{text}"')
        rest = rest[len(digits):]
        unit = re.match(r"[^0-9.]+", rest)
        if unit is None:
            raise ValueError(f'time: missing unit in duration "{text}"')
        if unit.group(0) not in _UNITS:
            raise ValueError(f'time: unknown unit "{unit.group(0)}" in duration "{text}"')
        total += float(digits) * _UNITS[unit.group(0)]
        if total > _MAX_SECONDS:  # Go's int64 nanoseconds overflow: ParseDuration refuses it
            raise ValueError(f'time: invalid duration "{text}"')
        rest = rest[unit.end():]
    return sign * total


_MONTHS = {m: i + 1 for i, m in enumerate(["jan", "feb", "mar", "apr", "may", "jun", "jul",
                                            "aug", "sep", "oct", "nov", "dec"])}
_DAYS = {d: i for i, d in enumerate(["sun", "mon", "tue", "wed", "thu", "fri", "sat"])}
_CRON_FIELDS: tuple[tuple[int, int, dict[str, int]], ...] = (
    (0, 59, {}), (0, 23, {}), (1, 31, {}), (1, 12, _MONTHS), (0, 6, _DAYS))
_DESCRIPTORS = {"@yearly", "@annually", "@monthly", "@weekly", "@daily", "@midnight", "@hourly"}


def schedule_errors(spec: object) -> list[str]:
    """Velero's validation of `spec.schedule` (robfig/cron's standard parser)."""
    if not spec or not isinstance(spec, str):
        return ["Schedule must be a non-empty valid Cron expression"]
    try:
        _parse_cron(spec)
    except ValueError as exc:
        return [f"invalid schedule: {exc}"]
    return []


def _parse_cron(spec: str) -> None:
    if spec.startswith("@"):
        if spec.startswith("@every "):
            try:
                parse_duration(spec[len("@every "):])
            except ValueError as exc:
                raise ValueError(f"Failed to parse duration {spec}: {exc}") from exc
        elif spec not in _DESCRIPTORS:
            raise ValueError(f"Unrecognized descriptor: {spec}")
        return
    fields = spec.split()
    if len(fields) != len(_CRON_FIELDS):
        raise ValueError(f"Expected exactly 5 fields, found {len(fields)}: {spec}")
    for text, (low, high, names) in zip(fields, _CRON_FIELDS, strict=True):
        for part in text.split(","):
            _cron_range(part, low, high, names)


def _cron_range(expr: str, low: int, high: int, names: dict[str, int]) -> None:
    range_and_step = expr.split("/")
    low_and_high = range_and_step[0].split("-")
    if low_and_high[0] in ("*", "?"):
        start, end = low, high
    else:
        start = _cron_int(low_and_high[0], names)
        if len(low_and_high) == 1:
            end = start
        elif len(low_and_high) == 2:
            end = _cron_int(low_and_high[1], names)
        else:
            raise ValueError(f"Too many hyphens: {expr}")
    if len(range_and_step) == 2:
        step = _cron_int(range_and_step[1], {})
        if len(low_and_high) == 1 and low_and_high[0] not in ("*", "?"):
            end = high  # "5/10" means 5-max/10
    elif len(range_and_step) > 2:
        raise ValueError(f"Too many slashes: {expr}")
    else:
        step = 1
    if start < low:
        raise ValueError(f"Beginning of range ({start}) below minimum ({low}): {expr}")
    if end > high:
        raise ValueError(f"End of range ({end}) above maximum ({high}): {expr}")
    if start > end:
        raise ValueError(f"Beginning of range ({start}) beyond end of range ({end}): {expr}")
    if step == 0:
        raise ValueError(f"Step of range should be a positive number: {expr}")


def _cron_int(text: str, names: dict[str, int]) -> int:
    if text.lower() in names:
        return names[text.lower()]
    if not re.fullmatch(r"[+-]?\d+", text):
        raise ValueError(f'Failed to parse int from {text}: strconv.Atoi: parsing "{text}": '
                         "invalid syntax")
    if int(text) < 0:
        raise ValueError(f"Negative number ({int(text)}) not allowed: {text}")
    return int(text)
