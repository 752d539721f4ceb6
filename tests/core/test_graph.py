"""The metrics graph is a real PNG that decodes, whatever data it is given."""

from __future__ import annotations

import io
import math
from datetime import UTC, datetime, timedelta

from matplotlib.image import imread

from bot.graph import render_metrics_png
from handlers.analysis import threshold

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
T0 = datetime(2026, 11, 26, 12, 0, tzinfo=UTC)


def _decoded(png: bytes) -> tuple[int, int]:
    assert png.startswith(PNG_MAGIC)
    pixels = imread(io.BytesIO(png), format="png")
    height, width = pixels.shape[:2]
    return width, height


def test_two_metrics_with_markers_threshold_and_deploy_line() -> None:
    series = {
        "error-ratio": [(T0 + timedelta(seconds=i), 0.002 * i) for i in range(120)],
        "p99-latency": [(T0 + timedelta(seconds=i), 0.1 + (i % 7) / 100) for i in range(120)],
    }
    checks = {"error-ratio": [(T0 + timedelta(seconds=60), 0.12, False),
                              (T0 + timedelta(seconds=30), 0.06, True)]}
    png = render_metrics_png(
        series,
        title="shop-api in staging: error-ratio, p99-latency",
        marker_time=T0 + timedelta(seconds=20),
        thresholds={"error-ratio": 0.1},
        measurements=checks,
        units={"error-ratio": "ratio", "p99-latency": "seconds"},
    )
    width, height = _decoded(png)
    assert len(png) > 20_000
    assert width >= 800 and height > 400  # one panel per metric, stacked


def test_empty_and_gappy_data_still_draws() -> None:
    gappy = {"error-ratio": [(T0, 0.1), (T0 + timedelta(seconds=5), math.nan),
                             (T0 + timedelta(seconds=10), 0.2)], "silent": []}
    png = render_metrics_png(gappy, title="gaps")
    _decoded(png)
    _decoded(render_metrics_png({}, title="nothing at all"))


def test_naive_times_are_taken_as_utc() -> None:
    naive = {"m": [(datetime(2026, 1, 1, 10, 0), 1.0), (datetime(2026, 1, 1, 10, 1), 2.0)]}
    _decoded(render_metrics_png(naive, title="naive", marker_time=datetime(2026, 1, 1, 10, 0)))


def test_threshold_is_read_from_simple_conditions_only() -> None:
    assert threshold("result < 0.01") == 0.01
    assert threshold(" result >= 5e-3 ") == 0.005
    assert threshold("result < 0.01 and result > 0") is None
    assert threshold("result|abs < 1") is None
