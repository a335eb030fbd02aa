"""Alembic environment for the record.

The target is :data:`reconciler.store.schema.metadata`, the one MetaData of the
project. The database comes from, in order: a connection handed over in
``config.attributes["connection"]`` (how the store and ``infinibay db`` run
migrations), ``config.attributes["url"]``, then the project's settings
(``INFINIBAY_DATABASE_URL`` or the default SQLite file) — never from
``alembic.ini``. ``render_as_batch`` because SQLite is a real target: column
changes there need Alembic's copy-and-move batch mode.
"""

from __future__ import annotations

import logging.config
import os
from typing import Any, Literal

from alembic import context
from alembic.autogenerate.api import AutogenContext
from sqlalchemy import Connection

from reconciler import settings
from reconciler.store import _engine, schema

config = context.config
if config.config_file_name is not None and config.attributes.get("configure_logger", True):
    logging.config.fileConfig(config.config_file_name, disable_existing_loggers=False)

target_metadata = schema.metadata


def _url() -> str:
    url = config.attributes.get("url") or os.environ.get("INFINIBAY_DATABASE_URL")
    return str(url or settings.default_database_url())


def _render_item(type_: str, obj: object, autogen_context: AutogenContext) -> str | Literal[False]:
    # Migrations spell the stored type, not the Python-side decorator, so they
    # never import application code that may change later.
    if type_ == "type" and isinstance(obj, schema.UTCDateTime):
        return "sa.DateTime(timezone=True)"
    return False


def _configure(**kwargs: Any) -> None:
    context.configure(
        target_metadata=target_metadata,
        render_as_batch=True,
        compare_type=True,
        render_item=_render_item,
        # The store issues BEGIN explicitly on SQLite too, so DDL is transactional there.
        transactional_ddl=True,
        **kwargs,
    )


def run_migrations_offline() -> None:
    _configure(url=_engine.normalise(_url()), literal_binds=True)
    with context.begin_transaction():
        context.run_migrations()


def _run(connection: Connection) -> None:
    _configure(connection=connection)
    with context.begin_transaction():
        context.run_migrations()


def run_migrations_online() -> None:
    connection = config.attributes.get("connection")
    if connection is not None:
        _run(connection)
        return
    engine = _engine.create(_engine.normalise(_url()))
    try:
        with engine.connect().execution_options(**{_engine.WRITE_OPTION: True}) as conn:
            _run(conn)
            conn.commit()
    finally:
        engine.dispose()


if context.is_offline_mode():
    run_migrations_offline()
else:
    run_migrations_online()
