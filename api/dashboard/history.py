"""The account detail's score history: the chart's geometry and "what changed" in words, from values.

The chart is inline SVG drawn on the server (no script, nothing loaded), like the sparklines: one
point per day on a fixed 0–100 scale, each dot coloured by the day's band (bands are the worker's,
per segment and plan, so no fixed thresholds are drawn).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import timedelta

from api.models import HistoryPoint, WhatChanged

__all__ = ["CHART_HEIGHT", "CHART_WIDTH", "Chart", "change_lines", "detractor_line", "score_chart", "signed"]

CHART_WIDTH = 420
CHART_HEIGHT = 120
_LEFT, _RIGHT, _TOP, _BOTTOM = 26, 6, 6, 6  # room for the scale's labels on the left
_MINUS = "\u2212"


@dataclass(frozen=True, slots=True)
class Dot:
    """One day on the chart."""

    x: float
    y: float
    band: str
    label: str  # its tooltip: "2025-03-14: 41, poor"


@dataclass(frozen=True, slots=True)
class Chart:
    """What the template draws: the line through the days, their dots and the scale."""

    line: str  # SVG polyline points
    dots: tuple[Dot, ...]
    scale: tuple[tuple[float, int], ...]  # (y, score) of the horizontal guides
    x0: int  # where the guides start (the labels are left of it) and end
    x1: int


def score_chart(
    points: Sequence[HistoryPoint], days: int, width: int = CHART_WIDTH, height: int = CHART_HEIGHT
) -> Chart:
    """The chart of ``points`` (oldest first) over a window of ``days`` days ending with the last point:
    a day's x by its date, so an account younger than the window starts part way along."""
    plot_w, plot_h = width - _LEFT - _RIGHT, height - _TOP - _BOTTOM

    def y_of(score: int) -> float:
        return round(_TOP + (100 - score) / 100 * plot_h, 1)

    scale = tuple((y_of(s), s) for s in (100, 50, 0))
    if not points:
        return Chart("", (), scale, _LEFT, width - _RIGHT)
    start = points[-1].date - timedelta(days=days - 1)
    step = plot_w / max(1, days - 1)
    dots = tuple(
        Dot(
            x=round(_LEFT + (p.date - start).days * step, 1),
            y=y_of(p.score),
            band=str(p.band),
            label=f"{p.date.isoformat()}: {p.score}, {p.band}",
        )
        for p in points
    )
    return Chart(" ".join(f"{d.x},{d.y}" for d in dots), dots, scale, _LEFT, width - _RIGHT)


def signed(value: float, digits: int = 1) -> str:
    """``value`` with its sign, a true minus for negatives: "+3.0", "−12.4", "0.0"."""
    text = f"{abs(value):.{digits}f}"
    if value > 0:
        return "+" + text
    return _MINUS + text if value < 0 else text


def _moved(before: float, after: float) -> str:
    # Compared as shown (whole numbers): 49.96 to 50.04 "stayed at 50".
    was, now = round(before), round(after)
    if now > was:
        return f"rose from {was} to {now}"
    if now < was:
        return f"fell from {was} to {now}"
    return f"stayed at {now}"


def change_lines(changed: WhatChanged, latest: HistoryPoint) -> list[str]:
    """How the score (``latest``, today's point) and the components that moved most changed, a
    sentence each."""
    if changed.since is None:
        return []
    if changed.since >= latest.date:
        return [f"Score {latest.score}; no earlier day kept to compare it with."]
    score = latest.score
    out = [f"Score {_moved(score - changed.score_change, score)} since {changed.since.isoformat()}."]
    for move in changed.moved:
        out.append(
            f"{move.name.capitalize()} {_moved(move.before, move.after)}: "
            f"{signed(move.points)} points of the score."
        )
    return out


def detractor_line(changed: WhatChanged) -> str | None:
    """Which component holds the score down most today, and why, in a sentence."""
    worst = changed.top_detractor
    if worst is None:
        return None
    why = f": {worst.explanation}" if worst.explanation else ""
    return (
        f"Holding the score down most: {worst.name} at {round(worst.value)}, "
        f"costing {worst.points:.1f} points{why}."
    )
