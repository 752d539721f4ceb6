"""PNG graphs of metrics over time, for the analysis step's attachment.

Pure functions over plain data; matplotlib's object API with the Agg canvas (no pyplot state),
so rendering is safe in a worker thread. matplotlib is imported on first use: it is slow to
import and most commands never draw.
"""

from __future__ import annotations

import io
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

__all__ = ["Point", "render_metrics_png", "render_series_png"]

Point = tuple[datetime, float]
Measurement = tuple[datetime, float, bool]  # time, value, whether it met the condition

PASSED_COLOUR = "#2e7d32"
FAILED_COLOUR = "#c62828"
LINE_COLOUR = "#1565c0"


def render_metrics_png(
    series: Mapping[str, Sequence[Point]],
    *,
    title: str,
    marker_time: datetime | None = None,
    thresholds: Mapping[str, float] | None = None,
    measurements: Mapping[str, Sequence[Measurement]] | None = None,
    units: Mapping[str, str] | None = None,
) -> bytes:
    """One panel per metric (shared time axis): its line, the measurements as markers (green
    met, red missed), a dashed threshold, and a vertical line at `marker_time` (the deploy)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.dates import AutoDateLocator, DateFormatter
    from matplotlib.figure import Figure
    from matplotlib.ticker import PercentFormatter

    names = list(series) or list(measurements or {})
    if not names:
        names = ["(no metrics)"]
    thresholds = thresholds or {}
    measurements = measurements or {}
    units = units or {}
    figure = Figure(figsize=(9, 1.2 + 2.3 * len(names)), dpi=100, layout="constrained")
    FigureCanvasAgg(figure)
    axes = figure.subplots(len(names), 1, sharex=True, squeeze=False)[:, 0]
    figure.suptitle(title, fontsize=12)
    for ax, name in zip(axes, names, strict=True):
        points = [(_utc(t), v) for t, v in series.get(name, ())]
        if points:
            ax.plot([t for t, _ in points], [v for _, v in points], color=LINE_COLOUR,
                    linewidth=1.5, label=name)
        marks = [(_utc(t), v, ok) for t, v, ok in measurements.get(name, ())]
        for ok, colour, shape in ((True, PASSED_COLOUR, "o"), (False, FAILED_COLOUR, "X")):
            chosen = [(t, v) for t, v, passed in marks if passed is ok]
            if chosen:
                ax.scatter([t for t, _ in chosen], [v for _, v in chosen], color=colour,
                           marker=shape, s=45, zorder=3,
                           label="check met" if ok else "check missed")
        if name in thresholds:
            ax.axhline(thresholds[name], color=FAILED_COLOUR, linestyle="--", linewidth=1,
                       label="threshold")
        if marker_time is not None:
            ax.axvline(_utc(marker_time), color="#616161", linestyle=":", linewidth=1.2,
                       label="deploy")
        if not points and not marks:
            ax.text(0.5, 0.5, "no data", transform=ax.transAxes, ha="center", va="center",
                    color="#757575")
        unit = units.get(name, "")
        if unit == "ratio":
            ax.yaxis.set_major_formatter(PercentFormatter(xmax=1.0))
        ax.set_ylabel(f"{name} ({unit})" if unit and unit != "ratio" else name, fontsize=9)
        ax.grid(True, alpha=0.3)
        ax.set_ylim(bottom=min(0.0, ax.get_ylim()[0]))
        if ax.get_legend_handles_labels()[0]:
            ax.legend(loc="upper left", fontsize=8, framealpha=0.7)
    axes[-1].xaxis.set_major_locator(AutoDateLocator())  # type: ignore[no-untyped-call]
    axes[-1].xaxis.set_major_formatter(
        DateFormatter("%H:%M:%S", tz=UTC)  # type: ignore[no-untyped-call]
    )
    axes[-1].set_xlabel("time (UTC)", fontsize=9)
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png")
    return buffer.getvalue()


def render_series_png(series: Sequence[tuple[str, Sequence[Point]]], *, title: str) -> bytes:
    """Every series of one query in one panel, each in its own colour, named in the legend:
    an ad-hoc `graph`."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.dates import AutoDateLocator, DateFormatter
    from matplotlib.figure import Figure

    figure = Figure(figsize=(9, 4.5 + 0.18 * len(series)), dpi=100, layout="constrained")
    FigureCanvasAgg(figure)
    ax = figure.subplots()
    figure.suptitle(title, fontsize=11)
    for name, points in series:
        times: list[Any] = [_utc(t) for t, _ in points]  # matplotlib's stubs want numbers
        ax.plot(times, [v for _, v in points], linewidth=1.3,
                label=name if len(name) <= 90 else name[:89] + "…")
    if not any(points for _, points in series):
        ax.text(0.5, 0.5, "no data", transform=ax.transAxes, ha="center", va="center",
                color="#757575")
    ax.grid(True, alpha=0.3)
    if series:
        figure.legend(loc="outside lower center", fontsize=7, ncols=1, framealpha=0.7)
    ax.xaxis.set_major_locator(AutoDateLocator())  # type: ignore[no-untyped-call]
    ax.xaxis.set_major_formatter(
        DateFormatter("%H:%M:%S", tz=UTC)  # type: ignore[no-untyped-call]
    )
    ax.set_xlabel("time (UTC)", fontsize=9)
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png")
    return buffer.getvalue()


def _utc(moment: datetime) -> datetime:
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)
