"""Queues: where run steps go (``Action.queue``), and the cluster-wide limit of one.

A world serves the queues it is given, each with its own pool of worker threads
(``World(queues={"default": 4, "imports": 2})``). A :class:`Queue` declared with a ``limit``
caps how many steps of that queue run at once across every world on the database: the limit
is stored (``dynaflow_queues``) and enforced where a step is claimed, in the claiming
transaction, by counting that queue's running steps — so it holds with any number of worlds
and through crashes (a crashed world's running steps count until they are taken over).
"""

from __future__ import annotations

import re
import threading
from dataclasses import dataclass
from typing import Any

from dynaflow.exceptions import ConfigurationError

#: a queue name: 1 to 64 letters, digits, ``_ . : -``
QUEUE_NAME = re.compile(r"^[A-Za-z0-9_.:-]{1,64}$")

_lock = threading.Lock()
_declared: dict[str, Queue] = {}


@dataclass(frozen=True, slots=True)
class Queue:
    """A queue, optionally with a cluster-wide ``limit`` on its running steps. Creating one
    declares it: every executor World opened afterwards in this process stores it (the last
    declaration stored wins; ``World.declare_queue`` stores one from any world). An Action's
    ``queue`` may be the Queue or its name."""

    name: str
    limit: int | None = None

    def __post_init__(self) -> None:
        check_name(self.name)
        if self.limit is not None and (
            not isinstance(self.limit, int) or isinstance(self.limit, bool) or self.limit < 1
        ):
            raise ConfigurationError(
                f"Queue {self.name!r}: limit must be an int >= 1 (or None: no limit), got "
                f"{self.limit!r}"
            )
        with _lock:
            _declared[self.name] = self

    def __str__(self) -> str:
        return self.name


def check_name(name: Any) -> str:
    if not isinstance(name, str) or not QUEUE_NAME.match(name):
        raise ConfigurationError(
            f"queue name {name!r}: use 1 to 64 letters, digits, '_', '.', ':' or '-'"
        )
    return name


def queue_name(value: Any, where: str) -> str:
    """The name of ``value`` (a :class:`Queue` or a name), checked."""
    if isinstance(value, Queue):
        return value.name
    try:
        return check_name(value)
    except ConfigurationError as exc:
        raise ConfigurationError(f"{where}: {exc}") from None


def declared() -> list[Queue]:
    """The queues declared in this process."""
    with _lock:
        return list(_declared.values())
