"""What every part of the store shares: the sessions, the fence on writes, the helpers.

:class:`Base` holds the state of one open record (engine, session factories,
the writer lock and leadership leases) and opens every transaction
(:meth:`Base._session`), checking the fence first on a write. The parts of
:class:`reconciler.store.store.Store` (resources, history, runs, volumes,
leases) derive from it, each in its own module.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import enum
import re
import threading
from collections.abc import Iterable, Iterator, Sequence
from typing import TypeVar

from sqlalchemy import ColumnElement, Engine, select, tuple_
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import URL
from sqlalchemy.exc import DBAPIError, SQLAlchemyError
from sqlalchemy.orm import Session, sessionmaker

from reconciler import errors, settings
from reconciler.models import record
from reconciler.store import _engine, _locks, schema

__all__ = [
    "KEYS_PER_QUERY",
    "Base",
    "alembic_error",
    "chunks",
    "display",
    "has_key",
    "member",
    "now",
    "one_line",
    "translate",
    "unique",
]

# Rows per "WHERE (kind, name) IN (...)": two bound parameters each, far below
# SQLite's 32,766 and PostgreSQL's 65,535 limits, and 1,000 keys stay one query.
KEYS_PER_QUERY = 2_000
_E = TypeVar("_E", bound=enum.Enum)
_BACKGROUND_RE = re.compile(r"\s*\(Background on this error at: \S+\)")


def now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def display(url: URL) -> str:
    return settings.redact(url.render_as_string(hide_password=True))


def one_line(exc: BaseException) -> str:
    cause = exc.orig if isinstance(exc, DBAPIError) and exc.orig is not None else exc
    text = _BACKGROUND_RE.sub("", str(cause)) or type(cause).__name__
    return " ".join(text.split())


def translate(operation: str, url: URL, exc: BaseException) -> errors.StoreError:
    return errors.StoreError(
        settings.redact(f"{operation} failed on the record {display(url)}: {one_line(exc)}")
    )


def alembic_error() -> type[Exception]:
    """Alembic's ``CommandError``, imported only once an exception is being handled.

    An ``except`` clause evaluates its tuple only when something was raised, so
    the store does not import Alembic on the way to a database already at head.
    """
    from alembic.util import CommandError

    return CommandError


def chunks(items: Sequence[record.ResourceKey]) -> Iterator[Sequence[record.ResourceKey]]:
    for start in range(0, len(items), KEYS_PER_QUERY):
        yield items[start : start + KEYS_PER_QUERY]


def has_key(
    model: type[schema.Resource] | type[schema.Event] | type[schema.Revision],
    keys: Iterable[record.ResourceKey],
) -> ColumnElement[bool]:
    return tuple_(model.kind, model.name).in_([(key.kind, key.name) for key in keys])


def unique(keys: Iterable[record.ResourceKey]) -> list[record.ResourceKey]:
    return list(dict.fromkeys(keys))


def member(enum_type: type[_E], value: object, what: str, field: str) -> _E:
    """``enum_type(value)`` for a column of ``what``; :class:`RecordCorrupt` if it is none."""
    try:
        return enum_type(value)
    except ValueError as exc:
        allowed = ", ".join(str(m.value) for m in enum_type)
        raise errors.RecordCorrupt(
            f"{what} in the record is corrupt at {field}: {value!r} is none of {allowed}"
        ) from exc


class Base:
    """One open record: its engine, sessions and leases. See :class:`Store`."""

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
        self._lease_s = lease
        # A sharded daemon's leases (SPEC §10): its membership, and host name -> lease.
        self._member: _locks.Lease | None = None
        self._host_leases: dict[str, _locks.Lease] = {}
        self._closed = False
        self.actor: str | None = None
        """Who acts through this store: stamped on the events and revisions it writes
        that name no actor of their own (``cli:USER@HOST``, a commit's author)."""

    @property
    def url(self) -> str:
        """The database URL with any password hidden, for messages."""
        return display(self._url)

    @property
    def backend(self) -> str:
        """``"sqlite"`` or ``"postgresql"``."""
        return self._engine.dialect.name

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
            raise translate(operation, self._url, exc) from exc

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

    def shard_member(self) -> str | None:
        """This daemon's membership row name, when it is a sharded daemon."""
        return self._member.name if self._member is not None else None

    def _fenced_hosts(self) -> dict[str, int] | None:
        """Host -> epoch of the leases the current pass holds; ``None`` unless sharded."""
        if self._member is None:
            return None
        fence = self._pass_fence
        holds = {lease.name: epoch for lease, epoch in fence.holds} if fence else {}
        return {
            host: holds[lease.name]
            for host, lease in sorted(self._host_leases.items())
            if lease.name in holds
        }

    def _fence_epoch(self) -> int | None:
        return self._write_fence().epoch
