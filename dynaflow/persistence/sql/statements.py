"""Every statement of the SQL storage, written once and built once per storage.

Both write paths run these: the plain path through SQLAlchemy, the fast path
(:mod:`~dynaflow.persistence.sql.fastpath`) as their compiled text on the driver's cursor.
Parameters are named ``b_*`` (where-clause) and ``v_*`` (values set); the codec
(:mod:`~dynaflow.persistence.sql.codec`) builds them.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import (
    JSON,
    ColumnElement,
    Integer,
    Select,
    String,
    Table,
    Text,
    any_,
    bindparam,
    delete,
    func,
    insert,
    null,
    or_,
    select,
    text,
    type_coerce,
    update,
)
from sqlalchemy.dialects import postgresql
from sqlalchemy.dialects import sqlite as sqlite_dialect
from sqlalchemy.dialects.postgresql import ARRAY
from sqlalchemy.sql.dml import Update

from dynaflow.persistence import tables
from dynaflow.persistence.base import PlanFilter
from dynaflow.persistence.sql.codec import (
    ACTION_COLUMNS,
    EVENT_COLUMNS,
    HISTORY_COLUMNS,
    STEP_COLUMNS,
    STEP_RECORD_COLUMNS,
    bind,
    val,
)
from dynaflow.persistence.sql.driver import BulkInsert, unnested
from dynaflow.states import PlanState, StepState

P, A, S, E, H = tables.plans, tables.actions, tables.steps, tables.edges, tables.history
EV, W, SG = tables.events, tables.worlds, tables.singletons

WORLD_COLUMNS = (
    "id",
    "started_at",
    "heartbeat_at",
    "hostname",
    "pid",
    "executor",
    "lease",
    "expires_at",
    "queues",
)


class Statements:
    """The statements for one dialect. Those that vary with the fields an update sets are built
    on first use and kept."""

    def __init__(self, dialect: Any) -> None:
        self.sqlite = sqlite = dialect.name == "sqlite"
        self._step_updates: dict[tuple[str, ...], Update] = {}
        self._plan_updates: dict[tuple[tuple[str, ...], bool, bool], Update] = {}
        self._plan_updates_many: dict[Any, Update] = {}
        self._row_updates: dict[Any, Update] = {}

        # -- inserts --
        self.insert_plan = insert(P).values({c.name: bind(c) for c in P.columns})
        # a plan whose id or key exists already inserts nothing (and returns no row)
        upsert = sqlite_dialect.insert(P) if sqlite else postgresql.insert(P)
        self.insert_new_plan = (
            upsert.values({c.name: bind(c) for c in P.columns})
            .on_conflict_do_nothing()
            .returning(P.c.id)
        )
        self.insert_actions = BulkInsert(A, ACTION_COLUMNS, dialect)
        self.insert_steps = BulkInsert(S, STEP_COLUMNS, dialect)
        self.insert_edges = BulkInsert(E, ("plan_id", "from_step", "to_step"), dialect)
        self.insert_history = BulkInsert(H, HISTORY_COLUMNS, dialect)
        self.insert_singleton = insert(SG).values(key=bindparam("b_key"), plan_id=bindparam("b_id"))
        # events get their ids before a driver-level executemany (or COPY) inserts them, so
        # each row's id is known
        self.insert_events = BulkInsert(EV, EVENT_COLUMNS, dialect)
        if sqlite:
            # the highest id ever used (AUTOINCREMENT keeps it), so ids are never reused
            self.last_event_id = text(
                "SELECT COALESCE((SELECT seq FROM sqlite_sequence WHERE name = :table), 0)"
            ).bindparams(table=EV.name)
        else:
            sequence = func.pg_get_serial_sequence(EV.name, EV.c.id.name)
            self.next_event_ids = select(func.nextval(sequence)).select_from(
                func.generate_series(1, bindparam("b_n", type_=Integer))
            )
            self.insert_events_returning = (
                insert(EV)
                .values({name: bind(EV.c[name]) for name in EVENT_COLUMNS[1:]})
                .returning(EV.c.id, sort_by_parameter_order=True)
            )

        # -- updates and deletes --
        self.release_singletons = delete(SG).where(self._one_of(SG.c.plan_id, "b_ids"))
        # a key still recorded for a stopped plan (written by something other than dynaflow)
        self.drop_stale_singleton = delete(SG).where(
            SG.c.key == bindparam("b_key"), SG.c.plan_id == bindparam("b_id")
        )
        self.delete_events = delete(EV).where(self._one_of(EV.c.id, "b_ids"))
        self.save_output = (
            update(A)
            .where(A.c.plan_id == bindparam("b_plan"), A.c.id == bindparam("b_id"))
            .values(output=bind(A.c.output, "v_output"))
        )
        outputs = unnested(("b_plan", A.c.plan_id), ("b_id", A.c.id), ("v_output", A.c.output))
        self.save_output_rows = (
            update(A)
            .where(A.c.plan_id == outputs.c.b_plan, A.c.id == outputs.c.b_id)
            .values(output=outputs.c.v_output)
        )
        self.claim = (
            update(S)
            .where(
                S.c.plan_id == bindparam("b_plan"),
                self._one_of(S.c.id, "b_ids"),
                self._one_of(S.c.state, "b_expect"),
            )
            .values(
                state=StepState.RUNNING.value,
                started_at=bind(S.c.started_at, "v_at"),
                ended_at=null(),
                duration=null(),
                error=null(),
                world_id=bind(S.c.world_id, "v_world"),
            )
            .returning(S.c.id)
        )

        # PostgreSQL: the claims of several plans in one statement, a row per step of
        # (plan, step, when) in three arrays
        wanted = select(
            func.unnest(bindparam("b_plans", type_=ARRAY(S.c.plan_id.type))).label("plan_id"),
            func.unnest(bindparam("b_ids", type_=ARRAY(S.c.id.type))).label("id"),
            func.unnest(bindparam("b_ats", type_=ARRAY(S.c.started_at.type))).label("at"),
        ).subquery("wanted")
        self.claim_many = (
            update(S)
            .where(
                S.c.plan_id == wanted.c.plan_id,
                S.c.id == wanted.c.id,
                S.c.state == any_(bindparam("b_expect", type_=ARRAY(S.c.state.type))),
            )
            .values(
                state=StepState.RUNNING.value,
                started_at=wanted.c.at,
                ended_at=null(),
                duration=null(),
                error=null(),
                world_id=bind(S.c.world_id, "v_world"),
            )
            .returning(S.c.plan_id, S.c.id)
        )

        # -- reads --
        self.plan_columns = self.columns(P)
        self.select_plan = select(*self.plan_columns).where(P.c.id == bindparam("b_id"))
        self.select_by_key = select(*self.plan_columns).where(P.c.key == bindparam("b_key"))
        self.select_plans = select(*self.plan_columns).where(self._one_of(P.c.id, "b_ids"))
        self.select_actions = (
            select(*self.columns(A, ACTION_COLUMNS[1:]))
            .where(A.c.plan_id == bindparam("b_id"))
            .order_by(A.c.id)
        )
        self.select_steps = (
            select(*self.columns(S, STEP_RECORD_COLUMNS))
            .where(S.c.plan_id == bindparam("b_id"))
            .order_by(S.c.id)
        )
        self.select_step = select(*self.columns(S, STEP_RECORD_COLUMNS)).where(
            S.c.plan_id == bindparam("b_plan"), S.c.id == bindparam("b_id")
        )
        self.select_edges = (
            select(E.c.from_step, E.c.to_step)
            .where(E.c.plan_id == bindparam("b_id"))
            .order_by(E.c.from_step, E.c.to_step)
        )
        # the same for many plans at once: each row with its plan's id first
        self.select_many_actions = select(A.c.plan_id, *self.columns(A, ACTION_COLUMNS[1:])).where(
            self._one_of(A.c.plan_id, "b_ids")
        )
        self.select_many_steps = select(S.c.plan_id, *self.columns(S, STEP_RECORD_COLUMNS)).where(
            self._one_of(S.c.plan_id, "b_ids")
        )
        self.select_many_edges = select(E.c.plan_id, E.c.from_step, E.c.to_step).where(
            self._one_of(E.c.plan_id, "b_ids")
        )
        self.select_history = (
            select(*self.columns(H)).where(H.c.plan_id == bindparam("b_id")).order_by(H.c.id)
        )
        # the plan holding a singleton key, and its state
        self.singleton_holder = (
            select(SG.c.plan_id, P.c.state)
            .select_from(SG.join(P, SG.c.plan_id == P.c.id))
            .where(SG.c.key == bindparam("b_key"))
        )
        self.existing_plans = select(P.c.id).where(self._one_of(P.c.id, "b_ids"))
        self.existing_steps = select(S.c.plan_id, S.c.id).where(
            self._one_of(S.c.plan_id, "b_plans"), self._one_of(S.c.id, "b_ids")
        )
        self.action_exists = select(A.c.id).where(
            A.c.plan_id == bindparam("b_plan"), A.c.id == bindparam("b_id")
        )

        event_columns = self.columns(EV, EVENT_COLUMNS)
        self.select_plan_events = (
            select(*event_columns).where(EV.c.plan_id == bindparam("b_id")).order_by(EV.c.id)
        )
        # the events of the running plans a world owns
        owned = select(*event_columns).select_from(EV.join(P, EV.c.plan_id == P.c.id))
        owned = owned.where(
            P.c.state == PlanState.RUNNING.value, P.c.world_id == bindparam("b_world")
        )
        self.select_due = (
            owned.where(or_(EV.c.due_at.is_(None), EV.c.due_at <= bind(EV.c.due_at, "b_now")))
            .order_by(EV.c.id)
            .limit(bindparam("b_limit", type_=Integer))
        )
        self.select_next_due = owned.with_only_columns(func.min(EV.c.due_at)).where(
            EV.c.due_at > bind(EV.c.due_at, "b_after")
        )

        # -- worlds --
        self.insert_world = insert(W).values({n: bind(W.c[n]) for n in WORLD_COLUMNS})
        self.delete_world = delete(W).where(W.c.id == bindparam("b_id"))
        self.heartbeat = (
            update(W)
            .where(W.c.id == bindparam("b_id"))
            .values(
                heartbeat_at=bind(W.c.heartbeat_at, "v_at"),
                expires_at=bind(W.c.expires_at, "v_expires"),
                lease=bind(W.c.lease, "v_lease"),
            )
        )
        self.world_lease = select(W.c.lease).where(W.c.id == bindparam("b_id"))
        self.select_worlds = select(*(W.c[n] for n in WORLD_COLUMNS)).order_by(
            W.c.started_at, W.c.id
        )
        alive = select(W.c.id).where(W.c.expires_at >= bind(W.c.expires_at, "b_now"))
        self.released_plans = (
            select(P.c.id)
            .where(P.c.state == PlanState.RUNNING.value, P.c.world_id.is_(None))
            .order_by(P.c.created_at, P.c.id)
            .limit(bindparam("b_limit"))
        )
        self.orphaned_plans = select(P.c.id, P.c.world_id).where(
            P.c.state == PlanState.RUNNING.value,
            or_(P.c.world_id.is_(None), P.c.world_id.not_in(alive)),
        )
        # fencing: the plans a world still owns, locked against a takeover (PostgreSQL; a
        # SQLite writer holds the database's one write lock already). FOR NO KEY UPDATE: a
        # takeover's update of the owner waits for it, as FOR UPDATE would have it wait, but
        # the foreign-key checks of rows other worlds add meanwhile (a child's end queued as
        # an event for its parent) do not
        self.owned_plans = (
            select(P.c.id)
            .where(self._one_of(P.c.id, "b_ids"))
            .where(P.c.world_id == bindparam("b_owner"))
            .with_for_update(key_share=True)
        )
        self.owned_plan = (
            select(P.c.id)
            .where(P.c.id == bindparam("b_id"))
            .where(P.c.world_id == bindparam("b_owner"))
            .with_for_update(key_share=True)
        )
        self.event_plans = select(EV.c.id, EV.c.plan_id).where(self._one_of(EV.c.id, "b_ids"))
        if self.sqlite:
            self.clock = select(func.strftime("%Y-%m-%d %H:%M:%f", "now"))
        else:
            self.clock = select(func.clock_timestamp())
            # the database's collation (to_jsonb: the columns differ between versions)
            self.database_locale = text(
                "SELECT to_jsonb(d) FROM pg_database d WHERE d.datname = current_database()"
            )

    def columns(self, table: Table, names: tuple[str, ...] | None = None) -> list[Any]:
        """``table``'s columns (all, or ``names``); SQLite's JSON selected as its text, which
        the codec decodes where a bad value can name its row."""
        return [
            type_coerce(c, Text).label(c.name) if self.sqlite and isinstance(c.type, JSON) else c
            for c in (table.c[n] for n in names or table.c.keys())
        ]

    def _one_of(self, column: Any, name: str) -> ColumnElement[bool]:
        """``column`` in the list parameter ``name``: an ``IN`` list on SQLite, an array on
        PostgreSQL (one statement whatever the number of values)."""
        if self.sqlite:
            return column.in_(bindparam(name, expanding=True))
        return column == any_(bindparam(name, type_=ARRAY(column.type)))

    def step_update(self, names: tuple[str, ...]) -> Update:
        """Compare-and-set one step from ``b_expect`` to ``b_state``, setting ``v_<names>``."""
        stmt = self._step_updates.get(names)
        if stmt is None:
            values: dict[str, Any] = {"state": bindparam("b_state")}
            values.update({name: bind(S.c[name], "v_" + name) for name in names})
            stmt = (
                update(S)
                .where(
                    S.c.plan_id == bindparam("b_plan"),
                    S.c.id == bindparam("b_id"),
                    S.c.state == bindparam("b_expect"),
                )
                .values(values)
            )
            self._step_updates[names] = stmt
        return stmt

    def step_update_rows(self, names: tuple[str, ...]) -> Update:
        """:meth:`step_update` of many steps in one statement (PostgreSQL): each parameter an
        array with an element per step."""
        key = ("steps", names)
        stmt = self._row_updates.get(key)
        if stmt is None:
            w = unnested(
                ("b_plan", S.c.plan_id),
                ("b_id", S.c.id),
                ("b_expect", S.c.state),
                ("b_state", S.c.state),
                *(("v_" + name, S.c[name]) for name in names),
            )
            stmt = self._row_updates[key] = (
                update(S)
                .where(S.c.plan_id == w.c.b_plan, S.c.id == w.c.b_id, S.c.state == w.c.b_expect)
                .values({"state": w.c.b_state, **{n: w.c["v_" + n] for n in names}})
            )
        return stmt

    def plan_update_rows(
        self, names: tuple[str, ...], expect: tuple[str, ...] | None, owned: bool
    ) -> Update:
        """:meth:`plan_update_many` of many plans in one statement (PostgreSQL): each parameter
        an array with an element per plan."""
        key = ("plans", names, expect, owned)
        stmt = self._row_updates.get(key)
        if stmt is None:
            owners = (("b_owner", P.c.world_id),) if owned else ()
            w = unnested(("b_id", P.c.id), *owners, *(("v_" + name, P.c[name]) for name in names))
            owner = w.c.b_owner if owned else False
            stmt = _plan_guards(update(P).where(P.c.id == w.c.b_id), expect, owner)
            stmt = self._row_updates[key] = stmt.values({n: w.c["v_" + n] for n in names})
        return stmt

    def plan_update(self, names: tuple[str, ...], cas: bool, owned: bool) -> Update:
        """Set ``v_<names>`` on plan ``b_id``; if ``cas``, only in a state of ``b_expect``; if
        ``owned``, only while owned by ``b_owner``."""
        stmt = self._plan_updates.get((names, cas, owned))
        if stmt is None:
            stmt = update(P).where(P.c.id == bindparam("b_id"))
            if cas:
                stmt = stmt.where(P.c.state.in_(bindparam("b_expect", expanding=True)))
            if owned:  # NULL-safe: an owner of None matches a plan no world owns
                stmt = stmt.where(P.c.world_id.is_not_distinct_from(bind(P.c.world_id, "b_owner")))
            stmt = stmt.values({name: bind(P.c[name], "v_" + name) for name in names})
            self._plan_updates[(names, cas, owned)] = stmt
        return stmt

    def plan_update_many(
        self, names: tuple[str, ...], expect: tuple[str, ...] | None, owned: bool
    ) -> Update:
        """:meth:`plan_update` for an executemany: the expected states are written into the
        statement (an executemany cannot expand an IN list)."""
        key = (names, expect, owned)
        stmt = self._plan_updates_many.get(key)
        if stmt is None:
            owner = bind(P.c.world_id, "b_owner") if owned else False
            stmt = _plan_guards(update(P).where(P.c.id == bindparam("b_id")), expect, owner)
            stmt = stmt.values({name: bind(P.c[name], "v_" + name) for name in names})
            self._plan_updates_many[key] = stmt
        return stmt

    def find_plans(
        self, where: PlanFilter, column: str, descending: bool, offset: int, limit: int | None
    ) -> Select[Any]:
        """The plans passing ``where`` ordered by ``column``, NULLs last, ties by id."""
        ordering = self._sortable(P.c[column])
        ordering = ordering.desc() if descending else ordering.asc()
        query = (
            select(*self.plan_columns)
            .where(*_plan_where(where))
            .order_by(ordering.nulls_last(), self._sortable(P.c.id).asc())
        )
        if offset:
            query = query.offset(offset)
        if limit is not None:
            query = query.limit(limit)
        return query

    def plan_ids_starting(self, bounded: bool, by_code_point: bool) -> Select[Any]:
        """Plan ids from ``b_lo`` (and below ``b_hi`` when ``bounded``), in order, at most
        ``b_limit``. ``by_code_point``: the ids' own collation compares by code point, so the
        range runs on the key's index; otherwise it is compared under "C" (exact, a scan)."""
        column = P.c.id if by_code_point or self.sqlite else P.c.id.collate("C")
        query = select(P.c.id).where(column >= bindparam("b_lo", type_=String))
        if bounded:
            query = query.where(column < bindparam("b_hi", type_=String))
        return query.order_by(column).limit(bindparam("b_limit", type_=Integer))

    def count_plans(self, where: PlanFilter) -> Select[Any]:
        return select(func.count()).select_from(P).where(*_plan_where(where))

    def plan_counts(self, where: PlanFilter) -> Select[Any]:
        return (
            select(P.c.state, P.c.result, func.count())
            .where(*_plan_where(where))
            .group_by(P.c.state, P.c.result)
        )

    def _sortable(self, column: Any) -> ColumnElement[Any]:
        # order strings by code point, as Python (and the memory storage) does
        if not self.sqlite and isinstance(column.type, String):
            return column.collate("C")
        return column


def _plan_where(where: PlanFilter) -> list[ColumnElement[bool]]:
    """The WHERE clauses of a :class:`PlanFilter` (its memory twin: ``PlanFilter.matches``)."""
    clauses: list[ColumnElement[bool]] = []
    if where.state is not None:
        clauses.append(P.c.state.in_([val(s) for s in where.state]))
    if where.result is not None:
        clauses.append(P.c.result.in_([val(r) for r in where.result]))
    if where.label is not None:
        clauses.append(P.c.label == where.label)
    if where.action is not None:
        clauses.append(P.c.root_action_class == where.action)
    if where.text is not None:
        needle = where.text.lower()  # the ids are lower case; ILIKE / lower() for the labels
        clauses.append(
            or_(
                P.c.label.icontains(needle, autoescape=True),
                P.c.id.contains(needle, autoescape=True),
            )
        )
    if where.created_after is not None:
        clauses.append(P.c.created_at >= where.created_after)
    if where.created_before is not None:
        clauses.append(P.c.created_at < where.created_before)
    if where.parent is not None:
        clauses.append(P.c.parent_id == where.parent)
    return clauses


def _plan_guards(stmt: Update, expect: tuple[str, ...] | None, owner: Any) -> Update:
    """``stmt`` (an update of plans) only for plans in a state of ``expect`` (written into the
    statement), and owned by ``owner`` (NULL-safe; ``False``: any owner)."""
    if expect is not None:
        stmt = stmt.where(or_(*(P.c.state == state for state in expect)))
    if owner is not False:
        stmt = stmt.where(P.c.world_id.is_not_distinct_from(owner))
    return stmt
