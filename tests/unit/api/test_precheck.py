"""The precheck (api.precheck) accepts the worker's documents, and nothing pydantic would refuse."""

from __future__ import annotations

import json
from typing import Any

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import BaseModel, ValidationError, field_validator

from api.precheck import Precheck
from streamer.wire.documents import SnapshotDocument
from tests.unit.api.conftest import snapshot
from tests.unit.wire.test_documents import _worker_output

CHECK = Precheck(SnapshotDocument)
WORKER = [orjson.loads(value) for _, value in _worker_output().health]
# The worker's snapshots (an evaluated one says what changed, with a date), and the API tests' own.
DOCUMENTS = [*WORKER, snapshot("acct-1"), snapshot("acct-2", onboarding=True)]


def text(doc: Any) -> bytes:
    """``doc`` as JSON (the standard library's: orjson writes no integer past 64 bits)."""
    return json.dumps(doc).encode()


def pydantic_accepts(doc: Any) -> bool:
    try:
        SnapshotDocument.model_validate(doc)
    except ValidationError:
        return False
    return True


def test_the_snapshot_contract_is_mirrored_and_the_worker_s_snapshots_pass_it() -> None:
    assert CHECK.mirrored
    assert any(d.get("what_changed") for d in WORKER)
    for doc in DOCUMENTS:
        assert CHECK.accepts(text(doc))


@pytest.mark.parametrize(
    ("change", "pydantic"),
    [
        ({"score": 101}, False),
        ({"score": -1}, False),
        ({"score": "50"}, True),  # pydantic's lax mode reads a number in a string: it decides
        ({"score": 50.0}, True),
        ({"score": 50.5}, False),
        ({"score": True}, True),
        ({"band": "great"}, False),
        ({"trend": None}, False),
        (
            {
                "components": [
                    {"name": "activity", "value": 101, "weight": 1, "contribution": 1, "explanation": ""}
                ]
            },
            False,
        ),
        ({"daily": {"to": "2025-03-15", "events": [], "weighted": [], "users": [], "features": []}}, False),
        ({"score": 2**70}, False),
        ({"episodes": {"poor": "yes"}}, True),
    ],
)
def test_what_it_refuses_is_left_to_pydantic(change: dict[str, Any], pydantic: bool) -> None:
    doc = {**snapshot("acct-1"), **change}
    assert not CHECK.accepts(text(doc))
    assert pydantic_accepts(doc) is pydantic


_json = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**70), max_value=2**70)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.sampled_from(
        ["", "good", "poor", "up", "x", "2025-03-14", "2025-03-14T08:00:00.000Z", "50", "true"]
    ),
    lambda inner: (
        st.lists(inner, max_size=3)
        | st.dictionaries(st.sampled_from(["name", "value", "a"]), inner, max_size=3)
    ),
    max_leaves=6,
)


def _paths(doc: Any, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    out = [prefix]
    if isinstance(doc, dict):
        for key, value in doc.items():
            out += _paths(value, (*prefix, key))
    elif isinstance(doc, list):
        for i, value in enumerate(doc):
            out += _paths(value, (*prefix, i))
    return out


def _mutated(doc: Any, path: tuple[Any, ...], how: str, value: Any) -> Any:
    if not path:
        return value
    head, rest = path[0], path[1:]
    out: Any = dict(doc) if isinstance(doc, dict) else list(doc)
    if not rest and how == "drop":
        del out[head]
    else:
        out[head] = _mutated(doc[head], rest, how, value)
    return out


@settings(max_examples=600, deadline=None)
@given(
    base=st.sampled_from(DOCUMENTS),
    picks=st.lists(st.tuples(st.integers(min_value=0), st.sampled_from(["set", "drop"]), _json), max_size=3),
)
def test_whatever_it_accepts_pydantic_accepts(
    base: dict[str, Any], picks: list[tuple[int, str, Any]]
) -> None:
    doc: Any = base
    for index, how, value in picks:
        paths = _paths(doc)
        doc = _mutated(doc, paths[index % len(paths)], how, value)
    if CHECK.accepts(text(doc)):
        assert pydantic_accepts(doc), doc


def test_a_model_it_cannot_mirror_gets_no_precheck() -> None:
    class Checked(BaseModel):
        name: str

        @field_validator("name")
        @classmethod
        def _upper(cls, value: str) -> str:
            return value.upper()

    check = Precheck(Checked)
    assert not check.mirrored
    assert not check.accepts(b'{"name": "a"}')
