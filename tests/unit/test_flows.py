"""Flows are small values: the edges a shape implies, simplification and the JSON form."""

from __future__ import annotations

import itertools

import pytest

from dynaflow.flows import (
    Atom,
    Concurrence,
    Sequence,
    edges,
    entries,
    exits,
    expand,
    from_json,
    simplify,
    to_json,
)


def seq(*children: object) -> Sequence:
    return Sequence([_flow(c) for c in children])


def con(*children: object) -> Concurrence:
    return Concurrence([_flow(c) for c in children])


def _flow(value: object) -> object:
    return Atom(value) if isinstance(value, int) else value


def test_a_sequence_orders_each_member_after_the_previous() -> None:
    assert sorted(edges(seq(1, 2, 3))) == [(1, 2), (2, 3)]


def test_a_concurrence_adds_no_edges() -> None:
    assert list(edges(con(1, 2, 3))) == []


def test_a_sequence_of_concurrences_joins_every_exit_to_every_entry() -> None:
    flow = seq(con(1, 2), con(3, 4))
    assert sorted(edges(flow)) == [(1, 3), (1, 4), (2, 3), (2, 4)]


def test_nested_scopes_give_the_exact_dag() -> None:
    # 1 ; (2 | (3 ; 4)) ; 5
    flow = seq(1, con(2, seq(3, 4)), 5)
    assert sorted(edges(flow)) == [(1, 2), (1, 3), (2, 5), (3, 4), (4, 5)]
    assert entries(flow) == [1]
    assert exits(flow) == [5]


def test_empty_scopes_are_transparent() -> None:
    flow = seq(1, con(), seq(), 2, con(seq()), 3)
    assert sorted(edges(flow)) == [(1, 2), (2, 3)]
    assert entries(seq(con(), 7)) == [7]
    assert exits(seq(7, con())) == [7]
    assert entries(con()) == []


def test_simplify_drops_empty_scopes_and_unwraps_single_members() -> None:
    assert simplify(con(seq(), seq(Atom(4)))) == Atom(4)
    assert simplify(seq(1, seq(2, 3), con(seq()))) == seq(1, 2, 3)
    assert simplify(con(con(1, 2), 3)) == con(1, 2, 3)
    assert simplify(seq(1, con(2, 3))) == seq(1, con(2, 3))


def test_simplify_keeps_the_edges() -> None:
    flow = con(seq(1, seq(2, con(3, con(4))), con()), seq(con(5), 6))
    assert sorted(edges(simplify(flow))) == sorted(edges(flow))


def test_json_round_trip() -> None:
    flow = seq(1, con(2, seq(3, 4)), 5)
    data = to_json(flow)
    assert data == {"sequence": [1, {"concurrence": [2, {"sequence": [3, 4]}]}, 5]}
    assert from_json(data) == flow


@pytest.mark.parametrize(
    "data", ["1", {"sequence": 1}, {"parallel": [1]}, {"sequence": [1], "x": []}, [1, 2]]
)
def test_from_json_rejects_what_is_not_a_flow(data: object) -> None:
    with pytest.raises(ValueError, match="not a flow"):
        from_json(data)


def test_a_wide_join_goes_through_one_barrier_node() -> None:
    flow = seq(con(1, 2, 3), con(4, 5, 6))
    stored = sorted(edges(flow, itertools.count(-1, -1)))
    assert stored == [(-1, 4), (-1, 5), (-1, 6), (1, -1), (2, -1), (3, -1)]
    assert expand(stored) == sorted(edges(flow))
    assert len(expand(stored)) == 9


def test_narrow_joins_stay_direct_and_each_barrier_is_fresh() -> None:
    assert sorted(edges(seq(con(1, 2), con(3, 4)), itertools.count(-1, -1))) == [
        (1, 3),
        (1, 4),
        (2, 3),
        (2, 4),
    ]
    flow = seq(con(1, 2, 3), con(4, 5, 6), con(7, 8, 9), 10)
    stored = list(edges(flow, itertools.count(-1, -1)))
    assert {node for edge in stored for node in edge if node < 0} == {-1, -2}
    assert expand(stored) == sorted(edges(flow))


def test_expand_keeps_direct_edges_and_drops_duplicates() -> None:
    graph = [(5, 6), (1, -1), (2, -1), (-1, 3), (1, 3), (5, 6)]
    assert expand(graph) == [(1, 3), (2, 3), (5, 6)]
