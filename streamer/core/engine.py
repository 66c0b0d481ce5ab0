"""Public facade of the core: apply events, drive the clock, raise alerts.

Time only moves when the caller says so: :func:`record_event` with an event's timestamp,
:func:`advance` with a watermark. Evaluations run at *due points* (UTC midnights, when the
windows slide, and quiet deadlines) and ``record_event`` first catches up on every due
point at or before the event's time. Together this makes alerts (ids and detection times)
identical whether events arrive in one batch or one by one with ``advance`` calls in
between, as long as the clock is never advanced past an event that is still to come.

Every function takes the partition's :class:`~streamer.core.partition.Context`: time it
excludes (holidays, data gaps) counts neither as silence nor in baselines, and a quiet
deadline that falls in a gap still open is held until the gap closes.

Alert rules, each once per episode:

* ``account_quiet``: no activity for ``quiet_after_days`` (7) *and* for as long as the account
  would normally have had ``quiet_missed_active_days`` (5) active days (:mod:`streamer.core.rhythm`),
  at most ``quiet_max_days`` (28); excluded time is not silence. Closes on activity dated at or after
  its start (a late event dated before it means the silence began later, not that it ended).
* ``usage_drop``: the user-days of the last ``drop_window_days`` (14) are at most ``drop_ratio``
  (0.4) of what the same weekdays of the ``drop_baseline_days`` (21) before them expected (or the
  account's weekly history, if higher), that few is unlikely under the account's own variability
  (``drop_alpha``, 0.01), the baseline expected at least ``drop_min_weekly_user_days`` (3) a week,
  and it held for ``drop_persist_days`` (0) more days. Closes when a week is back to
  ``drop_recover_ratio`` (0.75) of the baseline.
* ``key_user_lost``: the account's most active user (at least ``key_user_share``, 30%, of its
  active user-days, and at least ``key_user_min_active_days``) has been away for two weeks or
  for ``key_user_missed_active_days`` of their own active days, while others stay active.
  Closes when that user is back (active at or after the episode's start).
* ``health_degraded``: the band falls to poor and stays there ``poor_persist_days`` (1), or a new
  account is still poor ``onboarding.check_days`` (21) after its start ("not taking off"); closes
  once the score stays at ``average_min + poor_recover_margin`` (50) or more for
  ``poor_recover_days`` (14).

Onboarding milestones (:mod:`streamer.core.milestones`), each alert once per milestone, with ids from the
account, the kind and the milestone's name:

* ``milestone_missed``: a milestone is not reached by its deadline; detected at the deadline (a due
  point, so it fires without new events).
* ``milestone_reached``: the event that reached it (``info``), and ``onboarding_complete`` with the
  last one (``info``).

A cancelled account raises nothing more.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Mapping
from enum import StrEnum
from typing import Any

from streamer.core.alerts import (
    ACCOUNT_QUIET,
    ACCOUNT_RECOVERED,
    HEALTH_DEGRADED,
    KEY_USER_LOST,
    MILESTONE_MISSED,
    MILESTONE_REACHED,
    ONBOARDING_COMPLETE,
    USAGE_DROP,
    Alert,
    AlertKind,
    Severity,
    alert_id,
    human_duration,
)
from streamer.core.changes import remember, what_changed
from streamer.core.events import EventKind, UsageEvent, parse_renewal_at
from streamer.core.milestones import applies, progress_text, record, start_ms
from streamer.core.partition import EMPTY_CONTEXT, Context, merge_spans
from streamer.core.policy import DAY_MS, Milestone, Policy
from streamer.core.rhythm import DropStat, Rhythm, day_units, drop_stat, rhythm, time_of_missed, units
from streamer.core.scoring import Band, Health, Signals, changed_since_published, score, signals
from streamer.core.state import (
    COMPONENT_NAMES,
    FEATURE_BITS,
    HISTORY_WEEKS,
    NATIVE_CODEC,
    TOP_USERS,
    USER_BITS,
    AccountState,
    DayBucket,
    MilestoneProgress,
    TopUser,
    bit_for,
    event_id_hash,
    in_ring,
    milestone_key,
)

__all__ = [
    "Outcome",
    "advance",
    "evaluate",
    "mark_published",
    "next_due_ms",
    "record_event",
    "snapshot_behind",
]

_MAX_STEPS = 100_000
_EMPTY = DayBucket()
_LOWERING_KINDS = frozenset(
    {EventKind.NPS_RESPONSE, EventKind.SUPPORT_TICKET_OPENED, EventKind.SUBSCRIPTION_CANCELLED}
)
_HALF_LIFE_DAYS = 28.0
# A user active every day forever weighs 1 / (1 - 2^(-1/28)): the weight of "always there".
_FULL_WEIGHT = 1 / (1 - 2 ** (-1 / _HALF_LIFE_DAYS))
_KEY_USER_MIN_AWAY_DAYS = 14
_ANONYMOUS = bit_for("", USER_BITS)


class Outcome(StrEnum):
    """What :func:`record_event` did with an event."""

    COUNTED = "counted"
    DUPLICATE = "duplicate"
    FACT = "fact"
    INACTIVE = "inactive"
    LATE = "late"


# max(state.days), asked several times for every event: compiled where the extension is installed (it
# reads the keys as 64-bit ints, and leaves any other dict to max).
_newest_day: Callable[[dict[int, DayBucket]], int]
try:
    from churnwatch_native import newest_day as _newest_day
except ImportError:  # pragma: no cover - exercised where the extension is not built
    _newest_day = max


def _horizon_day(state: AccountState, policy: Policy) -> int:
    """First UTC day still inside the window of the account's newest day (or its clock)."""
    newest = state.clock_ms // DAY_MS
    if state.days:
        newest = max(newest, _newest_day(state.days))
    return newest - policy.window_days + 1


def _prune(state: AccountState, policy: Policy, ctx: Context) -> None:
    """Drop the days that left the window, a whole week at a time, keeping each week's total in history."""
    last_gone = (_horizon_day(state, policy) + 3) // 7 - 1  # weeks run Monday..Sunday: day 4 was a Monday
    through = state.history_through
    if through is not None and last_gone <= through:
        return
    first = max(through + 1 if through is not None else -(2**31), last_gone - HISTORY_WEEKS + 1)
    old = [d for d in state.days if (d + 3) // 7 <= last_gone]
    if old:
        state.quiet_cache = None
    if state.days or through is not None:
        excluded = _with_holidays(policy.holiday_days, ctx).excluded_days
        since = state.first_seen_ms // DAY_MS
        for week in range(first, last_gone + 1):
            days = [d for d in range(7 * week - 3, 7 * week + 4) if d >= since and d not in excluded]
            if days:
                state.history.append((week, round(sum(units(state.days.get(d)) for d in days), 3), len(days)))
        del state.history[:-HISTORY_WEEKS]
        state.history_through = last_gone
    for day in old:
        del state.days[day]


@functools.lru_cache(maxsize=256)
def _with_holidays(holidays: frozenset[int], ctx: Context) -> Context:
    """The partition's context plus an account's holidays, as excluded spans."""
    if not holidays:
        return ctx
    spans = merge_spans([*ctx.excluded, *((d * DAY_MS, (d + 1) * DAY_MS) for d in holidays)])
    return Context(spans, ctx.gap_since_ms, ctx.excluded_days | holidays)


def _seen_before(state: AccountState, policy: Policy, last_day: int) -> int:
    return sum(b.events for d, b in state.days.items() if last_day - policy.window_days < d <= last_day)


def _quiet_deadline(state: AccountState, policy: Policy, ctx: Context) -> int | None:
    """When a quiet episode would open if nothing else happens; None if it cannot (or is held by a gap).

    Asked after every event, so the answer is kept with the state until something it depends on
    changes: the buckets (record_event and pruning clear it), the episode, the context or the rules.
    That memo is not stored, so the answer must depend on nothing else (not on the time it is asked
    at): a restarted worker recomputes it and must find the deadline the undisturbed one kept.
    """
    last = state.last_activity_ms
    if state.quiet_since_ms is not None or last is None or state.subscription == "cancelled":
        return None
    last_day = last // DAY_MS
    c = state.quiet_cache
    if c is not None and c[1] is policy and c[2] == last_day and (c[0] is ctx or c[0] == ctx):
        rhythm_deadline: int | None = c[3]
    else:
        rhythm_deadline = _rhythm_deadline(state, policy, ctx, last_day)
        state.quiet_cache = (ctx, policy, last_day, rhythm_deadline)
    if rhythm_deadline == _NEVER:
        return None
    hctx = _with_holidays(policy.holiday_days, ctx)
    deadline = hctx.shift(last, policy.quiet_after_ms)
    if rhythm_deadline is not None:
        deadline = min(max(deadline, rhythm_deadline), hctx.shift(last, policy.quiet_max_ms))
    if ctx.gap_since_ms is not None and deadline >= ctx.gap_since_ms:
        return None  # held: silence during a data gap says nothing about the account
    return deadline


_NEVER = -1


def _rhythm_deadline(state: AccountState, policy: Policy, ctx: Context, last_day: int) -> int | None:
    """When the account will have missed ``quiet_missed_active_days`` of its usual active days after its
    last active day: None without a rhythm yet, _NEVER when it cannot go quiet at all.

    It depends only on which days were active and which are excluded, so it is kept with the state
    until a new day becomes active (record_event), buckets are pruned, or the context changes. (The
    signals' ``quiet_rhythm`` is not used: it leaves out the days before the window of the day it is
    computed on, so it changes as the silence goes on.)
    """
    if _seen_before(state, policy, last_day) < policy.quiet_min_baseline_events:
        return _NEVER
    ctx = _with_holidays(policy.holiday_days, ctx)
    # The answer depends only on which days of the baseline were active (the share of active days per
    # weekday), the days observed and excluded, and the rules: accounts of the same pattern, and an
    # account decoded again after it left the cache, share one computation.
    first = last_day - policy.baseline_days + 1
    since = state.first_seen_ms // DAY_MS
    active = 0
    for day, b in state.days.items():
        if b.events > 0 and first <= day <= last_day:
            active |= 1 << (day - first)
    key = (id(policy), last_day, max(first, since), active, ctx.excluded_days)
    hit = _RHYTHM_DEADLINES.get(key)
    if hit is not None and hit[0] is policy:
        return hit[1]
    r = rhythm(day_units(state.days), first, last_day, ctx.excluded_days, since)
    deadline = _deadline_of(r, policy, ctx, last_day)
    if len(_RHYTHM_DEADLINES) >= _RHYTHM_DEADLINES_MAX:
        _RHYTHM_DEADLINES.clear()
    # The policy is kept with its answer, so its id cannot be another policy's while the entry lives.
    _RHYTHM_DEADLINES[key] = (policy, deadline)
    return deadline


_RHYTHM_DEADLINES: dict[tuple[int, int, int, int, frozenset[int]], tuple[Policy, int | None]] = {}
_RHYTHM_DEADLINES_MAX = 20_000  # a few MB at most; emptied when full


def _deadline_of(r: Rhythm, policy: Policy, ctx: Context, last_day: int) -> int | None:
    if r.days < policy.min_rhythm_days or policy.quiet_missed_active_days <= 0:
        return None
    limit = (last_day + 1) * DAY_MS + 2 * policy.quiet_max_ms + 400 * DAY_MS
    return time_of_missed(r, last_day, policy.quiet_missed_active_days, ctx.excluded_days, limit)


def _alert(
    state: AccountState,
    kind: AlertKind,
    at_ms: int,
    started_ms: int,
    severity: Severity,
    health: Health,
    policy: Policy,
    reason: str,
    closes: str | None = None,
    milestone_id: str | None = None,
    **extra: Any,
) -> Alert:
    last = state.last_activity_ms
    if closes is not None:
        extra["closed_episode"] = closes
        # A recovery is learnt from activity, so it is never dated before activity already seen (a key
        # user back in a late event, an evaluation behind the newest event): it is dated when known, by
        # the account's newest event time, never by how far the worker's clock had got.
        if last is not None:
            at_ms = max(at_ms, last)
    evidence: dict[str, Any] = {
        "last_activity_ms": last,
        "quiet_for": human_duration(at_ms - last) if last is not None else None,
        "quiet_for_ms": at_ms - last if last is not None else None,
        "missed_active_days": health.missed_active_days,
        "user_days_week": health.user_days_week,
        "user_days_usual": health.user_days_usual,
        "current_weekly": health.current_weekly,
        "baseline_weekly": health.baseline_weekly,
        "episode_started_ms": started_ms,
        "thresholds": {
            "quiet_after_days": round(policy.quiet_after_ms / DAY_MS, 3),
            "quiet_missed_active_days": policy.quiet_missed_active_days,
            "drop_ratio": policy.drop_ratio,
            "drop_alpha": policy.drop_alpha,
            "drop_recover_ratio": policy.drop_recover_ratio,
            "good_min": policy.good_min,
            "average_min": policy.average_min,
        },
        **extra,
    }
    return Alert(
        alert_id=alert_id(state.account_id, kind, started_ms, closes, milestone_id),
        kind=kind,
        account_id=state.account_id,
        detected_at_ms=at_ms,
        severity=severity,
        health=health,
        evidence=evidence,
        account={
            "name": state.name,
            "segment": state.segment,
            "plan": state.plan,
            "owner": state.owner,
            "seats": state.seats,
        },
        reason=reason,
        what_changed=what_changed(state.scored, health),
    )


def _frozen(state: AccountState) -> Rhythm:
    return Rhythm(0, 0, (0.0,) * 7, state.drop_base, state.drop_dispersion)


def _dropped(window: DropStat | None, last_week: DropStat | None, policy: Policy) -> bool:
    """The drop test: the window is down to ``drop_ratio``, improbably so, and its last week still low."""
    return (
        window is not None
        and last_week is not None
        and window.expected >= policy.drop_min_weekly_user_days * policy.drop_window_days / 7
        and window.ratio <= policy.drop_ratio
        and window.p_value < policy.drop_alpha
        and last_week.ratio < policy.drop_recover_ratio
    )


def _drop(state: AccountState, sig: Signals, policy: Policy) -> tuple[str, DropStat] | None:
    """Advance the drop episode; ``("open" | "recover", stat)`` when it changes.

    The window (the last 14 complete days) is tested against the baseline before it; once an episode
    is open, each last week is compared with that baseline, frozen, until it is back to
    ``drop_recover_ratio`` of it.
    """
    today = sig.today
    if state.drop_since_ms is not None:
        stat = drop_stat(sig.units, _frozen(state), today - 7, today - 1, sig.excluded)
        if stat.ratio >= policy.drop_recover_ratio:
            return "recover", stat
        return None
    if state.drop_pending_day is not None:
        frozen = _frozen(state)
        window = drop_stat(sig.units, frozen, today - policy.drop_window_days, today - 1, sig.excluded)
        last_week = drop_stat(sig.units, frozen, today - 7, today - 1, sig.excluded)
        if not _dropped(window, last_week, policy):
            state.drop_pending_day, state.drop_base = None, ()
            return None
        if today - state.drop_pending_day >= policy.drop_persist_days:
            return "open", window
        return None
    if sig.drop_base is None or not _dropped(sig.fortnight, sig.fortnight_last_week, policy):
        return None
    assert sig.fortnight is not None  # noqa: S101 - _dropped checked it
    state.drop_pending_day = today
    state.drop_base, state.drop_dispersion = sig.drop_base.mean, sig.drop_base.dispersion
    return ("open", sig.fortnight) if policy.drop_persist_days == 0 else None


def _key_user(state: AccountState, t: int, policy: Policy, ctx: Context) -> tuple[TopUser, float, int] | None:
    """The key user found away at ``t``: ``(user, share, since_ms)``, or None."""
    if state.key_user is not None or len(state.top_users) < 2 or state.last_activity_ms is None:
        return None
    top = max(state.top_users, key=lambda u: (u.weight, u.user))
    others = sum(
        u.weight * 0.5 ** ((top.last_day - u.last_day) / _HALF_LIFE_DAYS)
        for u in state.top_users
        if u is not top
    )
    share = top.weight / (top.weight + others) if top.weight + others > 0 else 0.0
    if share < policy.key_user_share or top.weight < policy.key_user_min_active_days:
        return None
    rate = min(0.95, top.weight / _FULL_WEIGHT)
    away_days = max(_KEY_USER_MIN_AWAY_DAYS, round(policy.key_user_missed_active_days / rate))
    ctx = _with_holidays(policy.holiday_days, ctx)
    since = ctx.shift((top.last_day + 1) * DAY_MS, away_days * DAY_MS)
    # Others must still be active: the account was active after the key user left, within a week.
    if (
        since > t
        or state.last_activity_ms // DAY_MS <= top.last_day
        or t - state.last_activity_ms > 7 * DAY_MS
    ):
        return None
    return top, share, since


def evaluate(
    state: AccountState, now_ms: int, policy: Policy, ctx: Context = EMPTY_CONTEXT
) -> tuple[Health, list[Alert]]:
    """Score the account and open any alert episodes that are due.

    Args:
        state: Account state; ``clock_ms`` advances to ``max(clock_ms, now_ms)``.
        now_ms: Evaluation time.
        policy: Effective policy.
        ctx: The partition's excluded time.

    Returns:
        The health at the (advanced) clock and the alerts opened by this evaluation. Each episode
        alerts once: evaluating again never repeats an alert. The health carries explanations only
        when an alert was opened (the numbers are the same either way).
    """
    t = max(state.clock_ms, now_ms)
    before = state.clock_ms
    state.clock_ms = t
    _prune(state, policy, ctx)
    sig = signals(state, t, policy, ctx)
    quick = score(state, t, policy, ctx, explain=False, sig=sig)
    remember(state, quick)
    if state.subscription == "cancelled":
        # A cancelled account is not warned about: its episodes end without a word.
        state.quiet_since_ms = state.drop_since_ms = state.key_user = state.key_since_ms = None
        state.drop_pending_day, state.drop_base, state.poor_open, state.poor_pending_ms = (
            None,
            (),
            False,
            None,
        )
        state.last_band = quick.band
        return quick, []
    opened: list[tuple[AlertKind, int, int, Severity, str, dict[str, Any]]] = []
    closed: list[tuple[AlertKind, int, str]] = []
    deadline = _quiet_deadline(state, policy, ctx)
    if deadline is not None and t >= deadline:
        # Detected at the deadline rather than now so that replay and live agree.
        state.quiet_since_ms = deadline
        severity = Severity.MEDIUM if sig.onboarding else Severity.HIGH
        opened.append((ACCOUNT_QUIET, deadline, deadline, severity, _quiet_reason(state, deadline, sig), {}))
    change = _drop(state, sig, policy)
    if change is not None:
        verdict, stat = change
        detail = {
            "drop": {"observed": stat.observed, "expected": stat.expected, "p_value": round(stat.p_value, 6)}
        }
        if verdict == "open":
            started = (state.drop_pending_day if state.drop_pending_day is not None else sig.today) * DAY_MS
            state.drop_since_ms = started
            severity = Severity.HIGH if stat.ratio <= policy.drop_ratio / 2 else Severity.MEDIUM
            opened.append((USAGE_DROP, t, started, severity, _drop_reason(stat, policy), detail))
        else:
            started = state.drop_since_ms or t
            state.drop_since_ms, state.drop_pending_day, state.drop_base = None, None, ()
            closed.append((USAGE_DROP, started, f"Active users are back to {100 * stat.ratio:.0f}% of usual"))
    key = _key_user(state, t, policy, ctx)
    if key is not None:
        user, share, since = key
        state.key_user, state.key_since_ms = user.user, since
        away = human_duration(t - (user.last_day + 1) * DAY_MS)
        # Away two weeks at least, so not among the users of the last 14 days: they are the others.
        others = round(sig.users_recent)
        reason = (
            f"Its most active user ({100 * share:.0f}% of its active days) has not been seen for {away} "
            f"while {others} other user{'s' if others != 1 else ''} stay{'s' if others == 1 else ''} active"
        )
        opened.append(
            (
                KEY_USER_LOST,
                since,
                since,
                Severity.MEDIUM,
                reason,
                {"key_user": {"share": round(share, 3), "last_active_day": user.last_day}},
            )
        )
    for m, due in _milestones_due(state, policy):
        if due > t:
            continue
        p = state.milestones.get(milestone_key(m.name), _NO_PROGRESS)
        state.milestones[milestone_key(m.name)] = p._replace(missed=True)
        days = round(m.deadline_ms / DAY_MS, 3)
        what = progress_text(m, p)
        reason = f"Onboarding milestone {m.name!r} missed: {what} within {days:g} days of the start"
        missed: dict[str, Any] = {
            "milestone": {
                "name": m.name,
                "event": m.event,
                "due_ms": due,
                "deadline_days": days,
                "count": p.events,
                "count_needed": m.count,
                "users": len(p.users),
                "users_needed": m.users,
                "missing": what,
            }
        }
        opened.append(
            (MILESTONE_MISSED, due, due, Severity.MEDIUM, reason, {"milestone_name": m.name, **missed})
        )
    start = (
        state.subscription_started_ms if state.subscription_started_ms is not None else state.first_seen_ms
    )
    check = start + policy.onboarding_check_days * DAY_MS
    # A new account poor from the start never "falls" to poor: it is warned about once, when it has had
    # onboarding.check_days to take off.
    not_taking_off = before < check <= t < check + DAY_MS  # just crossed, not a jump over years
    # A fall compares like with like only once the account has a full window behind it.
    seen_long = t - state.first_seen_ms >= policy.window_days * DAY_MS
    if state.poor_open:
        # While open, the pending time is when the score got back above the margin: the episode
        # closes once it stays there for poor_recover_days, so an account hovering at the edge of the
        # band is one episode, not one a month.
        if quick.score < policy.average_min + policy.poor_recover_margin:
            state.poor_pending_ms = None
        elif state.poor_pending_ms is None:
            state.poor_pending_ms = t
        elif t - state.poor_pending_ms >= policy.poor_recover_ms:
            state.poor_open, state.poor_pending_ms = False, None
    elif quick.band != Band.POOR:
        state.poor_pending_ms = None
    else:
        pending = state.poor_pending_ms
        if pending is None and ((state.last_band not in (None, Band.POOR) and seen_long) or not_taking_off):
            state.poor_pending_ms = pending = t
        # Poor for a day, not for an hour: a holiday or one quiet day does not make an episode. And an
        # account already flagged as quiet, dropping or without its key user is not flagged again for
        # the poor health that follows: one story, one alert (it is, if the other episode closes first).
        flagged = (
            state.quiet_since_ms is not None or state.drop_since_ms is not None or state.key_user is not None
        )
        if pending is not None and t - pending >= policy.poor_persist_ms and not flagged:
            young = pending - start < policy.onboarding_check_days * DAY_MS + DAY_MS
            state.poor_open, state.poor_pending_ms = True, None
            opened.append((HEALTH_DEGRADED, t, pending, Severity.MEDIUM, "young" if young else "", {}))
    state.last_band = quick.band
    if not opened and not closed:
        return quick, []
    health = score(state, t, policy, ctx, explain=True, sig=sig)
    alerts = []
    for kind, at, started, severity, reason, extra in opened:
        milestone_id = extra.pop("milestone_name", None) if kind == MILESTONE_MISSED else None
        if kind == HEALTH_DEGRADED:
            reason = _degraded_reason(health, young=reason == "young", days=policy.onboarding_check_days)
        near = _near_renewal(state, at, severity, policy)
        if near is not None:
            severity, renewal = near
            reason = f"{reason}; {renewal['why'].split(',')[0]}"
            extra = {**extra, "renewal": renewal}
        alerts.append(
            _alert(
                state, kind, at, started, severity, health, policy, reason, milestone_id=milestone_id, **extra
            )
        )
    for kind, started, reason in closed:
        alerts.append(
            _alert(state, ACCOUNT_RECOVERED, t, started, Severity.INFO, health, policy, reason, closes=kind)
        )
    return health, alerts


_RAISED = {Severity.MEDIUM: Severity.HIGH}


def _near_renewal(
    state: AccountState, at_ms: int, severity: Severity, policy: Policy
) -> tuple[Severity, dict[str, Any]] | None:
    """For an alert detected at ``at_ms`` within ``renewal.raise_within_days`` before the account's
    renewal: its severity one step higher (``medium`` to ``high``; ``high`` stays) and the evidence
    saying why. None otherwise.

    It is judged at the detection time, not by a clock: a replay raises the same alerts alike.
    """
    renewal, within = state.renewal_ms, policy.renewal_raise_within_ms
    if within <= 0 or renewal is None or not 0 <= renewal - at_ms <= within:
        return None
    days = (renewal - at_ms) // DAY_MS  # whole days left
    raised = _RAISED.get(severity, severity)
    why = f"renewal in {days} day{'s' if days != 1 else ''}"
    if raised is not severity:
        why += f", within {human_duration(within)}: {severity} raised to {raised}"
    return raised, {"renewal_ms": renewal, "days": days, "raised_from": severity, "why": why}


def _quiet_reason(state: AccountState, deadline: int, sig: Signals) -> str:
    last = state.last_activity_ms or deadline
    usual = ""
    if sig.quiet_rhythm is not None and sig.quiet_rhythm.days >= 14:
        per_week = sum(sig.quiet_rhythm.share)
        users = sig.users_earlier if sig.users_earlier >= 1 else sig.users_28
        who = f"{users:.0f} users were" if users >= 2 else "it was"
        usual = f"; {who} active on about {per_week:.1f} days a week before"
    return f"No activity for {human_duration(deadline - last)}{usual}"


def _drop_reason(stat: DropStat, policy: Policy) -> str:
    return (
        f"Active user-days down to {stat.observed:.0f} in the last {policy.drop_window_days} days from "
        f"{stat.expected:.1f} usually ({100 * (1 - stat.ratio):.0f}% less)"
    )


def _degraded_reason(health: Health, young: bool, days: int) -> str:
    weakest = min(health.components, key=lambda c: c.value - 100 * c.weight, default=None)
    why = f": {weakest.name} {weakest.value:.0f} ({weakest.explanation})" if weakest is not None else ""
    if young:
        return f"Not taking off: health {health.score} ({health.band}) {days} days after the start{why}"
    return f"Health fell to {health.score} ({health.band}){why}"


def next_due_ms(state: AccountState, policy: Policy, ctx: Context = EMPTY_CONTEXT) -> int | None:
    """Return when :func:`evaluate` must next run if no events arrive.

    Args:
        state: Account state.
        policy: Effective policy.
        ctx: The partition's excluded time.

    Returns:
        The earliest of the pending quiet deadline and milestone deadlines (the clock itself if
        already overdue) and the next UTC midnight after the clock while any day bucket is still inside the
        window; None when nothing can change without new events.
    """
    due: int | None = None
    deadline = _quiet_deadline(state, policy, ctx)
    if deadline is not None:
        due = max(deadline, state.clock_ms)
    for _, m_due in _milestones_due(state, policy):
        m_due = max(m_due, state.clock_ms)
        due = m_due if due is None else min(due, m_due)
    clock_day = state.clock_ms // DAY_MS
    if state.days and _newest_day(state.days) > clock_day - policy.window_days:
        midnight = (clock_day + 1) * DAY_MS
        due = midnight if due is None else min(due, midnight)
    return due


_NO_PROGRESS = MilestoneProgress()


def _milestones_due(state: AccountState, policy: Policy) -> list[tuple[Milestone, int]]:
    """The milestones whose miss is still to be alerted, with their deadlines (none for a cancelled account
    or one not judged on milestones)."""
    if not policy.milestones or state.subscription == "cancelled" or not applies(state, policy):
        return []
    start = start_ms(state)
    out = []
    for m in policy.milestones:
        p = state.milestones.get(milestone_key(m.name), _NO_PROGRESS)
        if p.reached_ms is None and not p.missed:
            out.append((m, start + m.deadline_ms))
    return out


def _milestones_reached(state: AccountState, event: UsageEvent, policy: Policy, ctx: Context) -> list[Alert]:
    """Count the event towards the account's milestones; ``milestone_reached`` (and ``onboarding_complete``)
    for those it reached."""
    progress, reached = record(state.milestones, event, policy)
    if progress is not state.milestones:
        state.milestones = dict(progress)
    if not reached or state.subscription == "cancelled" or not applies(state, policy):
        return []
    t = event.occurred_at_ms
    health = score(state, max(t, state.clock_ms), policy, ctx)
    ob = health.onboarding
    alerts = []
    for m in reached:
        late = t - (start_ms(state) + m.deadline_ms)
        when = f"{human_duration(late)} after its deadline" if late > 0 else "on time"
        reason = f"Onboarding milestone {m.name!r} reached {when} ({ob.done} of {ob.total})"
        detail: dict[str, Any] = {"name": m.name, "event": m.event, "reached_ms": t, "late": late > 0}
        alerts.append(
            _alert(
                state,
                MILESTONE_REACHED,
                t,
                t,
                Severity.INFO,
                health,
                policy,
                reason,
                milestone_id=m.name,
                milestone=detail,
            )
        )
    if ob.status == "complete":
        first = min(at for _, at in ob.reached)
        took = human_duration(t - start_ms(state))
        reason = f"Onboarding complete: all {ob.total} milestones reached, the last {took} after the start"
        alerts.append(
            _alert(
                state, ONBOARDING_COMPLETE, t, first, Severity.INFO, health, policy, reason, milestone_id=""
            )
        )
    return alerts


def advance(state: AccountState, until_ms: int, policy: Policy, ctx: Context = EMPTY_CONTEXT) -> list[Alert]:
    """Run every due evaluation at or before ``until_ms``, in order.

    The clock stops at the last due point, not at ``until_ms``, so how often this is
    called never changes the outcome.

    Args:
        state: Account state.
        until_ms: Watermark up to which time is known to have passed.
        policy: Effective policy.
        ctx: The partition's excluded time.

    Returns:
        All alerts opened, in detection order.
    """
    alerts: list[Alert] = []
    for _ in range(_MAX_STEPS):
        due = next_due_ms(state, policy, ctx)
        if due is None or due > until_ms:
            return alerts
        alerts.extend(evaluate(state, due, policy, ctx)[1])
    raise RuntimeError(f"advance made no progress for account {state.account_id!r}")


def _apply_fact(state: AccountState, event: UsageEvent) -> None:
    t, props, kind = event.occurred_at_ms, event.properties, event.kind
    if kind is EventKind.ACCOUNT_UPDATED:
        for key in ("seats", "plan", "segment", "name", "owner", "contract"):
            value = props.get(key)
            if value is not None and state.facts_at_ms.get(key, t) <= t:
                setattr(state, key, value)
                state.facts_at_ms[key] = t
        if props:
            _apply_revenue(state, props, t)
    elif kind is EventKind.NPS_RESPONSE:
        if state.nps_at_ms is None or t >= state.nps_at_ms:
            state.nps_score, state.nps_at_ms = int(props["score"]), t
    elif kind is EventKind.SUPPORT_TICKET_OPENED:
        state.open_tickets += 1
    elif kind is EventKind.SUPPORT_TICKET_CLOSED:
        state.open_tickets -= 1
    elif kind is EventKind.SUBSCRIPTION_STARTED:
        state.subscription_started_ms = max(t, state.subscription_started_ms or t)
    elif kind is EventKind.SUBSCRIPTION_CANCELLED:
        state.subscription_cancelled_ms = max(t, state.subscription_cancelled_ms or t)


def _apply_revenue(state: AccountState, props: Mapping[str, Any], t: int) -> None:
    """ARR (or 12 x MRR when only MRR is told), currency and renewal, each kept from its newest event."""
    arr, mrr = props.get("arr"), props.get("mrr")
    if arr is None and mrr is not None:
        arr = 12 * mrr
    if arr is not None and state.facts_at_ms.get("arr", t) <= t:
        state.arr, state.facts_at_ms["arr"] = float(arr), t
    currency = props.get("currency")
    if currency is not None and state.facts_at_ms.get("currency", t) <= t:
        state.currency, state.facts_at_ms["currency"] = currency.upper(), t
    renewal = props.get("renewal_at")
    if renewal is not None and state.facts_at_ms.get("renewal_at", t) <= t:
        state.renewal_ms, state.facts_at_ms["renewal_at"] = parse_renewal_at(renewal), t


def python_touch_user(state: AccountState, user: int, day: int) -> None:
    """Count an active day of ``user`` among the top users (space-saving with decayed weights).

    The reference of the compiled one (``churnwatch_native``), which must give the same floats.
    """
    users = state.top_users
    for i, u in enumerate(users):
        if u.user == user:
            if day > u.last_day:
                users[i] = TopUser(
                    user, u.weight * 0.5 ** ((day - u.last_day) / _HALF_LIFE_DAYS) + 1.0, day, u.first_day
                )
            return
    if len(users) < TOP_USERS:
        users.append(TopUser(user, 1.0, day, day))
        return
    # The weakest (weights compared as of today) gives its place up; the newcomer inherits its weight,
    # so a user who keeps coming back climbs, and one seen once falls back out.
    i, weakest = min(
        enumerate(users),
        key=lambda p: (p[1].weight * 0.5 ** ((day - p[1].last_day) / _HALF_LIFE_DAYS), p[1].user),
    )
    inherited = weakest.weight * 0.5 ** ((day - weakest.last_day) / _HALF_LIFE_DAYS)
    users[i] = TopUser(user, inherited + 1.0, day, day)


# Compiled where the extension is installed (every event of a known user counts its day): it declines,
# changing nothing, what it cannot answer exactly in 64-bit numbers, and the reference answers.
_native_touch_user = NATIVE_CODEC.touch_user if NATIVE_CODEC is not None else None


def _touch_user(state: AccountState, user: int, day: int) -> None:
    if _native_touch_user is None or not _native_touch_user(state.top_users, user, day, TOP_USERS):
        python_touch_user(state, user, day)


def _recover(
    state: AccountState,
    event: UsageEvent,
    prev_last: int | None,
    policy: Policy,
    ctx: Context,
    user: int | None,
) -> list[Alert]:
    t = event.occurred_at_ms
    now = max(t, state.clock_ms)
    closing: list[tuple[str, int, str]] = []
    # Only activity dated at or after an episode's start shows a return. Activity dated before it (a late
    # event: a history replayed over one already read, as a second `make demo` does, or uploads a device
    # held back) says that the absence began later than measured, not that it ended: one absence, one
    # alert, not a recovery dated before its own episode and a new episode. The verdict compares two
    # event times (the event's and the episode's start, itself a deadline computed from events), never
    # the account's clock, which depends on when evaluations ran: a replay after a crash judges alike.
    # (And activity no newer than what the quiet episode was measured from says nothing new.)
    if (
        state.quiet_since_ms is not None
        and t >= state.quiet_since_ms
        and (prev_last is None or t > prev_last)
    ):
        started, state.quiet_since_ms = state.quiet_since_ms, None
        quiet = human_duration(t - prev_last) if prev_last is not None else "a while"
        closing.append((ACCOUNT_QUIET, started, f"Active again after {quiet} without activity"))
    if state.key_user is not None and user == state.key_user and t >= (state.key_since_ms or t):
        started = state.key_since_ms or t
        state.key_user = state.key_since_ms = None
        closing.append((KEY_USER_LOST, started, "Its most active user is back"))
    if not closing:
        return []
    health = score(state, now, policy, ctx)
    return [
        _alert(state, ACCOUNT_RECOVERED, t, started, Severity.INFO, health, policy, reason, closes=kind)
        for kind, started, reason in closing
    ]


def record_event(
    state: AccountState | None, event: UsageEvent, policy: Policy, ctx: Context = EMPTY_CONTEXT
) -> tuple[AccountState, Outcome, list[Alert]]:
    """Apply one event to an account's state.

    Args:
        state: Current state, or None for an account not seen before.
        event: A validated event for this account.
        policy: Effective policy.
        ctx: The partition's excluded time.

    Returns:
        The (possibly new, mutated in place) state, what happened to the event, and the
        alerts raised: catch-up evaluations due at or before the event, recoveries, and
        evaluations triggered by events that can lower the score.

    Raises:
        ValueError: If the event belongs to a different account.
    """
    t = event.occurred_at_ms
    if state is None:
        state = AccountState(account_id=event.account_id, first_seen_ms=t, clock_ms=t)
    elif event.account_id != state.account_id:
        raise ValueError(f"event for {event.account_id!r} applied to {state.account_id!r}")
    h = event_id_hash(event.event_id).to_bytes(8, "little")
    if in_ring(state.recent_ids, h):
        return state, Outcome.DUPLICATE, []
    day = t // DAY_MS
    if day < _horizon_day(state, policy):
        return state, Outcome.LATE, []
    alerts = advance(state, t, policy, ctx)
    ids = state.recent_ids + h
    keep = 8 * policy.max_tracked_ids
    state.recent_ids = ids[len(ids) - keep :] if len(ids) > keep else ids
    state.first_seen_ms = min(state.first_seen_ms, t)
    if event.kind is EventKind.ACTIVITY and event.active:
        first = state.first_activity_ms
        state.first_activity_ms = t if first is None else min(first, t)
    if policy.milestones:
        alerts.extend(_milestones_reached(state, event, policy, ctx))
    prev_last = state.last_activity_ms
    lowers = False
    user: int | None = None
    if event.kind is EventKind.ACTIVITY:
        if not event.active:
            return state, Outcome.INACTIVE, alerts
        weight = policy.event_weights.get(event.name, 1.0)
        user_bit = _ANONYMOUS if event.user_id is None else bit_for(event.user_id, USER_BITS)
        feature_bit = bit_for(event.name, FEATURE_BITS)
        b = state.days.get(day)
        if b is None or b.events == 0:
            # A newly active day changes the account's rhythm, so its quiet deadline.
            state.quiet_cache = None
        if b is None:
            state.days[day] = DayBucket(1, weight, user_bit, feature_bit)
        else:
            users, features = b.users | user_bit, b.features | feature_bit
            state.days[day] = DayBucket(b.events + 1, b.weight + weight, users, features)
        if event.user_id is not None:
            user = event_id_hash(event.user_id)
            _touch_user(state, user, day)
        state.last_activity_ms = t if prev_last is None else max(prev_last, t)
        outcome, lowers = Outcome.COUNTED, weight < 0
    else:
        _apply_fact(state, event)
        reserved_weight = policy.event_weights.get(event.name)
        if reserved_weight is not None:
            b = state.days.get(day, _EMPTY)
            state.days[day] = b._replace(weight=b.weight + reserved_weight)
            lowers = reserved_weight < 0
        outcome, lowers = Outcome.FACT, lowers or event.kind in _LOWERING_KINDS
    _prune(state, policy, ctx)
    if outcome is Outcome.COUNTED:
        alerts.extend(_recover(state, event, prev_last, policy, ctx, user))
    if lowers or day < state.clock_ms // DAY_MS - policy.current_days + 1:
        alerts.extend(evaluate(state, max(t, state.clock_ms), policy, ctx)[1])
    return state, outcome, alerts


def snapshot_behind(state: AccountState) -> bool:
    """Whether the last published snapshot shows another day of last activity, or other episodes.

    Such a snapshot is republished whatever its score did, since what it shows besides the score (the
    last activity, the daily activity behind the sparkline, the breakdown's explanations, the open
    episodes) then contradicts the account's alerts. With this, a published snapshot is never a UTC day
    behind the activity its worker has applied. It reads the state alone (event times, the episodes and
    what was published), never a clock, so replay and live, one batch or many, and a restart decide
    alike; and it asks for at most one more snapshot per account and day of activity, and one per
    episode opened or closed.

    Args:
        state: Account state holding what its last published snapshot showed.

    Returns:
        True when the published snapshot's last activity is on another UTC day than the state's (or
        none was shown), or its quiet, drop or poor episodes, or its milestones reached or missed, differ
        from the state's.
    """
    last, shown = state.last_activity_ms, state.published_activity_ms
    if last is not None and (shown is None or shown // DAY_MS != last // DAY_MS):
        return True
    return (
        state.published_quiet_since_ms != state.quiet_since_ms
        or state.published_drop_since_ms != state.drop_since_ms
        or state.published_poor != state.poor_open
        or state.published_milestones != _milestone_mark(state)
    )


def _milestone_mark(state: AccountState) -> int:
    """Milestones reached, and misses alerted times 256: what a snapshot shows of them, as one number."""
    reached = sum(1 for p in state.milestones.values() if p.reached_ms is not None)
    return min(255, reached) | min(255, sum(1 for p in state.milestones.values() if p.missed)) << 8


def mark_published(state: AccountState, health: Health, policy: Policy) -> bool:
    """Record that a snapshot of ``state``, scored ``health``, was published.

    What the snapshot shows besides its health (last activity, episodes) is recorded always, for
    :func:`snapshot_behind`; the health only when it differs materially from the one recorded before, so
    that small changes published one after another still add up to a material change.

    Args:
        state: Account state holding the last published snapshot.
        health: The health of the snapshot published.
        policy: Effective policy.

    Returns:
        True when ``health`` differs materially from the last publication (the state now remembers it).
    """
    state.published_activity_ms = state.last_activity_ms
    state.published_quiet_since_ms, state.published_drop_since_ms = state.quiet_since_ms, state.drop_since_ms
    state.published_poor = state.poor_open
    state.published_milestones = _milestone_mark(state)
    if not changed_since_published(state, health, policy):
        return False
    state.published_score, state.published_band = health.score, health.band
    # The onboarding component is not kept: it lasts the onboarding only, and milestones are followed
    # by published_milestones instead.
    state.published_components = {c.name: c.value for c in health.components if c.name in COMPONENT_NAMES}
    return True
