"""Inline SVG chart geometry: the templates draw what these compute (no script, no CDN).

Charts are plain data (polyline points, bar rectangles, axis ticks) in a fixed 600x160 view box;
colours come from the stylesheet by series class, so the pages need no inline styles.
"""

from __future__ import annotations

from dataclasses import dataclass, field

WIDTH = 600
HEIGHT = 160
PAD_LEFT = 44
PAD_BOTTOM = 20
PAD_TOP = 8


@dataclass
class Line:
    """One series as a polyline."""

    name: str
    points: str
    total: float


@dataclass
class Bar:
    """One bar."""

    x: float
    y: float
    w: float
    h: float
    label: str
    value: float


@dataclass
class Chart:
    """A chart's lines or bars, its y-axis ticks and x labels."""

    title: str
    lines: list[Line] = field(default_factory=list)
    bars: list[Bar] = field(default_factory=list)
    yticks: list[tuple[float, str]] = field(default_factory=list)
    xlabels: list[tuple[float, str]] = field(default_factory=list)
    width: int = WIDTH
    height: int = HEIGHT
    left: int = PAD_LEFT
    bottom: int = HEIGHT - PAD_BOTTOM
    empty: bool = True


def _fmt(v: float, unit: str) -> str:
    if unit == "%":
        return f"{v:.0f}%"
    if v >= 10_000:
        return f"{v / 1000:.0f}k"
    if v >= 1000:
        return f"{v / 1000:.1f}k"
    return f"{v:.0f}" if v == int(v) else f"{v:.2f}"


def _frame(chart: Chart, top: float, unit: str, labels: list[str], n: int) -> float:
    """Ticks and labels; returns the y scale (pixels per unit)."""
    plot_h = chart.bottom - PAD_TOP
    top = top if top > 0 else 1.0
    chart.yticks = [(chart.bottom - plot_h * f, _fmt(top * f, unit)) for f in (0, 0.5, 1)]
    step = max(1, n // 6)
    plot_w = WIDTH - PAD_LEFT - 4
    for i in range(0, n, step):
        chart.xlabels.append((PAD_LEFT + plot_w * (i + 0.5) / max(n, 1), labels[i]))
    return plot_h / top


def line_chart(
    title: str, series: dict[str, list[float]], labels: list[str], *, unit: str = ""
) -> Chart:
    """Several series over the same buckets."""
    chart = Chart(title)
    n = max((len(v) for v in series.values()), default=0)
    if n == 0:
        return chart
    top = max((max(v) for v in series.values() if v), default=0.0)
    if unit == "%":
        top = 100.0
    scale = _frame(chart, top, unit, labels, n)
    plot_w = WIDTH - PAD_LEFT - 4
    for name, values in series.items():
        pts = " ".join(
            f"{PAD_LEFT + plot_w * (i + 0.5) / n:.1f},{chart.bottom - v * scale:.1f}"
            for i, v in enumerate(values)
        )
        chart.lines.append(Line(name, pts, float(sum(values))))
    chart.empty = top <= 0
    return chart


def bar_chart(title: str, values: list[float], labels: list[str], *, unit: str = "") -> Chart:
    """One series as bars."""
    chart = Chart(title)
    n = len(values)
    if n == 0:
        return chart
    top = max(values)
    scale = _frame(chart, top, unit, labels, n)
    plot_w = WIDTH - PAD_LEFT - 4
    w = plot_w / n
    for i, v in enumerate(values):
        h = v * scale
        chart.bars.append(
            Bar(PAD_LEFT + i * w + w * 0.1, chart.bottom - h, w * 0.8, h, labels[i], v)
        )
    chart.empty = top <= 0
    return chart


def cumulative(values: list[int], base: int = 0) -> list[float]:
    """Running totals of ``values`` starting from ``base``."""
    out: list[float] = []
    total = float(base)
    for v in values:
        total += v
        out.append(total)
    return out


def rate(ok: list[int], failed: list[int]) -> list[float]:
    """Per bucket, ``ok`` as a percentage of ``ok + failed`` (100 when nothing happened)."""
    return [100.0 * a / (a + b) if a + b else 100.0 for a, b in zip(ok, failed, strict=True)]
