"""The writer lock: one reconciler writes to a record at a time (SPEC §3).

Both implementations are released by the operating system or the server when
the holding process dies, so a crashed reconciler never leaves a lock behind:

* PostgreSQL: a session-level ``pg_advisory_lock`` on a dedicated connection held
  for as long as the lock is; it dies with the connection. Advisory locks carry
  no owner data, so the holder writes its pid, host and start time into the
  ``writer_lock`` table for the next waiter's error message.
* SQLite: ``flock`` on ``<database>.lock``; it dies with the file descriptor.
  The holder writes the same information into the lock file itself.
* In-memory SQLite (tests, one process): a plain thread lock.

Waiting is polling with a short sleep rather than a blocking call, so the wait is
bounded by the timeout on every backend and the timeout message can name the
holder as it is *then*.
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime as dt
import fcntl
import json
import os
import socket
import threading
import time
from pathlib import Path
from typing import Protocol

from sqlalchemy import Connection, Engine, delete, func, select
from sqlalchemy.dialects.postgresql import insert as pg_insert

from reconciler import errors
from reconciler.store import schema

__all__ = [
    "LEADER_ROW",
    "FileLock",
    "Holder",
    "LeadershipLock",
    "PostgresLock",
    "ThreadLock",
    "WriterLock",
    "leader_lock",
]

# Arbitrary constants: the advisory lock keys of the writer lock and of the
# daemons' leadership. Advisory locks are scoped to one database, so each is
# one lock per record.
_PG_WRITER_KEY = 0x1B_5EC0_0001
_PG_LEADER_KEY = 0x1B_5EC0_0002
_ROW = "writer"
LEADER_ROW = "leader"
# Leadership is held for as long as a daemon runs, so a dead peer must be
# noticed by the server: probe an idle leader connection after 5 s, every 2 s,
# and give up after 3 unanswered probes (about 11 s on a vanished host; a
# killed process closes its socket and frees the lock at once).
_PG_KEEPALIVE = {"tcp_keepalives_idle": 5, "tcp_keepalives_interval": 2, "tcp_keepalives_count": 3}
_POLL_S = 0.1


class WriterLock(Protocol):
    def acquire(self, timeout: float) -> None:
        """Take the lock, waiting at most ``timeout`` seconds; :class:`LockTimeout` if not."""

    def release(self) -> None:
        """Give the lock back; a no-op if it is not held."""


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


class LeadershipLock(WriterLock, Protocol):
    """A lock held for as long as a daemon leads; see :func:`leader_lock`."""

    def alive(self) -> bool:
        """Whether this process still holds the lock."""

    def holder(self) -> Holder | None:
        """Who holds the lock now, when known."""


def leader_lock(engine: Engine, sqlite_file: Path | None) -> LeadershipLock:
    """The daemons' leadership lock: exactly one daemon per record reconciles.

    PostgreSQL: an advisory lock (a different key from the writer lock) whose
    session dies with its process, so a standby takes over as soon as the
    leader's connection is gone. SQLite: ``flock`` on ``<database>.daemon.lock``,
    which a second daemon cannot take. In-memory SQLite: a thread lock.
    """
    if engine.dialect.name == "postgresql":
        return PostgresLock(engine, key=_PG_LEADER_KEY, row=LEADER_ROW)
    if sqlite_file is not None:
        return FileLock(sqlite_file.with_name(sqlite_file.name + ".daemon.lock"))
    return ThreadLock()


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


class FileLock:
    """``flock`` on a file next to the SQLite database."""

    def __init__(self, path: Path) -> None:
        self._path = path
        self._fd: int | None = None

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

    def alive(self) -> bool:
        """Whether this process holds the lock; an flock lives as long as its descriptor."""
        return self._fd is not None

    def holder(self) -> Holder | None:
        """Who holds the lock, from the lock file; ``None`` when free or unknown."""
        return self._read_holder()

    def _read_holder(self) -> Holder | None:
        try:
            data = json.loads(self._path.read_text())
            return Holder(
                int(data["pid"]), str(data["host"]), dt.datetime.fromisoformat(data["since"])
            )
        except (OSError, ValueError, KeyError, TypeError):
            # Read between the holder's truncate and write, or not ours.
            return None


class PostgresLock:
    """A session-level advisory lock on a dedicated connection.

    ``key`` and ``row`` tell the writer lock (the default) from the daemons'
    leadership lock, which :meth:`alive` probes: a leader whose connection
    broke has lost the lock on the server's side too.
    """

    def __init__(self, engine: Engine, key: int = _PG_WRITER_KEY, row: str = _ROW) -> None:
        self._engine = engine
        self._key = key
        self._row = row
        self._conn: Connection | None = None

    def acquire(self, timeout: float) -> None:
        conn = self._engine.connect().execution_options(isolation_level="AUTOCOMMIT")
        try:
            if self._key == _PG_LEADER_KEY:
                for name, value in _PG_KEEPALIVE.items():
                    conn.exec_driver_sql(f"SET {name} = {int(value)}")
            got = _poll(
                lambda: bool(conn.scalar(select(func.pg_try_advisory_lock(self._key)))),
                timeout,
            )
            if not got:
                holder = self._read_holder(conn, self._row)
                raise _timeout_error(holder, timeout)
            self._write_holder(conn, Holder.me(), self._row)
        except BaseException:
            conn.invalidate()  # ends the server session, and with it any lock it took
            conn.close()
            raise
        self._conn = conn

    def release(self) -> None:
        if self._conn is None:
            return
        conn, self._conn = self._conn, None
        try:
            conn.execute(delete(schema.WriterLock).where(schema.WriterLock.name == self._row))
            conn.scalar(select(func.pg_advisory_unlock(self._key)))
        except BaseException:
            conn.invalidate()
            raise
        finally:
            conn.close()

    def alive(self) -> bool:
        """Whether the lock is held and its connection (hence the server session) still up."""
        if self._conn is None:
            return False
        try:
            self._conn.exec_driver_sql("SELECT 1")
        except Exception:
            # Any failure means the session, and the lock with it, may be gone.
            conn, self._conn = self._conn, None
            conn.invalidate()
            conn.close()
            return False
        return True

    def holder(self) -> Holder | None:
        """Who holds the lock now, from the holder row; ``None`` when free or unknown."""
        with self._engine.connect() as conn:
            return self._read_holder(conn, self._row)

    @staticmethod
    def _write_holder(conn: Connection, holder: Holder, row: str) -> None:
        values = {"name": row, "pid": holder.pid, "host": holder.host, "since": holder.since}
        stmt = pg_insert(schema.WriterLock).values(values)
        conn.execute(
            stmt.on_conflict_do_update(
                index_elements=[schema.WriterLock.name],
                set_={
                    "pid": stmt.excluded.pid,
                    "host": stmt.excluded.host,
                    "since": stmt.excluded.since,
                },
            )
        )

    @staticmethod
    def _read_holder(conn: Connection, name: str) -> Holder | None:
        row = conn.execute(
            select(schema.WriterLock.pid, schema.WriterLock.host, schema.WriterLock.since).where(
                schema.WriterLock.name == name
            )
        ).one_or_none()
        return Holder(row.pid, row.host, row.since) if row else None


class ThreadLock:
    """For in-memory SQLite, which only one process can see anyway."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._since: dt.datetime | None = None

    def acquire(self, timeout: float) -> None:
        if not self._lock.acquire(timeout=max(timeout, 0.0)):
            since = self._since or dt.datetime.now(dt.UTC)
            raise _timeout_error(Holder(os.getpid(), socket.gethostname(), since), timeout)
        self._since = dt.datetime.now(dt.UTC)

    def release(self) -> None:
        with contextlib.suppress(RuntimeError):  # not held
            self._lock.release()
        self._since = None

    def alive(self) -> bool:
        return self._since is not None

    def holder(self) -> Holder | None:
        since = self._since
        return Holder(os.getpid(), socket.gethostname(), since) if since else None
