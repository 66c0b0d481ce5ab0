"""The demo's new accounts through the core: milestones reached at their own pace, missed, completed."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

from streamer.core.alerts import Alert
from streamer.core.engine import advance, record_event
from streamer.core.events import parse_event, parse_event_time
from streamer.core.milestones import onboarding_of
from streamer.core.policy import load_policy
from streamer.core.state import AccountState
from streamer.sim.seeded import DAY_MS, MILESTONE_EVENTS, ONBOARDING_PACES, Simulation, make_accounts

REPO = Path(__file__).resolve().parents[3]
# A Thursday, like any other day: the stories are placed relative to the start.
START = parse_event_time("2026-10-01T09:30:00Z")
DAYS = 35  # make demo: --accounts 40 --start-days-ago 35, seed 7


def run_demo() -> tuple[Simulation, dict[str, AccountState], list[Alert]]:
    rules = load_policy((REPO / "deploy" / "rules.demo.toml").read_text())
    sim = Simulation(make_accounts(40, 7, START, DAYS * DAY_MS), 7, START)
    states: dict[str, AccountState] = {}
    alerts: list[Alert] = []
    end = START + DAYS * DAY_MS
    for doc in sim.until(end):
        event = parse_event(doc)
        state = states.get(event.account_id)
        policy = rules.for_account(state.segment, state.plan) if state else rules.for_account(None, None)
        state, _, new = record_event(state, event, policy)
        states[event.account_id] = state
        alerts += new
    for state in states.values():
        alerts += advance(state, end, rules.for_account(state.segment, state.plan))
    return sim, states, alerts


def test_new_accounts_onboard_at_their_own_pace_in_the_demo() -> None:
    sim, states, alerts = run_demo()
    new = [a for a in sim.accounts if a.behaviour in ONBOARDING_PACES]
    assert Counter(a.behaviour for a in new) == {
        "onboards_fast": 3,
        "onboards_slow": 3,
        "onboarding_fails": 2,
    }
    assert all(a.plan == "trial" and a.started_at_ms is not None and a.started_at_ms > START for a in new)
    # Only the trials are judged on milestones (the demo rules give them to the trial plan).
    rules = load_policy((REPO / "deploy" / "rules.demo.toml").read_text())
    end = START + DAYS * DAY_MS
    status = {
        a.account_id: onboarding_of(states[a.account_id], end, rules.for_account(a.segment, a.plan)).status
        for a in sim.accounts
    }
    assert {status[a.account_id] for a in sim.accounts if a.behaviour not in ONBOARDING_PACES} == {None}
    by_pace = {pace: {status[a.account_id] for a in new if a.behaviour == pace} for pace in ONBOARDING_PACES}
    assert by_pace["onboards_fast"] == {"complete"}
    assert by_pace["onboarding_fails"] == {"behind"}
    assert "on_track" in by_pace["onboards_slow"]
    kinds = Counter(str(a.kind) for a in alerts)
    assert kinds["milestone_missed"] >= 2 and kinds["onboarding_complete"] >= 3
    assert {a.account_id for a in alerts if a.kind == "milestone_reached"} <= {a.account_id for a in new}


def test_a_new_account_sends_nothing_before_it_starts_and_its_milestone_events_when_its_story_says() -> None:
    sim = Simulation(make_accounts(10, 7, START, DAYS * DAY_MS), 7, START)
    events = list(sim.until(START + DAYS * DAY_MS))
    for account in sim.accounts:
        if account.behaviour not in ONBOARDING_PACES:
            assert account.started_at_ms is None and account.milestones == ()
            continue
        mine = [e for e in events if e["account_id"] == account.account_id]
        assert min(parse_event_time(e["timestamp"]) for e in mine) == account.started_at_ms
        scripted = [
            (parse_event_time(e["timestamp"]), e["event"]) for e in mine if e["event"] in MILESTONE_EVENTS
        ]
        assert scripted == [m for m in account.milestones if m[0] <= START + DAYS * DAY_MS]
