"""Database URLs and engines: the two supported backends and their connection settings.

* ``sqlite:///PATH`` — the parent directory is created; every connection runs in
  WAL mode (readers never block the writer) with a busy timeout and foreign keys
  on. pysqlite's own transaction handling is switched off and ``BEGIN`` is issued
  explicitly, as SQLAlchemy recommends: read transactions use a deferred
  ``BEGIN``, write transactions ``BEGIN IMMEDIATE`` so that two writers queue on
  the busy timeout instead of failing with "database is locked" half-way.
* ``postgresql://``, ``postgres://`` and ``postgresql+psycopg://`` all mean
  psycopg 3. A password missing from the URL comes from
  ``INFINIBAY_DATABASE_PASSWORD_FILE`` (passed to psycopg as a connection
  argument, so it is never part of a URL that could be shown), else libpq
  finds it in ``~/.pgpass``.

A raw ``@`` in a password (``postgresql://u:p@ss@host/db``) is read the way
urllib and the operator read it, up to the *last* ``@`` before the host, not
SQLAlchemy's way, which would connect to the host ``ss@host`` and show the
rest of the password in the driver's "cannot resolve" message. Every password
a URL carries is handed to :func:`reconciler.settings.remember_secret`, and
every message that contains a URL goes through
:func:`reconciler.settings.redact`.

The SQLite file is created 0600 before SQLite opens it (its ``-wal`` and
``-shm`` files take the database file's mode), in a directory created 0700,
whatever the umask.
"""

from __future__ import annotations

import os
import sqlite3
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, create_engine, event
from sqlalchemy.engine import URL, make_url
from sqlalchemy.exc import ArgumentError
from sqlalchemy.pool import ConnectionPoolEntry

from reconciler import errors, settings

__all__ = ["WRITE_OPTION", "create", "normalise", "sqlite_path"]

# Execution option that marks a connection as a writer (SQLite: BEGIN IMMEDIATE).
WRITE_OPTION = "infinibay_write"
_PG_CONNECT_TIMEOUT_S = 10


def _quote_raw_at(url: str) -> str:
    """Percent-encode the ``@`` s inside the userinfo, which ends at the authority's last ``@``."""
    scheme, sep, rest = url.partition("://")
    end = min((i for i in (rest.find("?"), rest.find("#")) if i >= 0), default=len(rest))
    at = rest.rfind("@", 0, end)
    if not sep or at < 0 or "@" not in rest[:at]:
        return url
    return f"{scheme}{sep}{rest[:at].replace('@', '%40')}{rest[at:]}"


def _remember_secrets(url: URL) -> None:
    if isinstance(url.password, str):
        settings.remember_secret(url.password)
    for key in ("password", "sslpassword"):
        value = url.query.get(key)
        for secret in (value,) if isinstance(value, str) else value or ():
            settings.remember_secret(secret)


def normalise(url: str) -> URL:
    """Parse ``url`` and pin the driver; :class:`~reconciler.errors.ConfigError` if unusable."""
    try:
        parsed = make_url(_quote_raw_at(url))
    except ArgumentError as exc:
        raise errors.ConfigError(
            settings.redact(
                f"cannot parse database URL {url!r}: use sqlite:///PATH or "
                "postgresql+psycopg://USER:PASSWORD@HOST/DB"
            )
        ) from exc
    _remember_secrets(parsed)
    backend, _, driver = parsed.drivername.partition("+")
    if backend in {"postgresql", "postgres"} and driver in {"", "psycopg"}:
        return parsed.set(drivername="postgresql+psycopg")
    if backend == "sqlite" and driver in {"", "pysqlite"}:
        return parsed.set(drivername="sqlite+pysqlite")
    raise errors.ConfigError(
        settings.redact(
            f"unsupported database URL {url!r}: use sqlite:///PATH or "
            "postgresql+psycopg://USER:PASSWORD@HOST/DB"
        )
    )


def sqlite_path(url: URL) -> Path | None:
    """The database file of a SQLite URL; ``None`` for PostgreSQL and in-memory SQLite."""
    if url.get_backend_name() != "sqlite":
        return None
    database = url.database or ""
    if (
        database in {"", ":memory:"}
        or database.startswith("file:")
        or url.query.get("mode") == "memory"
    ):
        return None
    return Path(database).expanduser().absolute()


def create(url: URL) -> Engine:
    """An engine for ``url`` with the per-backend connection settings described above."""
    if url.get_backend_name() == "postgresql":
        connect_args: dict[str, Any] = {}
        if "connect_timeout" not in url.query:
            connect_args["connect_timeout"] = _PG_CONNECT_TIMEOUT_S
        password = settings.database_password()
        if password is not None and url.password is None and "password" not in url.query:
            connect_args["password"] = password
        return create_engine(url, pool_pre_ping=True, connect_args=connect_args)

    path = sqlite_path(url)
    if path is not None:
        _private_file(path)
        url = url.set(database=str(path))
    engine = create_engine(url, connect_args={"isolation_level": None})
    event.listen(engine, "connect", _sqlite_on_connect)
    event.listen(engine, "begin", _sqlite_on_begin)
    return engine


def _private_file(path: Path) -> None:
    """Create the SQLite file 0600 (its directory 0700) unless it exists.

    A file elsewhere that exists keeps the mode its operator gave it; in the
    default state directory, which is ours, one left group- or world-readable
    by an older version is tightened.
    """
    try:
        settings.private_dir(path.parent)
    except OSError as exc:
        raise errors.StoreError(
            f"cannot create the directory of the record {path.parent}: {exc.strerror}"
        ) from exc
    try:
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        if path.parent == settings.state_dir():
            _tighten(path)
        return
    except OSError as exc:
        raise errors.StoreError(f"cannot create the record {path}: {exc.strerror}") from exc
    try:
        os.fchmod(fd, 0o600)
    finally:
        os.close(fd)


def _tighten(path: Path) -> None:
    """0700 for the state directory and 0600 for the record's files in it, where ours."""
    files = [
        path.with_name(path.name + suffix)
        for suffix in ("", "-wal", "-shm", ".lock", ".daemon.lock")
    ]
    for target, mode in [(path.parent, 0o700), *((f, 0o600) for f in files)]:
        try:
            if target.stat().st_uid == os.geteuid() and target.stat().st_mode & 0o077:
                os.chmod(target, mode)
        except OSError:
            continue  # gone meanwhile, or not ours to change


def _sqlite_on_connect(dbapi_connection: sqlite3.Connection, _: ConnectionPoolEntry) -> None:
    cursor = dbapi_connection.cursor()
    try:
        cursor.execute("PRAGMA busy_timeout = 30000")  # ms: wait for a writer, not fail
        cursor.execute("PRAGMA journal_mode = WAL")
        cursor.execute("PRAGMA synchronous = NORMAL")
        cursor.execute("PRAGMA foreign_keys = ON")
    finally:
        cursor.close()


def _sqlite_on_begin(conn: Any) -> None:
    write = conn.get_execution_options().get(WRITE_OPTION, False)
    conn.exec_driver_sql("BEGIN IMMEDIATE" if write else "BEGIN")
