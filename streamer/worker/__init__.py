"""The worker (``churnwatch worker``): usage events in; account state, health and alerts out."""
