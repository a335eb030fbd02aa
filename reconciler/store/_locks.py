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

This module picks a lease for a record (:func:`writer_lease`,
:func:`leader_lease`); the PostgreSQL lease is :mod:`reconciler.store._pg_lease`,
the SQLite ones :mod:`reconciler.store._file_lock`, and what they share (the
protocol, :class:`Fence`, :class:`Heartbeat`) :mod:`reconciler.store._lease_common`.
"""

from __future__ import annotations

from pathlib import Path

from sqlalchemy import Engine

from reconciler.store import _file_lock, _lease_common, _pg_lease

__all__ = [
    "LEADER_ROW",
    "RENEWALS_PER_LEASE",
    "WRITER_ROW",
    "Fence",
    "FileLock",
    "Heartbeat",
    "Holder",
    "Lease",
    "PostgresLease",
    "ThreadLock",
    "fenced",
    "leader_lease",
    "writer_lease",
]

LEADER_ROW = _lease_common.LEADER_ROW
WRITER_ROW = _lease_common.WRITER_ROW
RENEWALS_PER_LEASE = _lease_common.RENEWALS_PER_LEASE
Fence = _lease_common.Fence
Heartbeat = _lease_common.Heartbeat
Holder = _lease_common.Holder
Lease = _lease_common.Lease
fenced = _lease_common.fenced
PostgresLease = _pg_lease.PostgresLease
FileLock = _file_lock.FileLock
ThreadLock = _file_lock.ThreadLock


def writer_lease(engine: Engine, sqlite_file: Path | None, duration: float) -> Lease:
    """The writer lock of the record: one pass writes at a time."""
    if engine.dialect.name == "postgresql":
        return _pg_lease.PostgresLease(
            engine, key=_pg_lease.WRITER_KEY, name=WRITER_ROW, duration=duration
        )
    if sqlite_file is not None:
        return _file_lock.FileLock(
            sqlite_file.with_name(sqlite_file.name + ".lock"), name=WRITER_ROW
        )
    return _file_lock.ThreadLock(name=WRITER_ROW)


def leader_lease(engine: Engine, sqlite_file: Path | None, duration: float) -> Lease:
    """The daemons' leadership: exactly one daemon per record reconciles.

    SQLite: ``flock`` on ``<database>.daemon.lock``, which a second daemon
    cannot take (it refuses to start instead of standing by).
    """
    if engine.dialect.name == "postgresql":
        return _pg_lease.PostgresLease(
            engine, key=_pg_lease.LEADER_KEY, name=LEADER_ROW, duration=duration
        )
    if sqlite_file is not None:
        return _file_lock.FileLock(
            sqlite_file.with_name(sqlite_file.name + ".daemon.lock"), name=LEADER_ROW
        )
    return _file_lock.ThreadLock(name=LEADER_ROW)
