"""Alert delivery to success teams: Slack and signed webhooks, at-least-once with deduplication.

Run it with ``python -m streamer.delivery``; see :mod:`streamer.delivery.__main__` for the design.
"""
