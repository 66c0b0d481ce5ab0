"""Scoring and alerting rules, loaded from TOML.

A :class:`PolicySet` holds the default :class:`Policy` plus ordered overrides that apply
to accounts by segment and/or plan, and holiday calendars. See ``deploy/rules.example.toml``
for every key and its default. Unknown keys are rejected so that a typo never silently falls
back to a default; keys of earlier versions are named with what replaced them.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from types import MappingProxyType
from typing import Any

__all__ = [
    "DAY_MS",
    "Band",
    "GapRules",
    "Holiday",
    "Milestone",
    "Policy",
    "PolicyError",
    "PolicySet",
    "ScoreWeights",
    "load_policy",
]

DAY_MS = 86_400_000


class Band(StrEnum):
    """Where a score falls (``bands.good_min``, ``bands.average_min``): the ``band`` of health documents."""

    GOOD = "good"
    AVERAGE = "average"
    POOR = "poor"


class PolicyError(ValueError):
    """The rules file is malformed; the message names the key path."""


@dataclass(frozen=True, slots=True)
class ScoreWeights:
    """Relative component weights; renormalised over the components available.

    The defaults come from backtests of generated B2B and consumer portfolios (README, "How the
    score works"): the trend of active users, their stickiness and the share of seats in use carry
    most of the signal; recency adds what the week's trend has not seen yet; sentiment stays small
    because most churners never answer a survey.
    """

    recency: float = 0.15
    activity: float = 0.25
    users: float = 0.10
    stickiness: float = 0.20
    utilization: float = 0.20
    breadth: float = 0.05
    sentiment: float = 0.05
    # Only while an account is onboarding and has milestones (streamer.core.milestones).
    onboarding: float = 0.15


MAX_MILESTONES = 16
MAX_MILESTONE_USERS = 16
MAX_MILESTONE_COUNT = 10_000
MAX_MILESTONE_NAME = 64


@dataclass(frozen=True, slots=True)
class Milestone:
    """An adoption goal a new account should reach by a deadline (``[[onboarding.milestones]]``).

    Reached once ``count`` matching events (``event`` and every one of ``properties``) were seen, from
    at least ``users`` distinct users, all dated at or after the time the ``after`` milestone was
    reached; due ``deadline_ms`` after the subscription start (or the first event).
    """

    name: str
    event: str
    deadline_ms: int
    count: int = 1
    users: int = 0
    properties: Mapping[str, str | int | float | bool] = field(default_factory=lambda: MappingProxyType({}))
    after: str | None = None

    def matches(self, name: str, properties: Mapping[str, Any]) -> bool:
        """Whether an event with this name and these properties counts towards the milestone."""
        if name != self.event:
            return False
        return all(_same(properties.get(k), v) for k, v in self.properties.items())


def _same(value: object, wanted: str | int | float | bool) -> bool:
    # True is not 1 here: a property match is on the JSON value, and JSON tells them apart.
    if isinstance(wanted, bool) or isinstance(value, bool):
        return value is wanted
    return value == wanted


@dataclass(frozen=True, slots=True)
class Policy:
    """Effective rules for one account."""

    window_days: int = 36
    current_days: int = 7
    baseline_days: int = 28
    onboarding_days: int = 90
    onboarding_check_days: int = 21
    # Adoption goals of new accounts (none unless the rules file names some), and how long past its
    # deadline a missing one makes the onboarding "stuck" rather than "behind".
    milestones: tuple[Milestone, ...] = ()
    onboarding_stuck_ms: int = 14 * DAY_MS
    weights: ScoreWeights = ScoreWeights()
    good_min: int = 70
    average_min: int = 40
    event_weights: Mapping[str, float] = field(default_factory=lambda: MappingProxyType({}))
    stickiness_target: float = 0.5
    utilization_target: float = 0.8
    recency_missed_scale: float = 2.5
    recency_grace: float = 1.0
    min_rhythm_days: int = 14
    material_score_delta: float = 2.0
    material_component_delta: float = 5.0
    quiet_after_ms: int = 7 * DAY_MS
    quiet_missed_active_days: float = 5.0
    quiet_max_ms: int = 28 * DAY_MS
    quiet_min_baseline_events: int = 1
    drop_ratio: float = 0.4
    drop_recover_ratio: float = 0.75
    drop_min_weekly_user_days: float = 3.0
    drop_alpha: float = 0.01
    drop_window_days: int = 14
    drop_baseline_days: int = 21
    drop_persist_days: int = 0
    key_user_share: float = 0.3
    key_user_min_active_days: int = 8
    key_user_missed_active_days: float = 5.0
    poor_recover_margin: int = 10
    poor_persist_ms: int = DAY_MS
    poor_recover_ms: int = 14 * DAY_MS
    max_tracked_ids: int = 64
    # An alert detected this close before the account's renewal is one severity higher (0: never).
    renewal_raise_within_ms: int = 0
    # UTC days (epoch days) this account's holidays cover: left out of baselines, tests and silences.
    holiday_days: frozenset[int] = frozenset()


_DAYS_TO_MS = frozenset(
    {
        "quiet_after_ms",
        "quiet_max_ms",
        "poor_persist_ms",
        "poor_recover_ms",
        "renewal_raise_within_ms",
        "onboarding_stuck_ms",
    }
)
# TOML section -> key -> (Policy field, expected type). Durations in days become ms.
_SCHEMA: dict[str, dict[str, tuple[str, type]]] = {
    "window": {
        "days": ("window_days", int),
        "current_days": ("current_days", int),
        "baseline_days": ("baseline_days", int),
    },
    "onboarding": {
        "days": ("onboarding_days", int),
        "check_days": ("onboarding_check_days", int),
        "stuck_days": ("onboarding_stuck_ms", float),
    },
    "score": {
        "stickiness_target": ("stickiness_target", float),
        "utilization_target": ("utilization_target", float),
        "recency_missed_scale": ("recency_missed_scale", float),
        "recency_grace": ("recency_grace", float),
        "min_rhythm_days": ("min_rhythm_days", int),
        "material_score_delta": ("material_score_delta", float),
        "material_component_delta": ("material_component_delta", float),
    },
    "bands": {
        "good_min": ("good_min", int),
        "average_min": ("average_min", int),
        "poor_recover_margin": ("poor_recover_margin", int),
        "poor_persist_days": ("poor_persist_ms", float),
        "poor_recover_days": ("poor_recover_ms", float),
    },
    "alerts": {
        "quiet_after_days": ("quiet_after_ms", float),
        "quiet_missed_active_days": ("quiet_missed_active_days", float),
        "quiet_max_days": ("quiet_max_ms", float),
        "quiet_min_baseline_events": ("quiet_min_baseline_events", int),
        "drop_ratio": ("drop_ratio", float),
        "drop_recover_ratio": ("drop_recover_ratio", float),
        "drop_min_weekly_user_days": ("drop_min_weekly_user_days", float),
        "drop_alpha": ("drop_alpha", float),
        "drop_window_days": ("drop_window_days", int),
        "drop_baseline_days": ("drop_baseline_days", int),
        "drop_persist_days": ("drop_persist_days", int),
        "key_user_share": ("key_user_share", float),
        "key_user_min_active_days": ("key_user_min_active_days", int),
        "key_user_missed_active_days": ("key_user_missed_active_days", float),
    },
    "dedup": {"max_tracked_ids": ("max_tracked_ids", int)},
    "renewal": {"raise_within_days": ("renewal_raise_within_ms", float)},
}
# Keys of earlier rules files, with what to do instead.
_YOUNG = "young accounts are judged by stickiness and utilization now"
_REPLACED = {
    "onboarding.expected_weekly_events_per_seat": _YOUNG,
    "onboarding.expected_weekly_events": _YOUNG,
    "score.expected_features": "breadth is measured against the account's own features now",
    "score.recency_zero_after_days": "use score.recency_missed_scale (recency counts missed active days)",
    "alerts.drop_min_baseline_weekly": "use alerts.drop_min_weekly_user_days (drops count user-days now)",
}
_WEIGHT_NAMES = tuple(f.name for f in dataclasses.fields(ScoreWeights))


@dataclass(frozen=True, slots=True)
class _Delta:
    fields: Mapping[str, Any]
    weights: Mapping[str, float]
    event_weights: Mapping[str, float]


def _number(value: object, kind: type, path: str) -> Any:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise PolicyError(f"{path}: must be a number")
    if kind is int:
        if not isinstance(value, int):
            raise PolicyError(f"{path}: must be an integer")
        return value
    return float(value)


def _table(value: object, path: str) -> Mapping[str, Any]:
    if not isinstance(value, dict):
        raise PolicyError(f"{path}: must be a table")
    return value


def _unknown(path: str, key: str) -> PolicyError:
    hint = _REPLACED.get(key)
    return PolicyError(f"{path}: {'no longer a key: ' + hint if hint else 'unknown key'}")


def _parse_delta(doc: Mapping[str, Any], prefix: str, skip: frozenset[str] = frozenset()) -> _Delta:
    fields: dict[str, Any] = {}
    weights: dict[str, float] = {}
    event_weights: dict[str, float] = {}
    for section, body in doc.items():
        path = f"{prefix}{section}"
        if section in skip:
            continue
        if section == "event_weights":
            for name, w in _table(body, path).items():
                event_weights[name] = _number(w, float, f"{path}.{name}")
            continue
        spec = _SCHEMA.get(section)
        if spec is None:
            raise _unknown(path, section)
        for key, value in _table(body, path).items():
            kpath = f"{path}.{key}"
            if section == "onboarding" and key == "milestones":
                fields["milestones"] = _milestones(value, kpath)
                continue
            if section == "score" and key == "weights":
                for wname, w in _table(value, kpath).items():
                    if wname not in _WEIGHT_NAMES:
                        raise PolicyError(f"{kpath}.{wname}: unknown key")
                    weights[wname] = _number(w, float, f"{kpath}.{wname}")
                continue
            if key not in spec:
                raise _unknown(kpath, f"{section}.{key}")
            target, kind = spec[key]
            num = _number(value, kind, kpath)
            if target in _DAYS_TO_MS:
                num = round(num * DAY_MS)
            fields[target] = num
    return _Delta(fields, weights, event_weights)


def _validate(p: Policy, where: str) -> Policy:
    def bad(msg: str) -> PolicyError:
        return PolicyError(f"{where}{msg}")

    if min(p.window_days, p.current_days, p.baseline_days, p.onboarding_days, p.onboarding_check_days) < 1:
        raise bad("window/onboarding day counts must be >= 1")
    if p.current_days + p.baseline_days + 1 > p.window_days:
        raise bad("window.current_days + window.baseline_days + 1 must not exceed window.days")
    if not 0 <= p.average_min <= p.good_min <= 100:
        raise bad("bands: need 0 <= average_min <= good_min <= 100")
    if min(p.poor_recover_margin, p.poor_persist_ms, p.poor_recover_ms) < 0:
        raise bad("bands.poor_recover_margin, poor_persist_days and poor_recover_days must be >= 0")
    ws = [getattr(p.weights, n) for n in _WEIGHT_NAMES]
    if min(ws) < 0 or sum(ws) - p.weights.utilization <= 0:
        raise bad("score.weights: must be >= 0 with a positive sum excluding utilization")
    if not 0 < p.drop_ratio <= p.drop_recover_ratio <= 1:
        raise bad("alerts: need 0 < drop_ratio <= drop_recover_ratio <= 1")
    if not 0 < p.drop_alpha < 1 or p.drop_persist_days < 0:
        raise bad("alerts: need 0 < drop_alpha < 1 and drop_persist_days >= 0")
    if (
        min(p.drop_window_days, p.drop_baseline_days) < 7
        or p.drop_window_days + p.drop_baseline_days + 1 > p.window_days
    ):
        raise bad("alerts: drop_window_days and drop_baseline_days must be >= 7 and fit in window.days")
    if p.quiet_after_ms <= 0 or p.quiet_max_ms < p.quiet_after_ms:
        raise bad("alerts: need 0 < quiet_after_days <= quiet_max_days")
    if min(p.quiet_min_baseline_events, p.drop_min_weekly_user_days, p.quiet_missed_active_days) < 0:
        raise bad("alerts: minimums must be >= 0")
    if not 0 < p.key_user_share <= 1 or p.key_user_min_active_days < 1 or p.key_user_missed_active_days <= 0:
        raise bad("alerts: need 0 < key_user_share <= 1, key_user_min_active_days >= 1, key_user_missed > 0")
    if min(p.stickiness_target, p.utilization_target, p.recency_missed_scale) <= 0 or p.min_rhythm_days < 1:
        raise bad("score: targets and recency_missed_scale must be > 0, min_rhythm_days >= 1")
    if p.recency_grace < 0:
        raise bad("score.recency_grace must be >= 0")
    if not 0 <= p.renewal_raise_within_ms <= 3660 * DAY_MS:
        raise bad("renewal.raise_within_days must be within 0..3660")
    if not 0 <= p.onboarding_stuck_ms <= 3660 * DAY_MS:
        raise bad("onboarding.stuck_days must be within 0..3660")
    if not 1 <= p.max_tracked_ids <= 4096:
        raise bad("dedup.max_tracked_ids must be within 1..4096")
    return p


_MILESTONE_KEYS = frozenset({"name", "event", "properties", "count", "users", "deadline_days", "after"})


def _bounded_int(body: Mapping[str, Any], key: str, default: int, low: int, high: int, path: str) -> int:
    value = body.get(key, default)
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise PolicyError(f"{path}.{key}: must be an integer within {low}..{high}")
    return value


def _milestone(raw: object, path: str, known: set[str]) -> Milestone:
    body = _table(raw, path)
    for key in body:
        if key not in _MILESTONE_KEYS:
            raise PolicyError(f"{path}.{key}: unknown key")
    name = body.get("name")
    if not isinstance(name, str) or not 1 <= len(name) <= MAX_MILESTONE_NAME:
        raise PolicyError(f"{path}.name: required, a string of 1..{MAX_MILESTONE_NAME} characters")
    if name in known:
        raise PolicyError(f"{path}.name: duplicate milestone {name!r}")
    event = body.get("event")
    if not isinstance(event, str) or not event:
        raise PolicyError(f"{path}.event: required, an event name")
    if "deadline_days" not in body:
        raise PolicyError(f"{path}.deadline_days: required, a number of days > 0")
    deadline = _number(body["deadline_days"], float, f"{path}.deadline_days")
    if not 0 < deadline <= 3660:
        raise PolicyError(f"{path}.deadline_days: must be within 0..3660 (and > 0)")
    props: dict[str, str | int | float | bool] = {}
    for key, value in _table(body.get("properties", {}), f"{path}.properties").items():
        if not isinstance(value, str | int | float | bool):
            raise PolicyError(f"{path}.properties.{key}: must be a string, number or boolean")
        props[key] = value
    after = body.get("after")
    if after is not None and not isinstance(after, str):
        raise PolicyError(f"{path}.after: must be the name of an earlier milestone")
    if after is not None and after not in known:
        # Only an earlier one: the order can then never loop.
        raise PolicyError(f"{path}.after: unknown milestone {after!r} (name one listed before it)")
    return Milestone(
        name=name,
        event=event,
        deadline_ms=round(deadline * DAY_MS),
        count=_bounded_int(body, "count", 1, 1, MAX_MILESTONE_COUNT, path),
        users=_bounded_int(body, "users", 0, 0, MAX_MILESTONE_USERS, path),
        properties=MappingProxyType(props),
        after=after,
    )


def _milestones(raw: object, path: str) -> tuple[Milestone, ...]:
    if not isinstance(raw, list):
        raise PolicyError(f"{path}: must be an array of tables ([[onboarding.milestones]])")
    if len(raw) > MAX_MILESTONES:
        raise PolicyError(f"{path}: at most {MAX_MILESTONES} milestones")
    known: set[str] = set()
    out = []
    for i, item in enumerate(raw):
        m = _milestone(item, f"{path}[{i}]", known)
        known.add(m.name)
        out.append(m)
    return tuple(out)


def _apply(base: Policy, delta: _Delta, where: str) -> Policy:
    weights = dataclasses.replace(base.weights, **delta.weights)
    event_weights = MappingProxyType({**base.event_weights, **delta.event_weights})
    return _validate(
        dataclasses.replace(base, **delta.fields, weights=weights, event_weights=event_weights), where
    )


@dataclass(frozen=True, slots=True)
class _Override:
    segment: str | None
    plan: str | None
    delta: _Delta

    def matches(self, segment: str | None, plan: str | None) -> bool:
        return (self.segment is None or self.segment == segment) and (self.plan is None or self.plan == plan)


@dataclass(frozen=True, slots=True)
class GapRules:
    """How partitions find data gaps (:mod:`streamer.core.partition`): one set for every partition.

    Thresholds are in *independent* events expected (counts divided by the learnt dispersion);
    larger values make gaps rarer. ``enabled = false`` judges every account's silence on its own,
    as when a portfolio's traffic is too sparse or too irregular for a partition to have a rhythm.
    """

    enabled: bool = True
    silence_min: float = 12.0
    lull_min: float = 20.0
    day_min: float = 20.0
    max_gap_days: float = 10.0
    # A partition with fewer accounts judges no gap: its traffic is a handful of customers' own
    # rhythm, and several of them going quiet together is their news, not the tracking's.
    min_accounts: int = 20


_GAP_KEYS = {"silence_min", "lull_min", "day_min", "max_gap_days", "min_accounts"}


def _gap_rules(raw: object) -> GapRules:
    body = dict(_table(raw, "data_gaps"))
    enabled = body.pop("enabled", True)
    if not isinstance(enabled, bool):
        raise PolicyError("data_gaps.enabled: must be true or false")
    values: dict[str, Any] = {}
    for key, value in body.items():
        if key not in _GAP_KEYS:
            raise PolicyError(f"data_gaps.{key}: unknown key")
        if key == "min_accounts":
            if isinstance(value, bool) or not isinstance(value, int) or value < 0:
                raise PolicyError("data_gaps.min_accounts: must be an integer >= 0")
            values[key] = value
            continue
        if isinstance(value, bool) or not isinstance(value, int | float) or not value > 0:
            raise PolicyError(f"data_gaps.{key}: must be a number > 0")
        values[key] = float(value)
    return GapRules(enabled, **values)


@dataclass(frozen=True, slots=True)
class Holiday:
    """Days on which accounts (of a segment and/or plan, or all) are not expected to work."""

    name: str
    days: frozenset[int]
    segment: str | None = None
    plan: str | None = None

    def matches(self, segment: str | None, plan: str | None) -> bool:
        """Whether the holiday applies to an account with these facts."""
        return (self.segment is None or self.segment == segment) and (self.plan is None or self.plan == plan)


@dataclass(frozen=True, slots=True)
class PolicySet:
    """The default policy, the overrides that refine it per segment/plan, and the holidays."""

    default: Policy = Policy()
    overrides: tuple[_Override, ...] = ()
    holidays: tuple[Holiday, ...] = ()
    gaps: GapRules = GapRules()
    _cache: dict[tuple[str | None, str | None], Policy] = field(
        default_factory=dict, compare=False, repr=False
    )

    def for_account(self, segment: str | None, plan: str | None) -> Policy:
        """Return the effective policy for an account.

        Matching overrides are applied in file order, so later ones win; the matching holidays'
        days are merged into ``holiday_days``.

        Args:
            segment: The account's segment fact, if known.
            plan: The account's plan fact, if known.

        Returns:
            The merged policy (cached per segment/plan pair).

        Raises:
            PolicyError: If a combination of overrides yields an inconsistent policy.
        """
        key = (segment, plan)
        hit = self._cache.get(key)
        if hit is None:
            hit = self.default
            for o in self.overrides:
                if o.matches(segment, plan):
                    hit = _apply(hit, o.delta, f"overrides(segment={segment!r}, plan={plan!r}): ")
            days = frozenset().union(*(h.days for h in self.holidays if h.matches(segment, plan)))
            if days:
                hit = dataclasses.replace(hit, holiday_days=days)
            self._cache[key] = hit
        return hit


def _epoch_day(value: object, path: str) -> int:
    if isinstance(value, dt.datetime):
        raise PolicyError(f"{path}: a date (YYYY-MM-DD), not a date and time")
    if isinstance(value, dt.date):
        date = value
    elif isinstance(value, str):
        try:
            date = dt.date.fromisoformat(value.strip())
        except ValueError:
            raise PolicyError(f"{path}: {value!r} is not a date (YYYY-MM-DD)") from None
    else:
        raise PolicyError(f"{path}: must be a date (YYYY-MM-DD) or a range 'YYYY-MM-DD..YYYY-MM-DD'")
    return (date - dt.date(1970, 1, 1)).days


def _holiday(raw: object, path: str) -> Holiday:
    body = dict(_table(raw, path))
    name = body.pop("name", None)
    if not isinstance(name, str) or not name:
        raise PolicyError(f"{path}.name: required, a string")
    selectors = {k: body.pop(k, None) for k in ("segment", "plan")}
    for k, v in selectors.items():
        if v is not None and not isinstance(v, str):
            raise PolicyError(f"{path}.{k}: must be a string")
    dates = body.pop("dates", None)
    if not isinstance(dates, list) or not dates:
        raise PolicyError(f"{path}.dates: required, a list of dates or 'YYYY-MM-DD..YYYY-MM-DD' ranges")
    for key in body:
        raise PolicyError(f"{path}.{key}: unknown key")
    days: set[int] = set()
    for i, item in enumerate(dates):
        where = f"{path}.dates[{i}]"
        if isinstance(item, str) and ".." in item:
            first, last = (_epoch_day(part, where) for part in item.split("..", 1))
            if last < first or last - first > 366:
                raise PolicyError(f"{where}: a range must run forward and span at most a year")
            days.update(range(first, last + 1))
        else:
            days.add(_epoch_day(item, where))
    return Holiday(name, frozenset(days), selectors["segment"], selectors["plan"])


def load_policy(text: str | None) -> PolicySet:
    """Load rules from TOML text.

    Args:
        text: The TOML document, or None for built-in defaults.

    Returns:
        The parsed policy set.

    Raises:
        PolicyError: On invalid TOML, unknown keys, wrong types or inconsistent values.
    """
    if text is None:
        return PolicySet()
    try:
        doc = tomllib.loads(text)
    except tomllib.TOMLDecodeError as err:
        raise PolicyError(f"$: invalid TOML: {err}") from None
    default = _apply(Policy(), _parse_delta(doc, "", frozenset({"overrides", "holidays", "data_gaps"})), "")
    raw_overrides = doc.get("overrides", [])
    if not isinstance(raw_overrides, list):
        raise PolicyError("overrides: must be an array of tables ([[overrides]])")
    overrides = []
    for i, raw in enumerate(raw_overrides):
        path = f"overrides[{i}]"
        body = dict(_table(raw, path))
        selectors = {k: body.pop(k, None) for k in ("segment", "plan")}
        for k, v in selectors.items():
            if v is not None and not isinstance(v, str):
                raise PolicyError(f"{path}.{k}: must be a string")
        if selectors["segment"] is None and selectors["plan"] is None:
            raise PolicyError(f"{path}: needs segment and/or plan")
        delta = _parse_delta(body, f"{path}.")
        _apply(default, delta, f"{path}: ")
        overrides.append(_Override(selectors["segment"], selectors["plan"], delta))
    raw_holidays = doc.get("holidays", [])
    if not isinstance(raw_holidays, list):
        raise PolicyError("holidays: must be an array of tables ([[holidays]])")
    holidays = tuple(_holiday(raw, f"holidays[{i}]") for i, raw in enumerate(raw_holidays))
    gaps = _gap_rules(doc.get("data_gaps", {}))
    return PolicySet(default, tuple(overrides), holidays, gaps)
