"""Kafka parts shared by the worker, the API, delivery and the tools: topics, record batches, partitioning."""
