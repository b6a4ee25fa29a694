"""Statements run on the driver's own cursor (sqlite3 or psycopg), skipping SQLAlchemy's
per-statement work, which costs several times what the database spends on a small write.

What runs is exactly what SQLAlchemy would send: :class:`DriverStatement` takes a statement of
:mod:`~dynaflow.persistence.sql.statements`, compiles it once for the dialect and converts each
value with the bind processor SQLAlchemy itself would use; no SQL is written twice.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Callable, Sequence
from operator import itemgetter
from typing import Any

import psycopg
from sqlalchemy import JSON, Connection, Table, bindparam, func, insert, select
from sqlalchemy.dialects.postgresql import ARRAY
from sqlalchemy.exc import IntegrityError
from sqlalchemy.sql.compiler import SQLCompiler
from sqlalchemy.sql.elements import BindParameter

from dynaflow.persistence.sql.codec import bind

#: the parameters of one execution: by name, or a tuple in the order of the columns given
Params = Any
#: what a statement breaking a constraint raises: through SQLAlchemy, or on a driver's cursor
INTEGRITY_ERRORS = (IntegrityError, sqlite3.IntegrityError, psycopg.errors.IntegrityError)
#: positional values (SQLite) or named ones (psycopg), as the cursor takes them
DriverParams = tuple[Any, ...] | dict[str, Any]


class DriverStatement:
    """A SQLAlchemy statement compiled once for ``dialect``, to run on a driver cursor.

    :meth:`prepare` turns the parameter dict the statement takes through SQLAlchemy into the
    SQL text and the values to hand the cursor. A statement with expanding ``IN`` lists is
    expanded (and cached) per length of its lists, as SQLAlchemy renders it.
    """

    def __init__(
        self, statement: Any, dialect: Any, columns: tuple[str, ...] | None = None
    ) -> None:
        compiled = statement.compile(dialect=dialect)
        assert isinstance(compiled, SQLCompiler)
        self._compiled = compiled
        self._positional = bool(dialect.positional)
        self._binds: dict[str, BindParameter[Any]] = {
            name: bindparam for bindparam, name in compiled.bind_names.items()
        }
        self._expanding = tuple(b.key for b in compiled.bind_names if b.expanding and b.required)
        # each value converted as SQLAlchemy converts it: by its type's processor for the dialect
        self._processors = {
            name: process
            for name, b in self._binds.items()
            if (process := b.type.dialect_impl(dialect).bind_processor(dialect)) is not None
        }
        self._forms: dict[tuple[int, ...], tuple[str, Callable[[Params], DriverParams]]] = {}
        # parameters come as tuples in the order of ``columns`` rather than as a dict
        self._index = None if columns is None else {name: i for i, name in enumerate(columns)}

    def prepare(self, params: Params) -> tuple[str, DriverParams]:
        """The SQL text and the driver's values for one execution."""
        sql, convert = self.form(params)
        return sql, convert(params)

    def prepare_many(self, rows: Sequence[Params]) -> tuple[str, list[DriverParams]]:
        """The SQL text and the driver's values for an executemany (no expanding lists)."""
        assert not self._expanding, "an executemany cannot expand IN lists"
        sql, convert = self.form(rows[0])
        return sql, [convert(row) for row in rows]

    def form(self, params: Params) -> tuple[str, Callable[[Params], DriverParams]]:
        """The SQL text and value converter for parameters shaped like ``params``."""
        key = tuple(len(params[name]) for name in self._expanding) if self._expanding else ()
        form = self._forms.get(key)
        if form is None:
            form = self._forms[key] = self._build(params)
        return form

    def _build(self, sample: Params) -> tuple[str, Callable[[Params], DriverParams]]:
        shape = {
            name: sample[name] if name in self._expanding else None
            for name, b in self._binds.items()
            if b.required
        }
        state = self._compiled.construct_expanded_state(shape)
        origin = {
            expanded: (name, index)
            for name, names in state.parameter_expansion.items()
            for index, expanded in enumerate(names)
        }
        names = list(state.positiontup or ()) if self._positional else list(state.parameters)
        if names and not origin and all(self._binds[name].required for name in names):
            values = self._values(names)  # the common case: each value a parameter as it is
        else:
            getters = [self._getter(name, origin.get(name)) for name in names]
            values = lambda p: [get(p) for get in getters]  # noqa: E731
        if self._positional:
            return state.statement, lambda p: tuple(values(p))
        return state.statement, lambda p: dict(zip(names, values(p), strict=True))

    def _values(self, names: list[str]) -> Callable[[Params], Any]:
        """The values of ``names``, each a parameter of its own: taken in one call, then the
        few with a processor converted (as :meth:`_getter` converts one)."""
        keys = [self._binds[name].key for name in names]
        ats: list[Any] = keys if self._index is None else [self._index[key] for key in keys]
        take: Callable[[Params], Any]
        if len(ats) > 1:
            take = itemgetter(*ats)
        else:
            only = ats[0]
            take = lambda p: (p[only],)  # noqa: E731
        converted = [
            (i, process, process(None) is None)
            for i, name in enumerate(names)
            if (process := self._processors.get(name)) is not None
        ]
        if not converted:
            return take

        def values(p: Params) -> list[Any]:
            row = list(take(p))
            for i, process, keeps_null in converted:
                value = row[i]
                if value is not None or not keeps_null:
                    row[i] = process(value)
            return row

        return values

    def _getter(self, name: str, expanded: tuple[str, int] | None) -> Callable[[Params], Any]:
        if expanded is not None:  # the index-th value of an expanded list
            key, index = expanded
            process = self._processors.get(key, _same)
            return lambda p: process(p[key][index])
        b, process = self._binds[name], self._processors.get(name, _same)
        if not b.required:  # a value written into the statement, e.g. state='running'
            value = process(b.effective_value)
            return lambda _p: value
        at: str | int = b.key if self._index is None else self._index[b.key]
        if process is _same:
            return lambda p: p[at]
        if process(None) is None:  # most processors keep NULL as it is: skip them for NULL
            return lambda p: None if (value := p[at]) is None else process(value)
        return lambda p: process(p[at])


def _same(value: Any) -> Any:
    return value


class BulkInsert:
    """Inserts many rows (tuples in the order of ``columns``) without SQLAlchemy's per-row
    parameter handling, which costs several times the insert itself: each value is converted
    by its column type's own bind processor. PostgreSQL receives up to a hundred rows as an
    executemany (psycopg pipelines it: one round trip; measured cheaper for client and server
    than one statement with a parameter array per column, whose arrays psycopg builds in
    Python) and larger sets through COPY."""

    #: fewer rows than this go to PostgreSQL as an executemany (COPY costs two round trips)
    COPY_FROM = 100

    def __init__(self, table: Table, columns: tuple[str, ...], dialect: Any) -> None:
        self.columns = columns
        self._postgres = dialect.name == "postgresql"
        # inline: no RETURNING of the new ids, which PostgreSQL would send back row by row
        self.statement = insert(table).values({n: bind(table.c[n]) for n in columns}).inline()
        types = [bind(table.c[name]).type for name in columns]
        self._convert: list[tuple[int, Callable[[Any], Any]]]
        if self._postgres:
            self._driver = DriverStatement(self.statement, dialect, columns)
            quote = dialect.identifier_preparer.quote
            names = ", ".join(quote(name) for name in columns)
            self._sql = f"COPY {quote(table.name)} ({names}) FROM STDIN"
            # COPY parses text: JSON goes as its text, everything else psycopg writes as is
            self._convert = [(i, json.dumps) for i, t in enumerate(types) if isinstance(t, JSON)]
        else:
            compiled = self.statement.compile(dialect=dialect)
            assert tuple(compiled.positiontup or ()) == columns, "bulk insert column order"
            self._sql = str(compiled)
            processors = [t.dialect_impl(dialect).bind_processor(dialect) for t in types]
            self._convert = [(i, p) for i, p in enumerate(processors) if p is not None]

    def __call__(self, conn: Connection, rows: list[tuple[Any, ...]]) -> None:
        if not rows:
            return
        cursor: Any = conn.connection.dbapi_connection.cursor()  # type: ignore[union-attr]
        if self._postgres and len(rows) < self.COPY_FROM:
            if len(rows) == 1:
                cursor.execute(*self._driver.prepare(rows[0]))
            else:
                cursor.executemany(*self._driver.prepare_many(rows))
            return
        if self._convert:
            converted = []
            for row in rows:
                values = list(row)
                for i, convert in self._convert:
                    if values[i] is not None:
                        values[i] = convert(values[i])
                converted.append(tuple(values))
            rows = converted
        if not self._postgres:
            cursor.executemany(self._sql, rows)
            return
        with cursor, cursor.copy(self._sql) as copy:
            for row in rows:
                copy.write_row(row)


def unnested(*columns: tuple[str, Any]) -> Any:
    """A subquery of rows sent as one array parameter per column (PostgreSQL's ``unnest``):
    parameter ``name`` holds the values of ``column``, each converted as :func:`bind`
    converts one."""
    return select(
        *(
            func.unnest(bindparam(name, type_=ARRAY(bind(column).type))).label(name)
            for name, column in columns
        )
    ).subquery("wanted")
