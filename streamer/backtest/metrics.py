"""Warning quality against outcomes: ranking (AUC, lift), bands, and each alert kind's worth.

Pure functions of plain values. Conventions, as a data scientist would state them:

* **Ranking**: risk is ``100 - score``; the positive class is "cancels within the horizon after the
  evaluation date". AUC is the Mann-Whitney statistic (ties count half). Top-decile lift is the
  cancellation rate among the 10% riskiest rows over the rate among all rows.
* **Alerts** (recoveries and onboarding progress excluded): an alert is *followed* by a cancellation
  when its account cancels within ``follow_days`` (60) after it; precision is measured on alerts
  whose whole follow-up window lies inside the history, and compared with the **base rate**, the
  share of live accounts that cancel within the same number of days of an evaluation date.
  **Recall** is the share of cancellations preceded by an alert of the kind within ``follow_days``
  before them, over cancellations at least ``follow_days`` after the history starts (earlier ones
  had no chance); **lead time** is the cancellation time minus the first such alert. **Volume** is
  alerts per 100 live accounts per 30-day month, counted over live account-days.
"""

from __future__ import annotations

import statistics
from collections import Counter, defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

from streamer.core.alerts import POSITIVE_KINDS

__all__ = [
    "POSITIVE",
    "AlertFact",
    "KindQuality",
    "auc",
    "busiest_weeks",
    "kind_quality",
    "lift_at",
]

DAY_MS = 86_400_000
# Good news (a recovery, onboarding progress) is no warning: left out of every warning figure.
POSITIVE = frozenset(str(k) for k in POSITIVE_KINDS)


def auc(scores: Sequence[float], labels: Sequence[bool]) -> float | None:
    """Area under the ROC curve of ``scores`` (higher = more likely positive); None without both classes."""
    pairs = sorted(zip(scores, labels, strict=True), key=lambda p: p[0])
    positives = sum(1 for _, y in pairs if y)
    negatives = len(pairs) - positives
    if positives == 0 or negatives == 0:
        return None
    rank_sum = 0.0
    i = 0
    while i < len(pairs):
        j = i
        while j < len(pairs) and pairs[j][0] == pairs[i][0]:
            j += 1
        mid_rank = (i + 1 + j) / 2  # average 1-based rank of the tied block
        rank_sum += mid_rank * sum(1 for _, y in pairs[i:j] if y)
        i = j
    return (rank_sum - positives * (positives + 1) / 2) / (positives * negatives)


def lift_at(scores: Sequence[float], labels: Sequence[bool], share: float = 0.1) -> float | None:
    """Rate of positives among the top ``share`` by score over the overall rate; None without positives.

    Ties at the cut are broken by taking them in proportion, so the result does not depend on order.
    """
    n = len(scores)
    positives = sum(labels)
    if n == 0 or positives == 0:
        return None
    k = share * n
    order = sorted(zip(scores, labels, strict=True), key=lambda p: -p[0])
    taken = 0.0
    hits = 0.0
    i = 0
    while i < n and taken < k:
        j = i
        while j < n and order[j][0] == order[i][0]:
            j += 1
        block = j - i
        block_pos = sum(1 for _, y in order[i:j] if y)
        part = min(1.0, (k - taken) / block)
        taken += block * part
        hits += block_pos * part
        i = j
    return (hits / taken) / (positives / n)


@dataclass(frozen=True, slots=True)
class AlertFact:
    """What the quality figures need of an alert."""

    account_id: str
    kind: str
    at_ms: int


@dataclass(frozen=True, slots=True)
class KindQuality:
    """How much one alert kind is worth."""

    kind: str
    alerts: int
    per_100_accounts_month: float
    followed: int  # alerts with a complete follow-up window...
    followed_by_cancel: int  # ...of which the account cancelled within it
    precision: float | None
    lift_over_base: float | None
    recall: float | None
    recalled: int
    eligible_cancellations: int
    median_lead_days: float | None


def kind_quality(
    kind: str,
    alerts: Iterable[AlertFact],
    cancellations: Mapping[str, Sequence[int]],
    *,
    first_ms: int,
    last_ms: int,
    live_account_days: float,
    base_rate: float | None,
    follow_days: int = 60,
) -> KindQuality:
    """The figures of one alert kind (``"any"`` pools every kind but recoveries and onboarding progress)."""
    follow = follow_days * DAY_MS
    mine = [a for a in alerts if a.kind not in POSITIVE and (kind == "any" or a.kind == kind)]
    complete = [a for a in mine if a.at_ms + follow <= last_ms]
    hit = 0
    for a in complete:
        cancels = cancellations.get(a.account_id, ())
        if any(a.at_ms < c <= a.at_ms + follow for c in cancels):
            hit += 1
    precision = hit / len(complete) if complete else None
    by_account: dict[str, list[int]] = defaultdict(list)
    for a in mine:
        by_account[a.account_id].append(a.at_ms)
    eligible = 0
    recalled = 0
    leads: list[float] = []
    for account, cancels in cancellations.items():
        for c in cancels:
            if c - follow < first_ms:
                continue
            eligible += 1
            before = [t for t in by_account.get(account, ()) if c - follow <= t < c]
            if before:
                recalled += 1
                leads.append((c - min(before)) / DAY_MS)
    return KindQuality(
        kind=kind,
        alerts=len(mine),
        per_100_accounts_month=100 * len(mine) / (live_account_days / 30) if live_account_days else 0.0,
        followed=len(complete),
        followed_by_cancel=hit,
        precision=precision,
        lift_over_base=precision / base_rate if precision is not None and base_rate else None,
        recall=recalled / eligible if eligible else None,
        recalled=recalled,
        eligible_cancellations=eligible,
        median_lead_days=statistics.median(leads) if leads else None,
    )


def week_start(ms: int) -> str:
    """The Monday (UTC, ISO date) of the week holding ``ms``."""
    day = ms // DAY_MS
    monday = day - (day + 3) % 7  # 1970-01-01 was a Thursday
    return datetime.fromtimestamp(monday * 86_400, tz=UTC).date().isoformat()


def busiest_weeks(
    alerts: Iterable[AlertFact], first_ms: int, last_ms: int, top: int = 5
) -> tuple[float, list[tuple[str, int, float]]]:
    """The median weekly count of warnings (no recoveries or onboarding progress) and the ``top`` weeks.

    Only whole weeks inside the history count, so a half week at either end is neither busy nor quiet;
    the caller passes ``first_ms`` after its warm-up (until an account has a baseline, its alerts
    reflect the history's start, not the customer).
    """
    counts: Counter[str] = Counter()
    weeks = []
    day = -(-first_ms // DAY_MS)  # the first midnight at or after the start
    first_monday = day + (7 - (day + 3) % 7) % 7
    monday = first_monday
    while (monday + 7) * DAY_MS <= last_ms:
        weeks.append(week_start(monday * DAY_MS))
        monday += 7
    for a in alerts:
        if a.kind not in POSITIVE:
            counts[week_start(a.at_ms)] += 1
    if not weeks:
        return 0.0, []
    median = statistics.median(counts[w] for w in weeks)
    ranked = sorted(weeks, key=lambda w: (-counts[w], w))[:top]
    return median, [(w, counts[w], counts[w] / median if median else float("inf")) for w in ranked]
