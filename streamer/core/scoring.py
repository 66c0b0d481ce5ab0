"""Explainable account health.

The score is a weighted mean of five components, each 0..100 with a one-line
explanation, so a customer success manager can see *why* an account is at risk.
Components that cannot be computed (utilization without a seat count) are left out and
the remaining weights are renormalised.
"""

from __future__ import annotations

from dataclasses import dataclass

from streamer.core.policy import DAY_MS, Policy
from streamer.core.state import FEATURE_BITS, USER_BITS, AccountState, estimate_distinct

__all__ = [
    "Component",
    "Health",
    "WindowStats",
    "band_for",
    "health_changed_materially",
    "score",
    "window_stats",
]

_NPS_PROMOTER, _NPS_PASSIVE, _NPS_DETRACTOR, _NPS_UNKNOWN = 100.0, 70.0, 20.0, 70.0
_TICKET_PENALTY = 15.0


@dataclass(frozen=True, slots=True)
class Component:
    """One explained part of the health score."""

    name: str
    value: float
    weight: float
    contribution: float
    explanation: str


@dataclass(frozen=True, slots=True)
class Health:
    """Health of one account at one instant."""

    account_id: str
    at_ms: int
    score: int
    band: str
    components: tuple[Component, ...]
    current_weekly: float
    baseline_weekly: float
    active_users_7d: int
    features_28d: int
    onboarding: bool

    def component(self, name: str) -> Component | None:
        """Return the named component, or None when it was not available."""
        return next((c for c in self.components if c.name == name), None)


@dataclass(frozen=True, slots=True)
class WindowStats:
    """Aggregates over the current and baseline windows ending on a given day."""

    current_weekly: float
    baseline_weekly: float
    current_events: int
    users_bitmap: int
    features_bitmap: int


def window_stats(state: AccountState, now_ms: int, policy: Policy) -> WindowStats:
    """Aggregate the day buckets relative to ``now_ms``.

    The current window is the ``current_days`` UTC days ending with now's day (inclusive);
    the baseline is the ``baseline_days`` before it. Buckets after now's day are ignored,
    so evaluating in the past is consistent. Features are counted over the
    ``baseline_days`` days ending with now's day.

    Args:
        state: Account state.
        now_ms: Evaluation time.
        policy: Effective policy.

    Returns:
        The window aggregates (weekly rates are never negative).
    """
    today = now_ms // DAY_MS
    cur_start = today - policy.current_days + 1
    base_start = cur_start - policy.baseline_days
    feat_start = today - policy.baseline_days + 1
    cur_w = base_w = 0.0
    cur_events = users = features = 0
    for day, b in state.days.items():
        if day > today or day < base_start:
            continue
        if day >= cur_start:
            cur_w += b.weight
            cur_events += b.events
            users |= b.users
        else:
            base_w += b.weight
        if day >= feat_start:
            features |= b.features
    return WindowStats(
        current_weekly=max(0.0, cur_w) * 7 / policy.current_days,
        baseline_weekly=max(0.0, base_w) * 7 / policy.baseline_days,
        current_events=cur_events,
        users_bitmap=users,
        features_bitmap=features,
    )


def band_for(value: int, policy: Policy) -> str:
    """Map a score to ``good``, ``average`` or ``poor``."""
    if value >= policy.good_min:
        return "good"
    return "average" if value >= policy.average_min else "poor"


def is_onboarding(state: AccountState, now_ms: int, policy: Policy) -> bool:
    """Whether the account is young enough to be judged against absolute expectations."""
    return now_ms - state.first_seen_ms < policy.onboarding_days * DAY_MS


def _clamp(v: float) -> float:
    return min(100.0, max(0.0, v))


def _activity(
    stats: WindowStats, state: AccountState, onboarding: bool, p: Policy, explain: bool
) -> tuple[float, str]:
    cur = stats.current_weekly
    if onboarding:
        expected = (
            state.seats * p.onboarding_expected_weekly_events_per_seat
            if state.seats
            else p.onboarding_expected_weekly_events
        )
        value = _clamp(100 * cur / expected)
        if not explain:
            return value, ""
        seats = f" ({state.seats} seats)" if state.seats else ""
        basis = f"onboarding expectation {expected:.1f}/week{seats}"
        return value, f"{p.current_days}-day activity {cur:.1f} vs {basis} ({value:.0f}%)"
    base = stats.baseline_weekly
    if base <= 0:
        value = 100.0 if cur > 0 else 0.0
        return value, f"{p.current_days}-day activity {cur:.1f} with no baseline activity" if explain else ""
    value = _clamp(100 * cur / base)
    if not explain:
        return value, ""
    return value, f"{p.current_days}-day activity {cur:.1f} vs baseline {base:.1f}/week ({value:.0f}%)"


def _recency(state: AccountState, now_ms: int, p: Policy, explain: bool) -> tuple[float, str]:
    if state.last_activity_ms is None:
        return 0.0, "no activity recorded"
    age = now_ms - state.last_activity_ms
    if age <= DAY_MS:
        return 100.0, "active within the last day"
    span = (p.recency_zero_after_days - 1) * DAY_MS
    value = _clamp(100 * (1 - (age - DAY_MS) / span))
    if not explain:
        return value, ""
    days = age / DAY_MS
    return value, f"last active {days:.1f} days ago (zero after {p.recency_zero_after_days} days)"


def _sentiment(state: AccountState, explain: bool) -> tuple[float, str]:
    nps = state.nps_score
    if nps is None:
        value, what = _NPS_UNKNOWN, "no NPS response"
    elif nps >= 9:
        value, what = _NPS_PROMOTER, "promoter"
    elif nps >= 7:
        value, what = _NPS_PASSIVE, "passive"
    else:
        value, what = _NPS_DETRACTOR, "detractor"
    tickets = max(0, state.open_tickets)
    value = _clamp(value - _TICKET_PENALTY * tickets)
    if not explain:
        return value, ""
    if nps is not None:
        what = f"NPS {nps} ({what})"
    return value, f"{what}, {tickets} open support ticket{'s' if tickets != 1 else ''}"


def score(state: AccountState, now_ms: int, policy: Policy, explain: bool = True) -> Health:
    """Compute the explainable health of an account at ``now_ms``.

    Args:
        state: Account state (not modified).
        now_ms: Evaluation time in epoch milliseconds.
        policy: Effective policy for the account.
        explain: Write the human-readable explanations; without them the numbers are the same
            and scoring is several times cheaper (used to decide whether to publish at all).

    Returns:
        The health snapshot; ``score`` is always within 0..100.
    """
    p = policy
    stats = window_stats(state, now_ms, p)
    onboarding = is_onboarding(state, now_ms, p)
    users = round(estimate_distinct(stats.users_bitmap, USER_BITS))
    features = round(estimate_distinct(stats.features_bitmap, FEATURE_BITS))
    parts: list[tuple[str, float, float, str]] = [
        ("activity", p.weights.activity, *_activity(stats, state, onboarding, p, explain)),
        ("recency", p.weights.recency, *_recency(state, now_ms, p, explain)),
    ]
    if state.seats:
        util = _clamp(100 * users / state.seats)
        why = (
            f"{users} active users in {p.current_days} days of {state.seats} seats ({util:.0f}%)"
            if explain
            else ""
        )
        parts.append(("utilization", p.weights.utilization, util, why))
    breadth = _clamp(100 * features / p.expected_features)
    why = (
        f"{features} distinct features in {p.baseline_days} days of {p.expected_features} expected"
        if explain
        else ""
    )
    parts.append(("breadth", p.weights.breadth, breadth, why))
    parts.append(("sentiment", p.weights.sentiment, *_sentiment(state, explain)))
    total_w = sum(w for _, w, _, _ in parts)
    comps = tuple(
        Component(name, round(v, 1), round(w / total_w, 4), round(w * v / total_w, 1), why)
        for name, w, v, why in parts
    )
    value = max(0, min(100, round(sum(w * v for _, w, v, _ in parts) / total_w)))
    return Health(
        account_id=state.account_id,
        at_ms=now_ms,
        score=value,
        band=band_for(value, p),
        components=comps,
        current_weekly=round(stats.current_weekly, 2),
        baseline_weekly=round(stats.baseline_weekly, 2),
        active_users_7d=users,
        features_28d=features,
        onboarding=onboarding,
    )


def health_changed_materially(prev: Health | None, new: Health, policy: Policy) -> bool:
    """Decide whether a new health snapshot is worth republishing.

    Args:
        prev: The last published snapshot, or None if nothing was published yet.
        new: The fresh snapshot.
        policy: Effective policy (``material_score_delta``, ``material_component_delta``).

    Returns:
        True when the band changed, the score moved by at least ``material_score_delta``,
        a component appeared/disappeared, or any component moved by at least
        ``material_component_delta`` points.
    """
    if prev is None:
        return True
    return _changed(prev.score, prev.band, {c.name: c.value for c in prev.components}, new, policy)


def _changed(score_: int, band: str | None, comps: dict[str, float], new: Health, policy: Policy) -> bool:
    if band != new.band or abs(new.score - score_) >= policy.material_score_delta:
        return True
    new_comps = {c.name: c.value for c in new.components}
    if new_comps.keys() != comps.keys():
        return True
    return any(abs(new_comps[k] - comps[k]) >= policy.material_component_delta for k in comps)


def changed_since_published(state: AccountState, new: Health, policy: Policy) -> bool:
    """Like :func:`health_changed_materially` but against what the state last published."""
    if state.published_score is None:
        return True
    return _changed(state.published_score, state.published_band, state.published_components, new, policy)
