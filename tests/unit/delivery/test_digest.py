"""The daily digest's core: when it is due, what it says per owner, routes, snoozes and baselines."""

from __future__ import annotations

from datetime import UTC, date, datetime
from zoneinfo import ZoneInfo

import orjson
import pytest

from streamer.delivery.config import load_delivery_config
from streamer.delivery.digest import (
    Baseline,
    Digest,
    DigestBook,
    OpenAlert,
    Renewal,
    Schedule,
    Worse,
    compose,
    digest_date,
    digest_document,
    digest_id,
    digest_instant,
    digest_targets,
    for_destination,
)
from streamer.delivery.slack import digest_slack_message
from tests.unit.delivery.snapshots import snapshot

UTC_8 = Schedule(hour=8, zone=ZoneInfo("UTC"))
PARIS_8 = Schedule(hour=8, zone=ZoneInfo("Europe/Paris"))
NOW = datetime(2026, 12, 3, 8, 0, tzinfo=UTC)
TODAY = date(2026, 12, 3)


def at(text: str) -> datetime:
    return datetime.fromisoformat(text)


@pytest.mark.parametrize(
    ("now", "schedule", "expected"),
    [
        # One minute before the hour: nothing is due yet.
        ("2026-12-03T07:59:00+00:00", UTC_8, None),
        # At the hour: today's digest.
        ("2026-12-03T08:00:00+00:00", UTC_8, date(2026, 12, 3)),
        # Late in the day (a restart after a crash): still today's, never yesterday's.
        ("2026-12-03T23:59:00+00:00", UTC_8, date(2026, 12, 3)),
        # Paris is UTC+1 in winter: 07:00 UTC is 08:00 there.
        ("2026-12-03T06:59:00+00:00", PARIS_8, None),
        ("2026-12-03T07:00:00+00:00", PARIS_8, date(2026, 12, 3)),
        # 23:30 UTC is already the next local day in Paris, and past midnight but before 08:00 there.
        ("2026-12-03T23:30:00+00:00", PARIS_8, None),
        # Summer time: UTC+2, so 08:00 in Paris is 06:00 UTC.
        ("2026-07-01T06:00:00+00:00", PARIS_8, date(2026, 7, 1)),
    ],
)
def test_digest_date_is_today_once_the_local_hour_has_come(
    now: str, schedule: Schedule, expected: date | None
) -> None:
    assert digest_date(at(now), schedule) == expected


def test_digest_instant_in_a_spring_forward_gap_is_the_hour_after() -> None:
    # 02:00 does not exist in Paris on 2026-03-29 (02:00 → 03:00): the digest comes at 03:00 CEST.
    gap = Schedule(hour=2, zone=ZoneInfo("Europe/Paris"))
    assert digest_instant(date(2026, 3, 29), gap) == at("2026-03-29T01:00:00+00:00")
    assert digest_instant(date(2026, 12, 3), Schedule(hour=8, zone=ZoneInfo("America/New_York"))) == at(
        "2026-12-03T13:00:00+00:00"
    )


def test_digest_ids_are_deterministic_per_owner_and_local_date() -> None:
    assert digest_id(TODAY, "alice@example.com") == "digest:2026-12-03:owner:alice@example.com"
    # An owner literally called "unowned" does not collide with the unowned digest.
    assert digest_id(TODAY, None) == "digest:2026-12-03:unowned"
    assert digest_id(TODAY, "unowned") == "digest:2026-12-03:owner:unowned"


def portfolio() -> DigestBook:
    book = DigestBook()
    snaps = [
        # a1: band fell since its recorded baseline (80 good → 55 average).
        snapshot("a1", "2026-12-03T07:00:00.000Z", 55, "average", owner="alice", name="Acme", arr=50_000.0,
                 currency="EUR"),
        # a2: no baseline record; the snapshot before the latest is from before yesterday's digest.
        snapshot("a2", "2026-12-01T10:00:00.000Z", 70, "good", owner="alice", name="Beta", arr=120_000.0),
        snapshot("a2", "2026-12-03T06:00:00.000Z", 58, "average", owner="alice", name="Beta", arr=120_000.0,
                 quiet_since="2026-11-28T09:00:00.000Z"),
        # a3: unchanged since before yesterday's digest (its own baseline); poor; renews in 17 days.
        snapshot("a3", "2026-12-01T10:00:00.000Z", 40, "poor", owner="alice", poor=True,
                 renewal_at="2026-12-20T00:00:00.000Z"),
        # a4: fell 5 points (under the threshold of 10); renews beyond the 30-day window.
        snapshot("a4", "2026-12-03T05:00:00.000Z", 75, "good", owner="alice",
                 renewal_at="2027-02-01T00:00:00.000Z"),
        # b1: fell exactly the threshold within its band; usage dropping.
        snapshot("b1", "2026-12-02T20:00:00.000Z", 50, "average", owner="bob",
                 drop_since="2026-12-02T12:00:00.000Z"),
        # u1: no owner; renews tomorrow.
        snapshot("u1", "2026-12-02T10:00:00.000Z", 90, "good", renewal_at="2026-12-04T00:00:00.000Z"),
        # c1: carol's only account has nothing to report.
        snapshot("c1", "2026-12-02T10:00:00.000Z", 90, "good", owner="carol"),
        # n1: changed after yesterday's digest with nothing older known: not judged this once.
        snapshot("n1", "2026-12-03T01:00:00.000Z", 20, "poor", owner="bob"),
    ]  # fmt: skip
    for doc in snaps:
        book.apply_snapshot(doc["account_id"], orjson.dumps(doc))
    yesterday = date(2026, 12, 2)
    book.apply_baseline("a1", Baseline(yesterday, 80, "good"))
    book.apply_baseline("a4", Baseline(yesterday, 80, "good"))
    book.apply_baseline("b1", Baseline(yesterday, 60, "average"))
    return book


def test_compose_lists_per_owner_what_got_worse_open_alerts_and_renewals() -> None:
    digests = compose(portfolio(), TODAY, NOW, UTC_8)
    since, now_ms = 1_796_198_400_000, 1_796_284_800_000  # 2026-12-02T08:00Z, 2026-12-03T08:00Z
    assert [d.owner for d in digests] == ["alice", "bob", "carol", None]
    alice, bob, carol, unowned = digests
    assert alice == Digest(
        "digest:2026-12-03:owner:alice",
        "alice",
        TODAY,
        "UTC",
        since,
        now_ms,
        worse=(
            Worse("a2", "Beta", 120_000.0, None, 70, "good", 58, "average"),
            Worse("a1", "Acme", 50_000.0, "EUR", 80, "good", 55, "average"),
        ),
        open_alerts=(
            OpenAlert("a2", "Beta", 120_000.0, None, "account_quiet", 1_795_856_400_000, 58, "average"),
            OpenAlert("a3", None, None, None, "health_degraded", None, 40, "poor"),
        ),
        renewals=(Renewal("a3", None, None, None, 1_797_724_800_000, 17, 40, "poor"),),
    )
    assert bob.worse == (Worse("b1", None, None, None, 60, "average", 50, "average"),)
    assert bob.open_alerts == (
        OpenAlert("b1", None, None, None, "usage_drop", 1_796_212_800_000, 50, "average"),
    )
    assert carol.empty
    assert unowned.digest_id == "digest:2026-12-03:unowned"
    assert unowned.renewals == (Renewal("u1", None, None, None, 1_796_342_400_000, 1, 90, "good"),)
    assert unowned.worse == ()
    assert unowned.open_alerts == ()


CONFIG = load_delivery_config(
    """
[[destinations]]
name = "alice-slack"
type = "slack"
url = "https://hooks.slack.com/services/T0/B0/alice"

[[destinations]]
name = "crm"
type = "webhook"
url = "https://crm.example.com/hooks"
secret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"

[[destinations]]
name = "alerts-only"
type = "slack"
url = "https://hooks.slack.com/services/T0/B0/alerts"

[[routes]]
owner = "alice"
destinations = ["alice-slack"]

[[routes]]
destinations = ["crm"]

[[routes]]
kinds = ["account_quiet"]
destinations = ["alerts-only"]

[[routes]]
bands = ["poor"]
destinations = ["alerts-only"]

[[snoozes]]
destination = "crm"
account = "a2"
until = 2026-12-10T00:00:00Z

[[snoozes]]
account = "a3"
kind = "health_degraded"
until = 2026-12-10T00:00:00Z

[[snoozes]]
destination = "alice-slack"
kind = "daily_digest"
until = 2026-12-03T09:00:00Z
"""
)


def test_digests_are_routed_by_owner_and_kind_and_a_digest_snooze_mutes_them() -> None:
    alice, bob, *_ = compose(portfolio(), TODAY, NOW, UTC_8)
    now_ms = round(NOW.timestamp() * 1000)
    # The route by kind account_quiet and the one by band never take a digest.
    assert [(t.destination, t.snoozed) for t in digest_targets(CONFIG, alice, now_ms)] == [
        ("alice-slack", True),
        ("crm", False),
    ]
    assert [(t.destination, t.snoozed) for t in digest_targets(CONFIG, bob, now_ms)] == [("crm", False)]
    # The snooze of the digest kind ends at 09:00.
    later = now_ms + 3_600_000
    assert [(t.destination, t.snoozed) for t in digest_targets(CONFIG, alice, later)] == [
        ("alice-slack", False),
        ("crm", False),
    ]


def test_snoozed_accounts_and_kinds_leave_a_destinations_digest() -> None:
    alice = compose(portfolio(), TODAY, NOW, UTC_8)[0]
    now_ms = round(NOW.timestamp() * 1000)
    crm = for_destination(CONFIG, alice, "crm", now_ms)
    # a2 is snoozed at crm: out of every section. a3's poor-health alert is snoozed everywhere, its
    # renewal is not an alert and stays.
    assert [w.account_id for w in crm.worse] == ["a1"]
    assert crm.open_alerts == ()
    assert [r.account_id for r in crm.renewals] == ["a3"]
    # At alice-slack after its digest snooze ended (09:00): only a3's poor-health alert is out.
    slack = for_destination(CONFIG, alice, "alice-slack", now_ms + 7_200_000)
    assert [w.account_id for w in slack.worse] == ["a2", "a1"]
    assert [(a.account_id, a.kind) for a in slack.open_alerts] == [("a2", "account_quiet")]
    # Once the snoozes end, everything is back.
    assert for_destination(CONFIG, alice, "crm", 1_796_860_800_000) == alice


def test_digest_document_caps_each_section_and_gives_totals() -> None:
    alice = compose(portfolio(), TODAY, NOW, UTC_8)[0]
    doc = digest_document(alice, max_items=1)
    assert doc == {
        "type": "daily_digest",
        "digest_id": "digest:2026-12-03:owner:alice",
        "owner": "alice",
        "date": "2026-12-03",
        "time_zone": "UTC",
        "since": "2026-12-02T08:00:00.000Z",
        "generated_at": "2026-12-03T08:00:00.000Z",
        "totals": {"worse": 2, "open_alerts": 2, "renewals": 1},
        "worse": [
            {"account_id": "a2", "name": "Beta", "arr": 120000.0, "currency": None, "score_before": 70,
             "band_before": "good", "score": 58, "band": "average"},
        ],
        "open_alerts": [
            {"account_id": "a2", "name": "Beta", "arr": 120000.0, "currency": None, "kind": "account_quiet",
             "since": "2026-11-28T09:00:00.000Z", "score": 58, "band": "average"},
        ],
        "renewals": [
            {"account_id": "a3", "name": None, "arr": None, "currency": None,
             "renewal_at": "2026-12-20T00:00:00.000Z", "days_left": 17, "score": 40, "band": "poor"},
        ],
    }  # fmt: skip
    assert orjson.loads(orjson.dumps(doc)) == doc


def test_slack_digest_lists_a_few_lines_per_section_and_counts_the_rest() -> None:
    alice = compose(portfolio(), TODAY, NOW, UTC_8)[0]
    message = digest_slack_message(digest_document(alice, 50), "https://cw.example.com/")
    assert message["text"] == "Daily digest for alice, 2026-12-03"
    texts = [b["text"]["text"] for b in message["blocks"] if b["type"] == "section"]
    assert texts == [
        "*Got worse (2)*\n• *Beta* (a2): 70 (good) → 58 (average), ARR 120,000\n"
        "• *Acme* (a1): 80 (good) → 55 (average), ARR 50,000 EUR",
        "*Open alerts (2)*\n• *Beta* (a2): quiet since 2026-11-28, score 58 (average), ARR 120,000\n"
        "• *a3*: poor health, score 40 (poor)",
        "*Renewals due (1)*\n• *a3*: renews 2026-12-20 (in 17 days), score 40 (poor)",
    ]
    assert message["blocks"][-1]["elements"][0]["url"] == "https://cw.example.com/dashboard"
    many = digest_slack_message(
        {
            **digest_document(alice, 50),
            **{"worse": [], "open_alerts": [], "renewals": []},
            "totals": {"worse": 12, "open_alerts": 0, "renewals": 0},
        },
        "https://cw.example.com",
    )
    assert many["blocks"][2]["text"]["text"] == "*Got worse (12)*\n• …and 12 more"
    assert many["blocks"][3]["text"]["text"] == "*Open alerts (0)*\nnone"


def test_roll_persists_only_changed_baselines_and_keeps_a_days_own() -> None:
    book = portfolio()
    written = dict(book.roll(TODAY))
    # Every account without a baseline gets one; a1, a4 and b1 changed since theirs.
    assert written == {
        "a1": Baseline(TODAY, 55, "average"),
        "a2": Baseline(TODAY, 58, "average"),
        "a3": Baseline(TODAY, 40, "poor"),
        "a4": Baseline(TODAY, 75, "good"),
        "b1": Baseline(TODAY, 50, "average"),
        "u1": Baseline(TODAY, 90, "good"),
        "c1": Baseline(TODAY, 90, "good"),
        "n1": Baseline(TODAY, 20, "poor"),
    }
    # Later the same day (a restart after the digest was finished): today's baselines stay.
    book.apply_snapshot("a1", snapshot("a1", "2026-12-03T12:00:00.000Z", 30, "poor", owner="alice"))
    assert book.roll(TODAY) == []
    assert book.baselines["a1"] == Baseline(TODAY, 55, "average")
    # The next day only a1 changed; a gone account (tombstone) loses its baseline.
    book.apply_snapshot("c1", None)
    tomorrow = date(2026, 12, 4)
    assert book.roll(tomorrow) == [("a1", Baseline(tomorrow, 30, "poor"))]
    assert "c1" not in book.baselines


def test_book_is_bounded_and_ignores_older_and_invalid_snapshots() -> None:
    book = DigestBook(max_accounts=2)
    for account in ("x1", "x2", "x3"):
        book.apply_snapshot(account, snapshot(account, "2026-12-02T10:00:00.000Z", 50, "average"))
    assert sorted(book.views) == ["x1", "x2"]
    assert book.untracked == 1
    # A snapshot older than the one kept changes nothing.
    book.apply_snapshot("x1", snapshot("x1", "2026-12-01T10:00:00.000Z", 10, "poor"))
    assert book.views["x1"].latest.score == 50
    book.apply_snapshot("x1", b'{"not": "a snapshot"}')
    assert book.invalid == 1
    assert Baseline.from_json({"day": "2026-12-02", "score": 3, "band": "poor"}) == Baseline(
        date(2026, 12, 2), 3, "poor"
    )
    assert Baseline.from_json({"day": "2026-12-02", "score": 3, "band": "awful"}) is None
    assert Baseline.from_json({"status": "delivered"}) is None


def test_settings_reject_an_unknown_time_zone_and_default_to_off() -> None:
    from pydantic import ValidationError

    from streamer.delivery.settings import DeliverySettings

    with pytest.raises(ValidationError, match="unknown IANA time zone 'Mars/Olympus'"):
        DeliverySettings(digest_time_zone="Mars/Olympus")
    settings = DeliverySettings(digest_time_zone="Europe/Paris")
    assert (settings.digest_enabled, settings.digest_hour, settings.digest_renewal_days) == (False, 8, 30)
