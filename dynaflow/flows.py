"""The shapes a planner builds: sequences and concurrences of run steps, nested.

Flows are small values. :func:`edges` turns a flow into the DAG the executor runs: every exit of
one sequence member precedes every entry of the next; members of a concurrence are unordered.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any


@dataclass(slots=True)
class Atom:
    """One run step."""

    step_id: int


@dataclass(slots=True)
class Sequence:
    children: list[Flow] = field(default_factory=list)


@dataclass(slots=True)
class Concurrence:
    children: list[Flow] = field(default_factory=list)


Flow = Atom | Sequence | Concurrence


def is_empty(flow: Flow) -> bool:
    if isinstance(flow, Atom):
        return False
    return all(is_empty(child) for child in flow.children)


def entries(flow: Flow) -> list[int]:
    """The steps that start ``flow``: nothing inside it precedes them."""
    if isinstance(flow, Atom):
        return [flow.step_id]
    if isinstance(flow, Sequence):
        for child in flow.children:
            if not is_empty(child):
                return entries(child)
        return []
    return [step for child in flow.children for step in entries(child)]


def exits(flow: Flow) -> list[int]:
    """The steps that end ``flow``: nothing inside it follows them."""
    if isinstance(flow, Atom):
        return [flow.step_id]
    if isinstance(flow, Sequence):
        for child in reversed(flow.children):
            if not is_empty(child):
                return exits(child)
        return []
    return [step for child in flow.children for step in exits(child)]


def edges(flow: Flow, barriers: Iterator[int] | None = None) -> Iterator[tuple[int, int]]:
    """The ordering edges ``flow`` implies, producer first.

    Joining ``m`` exits of one sequence member to ``n`` entries of the next takes ``m * n``
    edges. With ``barriers`` (an iterator of fresh negative ids), a wide join goes through one
    barrier node instead: ``m + n`` edges, same ordering. :func:`expand` turns them back.
    """
    if isinstance(flow, Atom):
        return
    for child in flow.children:
        yield from edges(child, barriers)
    if isinstance(flow, Sequence):
        previous: list[int] = []
        for child in flow.children:
            if is_empty(child):
                continue
            heads = entries(child)
            if barriers is not None and len(previous) * len(heads) > len(previous) + len(heads):
                barrier = next(barriers)
                yield from ((before, barrier) for before in previous)
                yield from ((barrier, after) for after in heads)
            else:
                yield from ((before, after) for before in previous for after in heads)
            previous = exits(child)


def expand(graph: Iterable[tuple[int, int]]) -> list[tuple[int, int]]:
    """Step-to-step edges of a graph that may hold barrier nodes (negative ids)."""
    direct: list[tuple[int, int]] = []
    into: dict[int, list[int]] = {}
    out_of: dict[int, list[int]] = {}
    for before, after in graph:
        if after < 0:
            into.setdefault(after, []).append(before)
        elif before < 0:
            out_of.setdefault(before, []).append(after)
        else:
            direct.append((before, after))
    joined = {
        (before, after)
        for barrier, befores in into.items()
        for before in befores
        for after in out_of.get(barrier, ())
    }
    return sorted(joined.union(direct))


def simplify(flow: Flow) -> Flow:
    """Drop empty scopes and unwrap scopes of one member (for display and storage)."""
    if isinstance(flow, Atom):
        return flow
    children = [simplify(child) for child in flow.children if not is_empty(child)]
    merged: list[Flow] = []
    for child in children:
        # a sequence directly inside a sequence (or concurrence in concurrence) is the same shape
        if type(child) is type(flow) and not isinstance(child, Atom):
            merged.extend(child.children)
        else:
            merged.append(child)
    if len(merged) == 1:
        return merged[0]
    return type(flow)(merged)


def to_json(flow: Flow) -> Any:
    """``3`` for a step, ``{"sequence": [...]}`` or ``{"concurrence": [...]}`` for scopes."""
    if isinstance(flow, Atom):
        return flow.step_id
    key = "sequence" if isinstance(flow, Sequence) else "concurrence"
    return {key: [to_json(child) for child in flow.children]}


def from_json(data: Any) -> Flow:
    if isinstance(data, int):
        return Atom(data)
    if isinstance(data, dict) and len(data) == 1:
        ((key, children),) = data.items()
        if isinstance(children, list):
            members = [from_json(child) for child in children]
            if key == "sequence":
                return Sequence(members)
            if key == "concurrence":
                return Concurrence(members)
    raise ValueError(f"not a flow: {data!r}")
