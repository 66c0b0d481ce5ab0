"""churnwatch worker: usage events in, account health and churn alerts out."""
