"""Pure rendering of the dashboard's HTML fragments from snapshots, alerts and portfolio figures.

Every value that comes from an account (ids, names, owners, explanations, evidence) goes through
Jinja2's autoescaping; no template marks anything ``safe``. Figures that depend on "now" take it as
an argument.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from jinja2 import Environment, FileSystemLoader, StrictUndefined

from api.dashboard.history import CHART_HEIGHT, CHART_WIDTH, change_lines, detractor_line, score_chart
from api.models import AccountHistory
from streamer.core.alerts import AlertKind

__all__ = [
    "KIND_LABELS",
    "LIFECYCLE_LABELS",
    "ago",
    "alert_subject",
    "kind_label",
    "lifecycle_line",
    "render",
    "sparkline_points",
]

TEMPLATES = Path(__file__).parent / "templates"
STATIC = Path(__file__).parent / "static"
SPARK_WIDTH = 140
SPARK_HEIGHT = 28
TREND_ARROWS = {"up": "\u2197", "down": "\u2198", "flat": "\u2192"}
# What a person reads for an alert's kind, in the server's fragments and (through the page's
# data-kind-labels) in the live feed alike; the raw kind stays in class names and data attributes.
KIND_LABELS: dict[str, str] = {
    AlertKind.ACCOUNT_QUIET: "Account went quiet",
    AlertKind.USAGE_DROP: "Usage dropped",
    AlertKind.HEALTH_DEGRADED: "Health degraded",
    AlertKind.KEY_USER_LOST: "Key user lost",
    AlertKind.ACCOUNT_RECOVERED: "Account recovered",
    AlertKind.DATA_GAP: "Data stopped arriving",
    AlertKind.MILESTONE_MISSED: "Onboarding milestone missed",
    AlertKind.MILESTONE_REACHED: "Onboarding milestone reached",
    AlertKind.ONBOARDING_COMPLETE: "Onboarding complete",
}

# What a person reads for a lifecycle status (the snapshot's lifecycle.status; None: active neither on
# the snapshot's day nor the day before), and what it means.
LIFECYCLE_LABELS: dict[str | None, tuple[str, str]] = {
    "new": ("New", "its first active day"),
    "returning": ("Returning", "active that day and the day before"),
    "resurrecting": ("Back after a break", "active again after a day or more without activity"),
    "dormant": ("Dormant", "no activity that day, after activity the day before"),
    None: ("Inactive", "no activity that day nor the day before"),
}

_env = Environment(
    loader=FileSystemLoader(TEMPLATES),
    autoescape=True,
    undefined=StrictUndefined,
    trim_blocks=True,
    lstrip_blocks=True,
)


def sparkline_points(values: Sequence[float], width: int = SPARK_WIDTH, height: int = SPARK_HEIGHT) -> str:
    """SVG polyline points for ``values`` scaled into ``width`` x ``height`` (1 px margin).

    The highest value touches the top, zero the bottom; all-zero series lie on the bottom line.
    """
    if not values:
        return ""
    top = max(max(values), 0.0)
    step = (width - 2) / max(1, len(values) - 1)
    points = []
    for i, value in enumerate(values):
        y = height - 1 - (max(value, 0.0) / top * (height - 2) if top > 0 else 0.0)
        points.append(f"{1 + i * step:.1f},{y:.1f}")
    return " ".join(points)


def _parse(value: object) -> datetime | None:
    if not isinstance(value, str):
        return None
    try:
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None
    return parsed if parsed.tzinfo is not None else parsed.replace(tzinfo=UTC)


def ago(value: object, now: datetime) -> str:
    """``value`` (RFC 3339) relative to ``now``: "just now", "12 min ago", "5 h ago", "3 d ago"; "never"."""
    at = _parse(value)
    if at is None:
        return "never"
    seconds = (now - at).total_seconds()
    if seconds < 60:
        return "just now"
    if seconds < 3600:
        return f"{int(seconds // 60)} min ago"
    if seconds < 86_400:
        return f"{int(seconds // 3600)} h ago"
    return f"{int(seconds // 86_400)} d ago"


def until(value: object, now: datetime) -> str:
    """A renewal (RFC 3339) from ``now``: "in 23 d", "today", "5 d ago"; "–" when unknown."""
    at = _parse(value)
    if at is None:
        return "–"
    days = (at - now).total_seconds() / 86_400
    if 0 <= days < 1:
        return "today"
    return f"in {int(days)} d" if days > 0 else f"{int(-days)} d ago"


def money(amount: object, currency: object) -> str:
    """ARR as "EUR 48,000" (whole units); "–" when unknown."""
    if isinstance(amount, bool) or not isinstance(amount, int | float):
        return "–"
    return f"{currency if isinstance(currency, str) else ''} {round(amount):,}".strip()


def kind_label(kind: object) -> str:
    """The human label of an alert kind; a kind this version does not know reads as words."""
    text = str(kind or "")
    return KIND_LABELS.get(text) or text.replace("_", " ").capitalize()


def alert_subject(alert: Mapping[str, Any]) -> str:
    """Who an alert is about: the account's name, else its id; a partition for an operations alert."""
    name = (alert.get("account") or {}).get("name")
    if name:
        return str(name)
    if alert.get("account_id") is not None:
        return str(alert["account_id"])
    partition = (alert.get("evidence") or {}).get("partition")
    return f"partition {partition}" if partition is not None else ""


def lifecycle_line(doc: Mapping[str, Any], long: bool = False) -> str:
    """A snapshot's lifecycle status and active days in words ("Returning · active 5 of 7 days, 19 of
    28"); "" for a snapshot without them. ``long`` adds what the status means and the day it is of."""
    block = doc.get("lifecycle")
    if not isinstance(block, Mapping):
        return ""
    label, meaning = LIFECYCLE_LABELS.get(block.get("status"), LIFECYCLE_LABELS[None])
    days_7, days_28 = block.get("active_days_7"), block.get("active_days_28")
    of_28 = f", {days_28} of 28" if isinstance(days_28, int) else ""
    if not long:
        return f"{label} · active {days_7} of 7 days{of_28}"
    at = _parse(doc.get("at"))
    day = at.astimezone(UTC).date().isoformat() if at else "the snapshot's day"
    return f"{label} on {day} ({meaning}) · active {days_7} of the last 7 days{of_28}"


def kind_labels_json() -> str:
    """:data:`KIND_LABELS` as JSON, for the page's ``data-kind-labels`` (escaped there like any text)."""
    return json.dumps({str(kind): label for kind, label in KIND_LABELS.items()}, sort_keys=True)


def _pct(value: object) -> str:
    return f"{value * 100:.1f}%" if isinstance(value, int | float) else "–"


def _short_time(value: object) -> str:
    at = _parse(value)
    return at.astimezone(UTC).strftime("%Y-%m-%d %H:%M UTC") if at else "–"


_env.globals.update(
    ago=ago,
    until=until,
    money=money,
    alert_subject=alert_subject,
    kind_label=kind_label,
    lifecycle_line=lifecycle_line,
    pct=_pct,
    short_time=_short_time,
    sparkline_points=sparkline_points,
    arrows=TREND_ARROWS,
    spark_w=SPARK_WIDTH,
    spark_h=SPARK_HEIGHT,
    score_chart=score_chart,
    change_lines=change_lines,
    detractor_line=detractor_line,
    chart_w=CHART_WIDTH,
    chart_h=CHART_HEIGHT,
)


def render(template: str, **context: Any) -> str:
    """Render one template of ``api/dashboard/templates`` with ``context`` (autoescaped)."""
    return _env.get_template(template).render(**context)


def at_risk_rows(docs: Sequence[Mapping[str, Any]], now: datetime, any_account: bool = True) -> str:
    """The at-risk table body: one row per snapshot, in the given order.

    Without rows it says why: no account at risk, or (``any_account`` false) no snapshot yet at all.
    """
    return render("at_risk.html", docs=docs, now=now, any_account=any_account)


def account_detail(
    doc: Mapping[str, Any],
    alerts: Sequence[Mapping[str, Any]],
    now: datetime,
    history: AccountHistory | None = None,
) -> str:
    """One account's breakdown, score history with what changed, facts, signals and alert history."""
    return render("detail.html", doc=doc, alerts=alerts, now=now, history=history)


def portfolio_cards(figures: Mapping[str, Any]) -> str:
    """The KPI cards over the portfolio figures of :func:`api.portfolio.portfolio_figures`."""
    churn = [row for row in figures.get("churn", []) if row.get("churn_rate") is not None]
    return render("portfolio.html", p=figures, churn=churn[-3:])


def alert_items(alerts: Sequence[Mapping[str, Any]]) -> str:
    """Alert feed items, newest first as given."""
    return render("alerts.html", alerts=alerts)
