"""Wait until each URL answers 200, for `make demo` (exit 1 after a timeout)."""

from __future__ import annotations

import sys
import time
import urllib.request


def wait_for(urls: list[str], timeout_s: float = 120.0) -> bool:
    """Poll every URL until it answers 200 or the timeout passes."""
    deadline = time.monotonic() + timeout_s
    pending = list(urls)
    while pending and time.monotonic() < deadline:
        url = pending[0]
        try:
            with urllib.request.urlopen(url, timeout=2) as resp:  # noqa: S310 - our own local URLs
                if resp.status == 200:
                    pending.pop(0)
                    continue
        except OSError:
            pass
        time.sleep(0.5)
    for url in pending:
        sys.stderr.write(f"no answer from {url} within {timeout_s:.0f}s; see .local/run/*.log\n")
    return not pending


if __name__ == "__main__":
    sys.exit(0 if wait_for(sys.argv[1:]) else 1)
