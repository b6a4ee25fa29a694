"""Idempotency keys: one plan per key, and the arguments it was first planned with.

``trigger(Cls, ..., idempotency_key=K)`` stores ``K`` on the plan (a unique column, so two
processes racing with one key end up with one plan) together with the call's arguments as
canonical JSON. A later call with ``K`` gets that plan back, if it asks for the same thing;
asking for something else under the same key raises :class:`IdempotencyConflict`.
"""

from __future__ import annotations

import json
from typing import Any

from dynaflow.exceptions import IdempotencyConflict, InvalidArgument
from dynaflow.execution_plan import PlanRecord
from dynaflow.persistence.limits import KEY, check_text
from dynaflow.values import to_json

#: how much of a call's arguments an error message shows
SHOWN = 200


def check_key(key: Any, where: str) -> str | None:
    """``key`` if it can be an idempotency key (``None``: none); else :class:`InvalidArgument`."""
    if key is None:
        return None
    if not isinstance(key, str) or not key:
        raise InvalidArgument(
            f"{where}(idempotency_key={key!r}): the key must be a non-empty string naming the "
            "work, e.g. 'nightly-2026-11-24'"
        )
    check_text(key, KEY, "the idempotency key", f"idempotency_key= given to {where}()")
    return key


def arguments(action_class: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> dict[str, Any]:
    """The call as JSON: ``{"action": <class name>, "args": [...], "kwargs": {...}}``
    (:class:`~dynaflow.exceptions.NotJSON` if an argument is not a JSON value)."""
    name = action_class.action_class_name
    where = f"the arguments of {name} given with an idempotency key"
    return {"action": name, "args": to_json(list(args), where), "kwargs": to_json(kwargs, where)}


def canonical(call: Any) -> str:
    return json.dumps(call, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def check_same(record: PlanRecord, call: dict[str, Any], key: str) -> None:
    """Raise :class:`IdempotencyConflict` unless ``record`` (the plan holding ``key``) was
    planned with the arguments of ``call``. A plan stored without its arguments (planned by
    an older dynaflow) matches any."""
    first = record.key_arguments
    if first is None or canonical(first) == canonical(call):
        return
    raise IdempotencyConflict(key, record.id, describe_call(first), describe_call(call))


def describe_call(call: Any) -> str:
    """``Class(arg, name=value)`` for an error message, shortened to :data:`SHOWN` characters."""
    try:
        name = str(call["action"]).rsplit(".", 1)[-1]
        parts = [json.dumps(a, ensure_ascii=False) for a in call["args"]]
        parts += [f"{k}={json.dumps(v, ensure_ascii=False)}" for k, v in call["kwargs"].items()]
        text = f"{name}({', '.join(parts)})"
    except (KeyError, TypeError, AttributeError):
        text = canonical(call)
    return text if len(text) <= SHOWN else text[: SHOWN - 3] + "..."
