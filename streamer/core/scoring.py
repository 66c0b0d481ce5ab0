"""Explainable account health.

The score (0..100) is a weighted mean of components, each 0..100 with a one-line explanation, so
a customer success manager can see *why* an account is at risk. Each component measures the
account against its own rhythm or against a ratio that does not depend on how many events a
product sends per action (see :mod:`streamer.core.rhythm`):

* ``recency``: 100 ``exp(-(missed - grace) / scale)``, where *missed* is how many of its usual
  active days the account has gone without activity, the first (``score.recency_grace``, 1) free:
  even a daily team skips a day now and then (``score.recency_missed_scale``, 2.5). A daily team
  silent for three weekdays scores 45, a twice-weekly user silent for a week 100;
* ``activity``: this week's user-days against the same weekdays of the 28 days before (left out
  until the account has ``score.min_rhythm_days`` of baseline);
* ``users``: the share of the users active in the two weeks before the last two who are still
  active (users dropping off one by one), with one more counted on both sides, so that the only
  user of a small account missing a fortnight halves it rather than zeroes it;
* ``stickiness``: how many of the last 28 days an active user is active on average (DAU/MAU),
  against ``score.stickiness_target`` (0.5): a thinly used account is at risk even when steady;
* ``utilization``: users active in 28 days against seats, against ``score.utilization_target``
  (0.8); left out when seats are unknown;
* ``breadth``: features used in the last 14 days against the 14 before;
* ``sentiment``: latest NPS (promoter 100, passive 70, detractor 20, none 70), less 15 per open ticket;
* ``onboarding``: while the account is onboarding and has milestones (:mod:`streamer.core.milestones`),
  the share of them on time: one reached or not due yet counts fully, one overdue half, one stuck
  (``onboarding.stuck_days`` overdue) a tenth.

The score is the weighted *geometric* mean of the components (a component of 0 counts as 1):
health is held back by its weakest side, so an account steady in its own terms but using a
twentieth of its seats, or silent this week, cannot score well on the rest. Components that
cannot be computed are left out and the remaining weights renormalised. Excluded days (holidays,
data gaps) are left out of every window.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace

from streamer.core.milestones import Onboarding, onboarding_of
from streamer.core.partition import EMPTY_CONTEXT, Context
from streamer.core.policy import DAY_MS, Band, Policy
from streamer.core.rhythm import DropStat, Rhythm, at_level, day_units, drop_stat, missed_active_days, rhythm
from streamer.core.state import COMPONENT_NAMES, FEATURE_BITS, USER_BITS, AccountState, estimate_distinct

__all__ = [
    "Band",
    "Component",
    "Health",
    "Signals",
    "band_for",
    "changed_since_published",
    "health_changed_materially",
    "score",
    "signals",
]

_NPS_PROMOTER, _NPS_PASSIVE, _NPS_DETRACTOR, _NPS_UNKNOWN = 100.0, 70.0, 20.0, 70.0
_TICKET_PENALTY = 15.0
_FLOOR = 1.0  # a component of 0 counts as 1 in the geometric mean


# Component and Health are not frozen either: built for every score (a frozen dataclass sets each field
# through object.__setattr__). Treated as immutable all the same.
@dataclass(slots=True)
class Component:
    """One explained part of the health score."""

    name: str
    value: float
    weight: float
    contribution: float
    explanation: str


@dataclass(slots=True)
class Health:
    """Health of one account at one instant."""

    account_id: str
    at_ms: int
    score: int
    band: Band
    components: tuple[Component, ...]
    current_weekly: float  # weighted events of the last 7 days, today included
    baseline_weekly: float  # weighted events per week of the 28 days before
    active_users_7d: int
    features_28d: int
    onboarding: Onboarding
    user_days_week: float = 0.0  # user-days of the last 7 complete days
    user_days_usual: float | None = None  # what the baseline expected for them
    active_users_28d: int = 0
    missed_active_days: float = 0.0

    def component(self, name: str) -> Component | None:
        """Return the named component, or None when it was not available."""
        return next((c for c in self.components if c.name == name), None)


# Not frozen: built several times per score, and a frozen dataclass sets each field through
# object.__setattr__ (four times slower to construct). Treated as immutable all the same.
@dataclass(slots=True)
class Signals:
    """Everything the score and the alert rules read from an account's buckets at one instant."""

    today: int
    onboarding: bool
    excluded: frozenset[int]
    base: Rhythm | None  # the 28 days before the last complete week, when long enough to judge
    week: DropStat | None  # the last complete week against ``base``
    drop_base: Rhythm | None  # the drop test's baseline: the days before its window
    fortnight: DropStat | None  # the drop test's window (the last 14 complete days) against ``drop_base``
    fortnight_last_week: DropStat | None  # its last 7 days against the same baseline
    quiet_rhythm: Rhythm | None  # the 28 days up to the last active day
    units: dict[int, float]  # user-days by day
    missed: float  # usual active days gone by without activity
    users_28: float
    users_recent: float  # the last 14 complete days
    users_earlier: float  # the 14 days before those
    users_retained: float  # of ``users_earlier``, also in ``users_recent``
    user_days_28: float
    days_28: int  # days of the last 28 not excluded
    features_recent: float
    features_earlier: float
    features_28: float
    current_weekly: float
    baseline_weekly: float
    active_users_7d: float


def _distinct(bitmap: int, bits: int) -> float:
    return estimate_distinct(bitmap, bits) if bitmap else 0.0


def excluded_days(policy: Policy, ctx: Context) -> frozenset[int]:
    """The days this account's windows leave out: its holidays and the partition's gap days."""
    if not policy.holiday_days:
        return ctx.excluded_days
    return ctx.excluded_days | policy.holiday_days


def is_onboarding(state: AccountState, now_ms: int, policy: Policy) -> bool:
    """Whether the account is in its first ``onboarding.days`` (since subscription start or first event)."""
    start = (
        state.subscription_started_ms if state.subscription_started_ms is not None else state.first_seen_ms
    )
    return now_ms - start < policy.onboarding_days * DAY_MS


def signals(state: AccountState, now_ms: int, policy: Policy, ctx: Context = EMPTY_CONTEXT) -> Signals:
    """Aggregate the account's buckets as of ``now_ms`` (buckets after its day are ignored)."""
    today = now_ms // DAY_MS
    excluded = excluded_days(policy, ctx)
    since = state.first_seen_ms // DAY_MS
    days = state.days
    u = day_units(days)
    week_first = today - policy.current_days
    base_first = week_first - policy.baseline_days
    long_days = sum(d for _, _, d in state.history)
    long_units = sum(x for _, x, _ in state.history)
    long_rate = long_units / long_days if long_days >= policy.min_rhythm_days else None
    base = at_level(rhythm(u, base_first, week_first - 1, excluded, since), long_rate, long_units)
    base_ok = base.days >= policy.min_rhythm_days
    week = drop_stat(u, base, week_first, today - 1, excluded) if base_ok else None
    window_first = today - policy.drop_window_days
    drop_base = rhythm(u, window_first - policy.drop_baseline_days, window_first - 1, excluded, since)
    drop_base = at_level(drop_base, long_rate, long_units)
    drop_ok = drop_base.days >= policy.min_rhythm_days
    fortnight = drop_stat(u, drop_base, window_first, today - 1, excluded) if drop_ok else None
    last_week = drop_stat(u, drop_base, today - 7, today - 1, excluded) if drop_ok else None
    recent = earlier = users_28 = f_recent = f_earlier = 0
    user_days_28 = 0.0
    days_28 = 0
    cur_w = base_w = 0.0
    users_7d = 0
    for day, b in days.items():
        age = today - day
        if age <= 6 and age >= 0:
            cur_w += b.weight
            users_7d |= b.users
        elif 7 <= age <= 34:
            base_w += b.weight
        if not 1 <= age <= 28:
            continue
        # Who was active counts on every day: a holiday or a data gap takes activity away, never adds
        # any, so leaving its days out would only lose users. Day counts leave them out.
        users_28 |= b.users
        if day not in excluded:
            user_days_28 += u[day]
        if age <= 14:
            recent |= b.users
            f_recent |= b.features
        else:
            earlier |= b.users
            f_earlier |= b.features
    for day in range(today - 28, today):
        if day not in excluded and day >= since:
            days_28 += 1
    last = state.last_activity_ms
    quiet_rhythm: Rhythm | None = None
    missed = 0.0
    if last is not None:
        last_day = last // DAY_MS
        # The days before the last activity that the state still holds: during a long silence the
        # oldest leave the window, and a missing day is not an inactive one.
        kept = today - policy.window_days + 1
        quiet_rhythm = rhythm(u, max(last_day - policy.baseline_days + 1, kept), last_day, excluded, since)
        missed = missed_active_days(quiet_rhythm, last_day, now_ms, excluded)
    n_recent, n_earlier = _distinct(recent, USER_BITS), _distinct(earlier, USER_BITS)
    both = _distinct(recent | earlier, USER_BITS)
    return Signals(
        today=today,
        onboarding=is_onboarding(state, now_ms, policy),
        excluded=excluded,
        base=base if base_ok else None,
        week=week,
        drop_base=drop_base if drop_ok else None,
        fortnight=fortnight,
        fortnight_last_week=last_week,
        quiet_rhythm=quiet_rhythm,
        units=u,
        missed=missed,
        users_28=_distinct(users_28, USER_BITS),
        users_recent=n_recent,
        users_earlier=n_earlier,
        users_retained=max(0.0, min(n_earlier, n_recent, n_recent + n_earlier - both)),
        user_days_28=user_days_28,
        days_28=days_28,
        features_recent=_distinct(f_recent, FEATURE_BITS),
        features_earlier=_distinct(f_earlier, FEATURE_BITS),
        features_28=_distinct(f_recent | f_earlier, FEATURE_BITS),
        current_weekly=max(0.0, cur_w),
        baseline_weekly=max(0.0, base_w) * 7 / 28,
        active_users_7d=_distinct(users_7d, USER_BITS),
    )


def band_for(value: int, policy: Policy) -> Band:
    """Map a score to ``good``, ``average`` or ``poor``."""
    if value >= policy.good_min:
        return Band.GOOD
    return Band.AVERAGE if value >= policy.average_min else Band.POOR


def _clamp(v: float) -> float:
    return min(100.0, max(0.0, v))


def _days(ms: float) -> str:
    d = ms / DAY_MS
    return f"{d:.0f} days" if d >= 2 else f"{d * 24:.0f} hours"


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


# How much of a milestone's share an overdue one keeps: behind, then stuck.
_BEHIND_CREDIT, _STUCK_CREDIT = 0.5, 0.1


def _onboarding_part(ob: Onboarding, p: Policy, explain: bool) -> tuple[float, str]:
    credit = float(ob.done)
    late = None
    for m in ob.missing:
        if m.late_ms < 0:
            credit += 1.0
            continue
        credit += _STUCK_CREDIT if m.late_ms >= p.onboarding_stuck_ms else _BEHIND_CREDIT
        if late is None or m.late_ms > late.late_ms:
            late = m
    value = _clamp(100 * credit / ob.total)
    if not explain:
        return value, ""
    why = f"{ob.done} of {ob.total} onboarding milestones"
    if late is not None:
        days = late.overdue_days
        why += f"; {late.name!r} is {days} day{'s' if days != 1 else ''} overdue ({late.progress})"
    elif ob.next is not None:
        why += f"; next {ob.next[0]!r}"
    return value, why


def _parts(
    state: AccountState, now_ms: int, sig: Signals, p: Policy, explain: bool, ob: Onboarding
) -> list[tuple[str, float, float, str]]:
    w = p.weights
    parts: list[tuple[str, float, float, str]] = []
    if state.last_activity_ms is None:
        parts.append(("recency", w.recency, 0.0, "no activity recorded" if explain else ""))
    else:
        value = _clamp(100 * math.exp(-max(0.0, sig.missed - p.recency_grace) / p.recency_missed_scale))
        why = ""
        if explain:
            ago = _days(max(0, now_ms - state.last_activity_ms))
            why = f"last active {ago} ago: {sig.missed:.1f} of its usual active days missed"
        parts.append(("recency", w.recency, value, why))
    if sig.week is not None:
        ratio = (sig.week.observed + 1) / (sig.week.expected + 1)
        value = _clamp(100 * ratio)
        why = ""
        if explain:
            why = (
                f"{sig.week.observed:.0f} user-days in the last 7 days vs {sig.week.expected:.1f} usually "
                f"({100 * sig.week.ratio:.0f}%)"
            )
        parts.append(("activity", w.activity, value, why))
    if sig.users_earlier >= 1:
        # With one more user retained and one more before (Laplace): one user of one gone is a
        # warning, not the same as ten of ten gone.
        kept = (sig.users_retained + 1) / (sig.users_earlier + 1)
        why = ""
        if explain:
            why = (
                f"{sig.users_retained:.0f} of the {sig.users_earlier:.0f} users active 15-28 days ago "
                "were active in the last 14 days"
            )
        parts.append(("users", w.users, _clamp(100 * kept), why))
    if sig.days_28 > 0:
        stickiness = sig.user_days_28 / sig.days_28 / sig.users_28 if sig.users_28 else 0.0
        value = _clamp(100 * stickiness / p.stickiness_target)
        why = ""
        if explain:
            why = (
                f"its {sig.users_28:.0f} users were active {stickiness * sig.days_28:.1f} of the last "
                f"{sig.days_28} days on average (stickiness {stickiness:.2f}, target {p.stickiness_target})"
            )
        parts.append(("stickiness", w.stickiness, value, why))
    if state.seats:
        util = sig.users_28 / state.seats
        why = (
            f"{sig.users_28:.0f} users active in 28 days of {state.seats} seats ({100 * util:.0f}%)"
            if explain
            else ""
        )
        parts.append(("utilization", w.utilization, _clamp(100 * util / p.utilization_target), why))
    if sig.features_earlier >= 1:
        value = _clamp(100 * (sig.features_recent + 1) / (sig.features_earlier + 1))
        why = ""
        if explain:
            why = (
                f"{sig.features_recent:.0f} features used in the last 14 days, "
                f"{sig.features_earlier:.0f} in the 14 before"
            )
        parts.append(("breadth", w.breadth, value, why))
    parts.append(("sentiment", w.sentiment, *_sentiment(state, explain)))
    if ob.active and ob.total:
        parts.append(("onboarding", w.onboarding, *_onboarding_part(ob, p, explain)))
    return parts


def score(
    state: AccountState,
    now_ms: int,
    policy: Policy,
    ctx: Context = EMPTY_CONTEXT,
    explain: bool = True,
    sig: Signals | None = None,
) -> Health:
    """Compute the explainable health of an account at ``now_ms``.

    Args:
        state: Account state (not modified).
        now_ms: Evaluation time in epoch milliseconds.
        policy: Effective policy for the account.
        ctx: The partition's excluded time.
        explain: Write the explanations; without them the numbers are the same and scoring is
            cheaper (used to decide whether to publish at all).
        sig: The account's signals at ``now_ms``, when the caller has them already.

    Returns:
        The health snapshot; ``score`` is always within 0..100.
    """
    sig = sig if sig is not None else signals(state, now_ms, policy, ctx)
    ob = onboarding_of(state, now_ms, policy)
    parts = _parts(state, now_ms, sig, policy, explain, ob)
    used = [(name, w, v, why) for name, w, v, why in parts if w > 0]
    total_w = sum(w for _, w, _, _ in used) or 1.0
    # The weighted geometric mean: health is held back by its weakest side, so a steady account using
    # a twentieth of its seats, or one with no activity this week, cannot be healthy on its other
    # components. Each component's contribution is its share of 100 less the points it costs.
    logs = [w / total_w * math.log(max(v, _FLOOR) / 100) for _, w, v, _ in used]
    exact = 100 * math.exp(sum(logs))
    lost = exact - 100
    total_log = sum(logs)
    comps = tuple(
        Component(
            name,
            round(v, 1),
            round(w / total_w, 4),
            round(100 * w / total_w + (lost * lg / total_log if total_log else 0.0), 1),
            why,
        )
        for (name, w, v, why), lg in zip(used, logs, strict=True)
    )
    value = max(0, min(100, round(exact)))
    return Health(
        account_id=state.account_id,
        at_ms=now_ms,
        score=value,
        band=band_for(value, policy),
        components=comps,
        current_weekly=round(sig.current_weekly, 2),
        baseline_weekly=round(sig.baseline_weekly, 2),
        active_users_7d=round(sig.active_users_7d),
        features_28d=round(sig.features_28),
        onboarding=ob,
        user_days_week=sig.week.observed if sig.week is not None else 0.0,
        user_days_usual=sig.week.expected if sig.week is not None else None,
        active_users_28d=round(sig.users_28),
        missed_active_days=round(sig.missed, 2),
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
    if any(c.name not in COMPONENT_NAMES for c in new.components):
        # Compared on the components a state keeps (not the onboarding one, which lasts weeks only).
        new = replace(new, components=tuple(c for c in new.components if c.name in COMPONENT_NAMES))
    return _changed(state.published_score, state.published_band, state.published_components, new, policy)
