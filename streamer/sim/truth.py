"""The ground truth of a generated portfolio, and the parameters it was generated from.

A backtest replays a portfolio's history through churnwatch and needs to know, per account, what
really happened: when the account started, whether and when it cancelled, and when the behaviour
that preceded the cancellation began. This module holds that document as typed, frozen dataclasses,
writes it as one JSON document (:func:`truth_to_json`) and reads it back (:func:`load_truth`).
Times are timezone-aware UTC datetimes here and RFC 3339 strings with milliseconds in the file.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any, Literal

import orjson

__all__ = [
    "CHURN_ARCHETYPES",
    "FORMAT",
    "CalendarKind",
    "CalendarEntry",
    "Episode",
    "PortfolioParams",
    "Scope",
    "Shape",
    "Truth",
    "TruthAccount",
    "load_truth",
    "truth_from_dict",
    "truth_to_json",
]

FORMAT = "churnwatch-portfolio-truth/1"
Shape = Literal["b2b", "consumer"]
CalendarKind = Literal["holiday", "tracking_outage", "nps_survey"]
# Archetypes whose story ends in a cancellation (inside the history or after its end).
CHURN_ARCHETYPES = frozenset({"declining", "key_user_loss", "dark", "no_signal", "failed_onboarding", "thin"})


@dataclass(frozen=True, slots=True)
class PortfolioParams:
    """What a portfolio is generated from; the same parameters always give the same bytes.

    ``churn_rate`` is the annual share of accounts cancelling for ``b2b`` and the monthly share of
    subscribers cancelling for ``consumer``; None draws it from the shape's realistic range (the
    truth file records the value drawn).
    """

    shape: Shape
    accounts: int
    months: int
    start: date
    seed: int
    scale: float = 1.0
    segment_share: float = 0.2
    churn_rate: float | None = None
    shuffle: bool = False


@dataclass(frozen=True, slots=True)
class Scope:
    """Whom a calendar entry touches; an empty tuple means no restriction on that axis."""

    regions: tuple[str, ...] = ()
    sources: tuple[str, ...] = ()
    events: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class CalendarEntry:
    """A global calendar entry: a holiday, a tracking outage or an NPS survey wave.

    ``activity`` is the range of per-account activity factors a holiday applies (None for the
    others: an outage removes events, it does not change behaviour).
    """

    kind: CalendarKind
    name: str
    start: datetime
    end: datetime
    scope: Scope = field(default_factory=Scope)
    activity: tuple[float, float] | None = None


@dataclass(frozen=True, slots=True)
class Episode:
    """A stretch of an account's own story (a dip, a decline, a tracking gap...).

    ``factor`` is the expected activity at the episode's deepest point relative to just before it:
    the level a trend reaches times the share of the activity made by the users still there (so a
    ``key_user_left`` factor is what the others do), 0 when usage stops or tracking breaks, above 1
    for growth. For ``onboarding_ramp`` and ``new_subscriber_burst`` it is the level they start at.
    """

    kind: str
    start: datetime
    end: datetime
    factor: float


@dataclass(frozen=True, slots=True)
class TruthAccount:
    """One account's facts and story.

    ``cancelled_at`` is None for stayers and for churners whose cancellation falls after the end of
    the history; ``signal_start_at`` is None for stayers and ``no_signal`` churners, and is the
    account's start for ``thin`` and ``failed_onboarding`` ones (low usage is all they ever show).
    ``seats`` is the seat count when the history starts (or when the account starts, if later),
    ``seats_at_end`` the one when it ends. ``users`` counts every named user of the history
    (joiners and replacements included); ``baseline_users`` those active at the account's baseline,
    the later of the history's start and 60 days after the account's start, and ``weekly_events`` is
    the expected number of product events those users make in an ordinary full week at the account's
    usual level (``engagement``), before any trend, holiday or noise.
    """

    account_id: str
    shape: Shape
    archetype: str
    started_at: datetime
    cancelled_at: datetime | None
    signal_start_at: datetime | None
    seats: int
    seats_at_end: int
    plan: str
    segment: str
    owner: str | None
    region: str
    source: Literal["native", "segment"]
    users: int
    baseline_users: int
    key_users: tuple[str, ...]
    features: tuple[str, ...]
    engagement: float
    weekly_events: float
    episodes: tuple[Episode, ...] = ()

    @property
    def churner(self) -> bool:
        """Whether the account's story ends in a cancellation (possibly after the history)."""
        return self.archetype in CHURN_ARCHETYPES


@dataclass(frozen=True, slots=True)
class Truth:
    """The whole truth document: parameters, global calendar and accounts (in account id order)."""

    params: PortfolioParams
    history_start: datetime
    history_end: datetime
    calendar: tuple[CalendarEntry, ...]
    accounts: tuple[TruthAccount, ...]

    def account(self, account_id: str) -> TruthAccount:
        """The account with this id (KeyError if unknown)."""
        for a in self.accounts:
            if a.account_id == account_id:
                return a
        raise KeyError(account_id)


def _iso(dt: datetime) -> str:
    return dt.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _dt(value: Any) -> datetime:
    return datetime.fromisoformat(str(value)).astimezone(UTC)


def _opt_dt(value: Any) -> datetime | None:
    return None if value is None else _dt(value)


def _encode(obj: Any) -> Any:
    if isinstance(obj, datetime):
        return _iso(obj)
    if isinstance(obj, date):
        return obj.isoformat()
    if isinstance(obj, dict):
        return {k: _encode(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [_encode(v) for v in obj]
    return obj


def truth_to_json(truth: Truth) -> bytes:
    """Encode the truth as indented JSON (stable key order, so equal truths give equal bytes)."""
    doc = {"format": FORMAT, **_encode(asdict(truth))}
    return orjson.dumps(doc, option=orjson.OPT_INDENT_2) + b"\n"


def _scope(d: Mapping[str, Any]) -> Scope:
    return Scope(tuple(d.get("regions", ())), tuple(d.get("sources", ())), tuple(d.get("events", ())))


def _params(d: Mapping[str, Any]) -> PortfolioParams:
    return PortfolioParams(
        shape=d["shape"],
        accounts=int(d["accounts"]),
        months=int(d["months"]),
        start=date.fromisoformat(d["start"]),
        seed=int(d["seed"]),
        scale=float(d["scale"]),
        segment_share=float(d["segment_share"]),
        churn_rate=None if d.get("churn_rate") is None else float(d["churn_rate"]),
        shuffle=bool(d.get("shuffle", False)),
    )


def _account(d: Mapping[str, Any]) -> TruthAccount:
    return TruthAccount(
        account_id=d["account_id"],
        shape=d["shape"],
        archetype=d["archetype"],
        started_at=_dt(d["started_at"]),
        cancelled_at=_opt_dt(d["cancelled_at"]),
        signal_start_at=_opt_dt(d["signal_start_at"]),
        seats=int(d["seats"]),
        seats_at_end=int(d["seats_at_end"]),
        plan=d["plan"],
        segment=d["segment"],
        owner=d.get("owner"),
        region=d["region"],
        source=d["source"],
        users=int(d["users"]),
        baseline_users=int(d["baseline_users"]),
        key_users=tuple(d["key_users"]),
        features=tuple(d["features"]),
        engagement=float(d["engagement"]),
        weekly_events=float(d["weekly_events"]),
        episodes=tuple(
            Episode(e["kind"], _dt(e["start"]), _dt(e["end"]), float(e["factor"])) for e in d["episodes"]
        ),
    )


def truth_from_dict(doc: Mapping[str, Any]) -> Truth:
    """Build a :class:`Truth` from a decoded truth document (raises ValueError on another format)."""
    if doc.get("format") != FORMAT:
        raise ValueError(f"not a {FORMAT} document: format={doc.get('format')!r}")
    calendar = tuple(
        CalendarEntry(
            kind=c["kind"],
            name=c["name"],
            start=_dt(c["start"]),
            end=_dt(c["end"]),
            scope=_scope(c["scope"]),
            activity=None if c["activity"] is None else (float(c["activity"][0]), float(c["activity"][1])),
        )
        for c in doc["calendar"]
    )
    return Truth(
        params=_params(doc["params"]),
        history_start=_dt(doc["history_start"]),
        history_end=_dt(doc["history_end"]),
        calendar=calendar,
        accounts=tuple(_account(a) for a in doc["accounts"]),
    )


def load_truth(path: str | Path) -> Truth:
    """Read a truth file written by ``python -m streamer.sim.portfolio --truth``."""
    return truth_from_dict(orjson.loads(Path(path).read_bytes()))
