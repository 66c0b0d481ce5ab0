"""Destinations, routes and snoozes, loaded from the TOML file named by ``CHURNWATCH_DELIVERY_FILE``.

```toml
[[destinations]]
name = "cs-slack"
type = "slack"                      # "slack" (incoming webhook URL) or "webhook" (signed)
url = "https://hooks.slack.com/services/T000/B000/XXXX"

[[destinations]]
name = "crm"
type = "webhook"
url = "https://crm.example.com/hooks/churn"
secret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"

[[routes]]                          # every selector given must match; omitted ones match anything
kinds = ["account_quiet", "usage_drop"]   # or kind = "..."
bands = ["poor"]                    # or band = "..."
segments = ["enterprise"]           # or segment = "..."; also plans/plan, owners/owner
destinations = ["cs-slack", "crm"]

[[snoozes]]                         # mute an account and/or a kind until a time
destination = "cs-slack"            # optional: all destinations when omitted
account = "acme"
kind = "usage_drop"
until = 2026-12-01T09:00:00Z        # RFC 3339 with an offset, as a TOML datetime or a string
```

An alert goes to the union of the destinations of every matching route, each once. Segment, plan,
owner and name are read from the alert's ``account`` object when it has one, else from its top
level, else from its evidence; an alert without them only matches routes that do not ask for them.
Unknown keys are rejected with their key path, so that a typo never silently routes nothing.
"""

from __future__ import annotations

import hashlib
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any
from urllib.parse import urlsplit

from pydantic import SecretStr

from streamer.core.alerts import (
    ACCOUNT_QUIET,
    ACCOUNT_RECOVERED,
    HEALTH_DEGRADED,
    MILESTONE_MISSED,
    MILESTONE_REACHED,
    ONBOARDING_COMPLETE,
    USAGE_DROP,
)
from streamer.core.policy import Band
from streamer.delivery.signing import decode_secret

__all__ = [
    "BANDS",
    "DESTINATION_TYPES",
    "DIGEST",
    "KINDS",
    "AlertFacts",
    "DeliveryConfig",
    "DeliveryConfigError",
    "Destination",
    "Route",
    "Snooze",
    "Target",
    "alert_facts",
    "load_delivery_config",
    "targets",
    "targets_for",
]

DIGEST = "daily_digest"
"""The kind routes and snoozes name the daily digest by (see :mod:`streamer.delivery.digest`)."""
KINDS = frozenset(
    {
        ACCOUNT_QUIET,
        USAGE_DROP,
        HEALTH_DEGRADED,
        ACCOUNT_RECOVERED,
        MILESTONE_MISSED,
        MILESTONE_REACHED,
        ONBOARDING_COMPLETE,
        DIGEST,
    }
)
# Ledger record keys that are not (destination, alert) pairs start with these.
_RESERVED_PREFIXES = ("disabled:", "baseline:")
BANDS = frozenset(Band)
DESTINATION_TYPES = frozenset({"slack", "webhook"})
_SELECTORS = {"kinds": "kind", "bands": "band", "segments": "segment", "plans": "plan", "owners": "owner"}


class DeliveryConfigError(ValueError):
    """The delivery file is malformed; the message names the key path."""


@dataclass(frozen=True, slots=True)
class Destination:
    """Where alerts are sent.

    The URL and the signing secret are ``SecretStr``: a Slack incoming-webhook URL is itself the
    credential, and a webhook URL often carries a token, so neither may show in a repr or a log line.
    """

    name: str
    type: str
    url: SecretStr
    secret: SecretStr | None = None

    @property
    def fingerprint(self) -> str:
        """SHA-256 over everything that configures the destination; changes when any of it changes."""
        digest = hashlib.sha256()
        secret = self.secret.get_secret_value() if self.secret is not None else ""
        for part in (self.name, self.type, self.url.get_secret_value(), secret):
            data = part.encode()
            digest.update(len(data).to_bytes(8, "big"))  # length-prefixed: no two configs collide
            digest.update(data)
        return digest.hexdigest()


@dataclass(frozen=True, slots=True)
class Route:
    """Alerts matching every given selector go to ``destinations``; None matches anything."""

    destinations: tuple[str, ...]
    kinds: frozenset[str] | None = None
    bands: frozenset[str] | None = None
    segments: frozenset[str] | None = None
    plans: frozenset[str] | None = None
    owners: frozenset[str] | None = None

    def matches(self, facts: AlertFacts) -> bool:
        """Whether an alert with these facts matches every selector of the route."""
        pairs = (
            (self.kinds, facts.kind),
            (self.bands, facts.band),
            (self.segments, facts.segment),
            (self.plans, facts.plan),
            (self.owners, facts.owner),
        )
        return all(allowed is None or value in allowed for allowed, value in pairs)


@dataclass(frozen=True, slots=True)
class Snooze:
    """Mutes an account and/or a kind, for one destination or all, until ``until_ms``."""

    until_ms: int
    destination: str | None = None
    account: str | None = None
    kind: str | None = None

    def mutes(self, destination: str, facts: AlertFacts, now_ms: int) -> bool:
        """Whether this snooze mutes the alert for ``destination`` at ``now_ms``."""
        return (
            now_ms < self.until_ms
            and self.destination in (None, destination)
            and self.account in (None, facts.account_id)
            and self.kind in (None, facts.kind)
        )


@dataclass(frozen=True, slots=True)
class DeliveryConfig:
    """The parsed delivery file."""

    destinations: Mapping[str, Destination]
    routes: tuple[Route, ...] = ()
    snoozes: tuple[Snooze, ...] = ()


@dataclass(frozen=True, slots=True)
class AlertFacts:
    """What routing and snoozes look at in an alert."""

    account_id: str
    kind: str
    band: str | None = None
    segment: str | None = None
    plan: str | None = None
    owner: str | None = None
    name: str | None = None


@dataclass(frozen=True, slots=True)
class Target:
    """One destination an alert is routed to, and whether a snooze mutes it now."""

    destination: str
    snoozed: bool


def _str_or_none(value: object) -> str | None:
    return value if isinstance(value, str) and value else None


def alert_facts(alert: Mapping[str, Any]) -> AlertFacts:
    """Extract the routing facts of an alert document (as produced by ``alert_to_dict``)."""
    health = alert.get("health")
    band = _str_or_none(health.get("band")) if isinstance(health, Mapping) else None
    sources: list[Mapping[str, Any]] = []
    for source in (alert.get("account"), alert, alert.get("evidence")):
        if isinstance(source, Mapping):
            sources.append(source)

    def fact(key: str) -> str | None:
        return next((v for s in sources if (v := _str_or_none(s.get(key))) is not None), None)

    return AlertFacts(
        account_id=str(alert.get("account_id", "")),
        kind=str(alert.get("kind", "")),
        band=band,
        segment=fact("segment"),
        plan=fact("plan"),
        owner=fact("owner"),
        name=fact("name"),
    )


def targets(config: DeliveryConfig, alert: Mapping[str, Any], now_ms: int) -> list[Target]:
    """Route one alert.

    Args:
        config: The delivery configuration.
        alert: The alert document.
        now_ms: The current time in epoch milliseconds, for snoozes.

    Returns:
        Each destination of every matching route once, in file order, with its snooze state.
    """
    return targets_for(config, alert_facts(alert), now_ms)


def targets_for(config: DeliveryConfig, facts: AlertFacts, now_ms: int) -> list[Target]:
    """Route whatever has these facts (an alert, or a digest with its owner and kind)."""
    seen: dict[str, None] = {}
    for route in config.routes:
        if route.matches(facts):
            seen.update(dict.fromkeys(route.destinations))
    return [Target(name, any(s.mutes(name, facts, now_ms) for s in config.snoozes)) for name in seen]


def _table(value: object, path: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise DeliveryConfigError(f"{path}: must be a table")
    return value


def _array_of_tables(doc: Mapping[str, Any], key: str) -> list[dict[str, Any]]:
    raw = doc.get(key, [])
    if not isinstance(raw, list):
        raise DeliveryConfigError(f"{key}: must be an array of tables ([[{key}]])")
    return [_table(item, f"{key}[{i}]") for i, item in enumerate(raw)]


def _string(value: object, path: str) -> str:
    if not isinstance(value, str) or not value:
        raise DeliveryConfigError(f"{path}: must be a non-empty string")
    return value


def _strings(value: object, path: str) -> frozenset[str]:
    if isinstance(value, str):
        return frozenset({_string(value, path)})
    if not isinstance(value, list) or not value:
        raise DeliveryConfigError(f"{path}: must be a string or a non-empty array of strings")
    return frozenset(_string(v, f"{path}[{i}]") for i, v in enumerate(value))


def _unknown(body: Mapping[str, Any], allowed: set[str], path: str) -> None:
    for key in body:
        if key not in allowed:
            raise DeliveryConfigError(f"{path}.{key}: unknown key")


def _instant_ms(value: object, path: str) -> int:
    if isinstance(value, str):
        try:
            value = datetime.fromisoformat(value.replace("Z", "+00:00").replace("z", "+00:00"))
        except ValueError:
            raise DeliveryConfigError(f"{path}: not an RFC 3339 date-time") from None
    if not isinstance(value, datetime):
        raise DeliveryConfigError(f"{path}: must be an RFC 3339 date-time")
    if value.tzinfo is None:
        raise DeliveryConfigError(f"{path}: needs a UTC offset (e.g. Z or +01:00)")
    return round(value.timestamp() * 1000)


def _destination(body: dict[str, Any], path: str) -> Destination:
    _unknown(body, {"name", "type", "url", "secret"}, path)
    name = _string(body.get("name"), f"{path}.name")
    if name.startswith(_RESERVED_PREFIXES):
        raise DeliveryConfigError(f"{path}.name: must not start with {' or '.join(_RESERVED_PREFIXES)}")
    kind = _string(body.get("type"), f"{path}.type")
    if kind not in DESTINATION_TYPES:
        raise DeliveryConfigError(f"{path}.type: must be one of {sorted(DESTINATION_TYPES)}")
    url = _string(body.get("url"), f"{path}.url")
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise DeliveryConfigError(f"{path}.url: must be an http(s) URL")
    secret = body.get("secret")
    if kind == "webhook":
        secret = _string(secret, f"{path}.secret")
        try:
            decode_secret(secret)
        except ValueError as err:
            raise DeliveryConfigError(f"{path}.secret: {err}") from None
    elif secret is not None:
        raise DeliveryConfigError(f"{path}.secret: only webhook destinations are signed")
    return Destination(name, kind, SecretStr(url), SecretStr(secret) if secret is not None else None)


def _route(body: dict[str, Any], path: str, names: Mapping[str, Destination]) -> Route:
    _unknown(body, {"destinations", *_SELECTORS, *_SELECTORS.values()}, path)
    dests = body.get("destinations")
    if not isinstance(dests, list) or not dests:
        raise DeliveryConfigError(f"{path}.destinations: must be a non-empty array of names")
    for i, d in enumerate(dests):
        if _string(d, f"{path}.destinations[{i}]") not in names:
            raise DeliveryConfigError(f"{path}.destinations[{i}]: no destination named {d!r}")
    selectors: dict[str, frozenset[str] | None] = {}
    for plural, singular in _SELECTORS.items():
        if plural in body and singular in body:
            raise DeliveryConfigError(f"{path}: give {plural} or {singular}, not both")
        key = plural if plural in body else singular
        selectors[plural] = _strings(body[key], f"{path}.{key}") if key in body else None
    for plural, known in (("kinds", KINDS), ("bands", BANDS)):
        bad = sorted((selectors[plural] or frozenset()) - known)
        if bad:
            raise DeliveryConfigError(f"{path}.{plural}: unknown {bad}; expected some of {sorted(known)}")
    return Route(destinations=tuple(dict.fromkeys(dests)), **selectors)


def _snooze(body: dict[str, Any], path: str, names: Mapping[str, Destination]) -> Snooze:
    _unknown(body, {"destination", "account", "kind", "until"}, path)
    if "until" not in body:
        raise DeliveryConfigError(f"{path}.until: required")
    until_ms = _instant_ms(body["until"], f"{path}.until")
    dest = body.get("destination")
    if dest is not None and _string(dest, f"{path}.destination") not in names:
        raise DeliveryConfigError(f"{path}.destination: no destination named {dest!r}")
    account = body.get("account")
    kind = body.get("kind")
    if account is None and kind is None:
        raise DeliveryConfigError(f"{path}: needs account and/or kind")
    if account is not None:
        _string(account, f"{path}.account")
    if kind is not None and _string(kind, f"{path}.kind") not in KINDS:
        raise DeliveryConfigError(f"{path}.kind: unknown kind {kind!r}")
    return Snooze(until_ms, dest, account, kind)


def load_delivery_config(text: str) -> DeliveryConfig:
    """Parse the delivery file.

    Args:
        text: The TOML document.

    Returns:
        The destinations, routes and snoozes.

    Raises:
        DeliveryConfigError: On invalid TOML, unknown keys, wrong types, duplicate destination names
            or references to destinations that do not exist.
    """
    try:
        doc = tomllib.loads(text)
    except tomllib.TOMLDecodeError as err:
        raise DeliveryConfigError(f"$: invalid TOML: {err}") from None
    _unknown(doc, {"destinations", "routes", "snoozes"}, "$")
    destinations: dict[str, Destination] = {}
    for i, body in enumerate(_array_of_tables(doc, "destinations")):
        dest = _destination(body, f"destinations[{i}]")
        if dest.name in destinations:
            raise DeliveryConfigError(f"destinations[{i}].name: duplicate name {dest.name!r}")
        destinations[dest.name] = dest
    routes = tuple(
        _route(body, f"routes[{i}]", destinations) for i, body in enumerate(_array_of_tables(doc, "routes"))
    )
    snoozes = tuple(
        _snooze(body, f"snoozes[{i}]", destinations)
        for i, body in enumerate(_array_of_tables(doc, "snoozes"))
    )
    return DeliveryConfig(destinations, routes, snoozes)
