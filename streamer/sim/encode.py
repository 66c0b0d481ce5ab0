"""Event lines in the two shapes a real portfolio mixes: churnwatch's native JSON and Segment's.

Product events are by far the most numerous, so they are written from a per-account template with
``%`` formatting rather than through a dict and a JSON encoder; every string put into a template is
generated here (ids, feature names, timestamps) and needs no JSON escaping. Reserved events carry
properties and go through orjson.
"""

from __future__ import annotations

from typing import Any

import orjson

from streamer.sim.calendar import timestamp

__all__ = ["product_template", "reserved_line"]


def product_template(account_id: str, source: str) -> str:
    """A ``%`` template taking (sequence number, event name, timestamp, user id) for one account."""
    if source == "segment":
        return (
            f'{{"type":"track","messageId":"ajs-{account_id}-%d","event":"%s","timestamp":"%s",'
            f'"userId":"%s","context":{{"groupId":"{account_id}"}}}}'
        )
    return (
        f'{{"event_id":"{account_id}-%d","account_id":"{account_id}","event":"%s","timestamp":"%s",'
        '"user_id":"%s"}'
    )


def reserved_line(
    source: str, seq: int, account_id: str, name: str, at_ms: int, user_id: str | None, props: dict[str, Any]
) -> str:
    """A reserved event (facts, subscription, NPS, tickets) in the account's source shape.

    In Segment accounts ``account_updated`` is a ``group`` call whose traits are the facts; the other
    reserved events are ``track`` calls, from the billing or survey backend when no user is named.
    """
    ts = timestamp(at_ms)
    doc: dict[str, Any]
    if source == "segment":
        doc = {"messageId": f"ajs-{account_id}-r{seq}"}
        if user_id is not None:
            doc["userId"] = user_id
        else:
            doc["anonymousId"] = "backend"
        if name == "account_updated":
            doc.update(type="group", groupId=account_id, traits=props, timestamp=ts)
        else:
            doc.update(
                type="track", event=name, properties=props, timestamp=ts, context={"groupId": account_id}
            )
    else:
        doc = {"event_id": f"{account_id}-r{seq}", "account_id": account_id, "event": name, "timestamp": ts}
        if user_id is not None:
            doc["user_id"] = user_id
        doc["properties"] = props
    return orjson.dumps(doc).decode()
