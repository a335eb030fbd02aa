"""The record: the only place that opens database sessions.

:class:`Store` takes and returns the frozen dataclasses of
:mod:`reconciler.models.record`; ORM objects never leave the package, so callers
cannot lazy-load, leak a session or forget a commit. Each public method is one
short transaction.

:class:`Store` is the facade; its parts live in one module per job and are
combined here: ``_resources`` (specs, generations, status), ``_history``
(events and revisions), ``_runs``, ``_volumes`` (the volume inventory), ``_tokens`` (API token
hashes) and ``_leases`` (the writer lock and the leadership), all on the sessions and
fence of ``_base``. This module opens and closes the record.

Design choices:

* **Batched, bounded statements.** Every method that takes a sequence does its
  work in a fixed number of statements however long the sequence is: one
  ``SELECT`` of the affected rows by ``(kind, name)``, then executemany-style
  bulk ``INSERT``/``UPDATE`` by primary key. Writing status for 1,000 resources
  is a handful of statements, not 2,000.
* **Generation semantics** (:meth:`Store.apply_specs`): a new resource gets a
  fresh uid and generation 1; a changed spec hash bumps the generation; so does
  re-applying a tombstoned resource (which clears the tombstone). Every new
  generation appends a ``revisions`` row. An unchanged hash bumps nothing; a
  changed label, annotation or source is still recorded, because pruning reads
  the protection annotation from the record once the manifest is gone.
  ``updated_at`` tracks changes to what was applied, not status writes.
* **Event folding** (:meth:`Store.record_events`): repeats of (kind, name,
  reason, message) fold into one row whose ``count`` grows and ``last_seen``
  moves; repeats within one batch are folded in Python first (PostgreSQL's
  ``ON CONFLICT`` cannot touch a row twice in one statement), then one upsert
  on the fold key folds them into earlier rows.
* **Errors.** SQLAlchemy and Alembic errors become one-line
  :class:`~reconciler.errors.StoreError` s at this boundary, with any password
  in a URL redacted.
* **Writer lock and leadership, fenced.** :meth:`Store.writer_lock` is
  reentrant within one Store and is released by :meth:`Store.close`. On
  PostgreSQL both it and the daemons' leadership are leases with one epoch
  counter (:mod:`reconciler.store._locks`), renewed by a heartbeat thread.
  While this store holds either, every write transaction first compares the
  epochs it holds them at with the rows, ``FOR SHARE``, and raises
  :class:`~reconciler.errors.Fenced` if another reconciler took one over since:
  an old pass can never write after a new holder's first write. Runs and
  events carry the epoch they were written under.
"""

from __future__ import annotations

import contextlib
import logging
import types
import uuid
from collections.abc import Iterator
from typing import Self

from sqlalchemy import Engine, select
from sqlalchemy.engine import URL
from sqlalchemy.exc import SQLAlchemyError

from reconciler import settings
from reconciler.store import (
    _base,
    _engine,
    _history,
    _leases,
    _migrate,
    _resources,
    _runs,
    _shards,
    _tokens,
    _volumes,
    schema,
)

__all__ = [
    "DEFAULT_LEASE",
    "MigrationState",
    "Store",
    "missing_record",
    "schema_state",
    "upgrade_schema",
]

MigrationState = _migrate.MigrationState

_log = logging.getLogger(__name__)
# Seconds the writer lock and the leadership outlive their holder's last renewal.
DEFAULT_LEASE = 15.0


@contextlib.contextmanager
def _engine_for(url: str | None, operation: str) -> Iterator[tuple[Engine, URL]]:
    parsed = _engine.normalise(url or settings.default_database_url())
    engine = _engine.create(parsed)
    try:
        yield engine, parsed
    except (SQLAlchemyError, _base.alembic_error()) as exc:
        raise _base.translate(operation, parsed, exc) from exc
    finally:
        engine.dispose()


def upgrade_schema(url: str | None = None) -> MigrationState:
    """Create or upgrade the schema of the record at ``url``; ``infinibay db upgrade``."""
    with _engine_for(url, "upgrading the schema") as (engine, _):
        return _migrate.upgrade(engine)


def schema_state(url: str | None = None) -> MigrationState:
    """The schema revision of the record at ``url`` against the code's; changes nothing."""
    with _engine_for(url, "reading the schema revision") as (engine, _):
        return _migrate.state(engine)


def missing_record(url: str | None = None) -> str | None:
    """Where the record at ``url`` would be when there is none yet, else ``None``.

    Creates nothing: a SQLite file that does not exist is missing (its directory
    is not made), a PostgreSQL database without our schema is missing, an
    in-memory database never is. Read-only commands use it so that they never
    create a database by looking at one.
    """
    parsed = _engine.normalise(url or settings.default_database_url())
    path = _engine.sqlite_path(parsed)
    if path is not None:
        return None if path.is_file() else str(path)
    if parsed.get_backend_name() != "postgresql":
        return None
    if schema_state(url or settings.default_database_url()).current is None:
        return settings.redact(parsed.render_as_string(hide_password=True))
    return None


class Store(
    _resources.Resources,
    _history.History,
    _runs.Runs,
    _volumes.Volumes,
    _tokens.Tokens,
    _leases.Leases,
    _shards.Shards,
):
    """The record. Open with :meth:`Store.open`; close with :meth:`close` or ``with``."""

    # -- lifecycle ---------------------------------------------------------------

    @classmethod
    def open(
        cls,
        url: str | None = None,
        *,
        lock_timeout: float = 60.0,
        lease: float = DEFAULT_LEASE,
        actor: str | None = None,
    ) -> Store:
        """Open the record at ``url`` (default: the SQLite file under ``$XDG_STATE_HOME``).

        An empty or older database is upgraded to the current schema first.
        ``lease`` is how long the writer lock and the leadership outlive their
        holder's last renewal on PostgreSQL (renewed four times within it).
        ``actor`` names who acts through this store, on the events and revisions
        it writes (:attr:`actor`; a daemon changes it per pass).
        """
        parsed = _engine.normalise(url or settings.default_database_url())
        engine = _engine.create(parsed)
        try:
            _migrate.ensure_current(engine)
            store = cls(engine, parsed, lock_timeout, lease)
            store.actor = actor
            store._installation_id = store._ensure_installation()
        except (SQLAlchemyError, _base.alembic_error()) as exc:
            engine.dispose()
            raise _base.translate("opening", parsed, exc) from exc
        except BaseException:
            engine.dispose()
            raise
        return store

    def close(self) -> None:
        """Release the writer lock if this store holds it and close every connection."""
        if self._closed:
            return
        self._closed = True
        with self._lock_guard:
            if self._lock_depth:
                self._lock_depth = 0
                self._pass_fence = None
                self._release_lock()
        self.resign()
        self.leave_shards()
        self._heartbeat.stop()
        for lease in (self._lock, self._leadership):
            try:
                lease.close()
            except SQLAlchemyError as exc:
                _log.warning("closing the %s lease: %s", lease.name, _base.one_line(exc))
        self._engine.dispose()

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: types.TracebackType | None,
    ) -> None:
        self.close()

    # -- installation ------------------------------------------------------------

    def _ensure_installation(self) -> str:
        with self._session("creating the installation id", write=True) as session:
            stmt = self._insert(schema.Installation).values(
                id=str(uuid.uuid4()), singleton=1, created_at=_base.now()
            )
            session.execute(stmt.on_conflict_do_nothing(index_elements=["singleton"]))
            return session.execute(select(schema.Installation.id)).scalar_one()

    def installation_id(self) -> str:
        """The id generated once per database; libvirt objects carry it as their owner."""
        if self._installation_id is None:  # pragma: no cover - set by open()
            self._installation_id = self._ensure_installation()
        return self._installation_id
