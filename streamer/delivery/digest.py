"""The daily digest per owner: what it says, when it is due, and what it compares against.

Pure: the current time is an argument, no Kafka or HTTP client is imported. The adapter in
:mod:`streamer.delivery.digests` feeds it the ``account-health`` snapshots and the baselines it
reads from the ledger topic, asks it what is due, and sends what it composes.

Once a day, at ``hour`` in ``zone``, each owner gets one digest of their accounts:

* **got worse**: the band moved down (good → average → poor) or the score fell by at least
  ``min_score_drop`` points since the previous digest (the account's *baseline*, see below);
* **open alerts**: the alert episodes the latest snapshot has open (quiet, usage drop, poor);
* **renewals due**: a renewal within ``renewal_days`` of now.

Accounts without an owner make one "unowned" digest (``owner`` None). A digest with nothing in any
section is not sent.

The baseline of an account is its score and band when the previous digest was composed, persisted
as a ``baseline:<account>`` record of the ledger topic (the health topic is compacted hourly, so it
cannot say what a score was yesterday). An account without a baseline record (its first digest)
falls back to the snapshot in effect at the previous digest's time when one was read; else it is not
judged "worse" this once.
"""

from __future__ import annotations

import sys
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from datetime import UTC, date, datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from pydantic import ValidationError

from streamer.core.alerts import ACCOUNT_QUIET, HEALTH_DEGRADED, USAGE_DROP, ms_to_rfc3339
from streamer.delivery.config import DIGEST, AlertFacts, DeliveryConfig, Target, targets_for
from streamer.delivery.ledger import BASELINE_PREFIX
from streamer.wire.documents import SnapshotDocument

__all__ = [
    "BASELINE_PREFIX",
    "DIGEST",
    "AccountView",
    "Baseline",
    "Digest",
    "DigestBook",
    "OpenAlert",
    "Renewal",
    "Schedule",
    "Worse",
    "compose",
    "digest_date",
    "digest_document",
    "digest_id",
    "digest_instant",
    "digest_targets",
    "for_destination",
]

DAY_MS = 86_400_000
_BAND_RANK = {"good": 0, "average": 1, "poor": 2}


@dataclass(frozen=True, slots=True)
class Schedule:
    """When digests are due and what they list."""

    hour: int = 8
    zone: ZoneInfo = field(default_factory=lambda: ZoneInfo("UTC"))
    renewal_days: int = 30
    min_score_drop: int = 10


def _ms(at: datetime) -> int:
    return round(at.timestamp() * 1000)


def _rfc3339_ms(text: str | None) -> int | None:
    if not text:
        return None
    try:
        at = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        return None
    return _ms(at) if at.tzinfo is not None else None


def digest_instant(day: date, schedule: Schedule) -> datetime:
    """When the digest of local date ``day`` is due (UTC); on a DST gap, the hour after it."""
    local = datetime.combine(day, time(schedule.hour), tzinfo=schedule.zone)
    # A wall time that does not exist (a spring-forward gap) is normalised by the round trip.
    return local.astimezone(UTC).astimezone(schedule.zone).astimezone(UTC)


def digest_date(now: datetime, schedule: Schedule) -> date | None:
    """The local date whose digest is due at ``now``, or None before today's hour.

    A digest missed for a whole day (the process was down) is not sent afterwards: only today's is.
    """
    today = now.astimezone(schedule.zone).date()
    return today if now >= digest_instant(today, schedule) else None


def digest_id(day: date, owner: str | None) -> str:
    """The digest's id: the ledger key part and the webhook-id, the same on every attempt and restart."""
    return f"digest:{day.isoformat()}:" + (f"owner:{owner}" if owner is not None else "unowned")


@dataclass(frozen=True, slots=True)
class Point:
    """An account's score and band at one instant."""

    at_ms: int
    score: int
    band: str


@dataclass(slots=True)
class AccountView:
    """What the digest keeps of an account's latest snapshot (a few hundred bytes)."""

    owner: str | None
    name: str | None
    arr: float | None
    currency: str | None
    renewal_ms: int | None
    latest: Point
    previous: Point | None  # the snapshot the latest replaced, for a first digest's baseline
    quiet_since_ms: int | None
    drop_since_ms: int | None
    poor: bool


@dataclass(frozen=True, slots=True)
class Baseline:
    """An account's score and band when the digest of ``day`` was composed."""

    day: date
    score: int
    band: str

    def to_json(self, at_ms: int) -> dict[str, Any]:
        """The ledger record value."""
        return {"status": "baseline", "day": self.day.isoformat(), "score": self.score, "band": self.band,
                "at": ms_to_rfc3339(at_ms)}  # fmt: skip

    @classmethod
    def from_json(cls, doc: object) -> Baseline | None:
        """Parse a ledger record value; None when it is not a baseline."""
        if not isinstance(doc, Mapping):
            return None
        try:
            day = date.fromisoformat(str(doc["day"]))
            score, band = doc["score"], doc["band"]
        except (KeyError, ValueError):
            return None
        if not isinstance(score, int) or band not in _BAND_RANK:
            return None
        return cls(day, score, band)


def _intern(text: str | None) -> str | None:
    # Owners, bands and currencies repeat across thousands of accounts: one copy each.
    return sys.intern(text) if text else None


@dataclass
class DigestBook:
    """The latest view and the baseline of every account, at most ``max_accounts`` of each.

    An account beyond the bound is not tracked (counted in ``untracked``): memory stays flat
    whatever the portfolio grows to, and the operator sees the count in the log and the metrics.
    """

    max_accounts: int = 200_000
    views: dict[str, AccountView] = field(default_factory=dict)
    baselines: dict[str, Baseline] = field(default_factory=dict)
    untracked: int = 0
    invalid: int = 0

    def apply_snapshot(self, account_id: str, value: bytes | Mapping[str, Any] | None) -> None:
        """Apply one ``account-health`` record: a snapshot (JSON) or a tombstone (None)."""
        if value is None:
            self.views.pop(account_id, None)
            return
        try:
            doc = (
                SnapshotDocument.model_validate_json(value)
                if isinstance(value, bytes)
                else SnapshotDocument.model_validate(value)
            )
        except ValidationError:
            self.invalid += 1
            return
        at_ms = _rfc3339_ms(doc.at)
        if at_ms is None:
            self.invalid += 1
            return
        old = self.views.get(account_id)
        if old is None and len(self.views) >= self.max_accounts:
            self.untracked += 1
            return
        point = Point(at_ms, doc.score, sys.intern(doc.band.value))
        if old is not None and old.latest.at_ms > at_ms:
            return  # an older snapshot read after a newer one says nothing new
        facts, episodes = doc.facts, doc.episodes
        self.views[account_id] = AccountView(
            owner=_intern(facts.owner),
            name=facts.name,
            arr=facts.arr,
            currency=_intern(facts.currency),
            renewal_ms=_rfc3339_ms(facts.renewal_at),
            latest=point,
            previous=old.latest if old is not None else None,
            quiet_since_ms=_rfc3339_ms(episodes.quiet_since),
            drop_since_ms=_rfc3339_ms(episodes.drop_since),
            poor=episodes.poor,
        )

    def apply_baseline(self, account_id: str, baseline: Baseline | None) -> None:
        """Apply one baseline record of the ledger topic (None: a tombstone or not a baseline)."""
        if baseline is None:
            self.baselines.pop(account_id, None)
        elif account_id in self.baselines or len(self.baselines) < self.max_accounts:
            old = self.baselines.get(account_id)
            if old is None or old.day <= baseline.day:
                self.baselines[account_id] = baseline

    def roll(self, day: date) -> list[tuple[str, Baseline]]:
        """After the digest of ``day`` is finished: every account's baseline becomes its latest.

        Returns:
            The baselines to persist: only those that changed, so a quiet portfolio writes little.
            An account whose baseline is already of ``day`` (the digest was finished before a
            restart) keeps it, so that the next digest still covers the whole day.
        """
        out: list[tuple[str, Baseline]] = []
        for account_id, view in self.views.items():
            old = self.baselines.get(account_id)
            if old is not None and old.day >= day:
                continue
            new = Baseline(day, view.latest.score, view.latest.band)
            if old is None or (old.score, old.band) != (new.score, new.band):
                out.append((account_id, new))
            if old is not None or len(self.baselines) < self.max_accounts:
                self.baselines[account_id] = new
        # Baselines of accounts that are gone (a tombstone on the health topic) are not kept.
        for account_id in [a for a in self.baselines if a not in self.views]:
            del self.baselines[account_id]
        return out


@dataclass(frozen=True, slots=True)
class Worse:
    """An account whose band or score went down since its baseline."""

    account_id: str
    name: str | None
    arr: float | None
    currency: str | None
    score_before: int
    band_before: str
    score: int
    band: str


@dataclass(frozen=True, slots=True)
class OpenAlert:
    """An alert episode the account has open."""

    account_id: str
    name: str | None
    arr: float | None
    currency: str | None
    kind: str
    since_ms: int | None
    score: int
    band: str


@dataclass(frozen=True, slots=True)
class Renewal:
    """A renewal due within the window."""

    account_id: str
    name: str | None
    arr: float | None
    currency: str | None
    renewal_ms: int
    days_left: int
    score: int
    band: str


@dataclass(frozen=True, slots=True)
class Digest:
    """One owner's digest of one local date."""

    digest_id: str
    owner: str | None
    day: date
    zone: str
    since_ms: int
    generated_ms: int
    worse: tuple[Worse, ...]
    open_alerts: tuple[OpenAlert, ...]
    renewals: tuple[Renewal, ...]

    @property
    def empty(self) -> bool:
        """Whether no section has anything to say."""
        return not (self.worse or self.open_alerts or self.renewals)


def _baseline(book: DigestBook, account_id: str, view: AccountView, since_ms: int) -> tuple[int, str] | None:
    recorded = book.baselines.get(account_id)
    if recorded is not None:
        return recorded.score, recorded.band
    for point in (view.latest, view.previous):
        if point is not None and point.at_ms <= since_ms:
            return point.score, point.band
    return None


def compose(book: DigestBook, day: date, now: datetime, schedule: Schedule) -> list[Digest]:
    """Every owner's digest of local date ``day`` as of ``now``, owners in name order, unowned last.

    Args:
        book: The accounts' latest views and baselines.
        day: The local date of the digest.
        now: The current time (timezone-aware); renewals are counted from it.
        schedule: Hour, zone and thresholds.

    Returns:
        One digest per owner with at least one account (empty digests included; the caller skips
        them). Within a section, the largest ARR comes first (renewals: the soonest first).
    """
    now_ms = _ms(now)
    since_ms = _ms(digest_instant(day - timedelta(days=1), schedule))
    renewal_end_ms = now_ms + schedule.renewal_days * DAY_MS
    today = now.astimezone(schedule.zone).date()
    sections: dict[str | None, tuple[list[Worse], list[OpenAlert], list[Renewal]]] = {}
    for account_id, view in book.views.items():
        worse, alerts, renewals = sections.setdefault(view.owner, ([], [], []))
        latest, money = view.latest, (view.arr, view.currency)
        base = _baseline(book, account_id, view, since_ms)
        if base is not None:
            score_before, band_before = base
            if (
                _BAND_RANK[latest.band] > _BAND_RANK[band_before]
                or score_before - latest.score >= schedule.min_score_drop
            ):
                worse.append(
                    Worse(account_id, view.name, *money, score_before, band_before, latest.score, latest.band)
                )
        episodes = (
            (ACCOUNT_QUIET, view.quiet_since_ms is not None, view.quiet_since_ms),
            (USAGE_DROP, view.drop_since_ms is not None, view.drop_since_ms),
            (HEALTH_DEGRADED, view.poor, None),
        )
        for kind, is_open, since in episodes:
            if is_open:
                alerts.append(
                    OpenAlert(account_id, view.name, *money, str(kind), since, latest.score, latest.band)
                )
        if view.renewal_ms is not None and now_ms <= view.renewal_ms <= renewal_end_ms:
            days_left = (datetime.fromtimestamp(view.renewal_ms / 1000, schedule.zone).date() - today).days
            renewals.append(
                Renewal(account_id, view.name, *money, view.renewal_ms, days_left, latest.score, latest.band)
            )
    out: list[Digest] = []
    for owner in sorted(sections, key=lambda o: (o is None, o or "")):
        worse, alerts, renewals = sections[owner]
        # The most revenue first; among equals, the steepest fall first.
        worse.sort(key=lambda w: (-(w.arr or 0.0), w.score - w.score_before, w.account_id))
        alerts.sort(key=lambda a: (-(a.arr or 0.0), a.account_id, a.kind))
        renewals.sort(key=lambda r: (r.renewal_ms, r.account_id))
        out.append(
            Digest(
                digest_id(day, owner),
                owner,
                day,
                str(schedule.zone),
                since_ms,
                now_ms,
                tuple(worse),
                tuple(alerts),
                tuple(renewals),
            )
        )
    return out


def digest_facts(digest: Digest) -> AlertFacts:
    """What routes and snoozes see of a digest: its kind and owner, no account, band or segment."""
    return AlertFacts(account_id="", kind=DIGEST, owner=digest.owner)


def digest_targets(config: DeliveryConfig, digest: Digest, now_ms: int) -> list[Target]:
    """The destinations of a digest: routes matched by owner and kind (``daily_digest``).

    A route that selects bands, segments or plans never matches a digest, which spans accounts.
    """
    return targets_for(config, digest_facts(digest), now_ms)


def for_destination(config: DeliveryConfig, digest: Digest, destination: str, now_ms: int) -> Digest:
    """The digest as ``destination`` gets it: without what a snooze mutes there.

    A snooze of an account (without a kind, or with ``daily_digest``) takes the account out of every
    section; a snooze of an alert kind (for one account or all) takes out only those open alerts. A
    snooze of ``daily_digest`` without an account mutes the whole digest (:func:`digest_targets`).
    """
    snoozes = config.snoozes

    def muted(account_id: str, kind: str | None) -> bool:
        kinds = {DIGEST, kind} if kind else {DIGEST}
        for s in snoozes:
            facts = AlertFacts(account_id=account_id, kind=s.kind or DIGEST, owner=digest.owner)
            if (s.kind is None or s.kind in kinds) and s.mutes(destination, facts, now_ms):
                return True
        return False

    return replace(
        digest,
        worse=tuple(w for w in digest.worse if not muted(w.account_id, None)),
        open_alerts=tuple(a for a in digest.open_alerts if not muted(a.account_id, a.kind)),
        renewals=tuple(r for r in digest.renewals if not muted(r.account_id, None)),
    )


def _at(ms: int | None) -> str | None:
    return ms_to_rfc3339(ms) if ms is not None else None


def digest_document(digest: Digest, max_items: int) -> dict[str, Any]:
    """The webhook body: each section's first ``max_items`` entries, and each section's total."""
    return {
        "type": DIGEST,
        "digest_id": digest.digest_id,
        "owner": digest.owner,
        "date": digest.day.isoformat(),
        "time_zone": digest.zone,
        "since": ms_to_rfc3339(digest.since_ms),
        "generated_at": ms_to_rfc3339(digest.generated_ms),
        "totals": {
            "worse": len(digest.worse),
            "open_alerts": len(digest.open_alerts),
            "renewals": len(digest.renewals),
        },
        "worse": [
            {"account_id": w.account_id, "name": w.name, "arr": w.arr, "currency": w.currency,
             "score_before": w.score_before, "band_before": w.band_before, "score": w.score, "band": w.band}
            for w in digest.worse[:max_items]
        ],
        "open_alerts": [
            {"account_id": a.account_id, "name": a.name, "arr": a.arr, "currency": a.currency,
             "kind": a.kind, "since": _at(a.since_ms), "score": a.score, "band": a.band}
            for a in digest.open_alerts[:max_items]
        ],
        "renewals": [
            {"account_id": r.account_id, "name": r.name, "arr": r.arr, "currency": r.currency,
             "renewal_at": ms_to_rfc3339(r.renewal_ms), "days_left": r.days_left, "score": r.score,
             "band": r.band}
            for r in digest.renewals[:max_items]
        ],
    }  # fmt: skip
