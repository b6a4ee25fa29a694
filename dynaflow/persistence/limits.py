"""What the database can hold, checked before anything is written, the same on every storage.

PostgreSQL refuses a string longer than its ``VARCHAR`` column, and a NUL character in any
text; SQLite and the memory storage would take both. So every storage checks a new plan's
strings here, against the column sizes of :mod:`~dynaflow.persistence.tables`, and raises
:class:`~dynaflow.exceptions.InvalidArgument` naming the field, before writing anything.

JSON values (inputs, outputs, events, errors) are not limited here: the tables' JSON columns are
PostgreSQL ``json``, which keeps a NUL in a string (as ``\\u0000``), like SQLite and the memory
storage; the contract suite checks that each of them gives such values back unchanged.
"""

from __future__ import annotations

from sqlalchemy import Column, String

from dynaflow.exceptions import InvalidArgument
from dynaflow.persistence import tables
from dynaflow.persistence.base import NewPlan


def _length(column: Column[str]) -> int:
    assert isinstance(column.type, String) and column.type.length is not None, column
    return column.type.length


LABEL = _length(tables.plans.c.label)
KEY = _length(tables.plans.c.key)
ACTION_CLASS = _length(tables.actions.c.action_class)
QUEUE = _length(tables.steps.c.queue)
#: a world id given to World(): its column's size less room for the "~<n>" a world declared
#: dead goes on under
WORLD_ID = _length(tables.worlds.c.id) - 6


def check_plan(new: NewPlan) -> None:
    """Raise :class:`InvalidArgument` for the first string of ``new`` no storage can hold."""
    plan = new.plan
    check_text(
        plan.label, LABEL, "the plan's label", "the root action class's label, else its name"
    )
    if plan.key is not None:
        check_text(plan.key, KEY, "the plan's key", "the idempotency_key= given to trigger/plan")
    for key in new.singletons:
        check_text(key, KEY, "the singleton key", "the action class's name and singleton_key")
    names = {plan.root_action_class} if plan.root_action_class else set()
    names.update(action.action_class for action in new.actions)
    for name in sorted(names):
        check_text(name, ACTION_CLASS, "the action class name", "its module and __qualname__")
    for queue in sorted({step.queue for step in new.steps}):
        check_text(queue, QUEUE, "the queue", "the action class's queue attribute")


def check_world_id(world_id: str) -> None:
    """Raise :class:`InvalidArgument` for a world id no storage can hold."""
    check_text(world_id, WORLD_ID, "the world id", "World(world_id=...)")


def check_text(value: str, limit: int, what: str, source: str) -> None:
    """Raise :class:`InvalidArgument` if ``value`` is longer than ``limit`` characters or holds
    a NUL character; ``what`` names the field, ``source`` where it comes from."""
    shown = value if len(value) <= 60 else value[:57] + "..."
    if len(value) > limit:
        raise InvalidArgument(
            f"{what} ({source}) is {len(value)} characters long: {shown!r}; the database "
            f"holds at most {limit}. Use a shorter one"
        )
    if "\x00" in value:
        raise InvalidArgument(
            f"{what} ({source}) holds a NUL character (\\x00) at index {value.index(chr(0))}: "
            f"{shown!r}; PostgreSQL cannot store one in text, so no storage takes it. Remove it"
        )


def can_hold(value: str | None) -> bool:
    """Whether text ``value`` could have been stored at all (``None`` can): a filter or a key
    holding a NUL character matches nothing, rather than failing on PostgreSQL."""
    return value is None or "\x00" not in value
