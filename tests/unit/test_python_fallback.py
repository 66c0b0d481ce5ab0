"""Where the compiled parts are not built, the Python originals run, and the core's tests pass on them.

The rest of the suite runs on the compiled parts (`make install` builds them). This runs the core's unit
tests, the partitioner's and the worker's differential cache test again in a process that cannot import
``churnwatch_native``, as a machine without cargo would.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]

# Run first in a process that must use the Python originals: every dispatch to a compiled part is
# checked to have fallen back (tests/unit/worker/test_compiled_equivalence.py runs it too).
WITHOUT_EXTENSION = """
import sys
sys.modules["churnwatch_native"] = None  # importing it now raises ImportError, as when it is not built
from streamer.core import engine, events, rhythm, state
from streamer.kafka import partitioner
assert state.NATIVE_CODEC is None and state.encode_state is state.python_encode_state
assert events.rfc3339_ms is events.python_rfc3339_ms and rhythm._rhythm_parts is None
assert state._blake64 is state.python_blake64 and partitioner._native_partition_of is None
assert engine._native_touch_user is None and rhythm._native_gamma_q is None and events._native_parse is None
assert engine._newest_day is max
"""

_RUN = (
    WITHOUT_EXTENSION
    + """
import pytest
sys.exit(pytest.main(sys.argv[1:]))
"""
)


def test_the_core_tests_pass_on_the_python_originals() -> None:
    args = ["-q", "-p", "no:cacheprovider", "-m", "not integration"]
    args += [
        "tests/unit/core",
        "tests/unit/kafka/test_partitioner.py",
        "tests/unit/worker/test_cache_equivalence.py",
    ]
    # The differential tests compare the compiled parts with the originals: they need both.
    args += ["--ignore-glob=tests/unit/core/test_native_*", "-k", "not compiled"]
    done = subprocess.run(  # noqa: S603 - this interpreter, fixed arguments
        [sys.executable, "-c", _RUN, *args], cwd=REPO, capture_output=True, text=True, timeout=600
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert " passed" in done.stdout.splitlines()[-1]
    assert "failed" not in done.stdout.splitlines()[-1]
