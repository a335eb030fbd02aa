"""Leadership: of all daemons sharing one record, exactly one reconciles.

The lock lives in the store (:meth:`~reconciler.store.store.Store.try_lead`):

* **PostgreSQL** — a session-level advisory lock on a dedicated connection.
  The server frees it the moment the leader's session ends: at once when the
  process dies (its socket closes), within the TCP keepalive window (about
  11 s) when its host vanishes. A standby polls every ``lease / 5`` seconds,
  so it takes over well within the lease. The leader probes its own session
  at the same rate and steps down if it is gone: it must not keep writing
  while a standby may already lead.
* **SQLite** — one host, one daemon: an ``flock`` on ``<database>.daemon.lock``.
  A second daemon refuses to start with a message naming the first
  (:meth:`Leadership.claim`), instead of idling as a standby that could
  never take over a file on someone else's host.
"""

from __future__ import annotations

import logging
import threading

from reconciler import errors
from reconciler.store import store as store_module

__all__ = ["Leadership"]

_log = logging.getLogger(__name__)


class Leadership:
    def __init__(self, store: store_module.Store, lease: float) -> None:
        self.store = store
        self.lease = lease
        self.leading = threading.Event()
        self.healthy = True  # the last attempt or probe reached the record

    @property
    def poll_interval(self) -> float:
        return max(self.lease / 5, 0.2)

    def claim(self) -> bool:
        """The first attempt, at start-up; with SQLite, refuse to run as a second daemon."""
        if self._attempt():
            return True
        if self.store.backend == "sqlite":
            holder = self.store.leader() or "another process (holder unknown)"
            raise errors.RefusedError(
                f"another infinibay daemon already runs on the record {self.store.url} "
                f"({holder}); with SQLite only one daemon may run: stop it first, or share "
                "a PostgreSQL record (--db postgresql+psycopg://...) to run a standby"
            )
        _log.info(
            "standing by: %s leads; polling every %gs",
            self.store.leader() or "another daemon",
            self.poll_interval,
        )
        return False

    def _attempt(self) -> bool:
        try:
            got = self.store.try_lead()
        except errors.StoreError as exc:
            self.healthy = False
            _log.warning("cannot reach the record to take the leadership: %s", exc)
            return False
        self.healthy = True
        if got:
            self.leading.set()
            _log.info("leading: this daemon reconciles")
        return got

    def tick(self) -> bool | None:
        """Poll once: try to lead, or check we still do. Returns True on becoming leader,
        False on losing the leadership, None when nothing changed."""
        if not self.leading.is_set():
            return True if self._attempt() else None
        if self.store.still_leading():
            self.healthy = True
            return None
        self.leading.clear()
        _log.error("lost the leadership (the record's session is gone); standing by")
        return False

    def resign(self) -> None:
        self.leading.clear()
        self.store.resign()
