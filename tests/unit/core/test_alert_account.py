"""Alerts carry who the account is, so delivery can route by segment, plan and owner."""

from __future__ import annotations

from datetime import UTC, datetime

from streamer.core.alerts import alert_to_dict
from streamer.core.engine import advance, record_event
from streamer.core.events import parse_event
from streamer.core.policy import DAY_MS, load_policy

T0 = int(datetime(2026, 5, 4, 10, 0, tzinfo=UTC).timestamp() * 1000)


def test_quiet_alert_names_the_accounts_segment_plan_owner_and_seats() -> None:
    policy = load_policy(None).for_account(None, None)
    facts = {"name": "Acme", "segment": "enterprise", "plan": "pro", "owner": "ana@example.com", "seats": 12}
    state, _, _ = record_event(
        None,
        parse_event(
            {
                "event_id": "f",
                "account_id": "acme",
                "event": "account_updated",
                "timestamp": T0,
                "properties": facts,
            }
        ),
        policy,
    )
    state, _, _ = record_event(
        state,
        parse_event({"event_id": "a", "account_id": "acme", "event": "login", "timestamp": T0 + 1}),
        policy,
    )

    alerts = advance(state, T0 + 8 * DAY_MS, policy)

    quiet = [alert_to_dict(a) for a in alerts if a.kind == "account_quiet"]
    assert len(quiet) == 1
    assert quiet[0]["account"] == facts
