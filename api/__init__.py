"""churnwatch HTTP API: account health, at-risk lists, alerts and event ingest."""
