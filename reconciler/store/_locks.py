"""Leases: the writer lock and the daemons' leadership, fenced by one epoch (SPEC §3, §5).

Two things are held on a record: the **writer lock** (one reconciler writes at
a time: one pass of ``apply``, ``delete`` or a daemon) and the **leadership**
(one of several daemons reconciles at all). Both are :class:`Lease` s.

PostgreSQL: a lease row, kept alive by its holder's session
-----------------------------------------------------------

A session advisory lock alone is not enough: a stopped (``SIGSTOP``) or hung
process keeps its session, and with it the lock, for ever; and after a server
restart the lock is gone while the process still believes it holds it. So
each lease is a row of ``writer_lock`` (``writer``, ``leader``) holding the
holder, its **epoch**, its **expiry by the server's clock** and the server pid
of the holder's dedicated session, which also holds a session advisory lock
for as long as it holds the row (:class:`PostgresLease`):

* **Acquire** — take the advisory lock, then, in a transaction that locks both
  rows, take the row if it is *released*, *expired* (server clock) or
  *orphaned*: its holder is on this node (same kernel boot and pid namespace)
  and is either gone (killed) or this very process, which let go of it. Its
  epoch becomes one more than the greatest epoch of both rows: one counter for
  the writer lock and the leadership, so epochs order every hold of either.
* **A frozen or cut-off holder**: the advisory lock is held by a session whose
  row has expired. The waiter terminates that session
  (``pg_terminate_backend``, which needs the same database role or
  ``pg_signal_backend``); the advisory lock goes with it, and the frozen
  process finds its connection dead when it thaws.
* **Renew** — every ``duration / 4`` from a :class:`Heartbeat` thread:
  ``UPDATE ... SET expires_at = now() + duration WHERE name = ? AND epoch = ?``.
  No row means another holder took it: **lost**. A record that does not
  answer loses nothing yet — nobody can take the row meanwhile — so a pass
  goes on for what is left of its lease (and the audit journal keeps its
  events). A broken session is replaced: after a server restart (a new
  ``pg_postmaster_start_time()``) the new session takes the advisory lock
  again and renews; a session that ended while the server stayed up was ended
  on purpose (terminated by a waiter, or an operator): lost, and the row is
  freed at once so that a standby need not wait out the lease.
* **Valid, locally** — :meth:`PostgresLease.stale` is ``None`` while
  ``time.monotonic()`` since the start of the last successful renewal is under
  80 % of the duration and the lease is not lost. The row expires no earlier,
  so while a hold is valid here nobody else can have it. ``CLOCK_MONOTONIC``
  keeps running while a process is stopped, so a thawed holder knows at once,
  before any other step, that its lease is stale. A lapse is final: the next
  renewal marks the hold lost rather than revive a pass that was fenced.
* **Release** — ``expires_at = NULL`` where the epoch is still ours, then
  unlock. Rows are never deleted: the epoch never goes backwards.

A :class:`Fence` is what a pass holds: its leases and the epochs it holds them
at. :meth:`Fence.check` is the local check the executor makes before every
libvirt action; the store checks the same epochs against the rows, under
``FOR SHARE``, in the transaction of every record write (so a new holder's
``UPDATE`` of the row waits for that write, or the write sees the new epoch
and is refused). An old pass can therefore never write after a new holder
took either lease, and never touches libvirt once its lease lapsed locally.

SQLite: ``flock``, as before
----------------------------

One host, one daemon: ``flock`` on ``<database>.lock`` (writer) and
``<database>.daemon.lock`` (leadership) dies with the process and cannot be
taken from a frozen one, so there is nothing to fence: their epoch is
``None`` and a fence over them is always valid. In-memory SQLite (tests, one
process) uses a thread lock.

Waiting is polling with a short sleep rather than a blocking call, so the wait
is bounded by the timeout on every backend and the timeout message can name the
holder as it is *then*.
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime as dt
import fcntl
import functools
import json
import logging
import os
import socket
import threading
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Protocol

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

from reconciler import errors
from reconciler.store import schema

__all__ = [
    "LEADER_ROW",
    "WRITER_ROW",
    "Fence",
    "FileLock",
    "Heartbeat",
    "Holder",
    "Lease",
    "PostgresLease",
    "ThreadLock",
    "leader_lease",
    "writer_lease",
]

_log = logging.getLogger(__name__)

# Arbitrary constants: the advisory lock keys of the writer lock and of the
# daemons' leadership (the migrations' transaction lock uses ...0002). Advisory
# locks are scoped to one database, so each is one lock per record.
_PG_WRITER_KEY = 0x1B_5EC0_0001
_PG_LEADER_KEY = 0x1B_5EC0_0003
WRITER_ROW = "writer"
LEADER_ROW = "leader"
_ROWS = (LEADER_ROW, WRITER_ROW)  # locked in this order, always
_TITLES = {WRITER_ROW: "writer lock", LEADER_ROW: "leadership"}
# The dedicated session notices a vanished peer: probe after 5 s idle, every
# 2 s, give up after 3 unanswered probes (about 11 s).
_PG_KEEPALIVE = {
    "tcp_keepalives_idle": "5",
    "tcp_keepalives_interval": "2",
    "tcp_keepalives_count": "3",
}
_POLL_S = 0.1
_REAP_WAIT_S = 2.0  # how long a terminated session may take to let go of its lock
_VALID_FRACTION = (
    0.8  # of the duration after a renewal: margin for clock rates and the call in flight
)
RENEWALS_PER_LEASE = 4

_PG_LOCKS = table(
    "pg_locks",
    column("locktype", String),
    column("pid", Integer),
    column("classid"),
    column("objid"),
    column("granted", Boolean),
)


class Lease(Protocol):
    """A lock held on the record; see the module docstring for each backend."""

    @property
    def name(self) -> str:
        """``writer`` or ``leader``."""

    @property
    def epoch(self) -> int | None:
        """The epoch of the current hold (also once it is lost, until released); else None."""

    def acquire(self, timeout: float) -> None:
        """Take it, waiting at most ``timeout`` seconds; :class:`~errors.LockTimeout` if not."""

    def release(self) -> None:
        """Give it back; a no-op if it is not held."""

    def renew(self) -> bool:
        """Extend the hold now; False when it is not held or lost."""

    def stale(self) -> str | None:
        """Why the hold may no longer be acted on (lost, lapsed, released); None while valid."""

    def holder(self) -> Holder | None:
        """Who holds it now, when known."""

    def close(self) -> None:
        """Release it and let go of any connection."""


@dataclasses.dataclass(frozen=True)
class Holder:
    pid: int
    host: str
    since: dt.datetime

    @classmethod
    def me(cls) -> Holder:
        return cls(os.getpid(), socket.gethostname(), dt.datetime.now(dt.UTC))

    def describe(self) -> str:
        since = self.since.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        return f"pid {self.pid} on host {self.host} since {since}"


def writer_lease(engine: Engine, sqlite_file: Path | None, duration: float) -> Lease:
    """The writer lock of the record: one pass writes at a time."""
    if engine.dialect.name == "postgresql":
        return PostgresLease(engine, key=_PG_WRITER_KEY, name=WRITER_ROW, duration=duration)
    if sqlite_file is not None:
        return FileLock(sqlite_file.with_name(sqlite_file.name + ".lock"), name=WRITER_ROW)
    return ThreadLock(name=WRITER_ROW)


def leader_lease(engine: Engine, sqlite_file: Path | None, duration: float) -> Lease:
    """The daemons' leadership: exactly one daemon per record reconciles.

    SQLite: ``flock`` on ``<database>.daemon.lock``, which a second daemon
    cannot take (it refuses to start instead of standing by).
    """
    if engine.dialect.name == "postgresql":
        return PostgresLease(engine, key=_PG_LEADER_KEY, name=LEADER_ROW, duration=duration)
    if sqlite_file is not None:
        return FileLock(sqlite_file.with_name(sqlite_file.name + ".daemon.lock"), name=LEADER_ROW)
    return ThreadLock(name=LEADER_ROW)


def _timeout_error(holder: Holder | None, waited: float) -> errors.LockTimeout:
    who = f"by {holder.describe()}" if holder else "by another reconciler (holder unknown)"
    return errors.LockTimeout(
        f"the record is locked {who}; waited {waited:g}s "
        "(raise --lock-timeout or stop the other reconciler)"
    )


def _poll(try_once: _TryOnce, timeout: float) -> bool:
    deadline = time.monotonic() + max(timeout, 0.0)
    while True:
        if try_once():
            return True
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            return False
        time.sleep(min(_POLL_S, remaining))


class _TryOnce(Protocol):
    def __call__(self) -> bool: ...


# --- fences -----------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class Fence:
    """The leases a pass holds and the epochs it holds them at; see the module docstring."""

    holds: tuple[tuple[Lease, int], ...] = ()

    @classmethod
    def of(cls, *leases: Lease) -> Fence:
        """A fence over the leases held now; those without an epoch (flocks) are left out."""
        return cls(tuple((lease, lease.epoch) for lease in leases if lease.epoch is not None))

    @property
    def epoch(self) -> int | None:
        """The newest epoch of the fence, recorded on the runs and events written under it."""
        return max((epoch for _, epoch in self.holds), default=None)

    def epochs(self) -> dict[str, int]:
        """Row name -> epoch, for the store's check against the rows."""
        return {lease.name: epoch for lease, epoch in self.holds}

    def check(self) -> None:
        """Raise :class:`~errors.Fenced` unless every hold is still this one and valid; no I/O."""
        for lease, epoch in self.holds:
            why = "was given up or taken over" if lease.epoch != epoch else lease.stale()
            if why is not None:
                raise fenced(lease.name, epoch, why)


def fenced(name: str, epoch: int, why: str) -> errors.Fenced:
    return errors.Fenced(
        f"this reconciler's {_TITLES.get(name, name)} (epoch {epoch}) {why}; "
        "it takes no further action (another reconciler may hold it now)"
    )


class Heartbeat:
    """Renews a store's held leases every ``interval`` seconds, on its own thread.

    Started on the first hold and stopped when the store closes. A renewal that
    fails marks its lease lost (and logs why); the thread itself never dies of
    it, and if it stopped anyway its leases would just lapse, which is safe —
    but the daemon would lead a lease at a time, so it watches :meth:`alive`.
    """

    def __init__(self, leases: Sequence[Lease], interval: float) -> None:
        self._leases = tuple(leases)
        self._interval = interval
        self._stop = threading.Event()
        self._guard = threading.Lock()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        with self._guard:
            if self._thread is None and not self._stop.is_set():
                self._thread = threading.Thread(
                    target=self._run, name="lease-heartbeat", daemon=True
                )
                self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        with self._guard:
            thread = self._thread
        if thread is not None:
            thread.join(timeout=5)

    def alive(self) -> bool:
        """False only when its thread ended without being stopped; True before the start."""
        with self._guard:
            thread = self._thread
        return thread is None or thread.is_alive() or self._stop.is_set()

    def _run(self) -> None:
        while not self._stop.wait(self._interval):
            for lease in self._leases:
                if lease.epoch is None:
                    continue
                try:
                    lease.renew()
                except Exception:  # never die: a dead heartbeat only lets the leases lapse
                    _log.exception("renewing the %s lease failed", lease.name)


# --- PostgreSQL -------------------------------------------------------------------


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


def _orphaned(name: str, epoch: int, pid: int, node: str | None) -> bool:
    """Whether the holder a row names is gone: killed, or this process, which let go of it."""
    if node is None or node != _node():
        return False  # another host or container: only its lease's expiry tells
    if pid != os.getpid():
        return _gone(pid)
    with _HELD_GUARD:
        return (name, epoch) not in _HELD


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
        if not _poll(self._try_once, timeout):
            raise _timeout_error(self.holder(), timeout)

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
            time.sleep(_POLL_S)
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
                _TITLES[self._name],
                found.pid,
                found.host,
                found.epoch,
            )
        return any(found.terminated for found in stale)

    def _take_row(self, conn: Connection) -> int | None:
        row = schema.WriterLock
        me = Holder.me()
        conn.execute(
            pg_insert(row)
            .values(
                [
                    {"name": name, "pid": me.pid, "host": me.host, "since": me.since}
                    for name in _ROWS
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
        if not (mine.free or _orphaned(self._name, mine.epoch, mine.pid, mine.node)):
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
                            _TITLES[self._name],
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
        _log.error("fenced: %s", fenced(self._name, epoch, why))

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

    def holder(self) -> Holder | None:
        row = schema.WriterLock
        with self._engine.connect() as conn:
            found = conn.execute(
                select(row.pid, row.host, row.since).where(
                    row.name == self._name, row.expires_at.is_not(None)
                )
            ).one_or_none()
        return Holder(found.pid, found.host, found.since) if found else None

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


# --- SQLite -----------------------------------------------------------------------


class FileLock:
    """``flock`` on a file next to the SQLite database."""

    def __init__(self, path: Path, *, name: str = WRITER_ROW) -> None:
        self._path = path
        self._name = name
        self._fd: int | None = None

    @property
    def name(self) -> str:
        return self._name

    @property
    def epoch(self) -> int | None:
        return None  # a flock cannot be taken from a live holder: nothing to fence

    def acquire(self, timeout: float) -> None:
        try:
            fd = os.open(self._path, os.O_RDWR | os.O_CREAT, 0o600)
        except OSError as exc:
            raise errors.StoreError(
                f"cannot open the lock file {self._path}: {exc.strerror}"
            ) from exc

        def try_once() -> bool:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                return False
            return True

        if not _poll(try_once, timeout):
            os.close(fd)
            raise _timeout_error(self._read_holder(), timeout)
        holder = Holder.me()
        payload = json.dumps(
            {"pid": holder.pid, "host": holder.host, "since": holder.since.isoformat()}
        ).encode()
        os.ftruncate(fd, 0)
        os.pwrite(fd, payload, 0)
        self._fd = fd

    def release(self) -> None:
        if self._fd is None:
            return
        fd, self._fd = self._fd, None
        try:
            os.ftruncate(fd, 0)
        finally:
            os.close(fd)  # closing the descriptor drops the flock

    def renew(self) -> bool:
        return self._fd is not None  # an flock lives as long as its descriptor

    def stale(self) -> str | None:
        return None if self._fd is not None else "is not held"

    def holder(self) -> Holder | None:
        """Who holds the lock, from the lock file; ``None`` when free or unknown."""
        return self._read_holder()

    def close(self) -> None:
        self.release()

    def _read_holder(self) -> Holder | None:
        try:
            data = json.loads(self._path.read_text())
            return Holder(
                int(data["pid"]), str(data["host"]), dt.datetime.fromisoformat(data["since"])
            )
        except (OSError, ValueError, KeyError, TypeError):
            # Read between the holder's truncate and write, or not ours.
            return None


class ThreadLock:
    """For in-memory SQLite, which only one process can see anyway."""

    def __init__(self, *, name: str = WRITER_ROW) -> None:
        self._name = name
        self._lock = threading.Lock()
        self._since: dt.datetime | None = None

    @property
    def name(self) -> str:
        return self._name

    @property
    def epoch(self) -> int | None:
        return None

    def acquire(self, timeout: float) -> None:
        if not self._lock.acquire(timeout=max(timeout, 0.0)):
            since = self._since or dt.datetime.now(dt.UTC)
            raise _timeout_error(Holder(os.getpid(), socket.gethostname(), since), timeout)
        self._since = dt.datetime.now(dt.UTC)

    def release(self) -> None:
        with contextlib.suppress(RuntimeError):  # not held
            self._lock.release()
        self._since = None

    def renew(self) -> bool:
        return self._since is not None

    def stale(self) -> str | None:
        return None if self._since is not None else "is not held"

    def holder(self) -> Holder | None:
        since = self._since
        return Holder(os.getpid(), socket.gethostname(), since) if since else None

    def close(self) -> None:
        self.release()
