"""Inputs, outputs and events are JSON values. This module checks and converts them, and holds
:class:`OutputRef`, the placeholder for another action's future output."""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator
from enum import Enum
from typing import Any

from pydantic import BaseModel

from dynaflow.exceptions import MissingOutputKey, NotJSON

REF_KEY = "__dynaflow_ref__"


class OutputRef:
    """A reference to a key path of an action's output, resolved before the consumer runs.

    ``child.output.uuid``, ``child.output["uuid"]`` and ``child.output["a"]["b"]`` all build one.
    """

    __slots__ = ("action_class", "action_id", "path")

    def __init__(self, action_id: int, action_class: str, path: tuple[Any, ...] = ()) -> None:
        self.action_id = action_id
        self.action_class = action_class
        self.path = path

    def __getattr__(self, name: str) -> OutputRef:
        if name.startswith("_"):
            raise AttributeError(name)
        return OutputRef(self.action_id, self.action_class, (*self.path, name))

    def __getitem__(self, key: str | int) -> OutputRef:
        return OutputRef(self.action_id, self.action_class, (*self.path, key))

    def __setattr__(self, name: str, value: Any) -> None:
        if name in OutputRef.__slots__:
            object.__setattr__(self, name, value)
            return
        raise TypeError(
            "an action's output is a reference during planning and cannot be assigned; "
            "set output in run() (or pass plan-time data through plan_self(...) input)"
        )

    def __setitem__(self, key: Any, value: Any) -> None:
        raise TypeError(
            "an action's output is a reference during planning and cannot be assigned; "
            "set output in run() (or pass plan-time data through plan_self(...) input)"
        )

    def __bool__(self) -> bool:
        raise TypeError(
            f"{self!r} is a reference to a future value; it has no truth value during planning"
        )

    def __iter__(self) -> Iterator[Any]:
        raise TypeError(f"{self!r} is a reference to a future value and cannot be iterated")

    def describe(self) -> str:
        return f"{self.action_class}#{self.action_id} output" + "".join(
            f"[{key!r}]" for key in self.path
        )

    def __repr__(self) -> str:
        return f"<OutputRef {self.describe()}>"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, OutputRef) and (self.action_id, self.path) == (
            other.action_id,
            other.path,
        )

    def __hash__(self) -> int:
        return hash((self.action_id, self.path))


def to_json(value: Any, where: str) -> Any:
    """Return ``value`` as plain JSON data (references become markers).

    Raises :class:`NotJSON` naming ``where`` and the offending path and type.
    """
    return _encode(value, where, "")


def _encode(value: Any, where: str, path: str) -> Any:
    if value is None or isinstance(value, bool | str):
        return value
    if isinstance(value, int):
        return int(value)
    if isinstance(value, float):
        if not math.isfinite(value):
            raise NotJSON(f"{where}{path or ''} is {value!r}, which JSON cannot hold")
        return value
    if isinstance(value, dict):
        out = {}
        for key, item in value.items():
            if not isinstance(key, str):
                raise NotJSON(
                    f"{where}{path} has a key {key!r} of type {type(key).__name__}; "
                    "JSON object keys must be strings"
                )
            out[key] = _encode(item, where, f"{path}[{key!r}]")
        return out
    if isinstance(value, list | tuple):
        return [_encode(item, where, f"{path}[{i}]") for i, item in enumerate(value)]
    if isinstance(value, OutputRef):
        return {REF_KEY: [value.action_id, value.action_class, list(value.path)]}
    if isinstance(value, BaseModel):
        return _encode(value.model_dump(mode="json"), where, path)
    if isinstance(value, Enum):
        return _encode(value.value, where, path)
    raise NotJSON(
        f"{where}{path} is a {type(value).__module__}.{type(value).__qualname__}, not a JSON "
        "value; use dicts, lists, str, int, float, bool, None or pydantic models"
    )


def is_ref(value: Any) -> bool:
    return isinstance(value, dict) and len(value) == 1 and REF_KEY in value


def decode_ref(value: dict[str, Any]) -> OutputRef:
    action_id, action_class, path = value[REF_KEY]
    return OutputRef(action_id, action_class, tuple(path))


def find_refs(data: Any) -> Iterator[OutputRef]:
    """Every reference inside encoded JSON ``data``."""
    if isinstance(data, dict):
        if is_ref(data):
            yield decode_ref(data)
            return
        for item in data.values():
            yield from find_refs(item)
    elif isinstance(data, list):
        for item in data:
            yield from find_refs(item)


def has_refs(data: Any) -> bool:
    return next(find_refs(data), None) is not None


def resolve(data: Any, output_of: Callable[[int], Any], where: str) -> Any:
    """Replace references in encoded ``data`` by the values they point at.

    ``output_of(action_id)`` returns that action's output dict. A missing key raises
    :class:`MissingOutputKey` naming the consumer (``where``), the producer and the key path.
    """
    if isinstance(data, dict):
        if is_ref(data):
            ref = decode_ref(data)
            value = output_of(ref.action_id)
            for depth, key in enumerate(ref.path):
                try:
                    value = value[key]
                except (KeyError, IndexError, TypeError):
                    missing = OutputRef(ref.action_id, ref.action_class, ref.path[: depth + 1])
                    raise MissingOutputKey(
                        f"{where} refers to {missing.describe()}, which {ref.action_class} "
                        "never set; set that key in its run() or fix the reference"
                    ) from None
            return value
        return {key: resolve(item, output_of, where) for key, item in data.items()}
    if isinstance(data, list):
        return [resolve(item, output_of, where) for item in data]
    return data


def with_refs_as_objects(data: Any) -> Any:
    """Encoded data with markers turned back into :class:`OutputRef` objects (plan-time view)."""
    if isinstance(data, dict):
        if is_ref(data):
            return decode_ref(data)
        return {key: with_refs_as_objects(item) for key, item in data.items()}
    if isinstance(data, list):
        return [with_refs_as_objects(item) for item in data]
    return data


def validation_problems(errors: list[Any], what: str = "input") -> str:
    """``field.path: message; ...`` for pydantic's ``ValidationError.errors()``."""
    return "; ".join(
        f"{'.'.join(str(part) for part in err['loc']) or f'({what})'}: {err['msg']}"
        for err in errors
    )
