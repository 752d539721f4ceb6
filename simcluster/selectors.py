"""Label and field selectors with the real API's grammar and error messages, plus the
LabelSelector object form (matchLabels/matchExpressions) that controllers match pods with."""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from .errors import ApiError, bad_request

JSON = dict[str, Any]
_KEY = re.compile(
    r"^([a-z0-9A-Z]([-a-z0-9A-Z_.]*[a-z0-9A-Z])?/)?[a-zA-Z0-9]([-a-zA-Z0-9_.]*[a-zA-Z0-9])?$"
)
_VALUE = re.compile(r"^([a-zA-Z0-9]([-a-zA-Z0-9_.]*[a-zA-Z0-9])?)?$")


@dataclass(frozen=True)
class Requirement:
    key: str
    op: str  # = != in notin exists !exists gt lt
    values: tuple[str, ...] = ()

    def matches(self, labels: Mapping[str, str]) -> bool:
        present = self.key in labels
        value = labels.get(self.key)
        if self.op in ("=", "in"):
            return present and value in self.values
        if self.op in ("!=", "notin"):
            return not present or value not in self.values
        if self.op == "exists":
            return present
        if self.op == "!exists":
            return not present
        if self.op in ("gt", "lt") and present and value is not None:
            try:
                number, bound = int(value), int(self.values[0])
            except ValueError:
                return False
            return number > bound if self.op == "gt" else number < bound
        return False


LabelSelector = tuple[Requirement, ...]


def _split_top(text: str) -> list[str]:
    parts, depth, current = [], 0, ""
    for char in text:
        if char == "(":
            depth += 1
        elif char == ")":
            depth -= 1
        if char == "," and depth == 0:
            parts.append(current)
            current = ""
        else:
            current += char
    parts.append(current)
    return [p.strip() for p in parts if p.strip()]


def _fail(text: str, why: str) -> ApiError:
    return bad_request(f"unable to parse requirement: {why}: {text!r}")


def _check_key(key: str, text: str) -> str:
    if not _KEY.match(key):
        raise _fail(text, f"invalid label key {key!r}")
    return key


def _check_value(value: str, text: str) -> str:
    if len(value) > 63 or not _VALUE.match(value):
        raise _fail(text, f"invalid label value: {value!r}")
    return value


def parse_labels(text: str | None) -> LabelSelector:
    """Parse `a=b,c!=d,e in (f,g),h notin (i),j,!k,l>5`."""
    if not text or not text.strip():
        return ()
    reqs: list[Requirement] = []
    for part in _split_top(text):
        set_match = re.fullmatch(r"(\S+)\s+(in|notin)\s*\((.*)\)", part)
        if set_match:
            key, op, raw = set_match.groups()
            values = tuple(_check_value(v.strip(), part) for v in raw.split(",") if v.strip())
            if not values:
                raise _fail(part, "for 'in', 'notin' operators, values set can't be empty")
            reqs.append(Requirement(_check_key(key, part), op, values))
            continue
        op_match = re.fullmatch(r"([^=!<>\s]+)\s*(==|=|!=|>|<)\s*(\S*)", part)
        if op_match:
            key, op, value = op_match.groups()
            if op in (">", "<"):
                if not value.lstrip("-").isdigit():
                    raise _fail(part, "for 'Gt', 'Lt' operators, the value must be an integer")
                reqs.append(Requirement(_check_key(key, part), "gt" if op == ">" else "lt",
                                        (value,)))
            else:
                reqs.append(Requirement(_check_key(key, part), "!=" if op == "!=" else "=",
                                        (_check_value(value, part),)))
            continue
        if part.startswith("!"):
            reqs.append(Requirement(_check_key(part[1:].strip(), part), "!exists"))
            continue
        if " " not in part:
            reqs.append(Requirement(_check_key(part, part), "exists"))
            continue
        raise _fail(part, "found unexpected token")
    return tuple(reqs)


def matches_labels(selector: LabelSelector, labels: Mapping[str, str] | None) -> bool:
    return all(req.matches(labels or {}) for req in selector)


def from_object(selector: JSON | None) -> LabelSelector:
    """metav1.LabelSelector (matchLabels + matchExpressions) as requirements."""
    if not selector:
        return ()
    reqs = [Requirement(k, "=", (str(v),)) for k, v in (selector.get("matchLabels") or {}).items()]
    ops = {"In": "in", "NotIn": "notin", "Exists": "exists", "DoesNotExist": "!exists"}
    for expr in selector.get("matchExpressions") or []:
        op = ops.get(expr.get("operator", ""))
        if op is None:
            raise bad_request(f"{expr.get('operator')!r} is not a valid label selector operator")
        reqs.append(Requirement(expr["key"], op, tuple(expr.get("values") or ())))
    return tuple(reqs)


def to_string(selector: JSON | None) -> str:
    """The string form a Scale's status.selector carries."""
    parts: list[str] = []
    for req in from_object(selector):
        if req.op == "=":
            parts.append(f"{req.key}={req.values[0]}")
        elif req.op in ("in", "notin"):
            parts.append(f"{req.key} {req.op} ({','.join(sorted(req.values))})")
        elif req.op == "exists":
            parts.append(req.key)
        elif req.op == "!exists":
            parts.append(f"!{req.key}")
    return ",".join(sorted(parts))


# -- field selectors ----------------------------------------------------------------------

FieldSelector = tuple[tuple[str, bool, str], ...]  # (field, equal?, value)
_SPECIAL: dict[str, Callable[[JSON], Any]] = {
    "metadata.namespace": lambda o: o.get("metadata", {}).get("namespace", ""),
    "source": lambda o: (o.get("source") or {}).get("component", ""),
    # Jobs: the count of succeeded pods, "0" when none (batch/v1 field label conversion).
    "status.successful": lambda o: int((o.get("status") or {}).get("succeeded", 0)),
}


def parse_fields(text: str | None, supported: frozenset[str], kind: str) -> FieldSelector:
    if not text or not text.strip():
        return ()
    out: list[tuple[str, bool, str]] = []
    for part in re.split(r"(?<!\\),", text):
        part = part.strip()
        if not part:
            continue
        match = re.fullmatch(r"([^=!]+)(==|=|!=)(.*)", part)
        if not match:
            raise bad_request(f"invalid selector: {text!r}; can't understand {part!r}")
        name, op, value = match.groups()
        name = name.strip()
        if name not in supported:
            raise bad_request(f'field label not supported: {name}')
        out.append((name, op != "!=", value.strip().replace("\\,", ",")))
    return tuple(out)


def field_value(obj: JSON, name: str) -> str:
    if name in _SPECIAL:
        raw = _SPECIAL[name](obj)
    else:
        raw = obj
        for part in name.split("."):
            raw = raw.get(part) if isinstance(raw, dict) else None
    if raw is None:
        return ""
    if isinstance(raw, bool):
        return "true" if raw else "false"
    return str(raw)


def matches_fields(selector: FieldSelector, obj: JSON) -> bool:
    return all((field_value(obj, name) == value) == equal for name, equal, value in selector)
