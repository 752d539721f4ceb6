"""What a section hands back: tables of figures (printed) and the same figures as data (JSON),
with each goal of issue 12 shown next to its figure as met or not met."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

__all__ = ["Goal", "Section", "Table", "goal"]


@dataclass(frozen=True)
class Goal:
    text: str  # e.g. "p99 <= 1.25x inline Bolt"
    met: bool

    def __str__(self) -> str:
        return f"{'met' if self.met else 'NOT MET'} ({self.text})"

    def as_json(self) -> dict[str, Any]:
        return {"goal": self.text, "met": self.met}


def goal(text: str, value: float | None, limit: float, *, at_least: bool = False) -> Goal | None:
    """`value` against `limit` (at most, or at least); None when there is no value."""
    if value is None:
        return None
    return Goal(text, value >= limit if at_least else value <= limit)


@dataclass
class Table:
    title: str
    headers: list[str]
    rows: list[list[str]] = field(default_factory=list)

    def add(self, *cells: object) -> None:
        self.rows.append(["" if c is None else str(c) for c in cells])

    def render(self) -> str:
        widths = [len(h) for h in self.headers]
        for row in self.rows:
            widths = [max(w, len(c)) for w, c in zip(widths, row, strict=False)]
        line = "  ".join(f"{{:<{w}}}" for w in widths)
        out = [self.title, line.format(*self.headers), line.format(*("-" * w for w in widths))]
        out += [line.format(*row, *[""] * (len(widths) - len(row))) for row in self.rows]
        return "\n".join(out)


@dataclass
class Section:
    name: str
    tables: list[Table] = field(default_factory=list)
    data: dict[str, Any] = field(default_factory=dict)
    goals: dict[str, Goal] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)

    def table(self, title: str, *headers: str) -> Table:
        made = Table(title, list(headers))
        self.tables.append(made)
        return made

    def check(self, key: str, found: Goal | None) -> str:
        """Record the goal under `key`; its text for a table cell."""
        if found is None:
            return "n/a"
        self.goals[key] = found
        return "met" if found.met else "NOT MET"

    def render(self) -> str:
        text = "\n\n".join(t.render() for t in self.tables)
        return "\n".join([text, *(f"  note: {n}" for n in self.notes)])

    def as_json(self) -> dict[str, Any]:
        return {"figures": self.data, "goals": {k: g.as_json() for k, g in self.goals.items()},
                "notes": self.notes}


def fmt(value: float | None, digits: int = 1, unit: str = "") -> str:
    if value is None:
        return "n/a"
    return f"{value:,.{digits}f}{unit}"
