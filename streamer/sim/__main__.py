"""``python -m streamer.sim``: the same command line as ``python -m streamer.sim.portfolio``."""

import sys

from streamer.sim.portfolio import main

sys.exit(main())
