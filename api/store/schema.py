"""The read store's tables (SQLAlchemy Core), the same on SQLite and PostgreSQL.

Every table is a projection of the ``account-health`` and ``churn-alerts`` topics, rebuilt from them
when the store is new or was filled from another cluster:

- ``accounts``: per account, the fields of its latest snapshot that lists filter and sort on, each
  list served by an index; ``account_documents``: that snapshot (``doc``, the document the API serves).
- ``portfolio_counts``: how many accounts have each value the portfolio figures count (a band, a
  subscription's start and cancel months, an NPS class, an open episode) and, for the ``arr_``
  dimensions, the sum of their ARR by currency, over all accounts, per owner,
  per segment and per owner and segment (the scopes a key can have), kept as snapshots are applied:
  the portfolio is a read of a few hundred rows, never a scan of the accounts.
- ``portfolio_days``: per scope (as ``portfolio_counts``) and UTC day, how the accounts per band and
  lifecycle status and the ARR per band and currency changed that day, as snapshots are applied: the
  portfolio as of a day is the sum of the changes up to it. Changes older than 53 ISO weeks (counted
  back from the newest day held) are summed into one row per value.
- ``history``: one row per account and UTC day, the day's latest score, band and components, for
  ``history_days`` days.
- ``alerts``: the most recently detected alerts (``detected_ms``, then ``seq``, their arrival
  order), at most ``alert_buffer``; ``latest_alerts``
  the newest of each kind per account (the open episodes of an account's page).
- ``offsets``: the next offset to read of each topic partition, written in the same transaction as
  what was read before it; ``meta``: which cluster and topics the store was filled from.

Migrations (``api/store/migrations``) create and change these tables; a test holds them equal.
"""

from __future__ import annotations

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    Column,
    Index,
    Integer,
    MetaData,
    Table,
    Text,
    false,
)

metadata = MetaData()

# Lists order text as Python does (code points): PostgreSQL's "C" collation, SQLite's default.
Ordered = Text().with_variant(Text(collation="C"), "postgresql")
# Documents: JSON text as they were read, on both. PostgreSQL checks the text is JSON and BI tools query
# inside with -> and ->> (or a cast to jsonb); jsonb's parse of every number and key took half of the
# server's CPU while a store was filled, and its re-serialisation a share of every lookup.
Document = JSON()

# The accounts' ARR and renewal, as lists sort them: without ARR last by ARR (descending), without a
# renewal last by renewal (ascending). The migration that added them says the same.
ARR_COMMENT = "ARR in whole units of currency; -1 when unknown"
NO_RENEWAL = str(2**62)
RENEWAL_COMMENT = "next renewal, ms since the epoch; 2**62 when unknown"
# The snapshot's lifecycle block; NULL where it tells none. The migration that added them says the same.
LIFECYCLE_COMMENT = "new, returning, resurrecting or dormant on the snapshot's day; NULL: none"
ACTIVE_DAYS_COMMENT = "active days of the {} ending on the snapshot's day; NULL: unknown"
# The snapshot's onboarding object (or the boolean it replaced). The migration that added them says the same.
ONBOARDING_STATUS_COMMENT = "on_track, behind, stuck or complete; NULL: none"
ONBOARDING_OVERDUE_COMMENT = "overdue days of the worst missing onboarding milestone; -1 when none"
ONBOARDING_ACTIVE_COMMENT = "in its first onboarding days"

accounts = Table(
    "accounts",
    metadata,
    Column("account_id", Ordered, primary_key=True),
    Column("at_ms", BigInteger, nullable=False, comment="snapshot time, ms since the epoch"),
    Column("score", Integer, nullable=False),
    Column("band", Text, nullable=False),
    Column("segment", Text),
    Column("plan", Text),
    Column("owner", Text),
    Column("last_activity", Ordered, nullable=False, comment="RFC 3339; '' when never active"),
    Column("last_activity_ms", BigInteger),
    Column("quiet_since", Text),
    Column("drop_since", Text),
    Column("poor", Boolean, nullable=False),
    Column("started_month", Text, comment="YYYY-MM (UTC) the subscription started"),
    Column("cancelled_month", Text),
    Column("nps_score", Integer),
    Column("arr", BigInteger, nullable=False, server_default="-1", comment=ARR_COMMENT),
    Column("currency", Text, comment="ISO 4217 code of arr"),
    Column("renewal_ms", BigInteger, nullable=False, server_default=NO_RENEWAL, comment=RENEWAL_COMMENT),
    Column("lifecycle", Text, comment=LIFECYCLE_COMMENT),
    Column("active_days_7", Integer, comment=ACTIVE_DAYS_COMMENT.format(7)),
    Column("active_days_28", Integer, comment=ACTIVE_DAYS_COMMENT.format(28)),
    Column("onboarding_status", Text, comment=ONBOARDING_STATUS_COMMENT),
    Column(
        "onboarding_overdue_days",
        Integer,
        nullable=False,
        server_default="-1",
        comment=ONBOARDING_OVERDUE_COMMENT,
    ),
    Column(
        "onboarding_active",
        Boolean,
        nullable=False,
        server_default=false(),
        comment=ONBOARDING_ACTIVE_COMMENT,
    ),
)

# One index per list the API offers: each sort order alone, and each filter with the default order
# (score) and by id. A band's lists also come by last activity (the dashboard's at-risk view).
Index("accounts_score", accounts.c.score, accounts.c.account_id)
Index("accounts_last_activity", accounts.c.last_activity, accounts.c.account_id)
Index("accounts_last_activity_ms", accounts.c.last_activity_ms)
Index("accounts_band_last_activity", accounts.c.band, accounts.c.last_activity, accounts.c.account_id)
# By ARR (largest first) and by renewal (soonest first), alone and within a band (the at-risk view).
Index("accounts_arr", accounts.c.arr, accounts.c.account_id)
Index("accounts_renewal", accounts.c.renewal_ms, accounts.c.account_id)
Index("accounts_band_arr", accounts.c.band, accounts.c.arr, accounts.c.account_id)
Index("accounts_band_renewal", accounts.c.band, accounts.c.renewal_ms, accounts.c.account_id)
# The lifecycle and onboarding status filters, with the default order (score) and by id; active days by
# score only.
for _name in ("band", "segment", "plan", "owner", "lifecycle", "onboarding_status"):
    Index(f"accounts_{_name}_score", accounts.c[_name], accounts.c.score, accounts.c.account_id)
    Index(f"accounts_{_name}_id", accounts.c[_name], accounts.c.account_id)
for _name in ("active_days_7", "active_days_28"):
    Index(f"accounts_{_name}_score", accounts.c[_name], accounts.c.score, accounts.c.account_id)
# By overdue onboarding days (most first), alone and within a status (the dashboard's onboarding view).
Index("accounts_onboarding_overdue", accounts.c.onboarding_overdue_days, accounts.c.account_id)
Index(
    "accounts_onboarding_status_overdue",
    accounts.c.onboarding_status,
    accounts.c.onboarding_overdue_days,
    accounts.c.account_id,
)

# The latest snapshot of each account, as in ``accounts`` (written with its row, the same time), apart:
# each index of ``accounts`` and each count of the portfolio reads that table whole.
account_documents = Table(
    "account_documents",
    metadata,
    Column("account_id", Ordered, primary_key=True),
    Column("at_ms", BigInteger, nullable=False, comment="snapshot time, ms since the epoch"),
    Column("doc", Document, nullable=False),
)

portfolio_counts = Table(
    "portfolio_counts",
    metadata,
    Column("key", Text, primary_key=True, comment="the columns below but accounts, as one JSON array"),
    Column("by_owner", Boolean, nullable=False, comment="counts of one owner's accounts (else of all)"),
    Column("owner", Text),
    Column("by_segment", Boolean, nullable=False, comment="counts of one segment's accounts (else of all)"),
    Column("segment", Text),
    Column(
        "dimension", Text, nullable=False, comment="accounts, band, subscription, nps, quiet, dropping, poor"
    ),
    Column("value", Text, nullable=False, comment="good; 2025-01|2025-06 (start|cancel month); promoter; ''"),
    Column("accounts", BigInteger, nullable=False),
    Column("arr", BigInteger, nullable=False, server_default="0", comment="their ARR (arr_ dimensions)"),
)
Index(
    "portfolio_counts_scope", *(portfolio_counts.c[n] for n in ("by_owner", "by_segment", "owner", "segment"))
)

portfolio_days = Table(
    "portfolio_days",
    metadata,
    Column(
        "key", Text, primary_key=True, comment="the columns below but accounts and arr, as one JSON array"
    ),
    Column("by_owner", Boolean, nullable=False, comment="changes of one owner's accounts (else of all)"),
    Column("owner", Text),
    Column("by_segment", Boolean, nullable=False, comment="changes of one segment's accounts (else of all)"),
    Column("segment", Text),
    Column("day", Text, nullable=False, comment="YYYY-MM-DD (UTC) of the snapshots that made the change"),
    Column("dimension", Text, nullable=False, comment="band, arr_band, lifecycle"),
    Column("value", Text, nullable=False, comment="good; poor|EUR (a band's ARR in a currency); dormant"),
    Column("accounts", BigInteger, nullable=False, comment="change of the accounts with the value that day"),
    Column("arr", BigInteger, nullable=False, comment="change of their ARR (arr_band)"),
)
Index(
    "portfolio_days_scope",
    *(portfolio_days.c[n] for n in ("by_owner", "by_segment", "owner", "segment", "day")),
)

history = Table(
    "history",
    metadata,
    Column("account_id", Ordered, primary_key=True),
    Column("day", Text, primary_key=True, comment="YYYY-MM-DD (UTC)"),
    Column("at_ms", BigInteger, nullable=False),
    Column("score", Integer, nullable=False),
    Column("band", Text, nullable=False),
    Column("components", Document, nullable=False),
)
Index("history_day", history.c.day)

alerts = Table(
    "alerts",
    metadata,
    Column("seq", BigInteger().with_variant(Integer, "sqlite"), primary_key=True, autoincrement=True),
    Column("alert_id", Text, nullable=False, unique=True),
    Column("kind", Text, nullable=False),
    Column("account_id", Ordered),
    Column("detected_ms", BigInteger, nullable=False),
    Column("owner", Text, comment="the account's owner when the alert was raised"),
    Column("segment", Text),
    Column("doc", Document, nullable=False),
)
# The feed is read newest first by detection time, then arrival (seq).
Index("alerts_detected", alerts.c.detected_ms, alerts.c.seq)
Index("alerts_account", alerts.c.account_id, alerts.c.detected_ms, alerts.c.seq)
Index("alerts_kind", alerts.c.kind, alerts.c.detected_ms, alerts.c.seq)

latest_alerts = Table(
    "latest_alerts",
    metadata,
    Column("account_id", Ordered, primary_key=True),
    Column("kind", Text, primary_key=True),
    Column("detected_ms", BigInteger, nullable=False),
    Column("doc", Document, nullable=False),
)

offsets = Table(
    "offsets",
    metadata,
    Column("topic", Text, primary_key=True),
    Column("partition", Integer, primary_key=True),
    Column("next_offset", BigInteger, nullable=False),
)

meta = Table(
    "meta",
    metadata,
    Column("key", Text, primary_key=True),
    Column("value", Text, nullable=False),
)

DATA_TABLES = (
    accounts,
    account_documents,
    portfolio_counts,
    portfolio_days,
    history,
    alerts,
    latest_alerts,
    offsets,
)
"""What a refill empties (``meta`` says what it was filled from)."""
