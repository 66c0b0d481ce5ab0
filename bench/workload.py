"""Seeded benchmark workloads: a realistic event mix, and full account states to seed a worker with.

Pure: no Kafka, and time is an argument.
"""

from __future__ import annotations

import random
from collections.abc import Iterator

import orjson

from streamer.core.engine import next_due_ms
from streamer.core.policy import DAY_MS, Band, load_policy
from streamer.core.state import FEATURE_BITS, USER_BITS, AccountState, DayBucket, encode_state, id_ring

FEATURES = [
    "login",
    "dashboard_viewed",
    "report_viewed",
    "report_exported",
    "invite_sent",
    "comment_added",
    "search",
    "integration_synced",
    "file_uploaded",
    "settings_changed",
]
PLANS = ["starter", "pro", "enterprise"]
SEGMENTS = ["smb", "mid-market", "enterprise"]

# Share of each kind of record in the mix (the rest are native usage events).
SEGMENT_SHARE = 0.10
FACT_SHARE = 0.01
NPS_SHARE = 0.002
TICKET_SHARE = 0.004
DUPLICATE_SHARE = 0.005


def account_id(i: int) -> str:
    """The id of benchmark account ``i``."""
    return f"acct-{i:07d}"


def events(n: int, accounts: int, start_ms: int, end_ms: int, seed: int = 1) -> Iterator[tuple[bytes, bytes]]:
    """``n`` (key, value) records over ``accounts`` accounts, timestamps rising from start to end.

    The mix: native usage events from a handful of users per account over ten features, 10%
    Segment ``track`` calls, account updates, NPS responses, support tickets, and 0.5% duplicates
    (an event id sent again). Timestamps carry a few seconds of jitter, so the stream is slightly out
    of order, as real producers are.
    """
    rng = random.Random(seed)
    span = max(1, end_ms - start_ms)
    recent: list[tuple[bytes, bytes]] = []
    for i in range(n):
        r = rng.random()
        if r < DUPLICATE_SHARE and recent:
            yield recent[rng.randrange(len(recent))]
            continue
        a = rng.randrange(accounts)
        acct = account_id(a)
        at = min(end_ms, start_ms + span * i // n + rng.randrange(5_000))
        user = f"u{a % 97}-{rng.randrange(3 + a % 20)}"
        r = rng.random()
        doc: dict[str, object]
        if r < SEGMENT_SHARE:
            doc = {
                "type": "track",
                "messageId": f"m{i}",
                "event": rng.choice(FEATURES),
                "userId": user,
                "timestamp": at,
                "context": {"groupId": acct},
            }
        elif r < SEGMENT_SHARE + FACT_SHARE:
            doc = {
                "event_id": f"f{i}",
                "account_id": acct,
                "event": "account_updated",
                "timestamp": at,
                "properties": {"seats": 5 + a % 50, "plan": PLANS[a % 3], "segment": SEGMENTS[a % 3]},
            }
        elif r < SEGMENT_SHARE + FACT_SHARE + NPS_SHARE:
            doc = {
                "event_id": f"n{i}",
                "account_id": acct,
                "event": "nps_response",
                "timestamp": at,
                "properties": {"score": rng.randrange(11)},
            }
        elif r < SEGMENT_SHARE + FACT_SHARE + NPS_SHARE + TICKET_SHARE:
            name = rng.choice(["support_ticket_opened", "support_ticket_closed"])
            doc = {"event_id": f"t{i}", "account_id": acct, "event": name, "timestamp": at}
        else:
            doc = {
                "event_id": f"e{i}",
                "account_id": acct,
                "event": FEATURES[min(len(FEATURES) - 1, int(rng.expovariate(0.4)))],
                "timestamp": at,
                "user_id": user,
            }
        record = (acct.encode(), orjson.dumps(doc))
        if len(recent) < 1000:
            recent.append(record)
        elif rng.random() < 0.01:
            recent[rng.randrange(1000)] = record
        yield record


def full_state(i: int, now_ms: int, days: int = 35, seed: int = 1) -> AccountState:
    """A steady account with ``days`` days of activity ending today, scored and published."""
    rng = random.Random(seed * 1_000_003 + i)
    today = now_ms // DAY_MS
    state = AccountState(account_id=account_id(i), first_seen_ms=(today - 200) * DAY_MS, clock_ms=now_ms)
    state.seats, state.plan, state.segment = 5 + i % 50, PLANS[i % 3], SEGMENTS[i % 3]
    state.name, state.owner = f"Customer {i}", f"owner{i % 7}@example.com"
    bits = rng.getrandbits
    for day in range(today - days + 1, today + 1):
        events = 5 + bits(6)
        # Sparse random bitmaps stand in for a few users' and features' sketch bits.
        users = bits(USER_BITS) & bits(USER_BITS) & bits(USER_BITS) & bits(USER_BITS)
        features = bits(FEATURE_BITS) & bits(FEATURE_BITS) & bits(FEATURE_BITS) & bits(FEATURE_BITS)
        state.days[day] = DayBucket(events, float(events), users, features)
    state.last_activity_ms = now_ms - bits(21)
    state.recent_ids = id_ring(bits(64) for _ in range(64))
    state.applied_offset = -1
    state.last_band = state.published_band = Band.GOOD
    state.published_score = 80
    state.published_components = {"activity": 80.0, "recency": 100.0, "breadth": 50.0, "sentiment": 70.0}
    return state


def encoded_states(accounts: int, now_ms: int, days: int = 35) -> Iterator[tuple[str, bytes]]:
    """``(account id, encoded state)`` for accounts ``0 .. accounts - 1``, stored as a worker stores them:
    with their next due point under the default rules (the next midnight at the latest, while a day is in
    the window), which a restarted worker reads to rebuild its schedule."""
    policies = load_policy(None)
    for i in range(accounts):
        state = full_state(i, now_ms, days)
        state.due_ms = next_due_ms(state, policies.for_account(state.segment, state.plan))
        yield state.account_id, encode_state(state)
