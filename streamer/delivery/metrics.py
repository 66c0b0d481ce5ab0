"""Prometheus metrics of the delivery process (served on ``CHURNWATCH_DELIVERY_METRICS_PORT``)."""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

DELIVERIES = Counter(
    "churnwatch_deliveries_total",
    "Alerts per destination by outcome: delivered, dead, skipped (already in the ledger), snoozed.",
    ["destination", "outcome"],
)
LATENCY = Histogram(
    "churnwatch_delivery_latency_seconds",
    "From the alert's Kafka timestamp to the destination's 2xx.",
    ["destination"],
    buckets=(0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 3600),
)
RETRIES = Counter("churnwatch_delivery_retries_total", "Attempts that will be retried.", ["destination"])
DLQ = Counter("churnwatch_delivery_dlq_total", "Alerts written to the delivery DLQ.", ["destination"])
DISABLED = Gauge(
    "churnwatch_delivery_destinations_disabled",
    "1 for a destination disabled by 410 Gone (until its configuration changes), else 0.",
    ["destination"],
)
DIGESTS = Counter(
    "churnwatch_digests_total",
    "Daily digests per destination by outcome: queued (then counted as deliveries), snoozed, empty.",
    ["destination", "outcome"],
)
DIGEST_ACCOUNTS = Gauge("churnwatch_digest_accounts", "Accounts the daily digest keeps in memory.")
DIGEST_UNTRACKED = Gauge(
    "churnwatch_digest_untracked_accounts",
    "Accounts the daily digest does not track because CHURNWATCH_DIGEST_MAX_ACCOUNTS was reached.",
)
