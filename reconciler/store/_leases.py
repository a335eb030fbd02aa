"""The writer lock and the daemons' leadership, as the store's callers see them.

The leases themselves (PostgreSQL rows with an epoch counter, advisory locks,
SQLite's flock) are :mod:`reconciler.store._locks`; this part holds them for a
store: the writer lock reentrant within one store, the heartbeat that renews
both, and the fence every write transaction is checked against.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator

from sqlalchemy.exc import SQLAlchemyError

from reconciler import errors
from reconciler.store import _base, _locks

__all__ = ["Leases"]

_log = logging.getLogger(__name__)


class Leases(_base.Base):
    """The writer lock and the leadership of one store."""

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
                    raise _base.translate("taking the writer lock", self._url, exc) from exc
                # A sharded daemon's pass acts on the hosts it holds now, under their epochs.
                hosts = [h for h in self._host_leases.values() if h.stale() is None]
                self._pass_fence = _locks.Fence.of(self._lock, self._leadership, *hosts)
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
            _log.warning("releasing the writer lock: %s", _base.one_line(exc))

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
            raise _base.translate("taking the daemon leadership", self._url, exc) from exc
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
            raise _base.translate("reading the daemon leader", self._url, exc) from exc
        return holder.describe() if holder else None

    def resign(self) -> None:
        """Give up the leadership; a no-op when not held."""
        try:
            self._leadership.release()
        except SQLAlchemyError as exc:
            _log.warning("releasing the daemon leadership: %s", _base.one_line(exc))
