"""The PostgreSQL lease: a row of ``writer_lock`` kept by a dedicated session.

See :mod:`reconciler.store._locks` for the design (acquire, a frozen holder,
renew, local validity, release) and :mod:`reconciler.store._lease_common` for what
every lease shares.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import functools
import logging
import os
import threading
import time
import zlib
from pathlib import Path
from typing import Any

from sqlalchemy import (
    BigInteger,
    Boolean,
    Connection,
    Engine,
    Integer,
    String,
    cast,
    column,
    exists,
    func,
    or_,
    select,
    table,
    update,
)
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.exc import SQLAlchemyError

from reconciler.store import _lease_common, schema

__all__ = ["LEADER_KEY", "WRITER_KEY", "PostgresLease", "orphaned", "shard_key"]

_log = logging.getLogger(__name__)

# Arbitrary constants: the advisory lock keys of the writer lock and of the
# daemons' leadership (the migrations' transaction lock uses ...0002). Advisory
# locks are scoped to one database, so each is one lock per record.
WRITER_KEY = 0x1B_5EC0_0001
LEADER_KEY = 0x1B_5EC0_0003
_ROWS = (_lease_common.LEADER_ROW, _lease_common.WRITER_ROW)  # locked in this order, always
_SHARD_KEYS = 0x1B_5EC1  # high half of the advisory keys of host and membership leases
# The dedicated session notices a vanished peer: probe after 5 s idle, every
# 2 s, give up after 3 unanswered probes (about 11 s).
_PG_KEEPALIVE = {
    "tcp_keepalives_idle": "5",
    "tcp_keepalives_interval": "2",
    "tcp_keepalives_count": "3",
}
_REAP_WAIT_S = 2.0  # how long a terminated session may take to let go of its lock
_VALID_FRACTION = (
    0.8  # of the duration after a renewal: margin for clock rates and the call in flight
)

_PG_LOCKS = table(
    "pg_locks",
    column("locktype", String),
    column("pid", Integer),
    column("classid"),
    column("objid"),
    column("granted", Boolean),
)


@functools.cache
def _node() -> str | None:
    """This kernel boot and pid namespace: where a pid names the same process."""
    try:
        boot = Path("/proc/sys/kernel/random/boot_id").read_text().strip()
        namespace = os.stat("/proc/self/ns/pid").st_ino
    except OSError:
        return None
    return f"{boot}/{namespace}"


def _gone(pid: int) -> bool:
    """Whether no live process has ``pid`` here; a zombie is gone (it holds nothing)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    except PermissionError:
        return False
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return True
    except OSError:
        return False
    return stat.rpartition(")")[2].split()[0] == "Z"


# The holds of this process, as (row, epoch): a row that names this process as its
# holder but is not in here was left by a lease object that let go of it.
_HELD: set[tuple[str, int]] = set()
_HELD_GUARD = threading.Lock()


def _holding(name: str, epoch: int, held: bool) -> None:
    with _HELD_GUARD:
        if held:
            _HELD.add((name, epoch))
        else:
            _HELD.discard((name, epoch))


def orphaned(name: str, epoch: int, pid: int, node: str | None) -> bool:
    """Whether the holder a row names is gone: killed, or this process, which let go of it."""
    if node is None or node != _node():
        return False  # another host or container: only its lease's expiry tells
    if pid != os.getpid():
        return _gone(pid)
    with _HELD_GUARD:
        return (name, epoch) not in _HELD


def shard_key(name: str) -> int:
    """The advisory lock key of a host or membership lease, from its row name.

    Two names that share a CRC only share an advisory lock: their holders then
    wait for each other, which is slow but never unsafe (the row decides).
    """
    return (_SHARD_KEYS << 32) | zlib.crc32(name.encode())


class PostgresLease:
    """A lease row kept by a dedicated session that also holds an advisory lock."""

    def __init__(self, engine: Engine, *, key: int, name: str, duration: float) -> None:
        self._engine = engine
        self._key = key
        self._name = name
        self._duration = duration
        self._span = dt.timedelta(seconds=duration)
        # One thread at a time on the dedicated connection; held only for one exchange.
        self._guard = threading.RLock()
        self._conn: Connection | None = None
        self._server: dt.datetime | None = None  # pg_postmaster_start_time() of the session
        self._advisory = False  # whether the session holds the advisory lock
        self._epoch: int | None = None
        self._renewed = 0.0  # time.monotonic() at the start of the last successful renewal
        self._lost: str | None = None

    @property
    def name(self) -> str:
        return self._name

    @property
    def epoch(self) -> int | None:
        return self._epoch

    # -- taking it -------------------------------------------------------------------

    def acquire(self, timeout: float) -> None:
        if self._epoch is not None:
            self.release()  # a lost or lapsed hold: start afresh, under a new epoch
        if not _lease_common.poll(self._try_once, timeout):
            raise _lease_common.timeout_error(self.holder(), timeout)

    def _try_once(self) -> bool:
        with self._guard:
            conn = self._connection()
            started = time.monotonic()
            try:
                got = self._take_advisory(conn)
                epoch = self._take_row(conn) if got else None
                if got and epoch is None:
                    conn.execute(select(func.pg_advisory_unlock(self._key)))
                conn.commit()
            except BaseException:
                self._drop_connection()
                raise
            if epoch is None:
                return False
            self._advisory = True
            self._epoch = epoch
            self._renewed = started
            self._lost = None
            _holding(self._name, epoch, True)
            return True

    def _take_advisory(self, conn: Connection) -> bool:
        if conn.scalar(select(func.pg_try_advisory_lock(self._key))):
            return True
        if not self._reap(conn):
            return False
        deadline = time.monotonic() + _REAP_WAIT_S
        while time.monotonic() < deadline:
            time.sleep(_lease_common.POLL_S)
            if conn.scalar(select(func.pg_try_advisory_lock(self._key))):
                return True
        return False

    def _reap(self, conn: Connection) -> bool:
        """Terminate the session that holds the advisory lock for an expired row."""
        row = schema.WriterLock
        holds_the_lock = exists().where(
            _PG_LOCKS.c.locktype == "advisory",
            _PG_LOCKS.c.granted,
            _PG_LOCKS.c.pid == row.backend,
            cast(_PG_LOCKS.c.classid, BigInteger) == self._key >> 32,
            cast(_PG_LOCKS.c.objid, BigInteger) == self._key & 0xFFFF_FFFF,
        )
        stale = conn.execute(
            select(
                row.pid,
                row.host,
                row.epoch,
                func.pg_terminate_backend(row.backend).label("terminated"),
            ).where(row.name == self._name, row.expires_at <= func.now(), holds_the_lock)
        ).all()
        for found in stale:
            _log.warning(
                "the %s lease of pid %s on host %s (epoch %s) expired while its session "
                "still held it (a frozen or cut-off process): terminated that session",
                _lease_common.title(self._name),
                found.pid,
                found.host,
                found.epoch,
            )
        return any(found.terminated for found in stale)

    def _take_row(self, conn: Connection) -> int | None:
        row = schema.WriterLock
        me = _lease_common.Holder.me()
        conn.execute(
            pg_insert(row)
            .values(
                [
                    {"name": name, "pid": me.pid, "host": me.host, "since": me.since}
                    for name in dict.fromkeys((*_ROWS, self._name))
                ]
            )
            .on_conflict_do_nothing(index_elements=[row.name])
        )
        rows = conn.execute(
            select(
                row.name,
                row.epoch,
                row.pid,
                row.node,
                or_(row.expires_at.is_(None), row.expires_at <= func.now()).label("free"),
            )
            .order_by(row.name)
            .with_for_update()
        ).all()
        mine = next(found for found in rows if found.name == self._name)
        if not (mine.free or orphaned(self._name, mine.epoch, mine.pid, mine.node)):
            return None
        epoch = int(max(found.epoch for found in rows)) + 1
        conn.execute(
            update(row)
            .where(row.name == self._name)
            .values(
                epoch=epoch,
                pid=me.pid,
                host=me.host,
                since=me.since,
                node=_node(),
                backend=func.pg_backend_pid(),
                expires_at=func.now() + self._span,
            )
        )
        return epoch

    # -- keeping it ------------------------------------------------------------------

    def renew(self) -> bool:
        """Extend the hold; False when lost, and while the record cannot be reached.

        A record that does not answer loses nothing yet: nobody can take the row
        while it is down, and the hold stays valid for what is left of it. A
        lapse is final, though: a pass that was fenced must not come back to life.
        """
        with self._guard:
            epoch = self._epoch
            if epoch is None or self._lost is not None:
                return False
            lapsed = self._lapsed()
            if lapsed is not None:
                self._lose(epoch, lapsed)
                return False
            started = time.monotonic()
            for attempt in range(2):  # the dedicated session, then a new one if it broke
                try:
                    conn = self._session(epoch)
                    if conn is None:
                        return False  # lost: the session was ended on purpose
                    done = conn.execute(
                        update(schema.WriterLock)
                        .where(
                            schema.WriterLock.name == self._name,
                            schema.WriterLock.epoch == epoch,
                        )
                        .values(expires_at=func.now() + self._span, backend=func.pg_backend_pid())
                    )
                    conn.commit()
                    break
                except SQLAlchemyError as exc:
                    self._drop_connection()
                    if attempt:
                        _log.warning(
                            "cannot renew the %s lease (epoch %s): %s; it holds for %.1fs more",
                            _lease_common.title(self._name),
                            epoch,
                            _one_line(exc),
                            max(self._valid_for(), 0.0),
                        )
                        return False
            if done.rowcount != 1:
                self._lose(epoch, "was taken over")
                return False
            self._renewed = started
            return True

    def _session(self, epoch: int) -> Connection | None:
        """The dedicated session; a new one when it broke, ``None`` if that lost the hold.

        A server restart ends every session and says nothing about the lease:
        the new session takes the advisory lock again and renews. A session
        ended while the server stayed up was ended on purpose (by a holder that
        saw the lease expire, or an operator): the hold is lost, and its row is
        freed at once if still ours, so nobody need wait out the lease.
        """
        if self._conn is not None:
            if not self._advisory:
                self._advisory = bool(
                    self._conn.scalar(select(func.pg_try_advisory_lock(self._key)))
                )
            return self._conn
        before = self._server
        conn = self._connection()
        if before is not None and self._server == before:
            self._lose(epoch, "lost its session while the server stayed up")
            self._free_row(conn, epoch)
            conn.commit()
            return None
        self._advisory = bool(conn.scalar(select(func.pg_try_advisory_lock(self._key))))
        return conn

    def _lose(self, epoch: int, why: str) -> None:
        self._lost = why
        _holding(self._name, epoch, False)
        _log.error("fenced: %s", _lease_common.fenced(self._name, epoch, why))

    def _valid_for(self) -> float:
        return self._duration * _VALID_FRACTION - (time.monotonic() - self._renewed)

    def _lapsed(self) -> str | None:
        if self._valid_for() > 0:
            return None
        age = time.monotonic() - self._renewed
        return f"lapsed: not renewed for {age:.1f}s (lease {self._duration:g}s)"

    def stale(self) -> str | None:
        if self._epoch is None:
            return "is not held"
        if self._lost is not None:
            return self._lost
        return self._lapsed()

    # -- giving it back --------------------------------------------------------------

    def release(self) -> None:
        with self._guard:
            epoch, self._epoch, self._lost = self._epoch, None, None
            if epoch is None:
                return
            _holding(self._name, epoch, False)
            conn = self._conn
            if conn is not None:
                try:
                    self._free_row(conn, epoch)
                    if self._advisory:
                        conn.execute(select(func.pg_advisory_unlock(self._key)))
                    conn.commit()
                    self._advisory = False
                    return
                except SQLAlchemyError:
                    self._drop_connection()  # and the advisory lock with the session
            self._free_row_elsewhere(epoch)

    def _free_row(self, conn: Connection, epoch: int) -> None:
        row = schema.WriterLock
        conn.execute(
            update(row)
            .where(row.name == self._name, row.epoch == epoch)
            .values(expires_at=None, backend=None)
        )

    def _free_row_elsewhere(self, epoch: int) -> None:
        """Free the row from a pooled connection: this lease's own session is gone."""
        with self._engine.begin() as conn:
            self._free_row(conn, epoch)

    def close(self) -> None:
        try:
            self.release()
        finally:
            with self._guard:
                self._drop_connection()

    # -- reading it ------------------------------------------------------------------

    def holder(self) -> _lease_common.Holder | None:
        row = schema.WriterLock
        with self._engine.connect() as conn:
            found = conn.execute(
                select(row.pid, row.host, row.since).where(
                    row.name == self._name, row.expires_at.is_not(None)
                )
            ).one_or_none()
        return _lease_common.Holder(found.pid, found.host, found.since) if found else None

    # -- the dedicated session -------------------------------------------------------

    def _connection(self) -> Connection:
        if self._conn is None:
            conn = self._engine.connect()
            try:
                settings = {
                    **_PG_KEEPALIVE,
                    # A hung server must not hold a renewal for longer than the lease.
                    "statement_timeout": str(max(int(self._duration * 1000), 1000)),
                }
                for name, value in settings.items():
                    conn.execute(select(func.set_config(name, value, False)))
                self._server = conn.scalar(select(func.pg_postmaster_start_time()))
                conn.commit()
            except BaseException:
                conn.invalidate()
                conn.close()
                raise
            self._conn = conn
            self._advisory = False
        return self._conn

    def _drop_connection(self) -> None:
        """End the dedicated session (its settings must not go back to the pool)."""
        conn, self._conn = self._conn, None
        self._advisory = False
        if conn is not None:
            with contextlib.suppress(SQLAlchemyError):
                conn.invalidate()
            with contextlib.suppress(SQLAlchemyError):
                conn.close()


def _one_line(exc: BaseException) -> str:
    cause: Any = getattr(exc, "orig", None) or exc
    return " ".join(str(cause).split()) or type(cause).__name__
