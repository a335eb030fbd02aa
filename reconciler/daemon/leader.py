"""Leadership: of all daemons sharing one record, exactly one reconciles.

The lease lives in the store (:meth:`~reconciler.store.store.Store.try_lead`):

* **PostgreSQL** — a lease row with an epoch, renewed by the store's heartbeat
  and held through a dedicated session (:mod:`reconciler.store._locks`). A
  standby polls every ``lease / 5`` seconds and takes the row once it is
  released, expired by the server's clock, or its holder is gone (killed on
  this host, or its session ended and it released the row): at once after
  a clean exit or a kill, within the lease when the leader is frozen or cut
  off. The leader renews at the same rate here too, and steps down the moment
  its lease is lost or lapsed: it is then **fenced** — its pass in flight takes
  no further libvirt action and its writes are refused — and ``/readyz`` says
  so until the pass has ended and one lease more has passed, or it leads
  again. A lease lapses locally by monotonic time, so a thawed ``SIGSTOP`` ed
  leader is fenced before it does anything.
* **SQLite** — one host, one daemon: an ``flock`` on ``<database>.daemon.lock``.
  A second daemon refuses to start with a message naming the first
  (:meth:`Leadership.claim`), instead of idling as a standby that could
  never take over a file on someone else's host.
"""

from __future__ import annotations

import logging
import threading
import time

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
        self._fenced: tuple[str, float] | None = None  # why, and time.monotonic() of the loss

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

    @property
    def fenced(self) -> str | None:
        """Why this daemon, which led, may not act now; ``None`` when it is not fenced."""
        if self.leading.is_set() and not self.store.leading():
            return "the leadership lease lapsed (not renewed in time); stepping down"
        lost = self._fenced
        if lost is None:
            return None
        why, since = lost
        if self.store.writing() or time.monotonic() - since < self.lease:
            return why
        return None

    def _attempt(self) -> bool:
        try:
            got = self.store.try_lead()
        except errors.StoreError as exc:
            self.healthy = False
            _log.warning("cannot reach the record to take the leadership: %s", exc)
            return False
        self.healthy = True
        if got:
            self._fenced = None
            self.leading.set()
            _log.info("leading: this daemon reconciles")
        return got

    def tick(self) -> bool | None:
        """Poll once: try to lead, or check we still do. Returns True on becoming leader,
        False on losing the leadership, None when nothing changed."""
        if not self.leading.is_set():
            return True if self._attempt() else None
        confirmed = self.store.renew_leadership()
        if self.store.leading():  # still valid, if only for what is left of the lease
            self.healthy = confirmed
            return None
        self.leading.clear()
        why = "lost the leadership lease; another daemon may lead now"
        self._fenced = (why, time.monotonic())
        _log.error("fenced: %s; the pass in flight takes no further action; standing by", why)
        return False

    def resign(self) -> None:
        self.leading.clear()
        self.store.resign()
