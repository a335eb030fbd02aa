"""Sharded daemons (SPEC §10): who is a member, and which daemon holds which host.

Several daemons started with ``--shard`` on one PostgreSQL record share the
declared hosts. Each is a **member** (a lease row ``member:<id>``, renewed by
the store's heartbeat, gone with the process) and holds any number of
**host leases** (``host:<digest of the host name>``): the very leases of
:mod:`reconciler.store._locks`, with an epoch, an expiry by the server's
clock and a dedicated session, so a dead daemon's hosts are free within the
lease — at once when it was killed on this node — and a frozen one is fenced.

A pass of a sharded daemon takes its writer lock with the host leases it
holds valid then (:meth:`Leases.writer_lock`): the executor checks them
before each libvirt action, the record refuses the pass's writes once any was
taken over, and the run records the daemon and the hosts with their epochs
(``runs.holder``, ``runs.hosts``), which is how one proves afterwards that no
host was acted on by two daemons.

Which daemon should hold which host is the daemon's business
(:mod:`reconciler.daemon.leader`); the store only takes, gives back and reports.
"""

from __future__ import annotations

import hashlib
import logging
import secrets

from sqlalchemy import func, select
from sqlalchemy.exc import SQLAlchemyError

from reconciler import errors
from reconciler.store import _base, _lease_common, _locks, _pg_lease, schema

__all__ = ["Shards", "host_row"]

_log = logging.getLogger(__name__)


def host_row(host: str) -> str:
    """The lease row of ``host``: a digest, since a host name may be longer than a row name."""
    return _lease_common.HOST_PREFIX + hashlib.sha256(host.encode()).hexdigest()[:24]


class Shards(_base.Base):
    """The membership and host leases of a sharded daemon."""

    def _shard_lease(self, name: str) -> _locks.Lease:
        return _pg_lease.PostgresLease(
            self._engine, key=_pg_lease.shard_key(name), name=name, duration=self._lease_s
        )

    def join_shards(self) -> str:
        """Become a member of the record's sharded daemons; returns this member's row name."""
        if self.backend != "postgresql":
            raise errors.ConfigError(
                "--shard needs a PostgreSQL record shared by the daemons "
                "(--db postgresql+psycopg://...); with SQLite only one daemon may run"
            )
        if self._member is None:
            member = self._shard_lease(_lease_common.MEMBER_PREFIX + secrets.token_hex(8))
            try:
                member.acquire(self._lock_timeout)
            except SQLAlchemyError as exc:
                raise _base.translate("joining the sharded daemons", self._url, exc) from exc
            self._member = member
            self._heartbeat.add(member)
            self._heartbeat.start()
        return self._member.name

    def shard_members(self) -> list[str]:
        """The live members' row names, sorted; this daemon's own always among them.

        Live: its row has not expired by the server's clock, and, on this node,
        its process still runs (a daemon killed here is out at once).
        """
        row = schema.WriterLock
        try:
            with self._engine.connect() as conn:
                found = conn.execute(
                    select(row.name, row.epoch, row.pid, row.node).where(
                        row.name.startswith(_lease_common.MEMBER_PREFIX),
                        row.expires_at > func.now(),
                    )
                ).all()
        except SQLAlchemyError as exc:
            raise _base.translate("reading the sharded daemons", self._url, exc) from exc
        me = self.shard_member()
        live = {
            f.name
            for f in found
            if f.name == me or not _pg_lease.orphaned(f.name, f.epoch, f.pid, f.node)
        }
        if me is not None and (self._member is None or self._member.stale() is None):
            live.add(me)
        return sorted(live)

    def hold_host(self, host: str) -> bool:
        """Take ``host``'s lease if it is free (never waits); True while this daemon holds it."""
        lease = self._host_leases.get(host)
        if lease is None:
            lease = self._host_leases[host] = self._shard_lease(host_row(host))
        if lease.stale() is None:
            return True
        try:
            lease.acquire(0)
        except errors.LockTimeout:
            return False
        except SQLAlchemyError as exc:
            raise _base.translate(f"taking the lease of host {host}", self._url, exc) from exc
        self._heartbeat.add(lease)
        self._heartbeat.start()
        return True

    def release_host(self, host: str) -> None:
        """Give ``host`` back (between passes: a pass in flight keeps its fence)."""
        lease = self._host_leases.get(host)
        if lease is None:
            return
        try:
            lease.release()
        except SQLAlchemyError as exc:
            _log.warning("releasing the lease of host %s: %s", host, _base.one_line(exc))

    def held_hosts(self) -> frozenset[str]:
        """The hosts whose lease this daemon holds, valid now (local knowledge, no I/O)."""
        return frozenset(h for h, lease in self._host_leases.items() if lease.stale() is None)

    def acting_hosts(self) -> frozenset[str] | None:
        """The hosts this pass may act on: those held under its fence; ``None`` unless sharded."""
        if self._member is None:
            return None
        fence = self._pass_fence
        if fence is None:
            return self.held_hosts()
        fenced = {lease.name for lease, _ in fence.holds}
        return frozenset(h for h, lease in self._host_leases.items() if lease.name in fenced)

    def host_holders(self, hosts: list[str]) -> dict[str, str]:
        """Host -> the member holding its lease now (``pid N on host H since ...``)."""
        rows = {host_row(h): h for h in hosts}
        row = schema.WriterLock
        try:
            with self._engine.connect() as conn:
                found = conn.execute(
                    select(row.name, row.pid, row.host, row.since).where(
                        row.name.in_(list(rows)), row.expires_at > func.now()
                    )
                ).all()
        except SQLAlchemyError as exc:
            raise _base.translate("reading the hosts' holders", self._url, exc) from exc
        return {
            rows[f.name]: _lease_common.Holder(f.pid, f.host, f.since).describe() for f in found
        }

    def leave_shards(self) -> None:
        """Give back every host and the membership (a clean exit: the others take over at once)."""
        for host in list(self._host_leases):
            self.release_host(host)
        member, self._member = self._member, None
        for lease in [*self._host_leases.values(), *([member] if member else [])]:
            try:
                lease.close()
            except SQLAlchemyError as exc:
                _log.warning("closing the %s lease: %s", lease.name, _base.one_line(exc))
        self._host_leases.clear()
