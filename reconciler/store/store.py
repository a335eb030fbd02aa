"""The record: the only place that opens database sessions.

:class:`Store` takes and returns the frozen dataclasses of
:mod:`reconciler.models.record`; ORM objects never leave this module, so callers
cannot lazy-load, leak a session or forget a commit. Each public method is one
short transaction.

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
import dataclasses
import datetime as dt
import hashlib
import json
import logging
import re
import threading
import types
import uuid
from collections.abc import Iterable, Iterator, Sequence
from typing import Any, Self

from sqlalchemy import ColumnElement, Engine, Row, delete, select, tuple_, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import URL, CursorResult
from sqlalchemy.exc import DBAPIError, SQLAlchemyError
from sqlalchemy.orm import Session, sessionmaker

from reconciler import errors, settings
from reconciler.models import record
from reconciler.store import _engine, _locks, _migrate, schema

__all__ = ["DEFAULT_LEASE", "MigrationState", "Store", "schema_state", "upgrade_schema"]

MigrationState = _migrate.MigrationState

_log = logging.getLogger(__name__)
# Rows per "WHERE (kind, name) IN (...)": two bound parameters each, far below
# SQLite's 32,766 and PostgreSQL's 65,535 limits, and 1,000 keys stay one query.
_KEYS_PER_QUERY = 2_000
# Seconds the writer lock and the leadership outlive their holder's last renewal.
DEFAULT_LEASE = 15.0
_BACKGROUND_RE = re.compile(r"\s*\(Background on this error at: \S+\)")


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def _display(url: URL) -> str:
    return settings.redact(url.render_as_string(hide_password=True))


def _one_line(exc: BaseException) -> str:
    cause = exc.orig if isinstance(exc, DBAPIError) and exc.orig is not None else exc
    text = _BACKGROUND_RE.sub("", str(cause)) or type(cause).__name__
    return " ".join(text.split())


def _translate(operation: str, url: URL, exc: BaseException) -> errors.StoreError:
    return errors.StoreError(
        settings.redact(f"{operation} failed on the record {_display(url)}: {_one_line(exc)}")
    )


def _alembic_error() -> type[Exception]:
    """Alembic's ``CommandError``, imported only once an exception is being handled.

    An ``except`` clause evaluates its tuple only when something was raised, so
    the store does not import Alembic on the way to a database already at head.
    """
    from alembic.util import CommandError

    return CommandError


def _chunks(items: Sequence[record.ResourceKey]) -> Iterator[Sequence[record.ResourceKey]]:
    for start in range(0, len(items), _KEYS_PER_QUERY):
        yield items[start : start + _KEYS_PER_QUERY]


def _has_key(
    model: type[schema.Resource] | type[schema.Event] | type[schema.Revision],
    keys: Iterable[record.ResourceKey],
) -> ColumnElement[bool]:
    return tuple_(model.kind, model.name).in_([(key.kind, key.name) for key in keys])


def _unique(keys: Iterable[record.ResourceKey]) -> list[record.ResourceKey]:
    return list(dict.fromkeys(keys))


def _fold_key(event: record.NewEvent) -> str:
    parts = [event.key.kind, event.key.name, event.reason, event.message]
    return hashlib.sha256(json.dumps(parts).encode()).hexdigest()


def _resource(row: schema.Resource | Row[Any]) -> record.ResourceRecord:
    return record.ResourceRecord(
        key=record.ResourceKey(row.kind, row.name),
        uid=row.uid,
        generation=row.generation,
        spec=row.spec,
        spec_hash=row.spec_hash,
        source_file=row.source_file,
        source_document=row.source_document,
        source_revision=row.source_revision,
        labels=row.labels,
        annotations=row.annotations,
        status=row.status,
        created_at=row.created_at,
        updated_at=row.updated_at,
        deleted_at=row.deleted_at,
    )


def _event(row: schema.Event) -> record.EventRecord:
    return record.EventRecord(
        id=row.id,
        key=record.ResourceKey(row.kind, row.name),
        uid=row.uid,
        type=record.EventType(row.type),
        reason=row.reason,
        message=row.message,
        diff=row.diff,
        revision=row.revision,
        run_id=row.run_id,
        count=row.count,
        first_seen=row.first_seen,
        last_seen=row.last_seen,
    )


def _revision(row: schema.Revision) -> record.RevisionRecord:
    return record.RevisionRecord(
        key=record.ResourceKey(row.kind, row.name),
        generation=row.generation,
        spec=row.spec,
        spec_hash=row.spec_hash,
        source_revision=row.source_revision,
        source_file=row.source_file,
        applied_at=row.applied_at,
        run_id=row.run_id,
    )


def _run(row: schema.Run) -> record.RunRecord:
    return record.RunRecord(
        id=record.RunId(row.id),
        trigger=record.Trigger(row.trigger),
        revision=row.revision,
        started_at=row.started_at,
        finished_at=row.finished_at,
        counts=row.counts,
        result=row.result,
    )


@contextlib.contextmanager
def _engine_for(url: str | None, operation: str) -> Iterator[tuple[Engine, URL]]:
    parsed = _engine.normalise(url or settings.default_database_url())
    engine = _engine.create(parsed)
    try:
        yield engine, parsed
    except (SQLAlchemyError, _alembic_error()) as exc:
        raise _translate(operation, parsed, exc) from exc
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


class Store:
    """The record. Open with :meth:`Store.open`; close with :meth:`close` or ``with``."""

    def __init__(self, engine: Engine, url: URL, lock_timeout: float, lease: float) -> None:
        """Use :meth:`open`; this constructor neither migrates nor checks the database."""
        self._engine = engine
        self._url = url
        self._lock_timeout = lock_timeout
        self._reads = sessionmaker(engine, expire_on_commit=False)
        writer = engine.execution_options(**{_engine.WRITE_OPTION: True})
        self._writes = sessionmaker(writer, expire_on_commit=False)
        self._installation_id: str | None = None
        path = _engine.sqlite_path(url)
        self._lock = _locks.writer_lease(engine, path, lease)
        self._lock_guard = threading.Lock()
        self._lock_depth = 0
        self._pass_fence: _locks.Fence | None = None  # while the writer lock is held
        self._leadership = _locks.leader_lease(engine, path, lease)
        self._heartbeat = _locks.Heartbeat(
            [self._leadership, self._lock], interval=lease / _locks.RENEWALS_PER_LEASE
        )
        self._closed = False

    # -- lifecycle ---------------------------------------------------------------

    @classmethod
    def open(
        cls, url: str | None = None, *, lock_timeout: float = 60.0, lease: float = DEFAULT_LEASE
    ) -> Store:
        """Open the record at ``url`` (default: the SQLite file under ``$XDG_STATE_HOME``).

        An empty or older database is upgraded to the current schema first.
        ``lease`` is how long the writer lock and the leadership outlive their
        holder's last renewal on PostgreSQL (renewed four times within it).
        """
        parsed = _engine.normalise(url or settings.default_database_url())
        engine = _engine.create(parsed)
        try:
            _migrate.ensure_current(engine)
            store = cls(engine, parsed, lock_timeout, lease)
            store._installation_id = store._ensure_installation()
        except (SQLAlchemyError, _alembic_error()) as exc:
            engine.dispose()
            raise _translate("opening", parsed, exc) from exc
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
        self._heartbeat.stop()
        for lease in (self._lock, self._leadership):
            try:
                lease.close()
            except SQLAlchemyError as exc:
                _log.warning("closing the %s lease: %s", lease.name, _one_line(exc))
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

    @property
    def url(self) -> str:
        """The database URL with any password hidden, for messages."""
        return _display(self._url)

    @property
    def backend(self) -> str:
        """``"sqlite"`` or ``"postgresql"``."""
        return self._engine.dialect.name

    # -- sessions ----------------------------------------------------------------

    @contextlib.contextmanager
    def _session(self, operation: str, *, write: bool = False) -> Iterator[Session]:
        if self._closed:
            raise errors.StoreError(f"{operation} failed: the record {self.url} is closed")
        factory = self._writes if write else self._reads
        fence = self._write_fence() if write else _locks.Fence()
        try:
            with factory() as session, session.begin():
                if fence.holds:
                    self._check_fence(session, fence)
                yield session
        except SQLAlchemyError as exc:
            raise _translate(operation, self._url, exc) from exc

    def _write_fence(self) -> _locks.Fence:
        """What a write now is conditional on: the pass's leases, else the leadership."""
        fence = self._pass_fence
        return fence if fence is not None else _locks.Fence.of(self._leadership)

    @staticmethod
    def _check_fence(session: Session, fence: _locks.Fence) -> None:
        """Refuse the write unless the rows still name the fence's epochs.

        ``FOR SHARE`` keeps a new holder's ``UPDATE`` of a row waiting until this
        transaction ends, so the write lands before any take-over or not at all.
        Local validity is not asked for: an expired hold that nobody took yet
        may still record how its pass ended.
        """
        wanted = fence.epochs()
        rows = session.execute(
            select(schema.WriterLock.name, schema.WriterLock.epoch)
            .where(schema.WriterLock.name.in_(sorted(wanted)))
            .order_by(schema.WriterLock.name)
            .with_for_update(read=True)
        )
        now = {row.name: row.epoch for row in rows}
        for name, epoch in wanted.items():
            if now.get(name) != epoch:
                raise _locks.fenced(name, epoch, f"was taken over (epoch now {now.get(name)})")

    def _insert(self, model: type[schema.Base]) -> postgresql.Insert | sqlite.Insert:
        if self.backend == "postgresql":
            return postgresql.insert(model)
        return sqlite.insert(model)

    # -- installation ------------------------------------------------------------

    def _ensure_installation(self) -> str:
        with self._session("creating the installation id", write=True) as session:
            stmt = self._insert(schema.Installation).values(
                id=str(uuid.uuid4()), singleton=1, created_at=_now()
            )
            session.execute(stmt.on_conflict_do_nothing(index_elements=["singleton"]))
            return session.execute(select(schema.Installation.id)).scalar_one()

    def installation_id(self) -> str:
        """The id generated once per database; libvirt objects carry it as their owner."""
        if self._installation_id is None:  # pragma: no cover - set by open()
            self._installation_id = self._ensure_installation()
        return self._installation_id

    # -- resources ---------------------------------------------------------------

    def resources(
        self, kind: str | None = None, *, include_deleted: bool = False
    ) -> list[record.ResourceRecord]:
        """Every resource (of ``kind``), ordered by kind and name; tombstoned ones on request."""
        # Plain rows, not ORM objects: every pass lists every resource, and the
        # identity map and attribute instrumentation would be thrown away at once.
        table = schema.Resource.__table__
        stmt = select(table).order_by(table.c.kind, table.c.name)
        if kind is not None:
            stmt = stmt.where(table.c.kind == kind)
        if not include_deleted:
            stmt = stmt.where(table.c.deleted_at.is_(None))
        with self._session("listing resources") as session:
            return [_resource(row) for row in session.execute(stmt)]

    def get(
        self, key: record.ResourceKey, *, include_deleted: bool = False
    ) -> record.ResourceRecord | None:
        """One resource, or ``None`` if it is not in the record (or tombstoned)."""
        stmt = select(schema.Resource).where(
            schema.Resource.kind == key.kind, schema.Resource.name == key.name
        )
        if not include_deleted:
            stmt = stmt.where(schema.Resource.deleted_at.is_(None))
        with self._session(f"reading {key}") as session:
            row = session.scalars(stmt).one_or_none()
            return _resource(row) if row else None

    def apply_specs(self, writes: Sequence[record.SpecWrite]) -> list[record.ResourceRecord]:
        """Record applied specs; returns the resulting records in the order of ``writes``."""
        keys = [write.key for write in writes]
        if len(set(keys)) != len(keys):
            twice = sorted({str(key) for key in keys if keys.count(key) > 1})
            raise errors.StoreError(f"the same resource was applied twice in one batch: {twice}")
        if not writes:
            return []
        now = _now()
        with self._session("recording applied specs", write=True) as session:
            existing: dict[record.ResourceKey, Any] = {}
            for chunk in _chunks(keys):
                rows = session.execute(
                    select(schema.Resource.__table__).where(_has_key(schema.Resource, chunk))
                )
                existing.update({record.ResourceKey(row.kind, row.name): row for row in rows})

            created: list[dict[str, Any]] = []
            updated: list[dict[str, Any]] = []
            revisions: list[tuple[record.ResourceKey, int | None, int, record.SpecWrite]] = []
            for write in writes:
                applied = write.applied()
                row = existing.get(write.key)
                if row is None:
                    created.append(
                        applied
                        | {
                            "kind": write.key.kind,
                            "name": write.key.name,
                            "uid": str(uuid.uuid4()),
                            "generation": 1,
                            "status": {},
                            "created_at": now,
                            "updated_at": now,
                            "deleted_at": None,
                        }
                    )
                    revisions.append((write.key, None, 1, write))
                    continue
                bump = row.spec_hash != write.spec_hash or row.deleted_at is not None
                if not bump and all(row._mapping[name] == value for name, value in applied.items()):
                    continue
                generation = row.generation + 1 if bump else row.generation
                updated.append(
                    applied
                    | {
                        "id": row.id,
                        "generation": generation,
                        "updated_at": now,
                        "deleted_at": None,
                    }
                )
                if bump:
                    revisions.append((write.key, row.id, generation, write))

            ids = {key: row.id for key, row in existing.items()}
            if created:
                inserted = session.execute(
                    self._insert(schema.Resource).returning(
                        schema.Resource.id, schema.Resource.kind, schema.Resource.name
                    ),
                    created,
                )
                ids.update({record.ResourceKey(r.kind, r.name): r.id for r in inserted})
            if updated:
                session.execute(update(schema.Resource), updated)
            if revisions:
                session.execute(
                    self._insert(schema.Revision),
                    [
                        {
                            "resource_id": ids[key] if resource_id is None else resource_id,
                            "kind": key.kind,
                            "name": key.name,
                            "generation": generation,
                            "spec": write.spec,
                            "spec_hash": write.spec_hash,
                            "source_revision": write.source_revision,
                            "source_file": write.source_file,
                            "applied_at": now,
                            "run_id": write.run_id,
                        }
                        for key, resource_id, generation, write in revisions
                    ],
                )
            result: dict[record.ResourceKey, record.ResourceRecord] = {}
            for chunk in _chunks(keys):
                stmt = select(schema.Resource).where(_has_key(schema.Resource, chunk))
                fresh = session.scalars(stmt.execution_options(populate_existing=True))
                result.update({res.key: res for res in map(_resource, fresh)})
        return [result[key] for key in keys]

    def write_status(self, writes: Sequence[record.StatusWrite]) -> None:
        """Replace the status of each resource; unknown resources are logged and skipped."""
        if not writes:
            return
        with self._session("writing status", write=True) as session:
            ids: dict[record.ResourceKey, int] = {}
            for chunk in _chunks(_unique(write.key for write in writes)):
                rows = session.execute(
                    select(schema.Resource.kind, schema.Resource.name, schema.Resource.id).where(
                        _has_key(schema.Resource, chunk)
                    )
                )
                ids.update({record.ResourceKey(row.kind, row.name): row.id for row in rows})
            missing = sorted({str(write.key) for write in writes if write.key not in ids})
            if missing:
                _log.warning("status not written for resources not in the record: %s", missing)
            params = [
                {"id": ids[write.key], "status": write.status}
                for write in writes
                if write.key in ids
            ]
            if params:
                session.execute(update(schema.Resource), params)

    def tombstone(self, keys: Sequence[record.ResourceKey]) -> None:
        """Mark resources deleted; their history and events stay. Idempotent."""
        if not keys:
            return
        now = _now()
        with self._session("marking resources deleted", write=True) as session:
            for chunk in _chunks(_unique(keys)):
                session.execute(
                    update(schema.Resource)
                    .where(_has_key(schema.Resource, chunk), schema.Resource.deleted_at.is_(None))
                    .values(deleted_at=now, updated_at=now)
                    .execution_options(synchronize_session=False)
                )

    def forget(self, keys: Sequence[record.ResourceKey]) -> None:
        """Remove resources and their revisions from the record for good; events stay."""
        if not keys:
            return
        with self._session("forgetting resources", write=True) as session:
            for chunk in _chunks(_unique(keys)):
                session.execute(
                    delete(schema.Resource)
                    .where(_has_key(schema.Resource, chunk))
                    .execution_options(synchronize_session=False)
                )

    def history(self, key: record.ResourceKey) -> list[record.RevisionRecord]:
        """Every applied generation of ``key``, oldest first."""
        stmt = (
            select(schema.Revision)
            .where(schema.Revision.kind == key.kind, schema.Revision.name == key.name)
            .order_by(schema.Revision.generation)
        )
        with self._session(f"reading the history of {key}") as session:
            return [_revision(row) for row in session.scalars(stmt)]

    # -- the volume inventory ----------------------------------------------------

    def volumes(self) -> list[record.VolumeRecord]:
        """Every volume this installation made or adopted, ordered by pool and name."""
        stmt = select(schema.Volume).order_by(schema.Volume.pool, schema.Volume.name)
        with self._session("listing volumes") as session:
            return [
                record.VolumeRecord(
                    pool=row.pool,
                    name=row.name,
                    owner=record.ResourceKey(row.owner_kind, row.owner_name),
                    disk=row.disk,
                    created=row.created,
                )
                for row in session.scalars(stmt)
            ]

    def claim_volumes(self, volumes: Sequence[record.VolumeRecord]) -> None:
        """Add volumes to the inventory before they are created; a known one is kept as is."""
        if not volumes:
            return
        now = _now()
        rows = [
            {
                "pool": v.pool,
                "name": v.name,
                "owner_kind": v.owner.kind,
                "owner_name": v.owner.name,
                "disk": v.disk,
                "created": v.created,
                "recorded_at": now,
            }
            for v in volumes
        ]
        with self._session("recording volumes", write=True) as session:
            stmt = self._insert(schema.Volume).values(rows)
            session.execute(stmt.on_conflict_do_nothing(index_elements=["pool", "name"]))

    def release_volumes(self, volumes: Sequence[record.VolumeRecord]) -> None:
        """Drop volumes from the inventory (deleted, or never ours); only their owner's rows."""
        if not volumes:
            return
        with self._session("forgetting volumes", write=True) as session:
            for v in volumes:
                session.execute(
                    delete(schema.Volume).where(
                        schema.Volume.pool == v.pool,
                        schema.Volume.name == v.name,
                        schema.Volume.owner_kind == v.owner.kind,
                        schema.Volume.owner_name == v.owner.name,
                    )
                )

    # -- events ------------------------------------------------------------------

    def record_events(self, events: Sequence[record.NewEvent]) -> None:
        """Append events, folding repeats of (kind, name, reason, message) into one row."""
        if not events:
            return
        now = _now()
        epoch = self._fence_epoch()
        folded: dict[str, dict[str, Any]] = {}
        for event in events:
            # A message may quote a driver's or git's error: no secret reaches the record.
            event = dataclasses.replace(event, message=settings.redact(event.message))
            fold_key = _fold_key(event)
            latest = {
                "type": event.type.value,
                "diff": event.diff,
                "revision": event.revision,
                "run_id": event.run_id,
                "epoch": epoch,
            }
            if fold_key in folded:
                folded[fold_key]["count"] += 1
                folded[fold_key].update(latest)
                continue
            folded[fold_key] = latest | {
                "fold_key": fold_key,
                "kind": event.key.kind,
                "name": event.key.name,
                "reason": event.reason,
                "message": event.message,
                "count": 1,
                "first_seen": now,
                "last_seen": now,
            }
        with self._session("recording events", write=True) as session:
            uids: dict[record.ResourceKey, str] = {}
            for chunk in _chunks(_unique(event.key for event in events)):
                rows = session.execute(
                    select(schema.Resource.kind, schema.Resource.name, schema.Resource.uid).where(
                        _has_key(schema.Resource, chunk)
                    )
                )
                uids.update({record.ResourceKey(row.kind, row.name): row.uid for row in rows})
            for values in folded.values():
                values["uid"] = uids.get(record.ResourceKey(values["kind"], values["name"]))
            stmt = self._insert(schema.Event)
            table = schema.Event.__table__.c
            stmt_upsert = stmt.on_conflict_do_update(
                index_elements=[table.fold_key],
                set_={
                    "count": table.count + stmt.excluded.count,
                    "last_seen": stmt.excluded.last_seen,
                    "uid": stmt.excluded.uid,
                    "type": stmt.excluded.type,
                    "diff": stmt.excluded.diff,
                    "revision": stmt.excluded.revision,
                    "run_id": stmt.excluded.run_id,
                    "epoch": stmt.excluded.epoch,
                },
            )
            session.execute(stmt_upsert, list(folded.values()))

    def events(
        self,
        key: record.ResourceKey | None = None,
        *,
        since: dt.datetime | None = None,
        limit: int | None = None,
        after_id: int | None = None,
    ) -> list[record.EventRecord]:
        """Events ordered by ``last_seen`` (oldest first).

        ``since`` keeps events last seen at or after it; ``after_id`` keeps rows
        created after that id (a repeat folds into its old row, so a follower
        that must see repeats polls with ``since`` instead); ``limit`` keeps the
        newest ``limit`` of what matches.
        """
        stmt = select(schema.Event)
        if key is not None:
            stmt = stmt.where(schema.Event.kind == key.kind, schema.Event.name == key.name)
        if since is not None:
            stmt = stmt.where(schema.Event.last_seen >= since)
        if after_id is not None:
            stmt = stmt.where(schema.Event.id > after_id)
        newest_first = (schema.Event.last_seen.desc(), schema.Event.id.desc())
        oldest_first = (schema.Event.last_seen, schema.Event.id)
        if limit is None:
            stmt = stmt.order_by(*oldest_first)
        else:
            stmt = stmt.order_by(*newest_first).limit(limit)
        with self._session("reading events") as session:
            rows = [_event(row) for row in session.scalars(stmt)]
        return rows if limit is None else rows[::-1]

    def events_of_runs(self, run_ids: Sequence[record.RunId]) -> list[record.EventRecord]:
        """The events whose latest occurrence was written by one of ``run_ids``, oldest first."""
        if not run_ids:
            return []
        stmt = (
            select(schema.Event)
            .where(schema.Event.run_id.in_(list(run_ids)))
            .order_by(schema.Event.last_seen, schema.Event.id)
        )
        with self._session("reading the events of aborted runs") as session:
            return [_event(row) for row in session.scalars(stmt)]

    def prune_events(self, older_than: dt.timedelta) -> int:
        """Delete events last seen more than ``older_than`` ago; returns how many."""
        cutoff = _now() - older_than
        with self._session("pruning events", write=True) as session:
            result = session.execute(
                delete(schema.Event)
                .where(schema.Event.last_seen < cutoff)
                .execution_options(synchronize_session=False)
            )
            assert isinstance(result, CursorResult)
            return int(result.rowcount)

    # -- runs --------------------------------------------------------------------

    def start_run(self, trigger: record.Trigger, revision: str | None) -> record.RunId:
        """Open a run (one reconcile pass); finish it with :meth:`finish_run`."""
        with self._session("starting a run", write=True) as session:
            run_id = session.execute(
                self._insert(schema.Run)
                .values(
                    trigger=trigger.value,
                    revision=revision,
                    started_at=_now(),
                    counts={},
                    epoch=self._fence_epoch(),
                )
                .returning(schema.Run.id)
            ).scalar_one()
        return record.RunId(run_id)

    def finish_run(self, run_id: record.RunId, counts: dict[str, int], result: str) -> None:
        """Close a run with its counts and result: ``succeeded``, ``failed`` or ``fenced``."""
        with self._session(f"finishing run {run_id}", write=True) as session:
            done = session.execute(
                update(schema.Run)
                .where(schema.Run.id == run_id)
                .values(finished_at=_now(), counts=dict(counts), result=result)
                .execution_options(synchronize_session=False)
            )
            assert isinstance(done, CursorResult)
            if done.rowcount != 1:
                raise errors.StoreError(f"run {run_id} is not in the record {self.url}")

    def abort_unfinished_runs(self) -> list[record.RunId]:
        """Close every run still open as ``aborted``; returns their ids, oldest first.

        Only for the writer lock's holder: runs are opened and closed under the
        lock, so one still open when the lock is taken belongs to a reconciler
        that died (killed, or the host lost) in the middle of its pass.
        """
        with self._session("closing aborted runs", write=True) as session:
            ids = list(
                session.scalars(
                    select(schema.Run.id)
                    .where(schema.Run.finished_at.is_(None))
                    .order_by(schema.Run.id)
                )
            )
            if ids:
                session.execute(
                    update(schema.Run)
                    .where(schema.Run.id.in_(ids))
                    .values(finished_at=_now(), result="aborted")
                    .execution_options(synchronize_session=False)
                )
        return [record.RunId(i) for i in ids]

    def runs(self, limit: int = 20) -> list[record.RunRecord]:
        """The newest ``limit`` runs, newest first."""
        stmt = select(schema.Run).order_by(schema.Run.id.desc()).limit(limit)
        with self._session("reading runs") as session:
            return [_run(row) for row in session.scalars(stmt)]

    def last_run(self) -> record.RunRecord | None:
        """The newest run, finished or not."""
        runs = self.runs(limit=1)
        return runs[0] if runs else None

    # -- the writer lock ---------------------------------------------------------

    @contextlib.contextmanager
    def writer_lock(self, timeout: float | None = None) -> Iterator[None]:
        """Hold the record's writer lock for the block; one reconciler writes at a time.

        Waits up to ``timeout`` seconds (default: the store's ``lock_timeout``),
        then raises :class:`~reconciler.errors.LockTimeout` naming the holder.
        Reentrant: nested blocks in this process share the outer hold. The
        block's writes, and :meth:`fence`, are fenced by the lock's epoch and,
        in a leading daemon, by the leadership's.
        """
        # The guard is held while waiting: other threads of this process queue
        # behind the first instead of each polling the database or the file.
        with self._lock_guard:
            if self._lock_depth == 0:
                if self._leadership.epoch is not None:
                    # A leader whose lease lapsed (it was frozen, say) takes nothing more.
                    _locks.Fence.of(self._leadership).check()
                wait = self._lock_timeout if timeout is None else timeout
                try:
                    self._lock.acquire(wait)
                except SQLAlchemyError as exc:
                    raise _translate("taking the writer lock", self._url, exc) from exc
                self._pass_fence = _locks.Fence.of(self._lock, self._leadership)
                if self._pass_fence.holds:
                    self._heartbeat.start()
            self._lock_depth += 1
        try:
            yield
        finally:
            with self._lock_guard:
                if self._lock_depth:
                    self._lock_depth -= 1
                    if self._lock_depth == 0:
                        self._pass_fence = None
                        self._release_lock()

    def _release_lock(self) -> None:
        try:
            self._lock.release()
        except SQLAlchemyError as exc:
            # The connection is gone, and the advisory lock with it; the row expires.
            _log.warning("releasing the writer lock: %s", _one_line(exc))

    def writing(self) -> bool:
        """Whether this store holds the writer lock now (a pass is in flight)."""
        return self._lock_depth > 0

    def fence(self) -> _locks.Fence:
        """What this store's actions are conditional on now: see :class:`_locks.Fence`.

        Inside :meth:`writer_lock`, the leases the pass took it under (a new
        leadership of this very process does not revive an old pass); outside,
        the leadership if held. Empty, hence always valid, on SQLite.
        """
        return self._write_fence()

    def _fence_epoch(self) -> int | None:
        return self._write_fence().epoch

    # -- daemon leadership -------------------------------------------------------

    def try_lead(self) -> bool:
        """Take the daemons' leadership if it is free or expired; True while this store holds it.

        One daemon per record reconciles (SPEC §5); see
        :func:`reconciler.store._locks.leader_lease`. Never waits (beyond ending
        the session of a holder whose lease expired).
        """
        if self._leadership.stale() is None:
            return True
        try:
            self._leadership.acquire(0)
        except errors.LockTimeout:
            return False
        except SQLAlchemyError as exc:
            raise _translate("taking the daemon leadership", self._url, exc) from exc
        if self._leadership.epoch is not None:  # a lease to renew (not an flock)
            self._heartbeat.start()
        return True

    def renew_leadership(self) -> bool:
        """Renew the leadership now; True when the record confirmed it.

        False once it is lost, and also while the record does not answer: the
        lease then still holds for what is left of it (:meth:`leading`).
        """
        return self._leadership.renew()

    def heartbeat_alive(self) -> bool:
        """Whether the thread that renews the leases still runs (or is not needed yet)."""
        return self._heartbeat.alive()

    def leading(self) -> bool:
        """Whether the leadership is held and valid, from local knowledge only (no I/O)."""
        return self._leadership.stale() is None

    def leader(self) -> str | None:
        """Who leads, e.g. ``pid 42 on host h since ...``; ``None`` when unknown or nobody."""
        try:
            holder = self._leadership.holder()
        except SQLAlchemyError as exc:
            raise _translate("reading the daemon leader", self._url, exc) from exc
        return holder.describe() if holder else None

    def resign(self) -> None:
        """Give up the leadership; a no-op when not held."""
        try:
            self._leadership.release()
        except SQLAlchemyError as exc:
            _log.warning("releasing the daemon leadership: %s", _one_line(exc))
