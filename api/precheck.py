"""A fast first check of a document against a pydantic contract, in one pass over its JSON.

Holding every snapshot of ``account-health`` to :class:`~streamer.wire.documents.SnapshotDocument` as
the API reads them cost more than decoding them (44 µs to validate the decoded object, 23 µs to decode
it, for a 2.5 KB snapshot). :class:`Precheck` derives from the model, once, an equivalent msgspec type
that checks the JSON text itself in a few microseconds. It only ever answers "accepted": msgspec is
stricter than pydantic's lax mode (no numbers in strings, no ``1`` for ``true``), so a document it
refuses is handed to pydantic, which decides and says why. A model it cannot mirror field for field
(a validator, a constraint or a type it does not know) gets no precheck at all. A property test holds
that whatever it accepts, pydantic accepts.
"""

from __future__ import annotations

import datetime as dt
import enum
import types
import typing
from typing import Any, Literal, get_args, get_origin

import annotated_types
import msgspec
from pydantic import BaseModel


class Unsupported(TypeError):
    """A model, field or type the precheck does not mirror."""


_PLAIN: tuple[type, ...] = (str, int, float, bool, dt.date)
_CONSTRAINTS = {
    annotated_types.Ge: "ge",
    annotated_types.Le: "le",
    annotated_types.Gt: "gt",
    annotated_types.Lt: "lt",
}


def _type(tp: Any, structs: dict[type[BaseModel], Any]) -> Any:
    """The msgspec type checking what pydantic checks of ``tp`` (or less leniently)."""
    if tp is type(None) or tp is None:
        return None
    if tp is Any:
        return Any
    if isinstance(tp, type):
        if issubclass(tp, BaseModel):
            return _struct(tp, structs)
        if issubclass(tp, enum.Enum) or tp in _PLAIN:  # exactly: a datetime (a date too) is not mirrored
            return tp
    origin = get_origin(tp)
    args = get_args(tp)
    if origin is Literal and all(isinstance(a, str | int) and not isinstance(a, bool) for a in args):
        return tp
    if origin in (types.UnionType, typing.Union):
        return typing.Union[tuple(_type(a, structs) for a in args)]  # noqa: UP007 - built at run time
    if origin is list and len(args) == 1:
        return list[_type(args[0], structs)]  # type: ignore[misc]
    if origin is dict and len(args) == 2 and args[0] is str:  # noqa: PLR2004 - key and value
        return dict[str, _type(args[1], structs)]  # type: ignore[misc]
    raise Unsupported(tp)


def _bounded(tp: Any, meta: msgspec.Meta) -> Any:
    """``tp`` with ``meta``'s bounds on its number (also when it may be None, as pydantic applies them)."""
    if tp in (int, float):
        return typing.Annotated[tp, meta]
    args = get_args(tp)
    if get_origin(tp) is typing.Union and len(args) == 2 and type(None) in args:  # noqa: PLR2004
        (number,) = (a for a in args if a is not type(None))
        return typing.Optional[_bounded(number, meta)]  # noqa: UP045 - built at run time
    raise Unsupported(f"bounds on {tp}")


def _struct(model: type[BaseModel], structs: dict[type[BaseModel], Any]) -> Any:
    """The msgspec struct of ``model``: its fields by their JSON names, unknown ones ignored."""
    if model in structs:
        return structs[model]
    decorators = model.__pydantic_decorators__
    if any(
        (
            decorators.validators,
            decorators.field_validators,
            decorators.root_validators,
            decorators.model_validators,
        )
    ):
        raise Unsupported(f"{model.__name__} has validators")
    if model.model_config.get("extra") == "forbid" or model.model_config.get("strict"):
        raise Unsupported(f"{model.__name__}'s configuration")
    fields: list[tuple[str, Any, Any]] = []
    for name, info in model.model_fields.items():
        tp = _type(info.annotation, structs)
        bounds: dict[str, Any] = {}
        for item in info.metadata:
            key = _CONSTRAINTS.get(type(item))
            if key is None:
                raise Unsupported(f"{model.__name__}.{name}: {item!r}")
            bounds[key] = getattr(item, key)
        if bounds:
            tp = _bounded(tp, msgspec.Meta(**bounds))
        if info.validation_alias is not None and info.validation_alias != info.alias:
            raise Unsupported(f"{model.__name__}.{name}: validation alias")
        wire = info.alias or name
        # A default is never validated by pydantic; the decoded value is thrown away: any will do.
        default = msgspec.NODEFAULT if info.is_required() else None
        fields.append((name, tp, msgspec.field(name=wire, default=default)))
    struct = msgspec.defstruct(f"{model.__name__}Check", fields, kw_only=True)
    structs[model] = struct
    return struct


class Precheck:
    """Whether a JSON document certainly passes ``model``'s validation (see the module)."""

    def __init__(self, model: type[BaseModel]) -> None:
        """The precheck of ``model``; one that accepts nothing when the model cannot be mirrored."""
        self._decoder: msgspec.json.Decoder[Any] | None
        try:
            self._decoder = msgspec.json.Decoder(_struct(model, {}))
        except TypeError:  # Unsupported, or a type msgspec refuses
            self._decoder = None

    @property
    def mirrored(self) -> bool:
        """Whether the model could be mirrored (else :meth:`accepts` is always False)."""
        return self._decoder is not None

    def accepts(self, text: bytes) -> bool:
        """True when pydantic accepts the document ``text``; False: pydantic is to decide."""
        if self._decoder is None:
            return False
        try:
            self._decoder.decode(text)
        except (msgspec.ValidationError, msgspec.DecodeError):
            return False
        return True
