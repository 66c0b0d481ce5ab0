"""``python -m streamer``: run a worker, the same as ``churnwatch worker`` (see :mod:`streamer.worker`)."""

from streamer.worker.__main__ import main

if __name__ == "__main__":
    main()
