"""Alembic environment for dynaflow's own tables.

dynaflow runs this from code (:mod:`dynaflow.persistence.migrate`), handing over an open
connection in ``config.attributes["connection"]``; without one it opens the ``sqlalchemy.url`` of
the config. ``--sql`` (offline) mode renders the DDL for a DBA instead.
"""

from __future__ import annotations

from alembic import context

from dynaflow.persistence.engine import make_engine
from dynaflow.persistence.migrate import VERSION_TABLE
from dynaflow.persistence.tables import metadata

config = context.config


def _configure(**kwargs: object) -> None:
    context.configure(target_metadata=metadata, version_table=VERSION_TABLE, **kwargs)


def run_offline() -> None:
    _configure(url=config.get_main_option("sqlalchemy.url"), literal_binds=True)
    with context.begin_transaction():
        context.run_migrations()


def run_online() -> None:
    connection = config.attributes.get("connection")
    if connection is not None:
        _configure(connection=connection)
        with context.begin_transaction():
            context.run_migrations()
        return

    engine = make_engine(config.get_main_option("sqlalchemy.url") or "")
    try:
        with engine.begin() as connection:
            _configure(connection=connection)
            with context.begin_transaction():
                context.run_migrations()
    finally:
        engine.dispose()


if context.is_offline_mode():
    run_offline()
else:
    run_online()
