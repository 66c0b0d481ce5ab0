"""Unit tests of the HTTP API (in-memory read model, fake producer)."""
