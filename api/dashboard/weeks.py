"""The portfolio's weekly charts: accounts per band (stacked bars) and ARR at risk, from the weeks of
``GET /v1/portfolio/history``.

Inline SVG drawn on the server like the sparklines and the score history: no script, nothing loaded,
a ``viewBox`` so the chart shrinks with the page (a phone's 390 px included). Every bar carries its
figures as a ``<title>``; the template says the latest week in words as well.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

__all__ = [
    "WEEKS_HEIGHT",
    "WEEKS_SHOWN",
    "WEEKS_WIDTH",
    "BarChart",
    "arr_currency",
    "arr_chart",
    "band_chart",
]

WEEKS_SHOWN = 12
WEEKS_WIDTH = 480
WEEKS_HEIGHT = 120
_LEFT, _RIGHT, _TOP, _BOTTOM = 34, 4, 6, 16  # room for the scale on the left, the weeks below
# Bottom to top: the bands at risk first, where the eye starts.
_STACK = ("poor", "average", "good")


@dataclass(frozen=True, slots=True)
class Segment:
    """One band's part of a bar."""

    y: float
    height: float
    cls: str  # the band, or "risk" for ARR at risk


@dataclass(frozen=True, slots=True)
class Bar:
    """One week."""

    x: float
    width: float
    segments: tuple[Segment, ...]
    label: str  # its tooltip: "week of 2025-03-03: 80 good, 25 average, 15 poor"


@dataclass(frozen=True, slots=True)
class BarChart:
    """What the template draws: the bars, the scale's guides and the first and last weeks' labels."""

    bars: tuple[Bar, ...]
    scale: tuple[tuple[float, str], ...]  # (y, label) of the horizontal guides
    ticks: tuple[tuple[float, str], ...]  # (x, label) under the bars
    x0: int
    x1: int
    baseline: float


def _short(amount: int) -> str:
    # "1.2M", "48k", "900": the scale's labels stay narrow.
    for size, suffix in ((1_000_000, "M"), (1_000, "k")):
        if amount >= size:
            value = amount / size
            return f"{value:.1f}".rstrip("0").rstrip(".") + suffix
    return str(amount)


def _stacked(
    stacks: Sequence[Sequence[tuple[str, int]]],
    labels: Sequence[str],
    mondays: Sequence[str],
    scale_label: Any,
) -> BarChart:
    plot_w, plot_h = WEEKS_WIDTH - _LEFT - _RIGHT, WEEKS_HEIGHT - _TOP - _BOTTOM
    baseline = float(_TOP + plot_h)
    top = max([sum(v for _, v in stack) for stack in stacks] + [0])
    slot = plot_w / max(1, len(stacks))
    width = round(slot * 0.7, 1)
    bars = []
    for i, stack in enumerate(stacks):
        y = baseline
        segments = []
        for cls, value in stack:
            if value <= 0 or top <= 0:
                continue
            height = round(value / top * plot_h, 1)
            y = round(y - height, 1)
            segments.append(Segment(y, height, cls))
        bars.append(Bar(round(_LEFT + i * slot + (slot - width) / 2, 1), width, tuple(segments), labels[i]))
    scale = ((baseline, "0"),) if top <= 0 else ((float(_TOP), scale_label(top)), (baseline, "0"))
    ticks: tuple[tuple[float, str], ...] = ()
    if bars:
        first, last = bars[0], bars[-1]
        ticks = ((first.x, mondays[0][5:]), (round(last.x + last.width, 1), mondays[-1][5:]))
    return BarChart(tuple(bars), scale, ticks, _LEFT, WEEKS_WIDTH - _RIGHT, baseline)


def band_chart(weeks: Sequence[Mapping[str, Any]]) -> BarChart:
    """Accounts per band per week, stacked: poor at the bottom, then average, then good."""
    stacks, labels = [], []
    for week in weeks:
        bands = week.get("by_band") or {}
        stacks.append([(band, int(bands.get(band, 0))) for band in _STACK])
        figures = ", ".join(f"{bands.get(band, 0)} {band}" for band in reversed(_STACK))
        labels.append(
            f"week of {week['week']}: {figures}" if week.get("as_of") else f"week of {week['week']}: no data"
        )
    return _stacked(stacks, labels, [str(w["week"]) for w in weeks], str)


def arr_currency(weeks: Sequence[Mapping[str, Any]]) -> str | None:
    """The currency the ARR chart shows: the one with the most ARR at risk over the weeks (in code order
    on a tie); None when no week has any."""
    totals: dict[str, int] = {}
    for week in weeks:
        for currency, amount in ((week.get("arr") or {}).get("at_risk") or {}).items():
            totals[currency] = totals.get(currency, 0) + int(amount)
    return min(totals, key=lambda c: (-totals[c], c)) if totals else None


def arr_chart(weeks: Sequence[Mapping[str, Any]], currency: str) -> BarChart:
    """ARR at risk (bands average and poor) in ``currency`` per week."""
    stacks, labels = [], []
    for week in weeks:
        amount = int(((week.get("arr") or {}).get("at_risk") or {}).get(currency, 0))
        stacks.append([("risk", amount)])
        labels.append(f"week of {week['week']}: {currency} {amount:,} at risk")
    return _stacked(stacks, labels, [str(w["week"]) for w in weeks], lambda top: f"{_short(top)}")
