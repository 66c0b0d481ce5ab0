"""``python -m streamer.simulate``, kept for existing scripts: the same as ``churnwatch simulate``."""

from streamer.sim.live import main

if __name__ == "__main__":
    main()
