"""The backtest's report: one self-contained HTML file (inline SVG and CSS, no script, no CDN).

Four plots a head of customer success would rather look at than read: how many cancellations the
riskiest accounts hold (the cumulative gains curve, with the reference model's when it could be
fitted), the cancellation rate per band, how long before a cancellation the first alert came, and
alerts per week by kind (holidays and tracking outages show up as spikes). The key figures follow
in tables. Everything is escaped; nothing is fetched.
"""

from __future__ import annotations

import bisect
import html
from collections import Counter, defaultdict
from collections.abc import Mapping, Sequence
from typing import Any

from streamer.backtest.metrics import POSITIVE, week_start
from streamer.backtest.replay import Replay
from streamer.core.alerts import ms_to_rfc3339
from streamer.core.events import parse_event_time

__all__ = ["render_report"]

DAY_MS = 86_400_000
_W, _H, _PAD = 560, 300, 44
_COLORS = {
    "account_quiet": "#c0392b",
    "usage_drop": "#e67e22",
    "health_degraded": "#8e44ad",
    "key_user_lost": "#2c7fb8",
    "data_gap": "#7f8c8d",
}
_BAND_COLORS = {"good": "#27ae60", "average": "#f1c40f", "poor": "#c0392b"}


def _e(value: Any) -> str:
    return html.escape(str(value), quote=True)


def _text(x: float, y: float, text: Any, css: str = "tick", fill: str | None = None) -> str:
    color = f' fill="{fill}"' if fill else ""
    return f'<text x="{x:.1f}" y="{y:.1f}" class="{css}"{color}>{_e(text)}</text>'


def _rect(x: float, y: float, w: float, h: float, css: str, fill: str | None = None, title: str = "") -> str:
    color = f' fill="{fill}"' if fill else ""
    inner = f"<title>{_e(title)}</title>" if title else ""
    return (
        f'<rect class="{css}" x="{x:.1f}" y="{y:.1f}" width="{w:.1f}" height="{h:.1f}"{color}>{inner}</rect>'
    )


def _svg(title: str, body: str, x_label: str, y_label: str) -> str:
    return (
        f"<figure><figcaption>{_e(title)}</figcaption>"
        f'<svg class="plot" role="img" aria-label="{_e(title)}" viewBox="0 0 {_W} {_H}" '
        f'xmlns="http://www.w3.org/2000/svg">'
        f'<line x1="{_PAD}" y1="{_H - _PAD}" x2="{_W - 10}" y2="{_H - _PAD}" class="axis"/>'
        f'<line x1="{_PAD}" y1="10" x2="{_PAD}" y2="{_H - _PAD}" class="axis"/>'
        f'<text x="{(_W + _PAD) / 2}" y="{_H - 8}" class="label">{_e(x_label)}</text>'
        f'<text x="12" y="{_H / 2}" class="label" transform="rotate(-90 12 {_H / 2})">{_e(y_label)}</text>'
        f"{body}</svg></figure>"
    )


def _x(frac: float) -> float:
    return _PAD + frac * (_W - 10 - _PAD)


def _y(frac: float) -> float:
    return _H - _PAD - frac * (_H - _PAD - 10)


def _gains(risks: Sequence[float], labels: Sequence[bool]) -> list[tuple[float, float]]:
    order = sorted(zip(risks, labels, strict=True), key=lambda p: -p[0])
    total = sum(labels) or 1
    points, hits = [(0.0, 0.0)], 0
    for i, (_, y) in enumerate(order, start=1):
        hits += y
        points.append((i / len(order), hits / total))
    step = max(1, len(points) // 200)
    return points[::step] + [points[-1]]


def _polyline(points: Sequence[tuple[float, float]], css: str) -> str:
    coords = " ".join(f"{_x(a):.1f},{_y(b):.1f}" for a, b in points)
    return f'<polyline class="{css}" points="{coords}"/>'


def _ticks(values: Sequence[tuple[float, str]], axis: str) -> str:
    out = []
    for frac, text in values:
        if axis == "x":
            out.append(f'<text x="{_x(frac):.1f}" y="{_H - _PAD + 16}" class="tick">{_e(text)}</text>')
        else:
            out.append(f'<text x="{_PAD - 6}" y="{_y(frac) + 4:.1f}" class="tick end">{_e(text)}</text>')
    return "".join(out)


def _gains_plot(doc: Mapping[str, Any], replay: Replay) -> str:
    horizon = doc["ranking"]["horizon_days"] * DAY_MS
    complete = {d["at"] for d in doc["ranking"]["by_date"] if d["complete_horizon"]}
    rows = [r for r in replay.rows if ms_to_rfc3339(r.at_ms) in complete]
    labels = [r.next_cancel_ms is not None and r.next_cancel_ms <= r.at_ms + horizon for r in rows]
    body = _polyline([(0, 0), (1, 1)], "diagonal")
    if rows and any(labels):
        body += _polyline(_gains([100.0 - r.score for r in rows], labels), "score")
        body += _polyline(_gains([float(-sum(r.counts)) for r in rows], labels), "count")
    ticks = [(f, f"{round(100 * f)}%") for f in (0, 0.25, 0.5, 0.75, 1)]
    body += _ticks(ticks, "x") + _ticks(ticks, "y")
    body += (
        f'<g class="legend"><text x="{_PAD + 10}" y="24" class="score-t">churnwatch score</text>'
        f'<text x="{_PAD + 10}" y="40" class="count-t">28-day event count</text></g>'
    )
    return _svg(
        f"Cumulative gains: share of cancellations within {doc['ranking']['horizon_days']} days "
        "among the riskiest accounts",
        body,
        "accounts, riskiest first",
        "cancellations caught",
    )


def _band_plot(doc: Mapping[str, Any]) -> str:
    bands = doc["bands"]
    top = 1.15 * max([b["rate"] or 0 for b in bands.values()] + [0.01])  # room for the labels
    body, width = "", (_W - 10 - _PAD) / 3
    for i, (band, b) in enumerate(bands.items()):
        rate = b["rate"] or 0.0
        x0 = _PAD + i * width + width * 0.2
        y0 = _y(rate / top)
        body += _rect(x0, y0, width * 0.6, _H - _PAD - y0, "bar", _BAND_COLORS.get(band, "#999"))
        body += _text(x0 + width * 0.3, y0 - 6, f"{100 * rate:.1f}%")
        body += _text(x0 + width * 0.3, _H - _PAD + 16, f"{band} ({b['rows']})")
    return _svg("Cancellation rate by band", body, "band (scored rows)", "cancel within horizon")


def _lead_plot(doc: Mapping[str, Any], replay: Replay, cancellations: Mapping[str, Sequence[int]]) -> str:
    follow = doc["alerts"]["follow_days"] * DAY_MS
    times: dict[str, list[int]] = defaultdict(list)
    for alert, _ in replay.alerts:
        if alert.account_id is not None and alert.kind not in POSITIVE:
            times[alert.account_id].append(alert.detected_at_ms)
    for t in times.values():
        t.sort()
    leads = []
    for account, cancels in cancellations.items():
        for c in cancels:
            mine = times.get(account, [])
            i = bisect.bisect_left(mine, c - follow)
            if i < len(mine) and mine[i] < c:
                leads.append((c - mine[i]) / DAY_MS)
    bins = Counter(min(int(lead // 7), (doc["alerts"]["follow_days"] - 1) // 7) for lead in leads)
    n = 1.15 * (max(bins.values(), default=0) or 1)  # room for the labels
    count = (doc["alerts"]["follow_days"] + 6) // 7
    width = (_W - 10 - _PAD) / count
    body = ""
    for i in range(count):
        y0 = _y(bins[i] / n)
        body += (
            f'<rect class="bar lead" x="{_PAD + i * width + 2:.1f}" y="{y0:.1f}" width="{width - 4:.1f}" '
            f'height="{_H - _PAD - y0:.1f}"/>'
            f'<text x="{_PAD + (i + 0.5) * width:.1f}" y="{_H - _PAD + 16}" class="tick">{7 * i}</text>'
        )
        if bins[i]:
            body += f'<text x="{_PAD + (i + 0.5) * width:.1f}" y="{y0 - 4:.1f}" class="tick">{bins[i]}</text>'
    return _svg(
        f"Lead time: days from the first alert to the cancellation ({len(leads)} cancellations alerted)",
        body,
        "days before the cancellation (weekly bins)",
        "cancellations",
    )


def _weeks_plot(replay: Replay, first_ms: int, last_ms: int) -> str:
    weeks: dict[str, Counter[str]] = defaultdict(Counter)
    week = first_ms
    while week <= last_ms:
        weeks[week_start(week)]
        week += 7 * DAY_MS
    for alert, _ in replay.alerts:
        if alert.account_id is not None and alert.kind not in POSITIVE:
            weeks[week_start(alert.detected_at_ms)][alert.kind] += 1
    names = sorted(weeks)
    kinds = sorted({k for c in weeks.values() for k in c})
    top = max((sum(c.values()) for c in weeks.values()), default=0) or 1
    width = (_W - 10 - _PAD) / max(1, len(names))
    body = ""
    for i, name in enumerate(names):
        base = 0
        for kind in kinds:
            n = weeks[name][kind]
            if not n:
                continue
            y0, y1 = _y((base + n) / top), _y(base / top)
            color = _COLORS.get(kind, "#555")
            body += _rect(
                _PAD + i * width, y0, max(1.0, width - 1), y1 - y0, "bar week", color, f"{name}: {n} {kind}"
            )
            base += n
    for i, name in enumerate(names):
        if i % max(1, len(names) // 6) == 0:
            body += _text(_PAD + (i + 0.5) * width, _H - _PAD + 16, name)
    body += _ticks([(0, "0"), (1, str(top))], "y")
    legend = "".join(
        _text(_W - 150, 24 + 16 * j, k, "tick start", _COLORS.get(k, "#555")) for j, k in enumerate(kinds)
    )
    return _svg(
        "Alerts per week by kind (recoveries and onboarding progress excluded)",
        body + legend,
        "week (Monday)",
        "alerts",
    )


def _table(headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    head = "".join(f"<th>{_e(h)}</th>" for h in headers)
    body = "".join("<tr>" + "".join(f"<td>{_e(_fmt(v))}</td>" for v in row) + "</tr>" for row in rows)
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def _fmt(v: Any) -> str:
    if v is None:
        return "—"
    if isinstance(v, float):
        return f"{v:,.3f}"
    if isinstance(v, int):
        return f"{v:,}"
    return str(v)


def _pct(v: float | None) -> str:
    return "—" if v is None else f"{100 * v:.1f}%"


# Nothing to load, nothing to run: the page is a document.
_CSP = "default-src 'none'; style-src 'unsafe-inline'"
_CSS = """
body{font:14px/1.45 system-ui,sans-serif;margin:2rem auto;max-width:1180px;color:#222;padding:0 1rem}
h1{font-size:1.5rem}h2{font-size:1.15rem;margin-top:2rem}
.plots{display:grid;grid-template-columns:repeat(auto-fit,minmax(520px,1fr));gap:1.2rem}
figure{margin:0;border:1px solid #ddd;border-radius:6px;padding:.6rem}
figcaption{font-weight:600;margin-bottom:.3rem}
svg.plot{width:100%;height:auto}.axis{stroke:#444}.label{font-size:12px;text-anchor:middle;fill:#444}
.tick{font-size:11px;text-anchor:middle;fill:#444}.score-t,.count-t{text-anchor:start}.tick.end{text-anchor:end}.tick.start{text-anchor:start}
polyline{fill:none;stroke-width:2}.diagonal{stroke:#bbb;stroke-dasharray:4 4}.score{stroke:#c0392b}
.count{stroke:#2c7fb8}.score-t{fill:#c0392b;font-size:12px}.count-t{fill:#2c7fb8;font-size:12px}
.lead{fill:#8e44ad}table{border-collapse:collapse;margin:.5rem 0}
td,th{border:1px solid #ddd;padding:.25rem .6rem;text-align:right}
th{background:#f5f5f5}td:first-child,th:first-child{text-align:left}.note{color:#666}
"""


def render_report(doc: Mapping[str, Any], replay: Replay, cancellations: Mapping[str, Sequence[int]]) -> str:
    """The report page for a backtest's figures (``doc``, as ``--json`` writes them) and its replay."""
    h, r, a = doc["history"], doc["ranking"], doc["alerts"]
    first_ms = parse_event_time(h["first_event"])
    last_ms = parse_event_time(h["last_event"])
    pooled, ref = r["pooled"], r["reference"]
    ranking = _table(
        ["", "rows", "cancellations", "AUC", "top-decile lift"],
        [
            [
                "churnwatch score, pooled",
                pooled["rows"],
                pooled["cancellations"],
                pooled["auc"],
                pooled["lift_top_decile"],
            ],
            [
                "28-day event count",
                pooled["rows"],
                pooled["cancellations"],
                pooled["auc_28d_event_count"],
                None,
            ],
            [
                "reference model (later half of the dates)",
                ref["test_rows"],
                ref["test_positives"],
                ref["model_auc"],
                ref["model_lift"],
            ],
            [
                "churnwatch score (same rows)",
                ref["test_rows"],
                ref["test_positives"],
                ref["score_auc"],
                ref["score_lift"],
            ],
        ],
    )
    kinds = _table(
        [
            "kind",
            "alerts",
            "per 100 accounts / month",
            "precision",
            "× base rate",
            "recall",
            "median lead (days)",
        ],
        [
            [
                k["kind"],
                k["alerts"],
                k["per_100_accounts_month"],
                _pct(k["precision"]),
                k["lift_over_base"],
                _pct(k["recall"]),
                k["median_lead_days"],
            ]
            for k in a["kinds"]
        ],
    )
    by_date = _table(
        ["date", "rows", "cancellations", "AUC", "top-decile lift", "complete horizon"],
        [
            [
                d["at"][:10],
                d["rows"],
                d["cancellations"],
                d["auc"],
                d["lift_top_decile"],
                d["complete_horizon"],
            ]
            for d in r["by_date"]
        ],
    )
    weeks = _table(
        ["week", "alerts", "× median week"],
        [[w["week"], w["alerts"], w["vs_median"]] for w in a["busiest_weeks"]],
    )
    archetypes = ""
    if "by_archetype" in doc:
        archetypes = "<h2>By archetype</h2>" + _table(
            ["archetype", "accounts", "alerted", "cancellations", "recall", "median lead (days)"],
            [
                [
                    name,
                    x["accounts"],
                    x["accounts_alerted"],
                    x["cancellations"],
                    _pct(x["recall"]),
                    x["median_lead_days"],
                ]
                for name, x in doc["by_archetype"].items()
            ],
        )
    note = f'<p class="note">Reference model: {_e(ref["note"])}</p>' if ref.get("note") else ""
    plots = "".join(
        [
            _gains_plot(doc, replay),
            _band_plot(doc),
            _lead_plot(doc, replay, cancellations),
            _weeks_plot(replay, first_ms, last_ms),
        ]
    )
    return (
        '<!doctype html>\n<html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width,initial-scale=1">'
        "<title>churnwatch backtest</title>"
        f'<meta http-equiv="Content-Security-Policy" content="{_CSP}">'
        f"<style>{_CSS}</style></head><body>"
        "<h1>churnwatch backtest</h1>"
        f"<p>{h['events']:,} events of {h['accounts']:,} accounts from {_e(h['first_event'][:10])} to "
        f"{_e(h['last_event'][:10])}; {h['cancellations']:,} cancellations. "
        f"Rules: {_e(doc['settings'].get('rules', ''))}. "
        f"Alerts count as followed by a cancellation within {a['follow_days']} days; base rate "
        f"{_pct(a['base_rate'])} of live accounts cancel within that time of an evaluation date.</p>"
        f'<div class="plots">{plots}</div>'
        f"<h2>Ranking: cancels within {r['horizon_days']} days</h2>{ranking}{note}"
        f"<h2>Alerts</h2>{kinds}"
        f"<h2>Busiest weeks (median week: {_e(a['median_week'])} alerts)</h2>{weeks}"
        f"{archetypes}<h2>Per evaluation date</h2>{by_date}"
        "</body></html>\n"
    )
