"""The rows the read store writes for a snapshot: its ``accounts`` row and its day in ``history``.

Plain functions of the snapshot, used by the store as it writes and by the processes that turn a
fill's snapshots into rows beforehand (:mod:`api.fill`): either way a snapshot is stored as the same
parameters of the same statements.
"""

from __future__ import annotations

from collections.abc import Mapping
from operator import itemgetter
from typing import Any, NamedTuple

import orjson

from api.portfolio import instant_ms, month_of, nps_class
from api.query import arr_key, lifecycle_of, onboarding_of, overdue_key, renewal_key
from api.readmodel import Doc, history_row
from api.store import schema as t

ACCOUNT_COLUMNS = tuple(c.name for c in t.accounts.c)
ACCOUNT_FIELDS = itemgetter(*ACCOUNT_COLUMNS)
assert tuple(c.name for c in t.account_documents.c) == ("account_id", "at_ms", "doc")  # noqa: S101 - see document_params
HISTORY_COLUMNS = tuple(c.name for c in t.history.c)
HISTORY_DAY = HISTORY_COLUMNS.index("day")


def dumps(value: Any) -> str:
    """``value`` as JSON text (orjson's)."""
    return orjson.dumps(value).decode()


def facts_of(doc: Mapping[str, Any], key: str) -> Mapping[str, Any]:
    """``doc[key]`` when it is an object, else an empty one."""
    facts = doc.get(key)
    return facts if isinstance(facts, Mapping) else {}


def text_of(value: object) -> str | None:
    """``value`` when it is a string, else None."""
    return value if isinstance(value, str) else None


def account_row(account_id: str, doc: Doc) -> dict[str, Any]:
    """The ``accounts`` row of a snapshot (checked against the contract already)."""
    facts = facts_of(doc, "facts")
    episodes = facts_of(doc, "episodes")
    sub = facts_of(doc, "subscription")
    last = text_of(doc.get("last_activity_at"))
    nps = (doc.get("nps") or {}).get("score")
    onboarding, onboarding_status, _ = onboarding_of(doc)
    return {
        "account_id": account_id,
        "at_ms": instant_ms(doc.get("at")) or 0,
        "score": int(doc.get("score", 0)),
        "band": str(doc.get("band")),
        "segment": text_of(facts.get("segment")),
        "plan": text_of(facts.get("plan")),
        "owner": text_of(facts.get("owner")),
        "last_activity": last or "",
        "last_activity_ms": instant_ms(last),
        "quiet_since": episodes.get("quiet_since") or None,
        "drop_since": episodes.get("drop_since") or None,
        "poor": bool(episodes.get("poor")),
        "started_month": month_of(sub.get("started_at")),
        "cancelled_month": month_of(sub.get("cancelled_at")),
        "nps_score": nps if nps_class(nps) is not None else None,
        "arr": arr_key(doc),
        "currency": text_of(facts.get("currency")),
        "renewal_ms": renewal_key(doc),
        **dict(zip(("lifecycle", "active_days_7", "active_days_28"), lifecycle_of(doc), strict=True)),
        "onboarding_status": onboarding_status,
        "onboarding_overdue_days": overdue_key(doc),
        "onboarding_active": onboarding,
    }


def account_params(row: Mapping[str, Any]) -> tuple[Any, ...]:
    """The ``accounts`` upsert's parameters (column order) of an :func:`account_row`."""
    return ACCOUNT_FIELDS(row)  # type: ignore[no-any-return]


def document_params(row: Mapping[str, Any], text: str) -> tuple[Any, ...]:
    """The ``account_documents`` upsert's parameters (column order) of an :func:`account_row`, its
    snapshot stored as ``text``."""
    return (row["account_id"], row["at_ms"], text)


def history_params(row: Mapping[str, Any]) -> tuple[Any, ...]:
    """The ``history`` upsert's parameters (column order) of a :func:`~api.readmodel.history_row` with
    its ``account_id``."""
    return tuple(dumps(row[n]) if n == "components" else row[n] for n in HISTORY_COLUMNS)


class SnapshotRows(NamedTuple):
    """A snapshot as a fill writes it: its time, its ``accounts`` and ``account_documents`` rows and its
    day's ``history`` row, each as its upsert's parameters."""

    at_ms: int
    account: tuple[Any, ...]
    document: tuple[Any, ...]
    history: tuple[Any, ...]

    def with_text(self, text: str) -> SnapshotRows:
        """These rows with the snapshot stored as ``text``."""
        return self._replace(document=(*self.document[:-1], text))

    @property
    def day(self) -> str:
        """The UTC day of the snapshot's ``history`` row."""
        return str(self.history[HISTORY_DAY])


def snapshot_rows(account_id: str, doc: Doc, text: str) -> SnapshotRows:
    """The rows of the snapshot ``doc`` of ``account_id``, read as ``text``."""
    row = account_row(account_id, doc)
    at_ms: int = row["at_ms"]
    return SnapshotRows(
        at_ms,
        account_params(row),
        document_params(row, text),
        history_params({**history_row(doc, at_ms), "account_id": account_id}),
    )
