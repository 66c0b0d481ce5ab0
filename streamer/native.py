"""The compiled hot path: the pure core and the partition processor compiled to C with mypyc.

``make install`` runs ``python -m streamer.nativebuild``, which compiles :data:`MODULES` (the
typed, mypy-strict modules every event goes through) into extension modules next to their sources,
and writes :data:`MANIFEST` with a SHA-256 of each source it compiled. The Python sources stay the
readable reference and the fallback: :func:`select` (run when the ``streamer`` package is imported,
before any of these modules) loads them from source instead of the extensions when

* ``CHURNWATCH_PURE_PYTHON`` is set to ``1`` / ``true`` / ``yes``,
* nothing was built (no compiler, or a fresh clone before ``make install``), or
* a source changed since it was compiled (an edit, a ``git pull``): a stale extension never runs.

:data:`STATUS` says which path runs and why; the worker logs it at start and exports it as the
``churnwatch_compiled_core`` gauge. ``python -m streamer.nativebuild --status`` prints it.
"""

from __future__ import annotations

import hashlib
import importlib.abc
import importlib.machinery
import importlib.util
import json
import os
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType

__all__ = ["MANIFEST", "MODULES", "STATUS", "Status", "check", "load_sources", "loaded", "select"]

PACKAGE_DIR = Path(__file__).resolve().parent
MANIFEST = PACKAGE_DIR / "native.json"
GROUP = "streamer.native"  # mypyc's shared library: streamer/native__mypyc.*.so
MODULES = (
    "streamer.core",
    "streamer.core.alerts",
    "streamer.core.changes",
    "streamer.core.engine",
    "streamer.core.events",
    "streamer.core.lifecycle",
    "streamer.core.milestones",
    "streamer.core.partition",
    "streamer.core.policy",
    "streamer.core.rhythm",
    "streamer.core.scoring",
    "streamer.core.snapshot",
    "streamer.core.state",
    "streamer.core.users",
    "streamer.worker.processor",
)
PURE_ENV = "CHURNWATCH_PURE_PYTHON"
_SUFFIXES = tuple(importlib.machinery.EXTENSION_SUFFIXES)


@dataclass(frozen=True)
class Status:
    """Which implementation of :data:`MODULES` this process imports, and why."""

    compiled: bool
    reason: str


STATUS = Status(False, "not selected yet")


def source(module: str) -> Path:
    rel = module.split(".")[1:]
    if module == "streamer.core":
        return PACKAGE_DIR / "core" / "__init__.py"
    return PACKAGE_DIR.joinpath(*rel).with_suffix(".py")


def extensions(module: str) -> list[Path]:
    src = source(module)
    stem = "__init__" if src.name == "__init__.py" else src.stem
    return [p for p in src.parent.glob(stem + ".*") if p.name.endswith(_SUFFIXES)]


def shared_libraries() -> list[Path]:
    return [p for p in PACKAGE_DIR.glob("native__mypyc.*") if p.name.endswith(_SUFFIXES)]


def digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def check() -> Status:
    if os.environ.get(PURE_ENV, "").strip().lower() in ("1", "true", "yes"):
        return Status(False, f"{PURE_ENV} is set")
    try:
        manifest = json.loads(MANIFEST.read_text())
    except FileNotFoundError:
        return Status(False, "not built (make install builds it)")
    except (OSError, ValueError) as exc:
        return Status(False, f"{MANIFEST.name} is unreadable: {exc}")
    if manifest.get("python") != sys.implementation.cache_tag:
        return Status(False, f"built for {manifest.get('python')}, this is {sys.implementation.cache_tag}")
    sources = manifest.get("sources", {})
    for module in MODULES:
        if not extensions(module):
            return Status(False, f"{module} has no extension (make install builds it)")
        if sources.get(module) != digest(source(module)):
            rel = source(module).relative_to(PACKAGE_DIR.parent)
            return Status(False, f"{rel} changed since it was compiled (make install rebuilds it)")
    if not shared_libraries():
        return Status(False, "the shared library is missing (make install builds it)")
    return Status(True, f"compiled with mypyc {manifest.get('mypyc', '?')}")


class _SourceFinder(importlib.abc.MetaPathFinder):
    """Loads :data:`MODULES` from their ``.py`` sources even where an extension sits beside them."""

    def find_spec(
        self,
        fullname: str,
        path: Sequence[str] | None,  # noqa: ARG002 - the finder protocol's
        target: ModuleType | None = None,  # noqa: ARG002
    ) -> importlib.machinery.ModuleSpec | None:
        if fullname not in MODULES:
            return None
        src = source(fullname)
        package = src.name == "__init__.py"
        return importlib.util.spec_from_file_location(
            fullname,
            src,
            loader=importlib.machinery.SourceFileLoader(fullname, str(src)),
            submodule_search_locations=[str(src.parent)] if package else None,
        )


_FINDER = _SourceFinder()


def select() -> Status:
    """Decide which implementation the modules of :data:`MODULES` are imported from (once, before
    any of them is imported): the extensions when they are built from the current sources, the
    sources otherwise. Returns :data:`STATUS`."""
    global STATUS
    STATUS = check()
    if not STATUS.compiled and _FINDER not in sys.meta_path:
        sys.meta_path.insert(0, _FINDER)
    elif STATUS.compiled and _FINDER in sys.meta_path:
        sys.meta_path.remove(_FINDER)
    return STATUS


def loaded() -> bool:
    """Whether every module of :data:`MODULES` imported so far runs compiled."""
    return all(
        str(getattr(sys.modules[m], "__file__", "")).endswith(_SUFFIXES) for m in MODULES if m in sys.modules
    )


def load_sources() -> dict[str, ModuleType]:
    """A second copy of :data:`MODULES`, loaded from their sources, beside whatever this process uses.

    For differential tests: the copy is a separate module graph (its own classes and enums), so the
    compiled and the pure implementation can be fed the same input in one process and their encoded
    outputs compared. ``sys.modules`` and the package attributes are left as they were."""
    import importlib

    saved = {m: sys.modules.pop(m) for m in MODULES if m in sys.modules}
    added = _FINDER not in sys.meta_path
    if added:
        sys.meta_path.insert(0, _FINDER)
    try:
        return {m: importlib.import_module(m) for m in MODULES}
    finally:
        if added:
            sys.meta_path.remove(_FINDER)
        for m in MODULES:
            sys.modules.pop(m, None)
        sys.modules.update(saved)
        for m in MODULES:  # importing set each parent package's attribute to the copy
            parent, _, child = m.rpartition(".")
            if parent in sys.modules:
                if m in saved:
                    setattr(sys.modules[parent], child, saved[m])
                elif hasattr(sys.modules[parent], child):
                    delattr(sys.modules[parent], child)
