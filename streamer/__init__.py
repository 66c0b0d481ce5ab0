"""churnwatch worker: usage events in, account health and churn alerts out."""

from streamer import native as _native

# Before any module of the hot path is imported: compiled where built from these sources, else source.
_native.select()
