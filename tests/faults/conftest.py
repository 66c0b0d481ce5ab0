"""Fault and abuse suite: real brokers, real processes, hostile input; results into docs/reliability.md.

Marker ``faults``: ``make test`` deselects it, ``make test-faults`` runs it. The fixtures of the
integration suite (the shared session broker, per-test topics, worker processes) are reused; tests
that stop or kill brokers start their own on free ports with their own data directories.
"""

from __future__ import annotations

import inspect
import os
from collections.abc import Generator
from typing import Any

import pytest

from tests.faults import report
from tests.integration.conftest import (  # noqa: F401 - fixtures, re-exported for this directory
    kafka_bootstrap,
    topic_factory,
    unique_id,
    worker_factory,
)

_RESULTS: dict[str, dict[str, Any]] = {}


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Everything under tests/faults carries the faults marker."""
    for item in items:
        if "tests/faults/" in str(item.path).replace(os.sep, "/"):
            item.add_marker(pytest.mark.faults)


@pytest.fixture
def figures(request: pytest.FixtureRequest) -> dict[str, Any]:
    """What the test measured; stored with its outcome in docs/reliability.json (also when it fails)."""
    found: dict[str, Any] = {}
    request.node.stash[_FIGURES] = found
    return found


_FIGURES = pytest.StashKey[dict[str, Any]]()


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Generator[None, Any, None]:
    outcome = yield
    rep = outcome.get_result()
    if rep.when != "call" or _FIGURES not in item.stash or not isinstance(item, pytest.Function):
        return
    doc = inspect.getdoc(item.function) or item.name
    title, _, description = doc.partition("\n")
    outcome = rep.outcome
    if hasattr(rep, "wasxfail"):
        # A known failure (xfail with its reason): reported as not holding, never as held.
        outcome = "xfailed" if rep.skipped else "xpassed"
        description += f"\n\nKnown failure: {rep.wasxfail}"
    _RESULTS[item.name] = report.entry(
        title.strip(), description, outcome, call.duration, item.stash[_FIGURES].copy()
    )


def pytest_sessionfinish(session: pytest.Session) -> None:
    if _RESULTS:
        report.store(_RESULTS)
