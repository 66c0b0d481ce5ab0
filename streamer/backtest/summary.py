"""Every figure of a backtest, as one JSON-ready document (what ``--json`` writes and the report shows)."""

from __future__ import annotations

import bisect
import statistics
from collections import Counter, defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import asdict
from typing import Any

import orjson

from streamer.backtest.history import History
from streamer.backtest.metrics import (
    POSITIVE,
    AlertFact,
    auc,
    busiest_weeks,
    kind_quality,
    lift_at,
    week_start,
)
from streamer.backtest.reference import fit_reference
from streamer.backtest.replay import Replay, ScoreRow
from streamer.core.alerts import ms_to_rfc3339
from streamer.core.policy import Band

__all__ = ["KINDS", "alert_facts", "live_account_days", "summarize"]

DAY_MS = 86_400_000
KINDS = ("account_quiet", "usage_drop", "health_degraded")


def alert_facts(replay: Replay) -> list[AlertFact]:
    """The account alerts of a replay (operations alerts left out), reduced to what the figures need."""
    return [
        AlertFact(a.account_id, a.kind, a.detected_at_ms)
        for a, _ in replay.alerts
        if a.account_id is not None
    ]


def live_account_days(history: History, first_seen: Mapping[str, int], first_ms: int, last_ms: int) -> float:
    """Days each account was live (first seen or started, until cancelled), summed, within the history."""
    total = 0
    for account, seen in first_seen.items():
        starts = history.starts.get(account, [])
        cancels = history.cancellations.get(account, [])
        begin = min([seen, *starts])
        changes = sorted([(t, 1) for t in starts] + [(t, 0) for t in cancels])
        live_since: int | None = begin
        for t, starting in changes:
            if starting and live_since is None:
                live_since = t
            elif not starting and live_since is not None and t >= live_since:
                total += max(0, min(t, last_ms) - max(live_since, first_ms))
                live_since = None
        if live_since is not None:
            total += max(0, last_ms - max(live_since, first_ms))
    return total / DAY_MS


def _label(row: ScoreRow, horizon_ms: int) -> bool:
    return row.next_cancel_ms is not None and row.next_cancel_ms <= row.at_ms + horizon_ms


def _ranking(rows: Sequence[ScoreRow], horizon_ms: int) -> dict[str, Any]:
    labels = [_label(r, horizon_ms) for r in rows]
    risk = [100.0 - r.score for r in rows]
    inactivity = [-float(sum(r.counts)) for r in rows]
    return {
        "rows": len(rows),
        "cancellations": sum(labels),
        "rate": round(sum(labels) / len(rows), 4) if rows else None,
        "auc": _round(auc(risk, labels)),
        "lift_top_decile": _round(lift_at(risk, labels)),
        "auc_28d_event_count": _round(auc(inactivity, labels)),
    }


def _round(v: float | None, digits: int = 3) -> float | None:
    return None if v is None else round(v, digits)


def summarize(
    history: History,
    replay: Replay,
    first_seen: Mapping[str, int],
    *,
    horizon_days: int,
    follow_days: int = 60,
    settings: Mapping[str, Any] | None = None,
    truth: Mapping[str, str] | None = None,
    warmup_days: int = 35,
) -> dict[str, Any]:
    """All the figures: history, ranking (per date and pooled), reference model, bands, alert kinds, weeks.

    ``truth`` (account id -> archetype), when known (a generated portfolio), adds recall and lead
    time per archetype.
    """
    assert history.first_ms is not None and history.last_ms is not None  # noqa: S101 - a non-empty history
    first_ms, last_ms = history.first_ms, history.last_ms
    horizon = horizon_days * DAY_MS
    complete = [d for d in replay.dates if d + horizon <= last_ms]
    rows = [r for r in replay.rows if r.at_ms in set(complete)]
    by_date = []
    for d in replay.dates:
        date_rows = [r for r in replay.rows if r.at_ms == d]
        by_date.append(
            {"at": ms_to_rfc3339(d), "complete_horizon": d in complete, **_ranking(date_rows, horizon)}
        )
    bands: dict[str, Any] = {}
    for band in Band:
        band_rows = [r for r in rows if r.band == band]
        hits = sum(_label(r, horizon) for r in band_rows)
        bands[band] = {
            "rows": len(band_rows),
            "cancellations": hits,
            "rate": round(hits / len(band_rows), 4) if band_rows else None,
        }
    # Alerts within the history's span of activity: facts dated long before it (a subscription started
    # years ago) can raise alerts there, but no customer was being watched then.
    facts = [f for f in alert_facts(replay) if first_ms <= f.at_ms <= last_ms]
    follow = follow_days * DAY_MS
    follow_dates = [d for d in replay.dates if d + follow <= last_ms]
    base_rows = [r for r in replay.rows if r.at_ms in set(follow_dates)]
    base_rate = sum(_label(r, follow) for r in base_rows) / len(base_rows) if base_rows else None
    live_days = live_account_days(history, first_seen, first_ms, last_ms)
    kinds = [
        asdict(
            kind_quality(
                kind,
                facts,
                history.cancellations,
                first_ms=first_ms,
                last_ms=last_ms,
                live_account_days=live_days,
                base_rate=base_rate,
                follow_days=follow_days,
            )
        )
        for kind in (*KINDS, *sorted({f.kind for f in facts} - {*KINDS, *POSITIVE}), "any")
    ]
    warmed = first_ms + warmup_days * DAY_MS
    median_week, weeks = busiest_weeks([f for f in facts if f.at_ms >= warmed], warmed, last_ms)
    doc: dict[str, Any] = {
        "history": {
            "lines": history.lines,
            "events": history.valid,
            "invalid": dict(history.invalid),
            "accounts": len(first_seen),
            "first_event": ms_to_rfc3339(first_ms),
            "last_event": ms_to_rfc3339(last_ms),
            "cancellations": sum(len(c) for c in history.cancellations.values()),
            "was_sorted": history.was_sorted,
        },
        "settings": dict(settings or {}),
        "ranking": {
            "horizon_days": horizon_days,
            "pooled": _ranking(rows, horizon),
            "by_date": by_date,
            "reference": asdict(fit_reference(rows, complete, horizon_days)),
        },
        "bands": bands,
        "alerts": {
            "follow_days": follow_days,
            "base_rate": _round(base_rate, 4),
            "live_account_months": round(live_days / 30, 1),
            "counts": dict(Counter(f.kind for f in facts)),
            "data_gaps": [
                {"alert_id": a.alert_id, "detected_at": ms_to_rfc3339(a.detected_at_ms), "reason": a.reason}
                for a, _ in replay.alerts
                if a.kind == "data_gap"
            ],
            "kinds": [
                {k: (_round(v, 4) if isinstance(v, float) else v) for k, v in q.items()} for q in kinds
            ],
            "weeks_from": week_start(warmed),
            "median_week": median_week,
            "busiest_weeks": [{"week": w, "alerts": n, "vs_median": _round(r, 2)} for w, n, r in weeks],
        },
    }
    if truth is not None:
        doc["by_archetype"] = _by_archetype(facts, history, truth, first_ms, follow)
    return doc


def _by_archetype(
    facts: Sequence[AlertFact], history: History, truth: Mapping[str, str], first_ms: int, follow: int
) -> dict[str, Any]:
    alerts_of: dict[str, list[int]] = defaultdict(list)
    for f in facts:
        if f.kind not in POSITIVE:
            alerts_of[f.account_id].append(f.at_ms)
    for times in alerts_of.values():
        times.sort()
    out: dict[str, Any] = {}
    groups: dict[str, list[str]] = defaultdict(list)
    for account, archetype in truth.items():
        groups[archetype].append(account)
    for archetype, accounts in sorted(groups.items()):
        cancels = [
            (a, c) for a in accounts for c in history.cancellations.get(a, ()) if c - follow >= first_ms
        ]
        leads = []
        for account, c in cancels:
            times = alerts_of.get(account, [])
            i = bisect.bisect_left(times, c - follow)
            if i < len(times) and times[i] < c:
                leads.append((c - times[i]) / DAY_MS)
        alerted_accounts = sum(1 for a in accounts if alerts_of.get(a))
        out[archetype] = {
            "accounts": len(accounts),
            "accounts_alerted": alerted_accounts,
            "alerts": sum(len(alerts_of.get(a, ())) for a in accounts),
            "cancellations": len(cancels),
            "recall": round(len(leads) / len(cancels), 3) if cancels else None,
            "median_lead_days": round(statistics.median(leads), 1) if leads else None,
        }
    return out


def dumps(doc: Mapping[str, Any]) -> bytes:
    """The summary as indented JSON."""
    return orjson.dumps(doc, option=orjson.OPT_INDENT_2 | orjson.OPT_NON_STR_KEYS)
