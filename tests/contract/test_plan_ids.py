"""The storage contract for plan id prefixes (``Storage.plan_ids_starting_with``), on memory,
SQLite and PostgreSQL: exact matches by code point, in order, limited, and — on SQL — a range
on the plans' key index, not a scan."""

from __future__ import annotations

import pytest
from sqlalchemy import text

from dynaflow.persistence import Storage
from dynaflow.persistence.sql import SQLStorage

from .test_storage import make_plan

TOP = "\U0010ffff"  # the greatest code point: no character sorts after it

IDS = [
    "ab",
    "abc",
    "abd",
    "abc-2",
    "Ab",  # case matters
    "a-1",  # '-' is ignored by some collations: must still sort by code point
    "a9",
    "a:",
    "a%b",  # LIKE wildcards are plain characters here
    "a_b",
    "aé",
    f"z{TOP}",
    f"z{TOP}1",
    "b",
]


@pytest.fixture
def with_ids(storage: Storage) -> Storage:
    for plan_id in IDS:
        storage.insert_plan(make_plan(plan_id, steps=1))
    return storage


def expected(prefix: str) -> list[str]:
    return sorted(i for i in IDS if i.startswith(prefix))


@pytest.mark.parametrize(
    "prefix", ["a", "ab", "abc", "abc-", "A", "a-", "a9", "a%", "a_", "aé", "z", f"z{TOP}", "x"]
)
def test_the_ids_starting_with_a_prefix_in_code_point_order(with_ids: Storage, prefix: str) -> None:
    assert with_ids.plan_ids_starting_with(prefix, limit=100) == expected(prefix)


def test_at_most_limit_ids_the_first_ones(with_ids: Storage) -> None:
    assert with_ids.plan_ids_starting_with("a", limit=3) == expected("a")[:3]
    assert with_ids.plan_ids_starting_with("ab", limit=1) == ["ab"]  # a whole id comes first


def test_a_prefix_no_id_can_hold_matches_nothing(with_ids: Storage) -> None:
    assert with_ids.plan_ids_starting_with("a\x00", limit=10) == []


def test_the_sql_range_is_exact_under_any_collation(sql_storage: SQLStorage) -> None:
    """Where the database's collation does not compare by code point (PostgreSQL under
    en_US and the like), the range is compared under "C": the same answers."""
    for plan_id in IDS:
        sql_storage.insert_plan(make_plan(plan_id, steps=1))
    sql_storage._ids_by_code_point = False
    for prefix in ("a", "abc-", "a-", "a9", "A", f"z{TOP}"):
        assert sql_storage.plan_ids_starting_with(prefix, limit=100) == expected(prefix)


def test_the_sql_lookup_runs_on_the_key_index(sql_storage: SQLStorage) -> None:
    sql_storage.insert_plan(make_plan("abc", steps=1))
    with sql_storage._read() as conn:
        query = sql_storage._sql.plan_ids_starting(True, sql_storage._by_code_point(conn))
        bound = query.params(b_lo="ab", b_hi="ac", b_limit=11)
        sql = str(bound.compile(dialect=conn.dialect, compile_kwargs={"literal_binds": True}))
        if sql_storage._sqlite:
            plan = conn.execute(text(f"EXPLAIN QUERY PLAN {sql}")).all()
            shown = " ".join(str(row[-1]) for row in plan)
            assert "SEARCH" in shown and "INDEX" in shown and "id>" in shown, shown
        else:
            conn.execute(text("SET enable_seqscan = off"))
            try:
                shown = " ".join(row[0] for row in conn.execute(text(f"EXPLAIN {sql}")))
            finally:
                conn.execute(text("RESET enable_seqscan"))
            assert "Index" in shown and "pk_dynaflow_plans" in shown, shown
