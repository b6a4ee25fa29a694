"""Schema migrations, run from code: ``dynaflow db upgrade`` and :class:`SQLStorage` call these.

Alembic is configured entirely here (no ``alembic.ini``): the scripts live in ``migrations/``
next to this module, ``target_metadata`` is :data:`dynaflow.persistence.tables.metadata`, and the
revision is kept in its own table, :data:`VERSION_TABLE`, so an application's own alembic history
in the same database is never touched.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from functools import cache
from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Connection, Engine, inspect, text

from dynaflow.exceptions import SchemaMismatch
from dynaflow.persistence.engine import connect, make_engine
from dynaflow.persistence.errors import translated
from dynaflow.urls import display_url

VERSION_TABLE = "dynaflow_alembic_version"
SCRIPT_LOCATION = Path(__file__).with_name("migrations")
#: key of the PostgreSQL advisory lock that serializes concurrent upgrades
_PG_LOCK_KEY = 0x64796E61

Target = str | Engine | Connection


def config(url: str | None = None) -> Config:
    """An alembic :class:`Config` for dynaflow's migrations (``url`` only for offline use)."""
    cfg = Config()
    cfg.set_main_option("script_location", str(SCRIPT_LOCATION).replace("%", "%%"))
    cfg.set_main_option("path_separator", "os")
    if url is not None:
        cfg.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    return cfg


@cache
def _script() -> ScriptDirectory:
    return ScriptDirectory.from_config(config())


@cache
def known_revisions() -> frozenset[str]:
    """Every revision this version of dynaflow ships."""
    return frozenset(script.revision for script in _script().walk_revisions())


def head() -> str:
    """The newest revision this version of dynaflow knows."""
    heads = _script().get_heads()
    assert len(heads) == 1, f"dynaflow migrations must have one head, found {heads}"
    return heads[0]


def current(url_or_engine: Target) -> str | None:
    """The revision the database is at, ``None`` for a database dynaflow never migrated."""
    with _connection(url_or_engine, write=False) as conn:
        return _current(conn)


def upgrade(url_or_engine: Target, revision: str = "head") -> None:
    """Migrate the database up to ``revision``. Concurrent upgrades queue on a lock."""
    with _connection(url_or_engine, write=True) as conn:
        _lock(conn)
        _check_known(_current(conn), conn)
        _run(conn, command.upgrade, revision)


def downgrade(url_or_engine: Target, revision: str) -> None:
    """Migrate the database down to ``revision`` (``"base"`` drops every dynaflow table)."""
    with _connection(url_or_engine, write=True) as conn:
        _lock(conn)
        _check_known(_current(conn), conn)
        _run(conn, command.downgrade, revision)


def stamp(url_or_engine: Target, revision: str = "head") -> None:
    """Record ``revision`` as the database's without running migrations (for tables created
    outside them, e.g. by ``metadata.create_all``)."""
    with _connection(url_or_engine, write=True) as conn:
        _lock(conn)
        _run(conn, command.stamp, revision)


def ensure_schema(engine: Engine, *, migrate: bool) -> None:
    """Make sure ``engine``'s database is at :func:`head`, as opening a storage requires.

    A revision this code does not know (a newer dynaflow migrated the database) raises
    :class:`SchemaMismatch` before anything is written. An older or empty schema is upgraded when
    ``migrate`` is true, and raises :class:`SchemaMismatch` otherwise.
    """
    with _connection(engine, write=False) as conn:
        revision = _current(conn)
        if revision == head():
            return
        _check_known(revision, conn)
        if revision is None and inspect(conn).has_table("dynaflow_plans"):
            raise SchemaMismatch(
                f"{_where(conn)} has dynaflow tables but no revision in {VERSION_TABLE}; if they "
                "match this dynaflow's schema, record it with dynaflow.persistence.migrate.stamp()"
            )
    if not migrate:
        state = "empty" if revision is None else f"at schema revision {revision}"
        raise SchemaMismatch(
            f"{_where(conn)} is {state}, this dynaflow needs revision {head()}: run "
            "`dynaflow db upgrade` (or open the storage with migrate=True)"
        )
    upgrade(engine)


# -- helpers -----------------------------------------------------------------------------------


@contextmanager
def _connection(target: Target, *, write: bool) -> Iterator[Connection]:
    if isinstance(target, Connection):
        if write and not target.in_transaction():
            with target.begin():
                yield target
        else:
            yield target
        return
    engine = make_engine(target) if isinstance(target, str) else target
    try:
        with translated(engine.url), connect(engine) as conn:
            if write:
                with conn.begin():
                    yield conn
            else:
                yield conn
    finally:
        if isinstance(target, str):
            engine.dispose()


def _current(conn: Connection) -> str | None:
    context = MigrationContext.configure(conn, opts={"version_table": VERSION_TABLE})
    revisions = context.get_current_heads()
    if len(revisions) > 1:
        raise SchemaMismatch(_several(conn, revisions))
    return revisions[0] if revisions else None


def _several(conn: Connection, revisions: tuple[str, ...]) -> str:
    """What to say about a version table holding more than one revision (it must hold one)."""
    listed = ", ".join(repr(r) for r in revisions)
    known = [r for r in revisions if r in known_revisions()]
    if head() in revisions:
        keep = head()
        why = "the newest this dynaflow knows"
    elif known:
        keep = max(known, key=_order)
        why = "the newest of them this dynaflow knows"
    else:
        return (
            f"{_where(conn)} has several revisions in its version table {VERSION_TABLE} "
            f"({listed}), none of which this dynaflow knows; it must hold one: upgrade dynaflow, "
            "or restore the table from a backup"
        )
    return (
        f"{_where(conn)} has several revisions in its version table {VERSION_TABLE} ({listed}); "
        f"it must hold exactly the one the tables are at. If that is {keep!r} ({why}), delete "
        f"the others (DELETE FROM {VERSION_TABLE} WHERE version_num <> '{keep}'), then run "
        "`dynaflow db upgrade`"
    )


def _order(revision: str) -> int:
    """How far ``revision`` is from the first migration (for picking the newest one)."""
    return sum(1 for _ in _script().iterate_revisions(revision, "base"))


def _check_known(revision: str | None, conn: Connection) -> None:
    if revision is not None and revision not in known_revisions():
        raise SchemaMismatch(
            f"{_where(conn)} is at schema revision {revision}, which is newer than this dynaflow "
            f"(it knows up to {head()}); upgrade dynaflow"
        )


def _lock(conn: Connection) -> None:
    # SQLite: the write transaction is BEGIN IMMEDIATE, which already serializes upgrades
    if conn.dialect.name == "postgresql":
        conn.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": _PG_LOCK_KEY})


def _run(conn: Connection, fn: Callable[..., None], revision: str) -> None:
    cfg = config()
    cfg.attributes["connection"] = conn
    fn(cfg, revision)


def _where(conn: Connection) -> str:
    return f"the database {display_url(conn.engine.url.render_as_string(hide_password=False))}"
