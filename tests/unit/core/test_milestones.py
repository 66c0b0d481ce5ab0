"""Onboarding milestones: rules, matching, progress, status, alerts and determinism."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from streamer.core.alerts import Alert, alert_id, alert_to_dict, health_to_dict
from streamer.core.engine import advance, mark_published, next_due_ms, record_event, snapshot_behind
from streamer.core.events import EventKind, UsageEvent
from streamer.core.milestones import Missing, evaluate, record
from streamer.core.policy import DAY_MS, Milestone, Policy, PolicyError, load_policy
from streamer.core.scoring import score
from streamer.core.snapshot import SNAPSHOT_VERSION, account_snapshot
from streamer.core.state import AccountState, MilestoneProgress, decode_state, encode_state, milestone_key
from streamer.wire.documents import HealthDocument, OnboardingDocument, SnapshotDocument

START = int(datetime(2026, 1, 5, tzinfo=UTC).timestamp() * 1000)
HOUR = 3_600_000
RULES = """
[onboarding]
stuck_days = 7

[[onboarding.milestones]]
name = "report exported"
event = "report_exported"
deadline_days = 7

[[onboarding.milestones]]
name = "team invited"
event = "invite_sent"
count = 3
deadline_days = 14

[[onboarding.milestones]]
name = "three users active"
event = "login"
users = 3
deadline_days = 21
after = "team invited"
"""
POLICY = load_policy(RULES).for_account(None, None)
REPORT, INVITE, ACTIVE = POLICY.milestones


def ev(at_ms: int, name: str, user: str | None = "u1", i: int | str = 0, **props: Any) -> UsageEvent:
    return UsageEvent(
        f"e-{name}-{user}-{i}-{at_ms}", "acme", name, at_ms, user, props, True, EventKind.ACTIVITY
    )


def started(at_ms: int = START) -> UsageEvent:
    return UsageEvent(
        f"s-{at_ms}", "acme", "subscription_started", at_ms, None, {}, True, EventKind.SUBSCRIPTION_STARTED
    )


def cancelled(at_ms: int) -> UsageEvent:
    return UsageEvent(
        f"c-{at_ms}",
        "acme",
        "subscription_cancelled",
        at_ms,
        None,
        {},
        True,
        EventKind.SUBSCRIPTION_CANCELLED,
    )


def feed(events: list[UsageEvent], policy: Policy = POLICY) -> tuple[AccountState, list[Alert]]:
    state: AccountState | None = None
    alerts: list[Alert] = []
    for e in events:
        state, _, new = record_event(state, e, policy)
        alerts += new
    assert state is not None
    return state, alerts


def milestone_alerts(alerts: list[Alert]) -> list[tuple[str, str, int]]:
    out: list[tuple[str, str, int]] = []
    for a in alerts:
        if a.kind in ("milestone_missed", "milestone_reached"):
            out.append((a.kind, a.evidence["milestone"]["name"], a.detected_at_ms))
        elif a.kind == "onboarding_complete":
            out.append((a.kind, "", a.detected_at_ms))
    return out


# --- rules ----------------------------------------------------------------------------


def test_milestones_are_off_by_default_and_stuck_days_default_to_14() -> None:
    p = Policy()
    assert (p.milestones, p.onboarding_stuck_ms, p.weights.onboarding) == ((), 14 * DAY_MS, 0.15)


def test_milestones_are_read_with_their_defaults() -> None:
    assert REPORT == Milestone("report exported", "report_exported", 7 * DAY_MS)
    assert (INVITE.count, INVITE.users, INVITE.after) == (3, 0, None)
    assert (ACTIVE.count, ACTIVE.users, ACTIVE.after, ACTIVE.deadline_ms) == (
        1,
        3,
        "team invited",
        21 * DAY_MS,
    )
    assert POLICY.onboarding_stuck_ms == 7 * DAY_MS
    rules = load_policy(
        '[[onboarding.milestones]]\nname = "api"\nevent = "api_key_created"\ndeadline_days = 2.5\n'
        'properties = { plan = "pro", beta = true, level = 2 }\n'
    )
    (m,) = rules.for_account(None, None).milestones
    assert (m.deadline_ms, dict(m.properties)) == (
        round(2.5 * DAY_MS),
        {"plan": "pro", "beta": True, "level": 2},
    )


def test_an_override_replaces_the_milestones_of_its_segment_or_plan() -> None:
    rules = load_policy(
        RULES + '[[overrides]]\nplan = "trial"\n[[overrides.onboarding.milestones]]\n'
        'name = "first login"\nevent = "login"\ndeadline_days = 2\n'
    )
    assert [m.name for m in rules.for_account(None, "trial").milestones] == ["first login"]
    assert rules.for_account(None, "pro").milestones == POLICY.milestones


M = '[[onboarding.milestones]]\nname = "a"\nevent = "login"\ndeadline_days = 7\n'


@pytest.mark.parametrize(
    ("text", "error"),
    [
        # a typo in a milestone
        (M + "dealine_days = 3\n", "onboarding.milestones[0].dealine_days: unknown key"),
        # two milestones of one name
        (M + M, "onboarding.milestones[1].name: duplicate milestone 'a'"),
        # an order naming no milestone
        (M + 'after = "b"\n', "onboarding.milestones[0].after: unknown milestone 'b'"),
        # an order naming a later milestone (so it could loop)
        (
            M.replace('"a"', '"b"', 1) + 'after = "a"\n' + M,
            "onboarding.milestones[0].after: unknown milestone 'a'",
        ),
        # no deadline
        (
            '[[onboarding.milestones]]\nname = "a"\nevent = "x"\n',
            "onboarding.milestones[0].deadline_days: required",
        ),
        # a deadline of zero
        (M.replace("= 7", "= 0"), "onboarding.milestones[0].deadline_days: must be within 0..3660"),
        # a count of zero, a boolean count, too many users
        (M + "count = 0\n", "onboarding.milestones[0].count: must be an integer within 1..10000"),
        (M + "count = true\n", "onboarding.milestones[0].count: must be an integer within 1..10000"),
        (M + "users = 17\n", "onboarding.milestones[0].users: must be an integer within 0..16"),
        # no name, no event
        (
            '[[onboarding.milestones]]\nevent = "x"\ndeadline_days = 1\n',
            "onboarding.milestones[0].name: required",
        ),
        (
            '[[onboarding.milestones]]\nname = "a"\ndeadline_days = 1\n',
            "onboarding.milestones[0].event: required",
        ),
        # a property that is not a scalar
        (M + "properties = { tags = [1] }\n", "onboarding.milestones[0].properties.tags: must be a string"),
        # one table instead of an array of tables
        ('[onboarding.milestones]\nname = "a"\n', "onboarding.milestones: must be an array of tables"),
        # in an override, with its path
        (
            '[[overrides]]\nplan = "x"\n[[overrides.onboarding.milestones]]\nname = "a"\nevent = "e"\n'
            "deadline_days = 1\nusers = -1\n",
            "overrides[0].onboarding.milestones[0].users: must be an integer within 0..16",
        ),
        # stuck days out of range
        ("[onboarding]\nstuck_days = -1\n", "onboarding.stuck_days must be within 0..3660"),
    ],
)
def test_bad_milestones_are_rejected_with_the_key_path(text: str, error: str) -> None:
    with pytest.raises(PolicyError) as err:
        load_policy(text)
    assert error in str(err.value)


def test_at_most_16_milestones() -> None:
    text = "".join(M.replace('"a"', f'"m{i}"') for i in range(17))
    with pytest.raises(PolicyError, match=r"onboarding.milestones: at most 16 milestones"):
        load_policy(text)


# --- matching and progress ------------------------------------------------------------


@pytest.mark.parametrize(
    ("wanted", "name", "props", "matches"),
    [
        ({}, "login", {}, True),  # the event alone
        ({}, "logout", {}, False),  # another event
        ({"plan": "pro"}, "login", {"plan": "pro", "x": 1}, True),  # every wanted property, others ignored
        ({"plan": "pro"}, "login", {"plan": "starter"}, False),  # a different value
        ({"plan": "pro"}, "login", {}, False),  # a missing property
        ({"level": 2}, "login", {"level": 2.0}, True),  # numbers compare as numbers
        ({"beta": True}, "login", {"beta": 1}, False),  # true is not 1 (JSON tells them apart)
        ({"level": 1}, "login", {"level": True}, False),  # nor 1 true
    ],
)
def test_an_event_matches_a_milestone_by_name_and_properties(
    wanted: dict[str, Any], name: str, props: dict[str, Any], matches: bool
) -> None:
    assert Milestone("m", "login", DAY_MS, properties=wanted).matches(name, props) is matches


def test_count_and_distinct_users_are_counted_until_reached_at_the_event_time() -> None:
    policy = Policy(milestones=(Milestone("team", "login", 7 * DAY_MS, count=3, users=2),))
    key = milestone_key("team")
    p: Mapping[int, MilestoneProgress] = {}
    p, reached = record(p, ev(START + 1, "login", "ann"), policy)
    assert (p[key].events, len(p[key].users), reached) == (1, 1, [])
    p, reached = record(p, ev(START + 2, "login", "ann", i=1), policy)  # the same user again
    assert (p[key].events, len(p[key].users), reached) == (2, 1, [])
    p, reached = record(p, ev(START + 3, "view", "bob"), policy)  # another event
    assert p[key].events == 2
    p, reached = record(p, ev(START + 4, "login", "bob"), policy)
    # Reached with the third login by a second user: the users are dropped, the state shrinks back.
    assert (p[key], [m.name for m in reached]) == (MilestoneProgress(START + 4, 3, ()), ["team"])
    p2, reached = record(p, ev(START + 5, "login", "cat"), policy)
    assert (p2, reached) == (p, [])
    assert record(p, ev(START + 6, "view", "cat"), policy)[0] is p  # an event no milestone wants: no copy


def test_a_milestone_counts_only_events_after_the_one_it_follows() -> None:
    p: Mapping[int, MilestoneProgress] = {}
    for i, user in enumerate(["a", "b", "c"]):
        p, _ = record(p, ev(START + i, "login", user), POLICY)
    assert milestone_key("three users active") not in p  # logins before the team was invited
    for i in range(3):
        p, reached = record(p, ev(START + 10 + i, "invite_sent", "a", i=i), POLICY)
    assert [m.name for m in reached] == ["team invited"]
    for i, user in enumerate(["a", "b", "c"]):
        p, reached = record(p, ev(START + 20 + i, "login", user), POLICY)
    assert [m.name for m in reached] == ["three users active"]
    assert p[milestone_key("three users active")].reached_ms == START + 22


def test_users_are_kept_only_up_to_the_number_needed() -> None:
    policy = Policy(milestones=(Milestone("m", "view", DAY_MS, count=50, users=2),))
    p: Mapping[int, MilestoneProgress] = {}
    for i in range(10):
        p, _ = record(p, ev(START + i, "view", f"u{i}"), policy)
    assert len(p[milestone_key("m")].users) == 2


# --- status ---------------------------------------------------------------------------


def reached_at(*pairs: tuple[str, int]) -> dict[int, MilestoneProgress]:
    return {milestone_key(name): MilestoneProgress(at, 1) for name, at in pairs}


@pytest.mark.parametrize(
    ("progress", "now_days", "status", "done", "next_name", "overdue"),
    [
        # nothing reached, nothing due yet
        ({}, 6.9, "on_track", 0, "report exported", [0, 0, 0]),
        # the report is due at day 7: behind from the deadline on
        ({}, 7, "behind", 0, "report exported", [0, 0, 0]),
        # 3.5 days late: behind, 3 whole days overdue
        ({}, 10.5, "behind", 0, "report exported", [3, 0, 0]),
        # stuck_days (7) late: stuck
        ({}, 14, "stuck", 0, "report exported", [7, 0, 0]),
        # the report reached on time; the invites not due yet
        (reached_at(("report exported", START + DAY_MS)), 13, "on_track", 1, "team invited", [0, 0]),
        # everything reached: complete, whenever asked
        (
            reached_at(
                ("report exported", START + 9 * DAY_MS),
                ("team invited", START),
                ("three users active", START),
            ),
            100,
            "complete",
            3,
            None,
            [],
        ),
    ],
)
def test_status_from_the_deadlines_with_time_injected(
    progress: dict[int, MilestoneProgress],
    now_days: float,
    status: str,
    done: int,
    next_name: str | None,
    overdue: list[int],
) -> None:
    ob = evaluate(progress, START, START + round(now_days * DAY_MS), POLICY)
    assert (ob.status, ob.done, ob.total) == (status, done, 3)
    assert (ob.next[0] if ob.next else None) == next_name
    assert [m.overdue_days for m in ob.missing] == overdue


def test_the_view_lists_reached_milestones_oldest_first_and_missing_ones_with_what_they_lack() -> None:
    progress = {
        **reached_at(("team invited", START + 3 * DAY_MS), ("report exported", START + DAY_MS)),
        milestone_key("three users active"): MilestoneProgress(None, 2, (1, 2)),
    }
    ob = evaluate(progress, START, START + 23 * DAY_MS, POLICY)
    assert ob.reached == (("report exported", START + DAY_MS), ("team invited", START + 3 * DAY_MS))
    assert ob.missing == (Missing("three users active", START + 21 * DAY_MS, 2 * DAY_MS, "2 of 3 users"),)
    assert (ob.status, ob.next) == ("behind", ("three users active", START + 21 * DAY_MS))
    assert ob.active  # within the first 90 days


def test_no_status_without_milestones_or_for_an_account_not_judged() -> None:
    assert evaluate({}, START, START, Policy()).status is None
    assert evaluate({}, START, START, POLICY, judged=False).status is None


# --- alerts ---------------------------------------------------------------------------


def onboarding_story() -> list[UsageEvent]:
    """Starts; exports a report on day 2; invites three people by day 16 (two days late); never gets three
    users active."""
    return [
        started(),
        ev(START + HOUR, "view"),
        ev(START + 2 * DAY_MS, "report_exported"),
        ev(START + 3 * DAY_MS, "invite_sent", i=1),
        ev(START + 5 * DAY_MS, "invite_sent", i=2),
        *[ev(START + d * DAY_MS + HOUR, "view", "u2") for d in range(6, 40)],
        ev(START + 16 * DAY_MS, "invite_sent", i=3),
        ev(START + 17 * DAY_MS, "login", "u1"),
    ]


def test_each_milestone_alerts_once_missed_at_its_deadline_and_reached_at_its_event() -> None:
    _, alerts = feed(sorted(onboarding_story(), key=lambda e: e.occurred_at_ms))
    assert milestone_alerts(alerts) == [
        ("milestone_reached", "report exported", START + 2 * DAY_MS),
        ("milestone_missed", "team invited", START + 14 * DAY_MS),
        ("milestone_reached", "team invited", START + 16 * DAY_MS),
        ("milestone_missed", "three users active", START + 21 * DAY_MS),
    ]
    missed = next(a for a in alerts if a.kind == "milestone_missed")
    assert missed.alert_id == alert_id("acme", "milestone_missed", 0, milestone="team invited")
    assert missed.severity == "medium"
    assert (
        missed.reason
        == "Onboarding milestone 'team invited' missed: 2 of 3 invite_sent within 14 days of the start"
    )
    doc = alert_to_dict(missed)
    assert doc["evidence"]["milestone"]["due_at"] == "2026-01-19T00:00:00.000Z"
    assert doc["health"]["onboarding"]["status"] == "behind"
    late = [a for a in alerts if a.kind == "milestone_reached"][1]
    assert late.reason == "Onboarding milestone 'team invited' reached 2 days after its deadline (2 of 3)"


def test_a_missed_milestone_fires_at_its_deadline_without_new_events() -> None:
    s, _ = feed([started(), ev(START + HOUR, "view")])
    assert next_due_ms(s, POLICY) == START + DAY_MS  # the midnight comes first
    alerts = advance(s, START + 7 * DAY_MS, POLICY)
    assert milestone_alerts(alerts) == [("milestone_missed", "report exported", START + 7 * DAY_MS)]
    assert milestone_alerts(advance(s, START + 7 * DAY_MS, POLICY)) == []  # once
    assert milestone_alerts(advance(s, START + 30 * DAY_MS, POLICY)) == [
        ("milestone_missed", "team invited", START + 14 * DAY_MS),
        ("milestone_missed", "three users active", START + 21 * DAY_MS),
    ]


def test_onboarding_complete_comes_with_the_last_milestone() -> None:
    events = [
        started(),
        ev(START + HOUR, "report_exported"),
        *[ev(START + 2 * HOUR + i, "invite_sent", i=i) for i in range(3)],
        *[ev(START + 3 * HOUR + i, "login", f"u{i}") for i in range(3)],
    ]
    s, alerts = feed(events)
    assert milestone_alerts(alerts) == [
        ("milestone_reached", "report exported", START + HOUR),
        ("milestone_reached", "team invited", START + 2 * HOUR + 2),
        ("milestone_reached", "three users active", START + 3 * HOUR + 2),
        ("onboarding_complete", "", START + 3 * HOUR + 2),
    ]
    done = alerts[-1]
    assert (done.severity, done.alert_id) == (
        "info",
        alert_id("acme", "onboarding_complete", 0, milestone=""),
    )
    assert done.reason == "Onboarding complete: all 3 milestones reached, the last 3 hours after the start"
    assert milestone_alerts(advance(s, START + 60 * DAY_MS, POLICY)) == []


def test_an_account_past_its_onboarding_when_first_active_is_not_judged() -> None:
    # Its subscription began long before its first activity (an existing customer): no milestone applies.
    s, alerts = feed([started(START - 400 * DAY_MS), ev(START, "report_exported")])
    assert milestone_alerts(alerts) == []
    assert milestone_alerts(advance(s, START + 60 * DAY_MS, POLICY)) == []
    assert score(s, START, POLICY).onboarding.status is None


@pytest.mark.parametrize(
    ("first_active_days", "judged"),
    [
        (0, True),  # active from the start
        (20.9, True),  # a slow starter, before the last deadline (21 days)
        (21, False),  # first seen once every deadline had passed: nothing it could have been warned of
        (60, False),  # an existing customer
    ],
)
def test_an_account_is_judged_when_first_active_before_the_last_deadline(
    first_active_days: float, judged: bool
) -> None:
    s, _ = feed([started(), ev(START + round(first_active_days * DAY_MS), "view")])
    alerts = advance(s, START + 90 * DAY_MS, POLICY)
    assert (score(s, START + 90 * DAY_MS, POLICY).onboarding.status is not None) is judged
    assert bool(milestone_alerts(alerts)) is judged


def test_a_cancelled_account_raises_no_milestone_alert() -> None:
    s, _ = feed([started(), ev(START + HOUR, "view"), cancelled(START + 2 * DAY_MS)])
    assert milestone_alerts(advance(s, START + 60 * DAY_MS, POLICY)) == []


def test_the_score_has_an_onboarding_component_while_onboarding() -> None:
    s, _ = feed([started(), ev(START + HOUR, "report_exported")])
    advance(s, START + 17 * DAY_MS, POLICY)
    c = score(s, START + 17 * DAY_MS, POLICY).component("onboarding")
    assert c is not None
    # report reached (1), team invited 3 days late (half), three users not due (1): 2.5 of 3.
    assert c.value == 83.3
    assert (
        c.explanation == "1 of 3 onboarding milestones; 'team invited' is 3 days overdue (0 of 3 invite_sent)"
    )
    assert score(s, START + 91 * DAY_MS, POLICY).component("onboarding") is None  # onboarding over
    assert score(s, START + 17 * DAY_MS, Policy()).component("onboarding") is None  # no milestones


def test_the_snapshot_shows_the_onboarding_object_and_is_republished_when_a_milestone_changes() -> None:
    s, _ = feed([started(), ev(START + HOUR, "report_exported")])
    health = score(s, START + 2 * HOUR, POLICY)
    mark_published(s, health, POLICY)
    assert not snapshot_behind(s)
    snap = account_snapshot(s, health, POLICY, None)
    assert snap["version"] == SNAPSHOT_VERSION == 2
    assert snap["onboarding"] == {
        "active": True,
        "status": "on_track",
        "reached": [{"name": "report exported", "at": "2026-01-05T01:00:00.000Z"}],
        "missing": [
            {"name": "team invited", "due_at": "2026-01-19T00:00:00.000Z", "overdue_days": 0},
            {"name": "three users active", "due_at": "2026-01-26T00:00:00.000Z", "overdue_days": 0},
        ],
        "next": {"name": "team invited", "due_at": "2026-01-19T00:00:00.000Z"},
        "done": 1,
        "total": 3,
    }
    SnapshotDocument.model_validate(snap)
    advance(s, START + 14 * DAY_MS, POLICY)  # team invited missed
    assert snapshot_behind(s)
    assert decode_state(encode_state(s)) == s


def test_documents_written_before_milestones_read_onboarding_as_active() -> None:
    health = health_to_dict(score(feed([ev(START, "view")], Policy())[0], START, Policy()))
    assert health["onboarding"] == {
        "active": True,
        "status": None,
        "reached": [],
        "missing": [],
        "next": None,
        "done": 0,
        "total": 0,
    }
    assert HealthDocument.model_validate(health).onboarding == OnboardingDocument(active=True)
    assert HealthDocument.model_validate({**health, "onboarding": False}).onboarding is False


# --- determinism ----------------------------------------------------------------------


def run(events: list[UsageEvent], advance_points: list[int]) -> list[tuple[str, str, int]]:
    state: AccountState | None = None
    alerts: list[Alert] = []
    points = sorted(advance_points)
    for e in events:
        while points and points[0] <= e.occurred_at_ms and state is not None:
            alerts += advance(state, points.pop(0), POLICY)
        state, _, new = record_event(state, e, POLICY)
        alerts += new
    assert state is not None
    alerts += advance(state, START + 60 * DAY_MS, POLICY)
    return [(a.alert_id, a.kind, a.detected_at_ms) for a in alerts if a.kind in _ONBOARDING_KINDS]


_ONBOARDING_KINDS = {"milestone_missed", "milestone_reached", "onboarding_complete"}
_NAMES = ("report_exported", "invite_sent", "login", "view")


@settings(max_examples=60, deadline=None)
@given(
    st.lists(
        st.tuples(
            st.integers(0, 40 * DAY_MS), st.sampled_from(_NAMES), st.sampled_from(["a", "b", "c", "d"])
        ),
        max_size=25,
    ),
    st.lists(st.integers(0, 60 * DAY_MS), max_size=20),
)
def test_milestone_alerts_are_the_same_live_as_replayed_however_the_clock_advanced(
    raw: list[tuple[int, str, str]], ticks: list[int]
) -> None:
    events = [started()] + sorted(
        (ev(START + at, name, user, i=i) for i, (at, name, user) in enumerate(raw)),
        key=lambda e: e.occurred_at_ms,
    )
    replayed = run(events, [])  # a backlog: no clock between events
    assert run(events, [START + t for t in ticks]) == replayed  # live: the clock ticking in between
    assert len({a for a, _, _ in replayed}) == len(replayed)  # each once


def test_the_default_set_of_the_example_file_is_the_one_the_demo_gives_its_trials() -> None:
    deploy = Path(__file__).resolve().parents[3] / "deploy"
    lines = deploy.joinpath("rules.example.toml").read_text().splitlines()
    first = lines.index("# [[onboarding.milestones]]")
    block = []
    for line in lines[first:]:
        if not line.startswith("#"):
            break  # the commented-out set ends with the comment
        block.append(line.removeprefix("#").removeprefix(" "))
    milestones = load_policy("\n".join(block)).for_account(None, None).milestones
    assert [m.name for m in milestones] == [
        "first report exported",
        "team invited",
        "three users active",
        "integration connected",
    ]
    demo = load_policy(deploy.joinpath("rules.demo.toml").read_text())
    assert demo.for_account("smb", "trial").milestones == milestones
    assert demo.for_account("smb", "pro").milestones == ()
