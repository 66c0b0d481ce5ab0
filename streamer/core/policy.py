"""Scoring and alerting rules, loaded from TOML.

A :class:`PolicySet` holds the default :class:`Policy` plus ordered overrides that apply
to accounts by segment and/or plan. See ``deploy/rules.example.toml`` for every key and
its default. Unknown keys are rejected so that a typo never silently falls back to a
default.
"""

from __future__ import annotations

import dataclasses
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

__all__ = ["DAY_MS", "Policy", "PolicyError", "PolicySet", "ScoreWeights", "load_policy"]

DAY_MS = 86_400_000


class PolicyError(ValueError):
    """The rules file is malformed; the message names the key path."""


@dataclass(frozen=True, slots=True)
class ScoreWeights:
    """Relative component weights; renormalised over the components available."""

    activity: float = 0.35
    recency: float = 0.20
    utilization: float = 0.20
    breadth: float = 0.10
    sentiment: float = 0.15


@dataclass(frozen=True, slots=True)
class Policy:
    """Effective rules for one account."""

    window_days: int = 35
    current_days: int = 7
    baseline_days: int = 28
    onboarding_days: int = 90
    onboarding_expected_weekly_events_per_seat: float = 20.0
    onboarding_expected_weekly_events: float = 50.0
    weights: ScoreWeights = ScoreWeights()
    good_min: int = 70
    average_min: int = 40
    event_weights: Mapping[str, float] = field(default_factory=lambda: MappingProxyType({}))
    expected_features: int = 10
    recency_zero_after_days: int = 14
    material_score_delta: float = 2.0
    material_component_delta: float = 5.0
    quiet_after_ms: int = 7 * DAY_MS
    quiet_min_baseline_events: int = 1
    drop_ratio: float = 0.5
    drop_recover_ratio: float = 0.75
    drop_min_baseline_weekly: float = 20.0
    max_tracked_ids: int = 64


# TOML section -> key -> (Policy field, expected type). Durations in days become ms.
_SCHEMA: dict[str, dict[str, tuple[str, type]]] = {
    "window": {
        "days": ("window_days", int),
        "current_days": ("current_days", int),
        "baseline_days": ("baseline_days", int),
    },
    "onboarding": {
        "days": ("onboarding_days", int),
        "expected_weekly_events_per_seat": ("onboarding_expected_weekly_events_per_seat", float),
        "expected_weekly_events": ("onboarding_expected_weekly_events", float),
    },
    "score": {
        "expected_features": ("expected_features", int),
        "recency_zero_after_days": ("recency_zero_after_days", int),
        "material_score_delta": ("material_score_delta", float),
        "material_component_delta": ("material_component_delta", float),
    },
    "bands": {"good_min": ("good_min", int), "average_min": ("average_min", int)},
    "alerts": {
        "quiet_after_days": ("quiet_after_ms", float),
        "quiet_min_baseline_events": ("quiet_min_baseline_events", int),
        "drop_ratio": ("drop_ratio", float),
        "drop_recover_ratio": ("drop_recover_ratio", float),
        "drop_min_baseline_weekly": ("drop_min_baseline_weekly", float),
    },
    "dedup": {"max_tracked_ids": ("max_tracked_ids", int)},
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
            raise PolicyError(f"{path}: unknown key")
        for key, value in _table(body, path).items():
            kpath = f"{path}.{key}"
            if section == "score" and key == "weights":
                for wname, w in _table(value, kpath).items():
                    if wname not in _WEIGHT_NAMES:
                        raise PolicyError(f"{kpath}.{wname}: unknown key")
                    weights[wname] = _number(w, float, f"{kpath}.{wname}")
                continue
            if key not in spec:
                raise PolicyError(f"{kpath}: unknown key")
            target, kind = spec[key]
            num = _number(value, kind, kpath)
            if target == "quiet_after_ms":
                num = round(num * DAY_MS)
            fields[target] = num
    return _Delta(fields, weights, event_weights)


def _validate(p: Policy, where: str) -> Policy:
    def bad(msg: str) -> PolicyError:
        return PolicyError(f"{where}{msg}")

    if min(p.window_days, p.current_days, p.baseline_days, p.onboarding_days) < 1:
        raise bad("window/onboarding day counts must be >= 1")
    if p.current_days + p.baseline_days > p.window_days:
        raise bad("window.current_days + window.baseline_days must not exceed window.days")
    if not 0 <= p.average_min <= p.good_min <= 100:
        raise bad("bands: need 0 <= average_min <= good_min <= 100")
    ws = [getattr(p.weights, n) for n in _WEIGHT_NAMES]
    if min(ws) < 0 or sum(ws) - p.weights.utilization <= 0:
        raise bad("score.weights: must be >= 0 with a positive sum excluding utilization")
    if not 0 < p.drop_ratio <= p.drop_recover_ratio <= 1:
        raise bad("alerts: need 0 < drop_ratio <= drop_recover_ratio <= 1")
    if p.quiet_after_ms <= 0 or p.quiet_min_baseline_events < 0 or p.drop_min_baseline_weekly < 0:
        raise bad("alerts: quiet_after_days must be > 0 and minimums >= 0")
    if p.expected_features < 1 or p.recency_zero_after_days < 2:
        raise bad("score: expected_features must be >= 1 and recency_zero_after_days >= 2")
    if min(p.onboarding_expected_weekly_events, p.onboarding_expected_weekly_events_per_seat) <= 0:
        raise bad("onboarding: expectations must be > 0")
    if not 1 <= p.max_tracked_ids <= 4096:
        raise bad("dedup.max_tracked_ids must be within 1..4096")
    return p


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
class PolicySet:
    """The default policy and the overrides that refine it per segment/plan."""

    default: Policy = Policy()
    overrides: tuple[_Override, ...] = ()
    _cache: dict[tuple[str | None, str | None], Policy] = field(
        default_factory=dict, compare=False, repr=False
    )

    def for_account(self, segment: str | None, plan: str | None) -> Policy:
        """Return the effective policy for an account.

        Matching overrides are applied in file order, so later ones win.

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
            self._cache[key] = hit
        return hit


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
    default = _apply(Policy(), _parse_delta(doc, "", frozenset({"overrides"})), "")
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
    return PolicySet(default, tuple(overrides))
