"""Build the compiled hot path (:mod:`streamer.native`): ``python -m streamer.nativebuild``.

Compiles :data:`streamer.native.MODULES` with mypyc into extension modules beside their sources
(about a minute and a half on 2 cores; the C compiler and mypy are the only tools it needs), then
writes the manifest that lets :func:`streamer.native.select` use them. ``--status`` only says which
path this checkout runs. Exits 1 when the build fails: the sources then run as they are.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
from pathlib import Path

from streamer import native


def build(jobs: int = 2) -> native.Status:
    """Compile :data:`streamer.native.MODULES` in place and write the manifest."""
    import mypy.version
    from mypyc.build import mypycify
    from setuptools import Distribution  # type: ignore[import-untyped]

    native.MANIFEST.unlink(missing_ok=True)  # whatever happens next, a half build is never used
    for module in native.MODULES:
        for stale in native.extensions(module):
            stale.unlink()
    for stale in native.shared_libraries():
        stale.unlink()
    root = native.PACKAGE_DIR.parent
    digests = {m: native.digest(native.source(m)) for m in native.MODULES}
    cwd = os.getcwd()
    with tempfile.TemporaryDirectory(prefix="churnwatch-native-") as tmp:
        os.chdir(root)  # mypyc names the modules after their paths
        try:
            paths = [str(native.source(m).relative_to(root)) for m in native.MODULES]
            ext_modules = mypycify(
                paths, opt_level="3", group_name=native.GROUP, target_dir=str(Path(tmp) / "c")
            )
            # A bare Distribution: setup() would read the project's pyproject.toml, which this does not need.
            dist = Distribution({"name": "churnwatch-native", "ext_modules": ext_modules})
            dist.script_name = "streamer.nativebuild"
            dist.script_args = [
                "--quiet",
                "build_ext",
                "--inplace",
                "--build-temp",
                str(Path(tmp) / "o"),
                "--build-lib",
                str(Path(tmp) / "lib"),
                "--parallel",
                str(jobs),
            ]
            dist.parse_command_line()
            dist.run_commands()
        finally:
            os.chdir(cwd)
    if any(native.digest(native.source(m)) != d for m, d in digests.items()):
        raise RuntimeError("a source changed while it was compiled; build again")
    manifest = {"mypyc": mypy.version.__version__, "python": sys.implementation.cache_tag, "sources": digests}
    native.MANIFEST.write_text(json.dumps(manifest, indent=2) + "\n")
    return native.check()


def main() -> int:
    """Build (or with ``--status`` only report), and print which path runs."""
    parser = argparse.ArgumentParser(prog="python -m streamer.nativebuild", description=__doc__)
    parser.add_argument("--status", action="store_true", help="only say whether the compiled path is used")
    parser.add_argument("--jobs", type=int, default=2, help="C files compiled at once")
    args = parser.parse_args()
    status = native.check() if args.status else build(args.jobs)
    sys.stdout.write(f"compiled core: {'on' if status.compiled else 'off'} ({status.reason})\n")
    return 0 if status.compiled or args.status else 1


if __name__ == "__main__":
    raise SystemExit(main())
