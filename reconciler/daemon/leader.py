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

With ``--shard`` (PostgreSQL) there is no single leader: :class:`Sharding`
deals the declared hosts among the record's sharded daemons, each host held by
one daemon through a lease of its own (:mod:`reconciler.store._shards`).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Sequence

from reconciler import errors
from reconciler.store import store as store_module

__all__ = ["IMPLICIT_HOST", "Leadership", "Sharding", "assign"]

_log = logging.getLogger(__name__)


class Leadership:
    def __init__(self, store: store_module.Store, lease: float) -> None:
        self.store = store
        self.lease = lease
        self.leading = threading.Event()
        self.healthy = True  # the last attempt or probe reached the record
        self._fenced: tuple[str, float] | None = None  # why, and time.monotonic() of the loss
        self._mixed = False  # sharded daemons share the record (said once)

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
        return _still_fenced(self._fenced, self.store, self.lease)

    def _attempt(self) -> bool:
        try:
            got = self.store.try_lead()
        except errors.StoreError as exc:
            self.healthy = False
            _log.warning("cannot reach the record to take the leadership: %s", exc)
            return False
        self.healthy = True
        if got and self._sharded():
            self.store.resign()
            return False
        if got:
            self._fenced = None
            self.leading.set()
            _log.info("leading: this daemon reconciles")
        return got

    def _sharded(self) -> bool:
        """Whether ``--shard`` daemons share this record: then this one must not lead.

        A leader acts on every host; sharded daemons each on theirs. Both at once
        would act on a host twice, so the daemon without ``--shard`` yields.
        """
        if self.store.backend != "postgresql":
            return False
        try:
            members = self.store.shard_members()
        except errors.StoreError:
            return False  # the record is away: the lease decides, as before
        if members and not self._mixed:
            _log.error(
                "daemons started with --shard share this record (%d); this one was not, "
                "so it does not lead: start every daemon of a record with --shard, or none",
                len(members),
            )
        self._mixed = bool(members)  # said once, until it changes
        return self._mixed

    def tick(self) -> bool | None:
        """Poll once: try to lead, or check we still do. Returns True on becoming leader,
        False on losing the leadership, None when nothing changed."""
        if not self.leading.is_set():
            return True if self._attempt() else None
        confirmed = self.store.renew_leadership()
        if confirmed and self._sharded():
            self.leading.clear()
            self.store.resign()
            return False
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


def _still_fenced(
    lost: tuple[str, float] | None, store: store_module.Store, lease: float
) -> str | None:
    """Why a lost lease still fences: until its pass has ended and one lease more passed."""
    if lost is None:
        return None
    why, since = lost
    if store.writing() or time.monotonic() - since < lease:
        return why
    return None


IMPLICIT_HOST = "local"
"""The one host of a record that declares none (SPEC §10): ``-c``, held like any other."""


def assign(hosts: Sequence[str], members: Sequence[str]) -> dict[str, str]:
    """Host -> the member that should hold it: the sorted hosts dealt round the sorted members.

    Every member computes the same answer from the same two lists, and each
    holds ``len(hosts) / len(members)`` hosts, give or take one. A member that
    joins or leaves moves only the hosts the new deal gives elsewhere.
    """
    ordered = sorted(members)
    if not ordered:
        return {}
    return {host: ordered[i % len(ordered)] for i, host in enumerate(sorted(set(hosts)))}


class Sharding:
    """The hosts this ``--shard`` daemon holds, among the record's other sharded daemons.

    The same face as :class:`Leadership` to the daemon: :attr:`leading` is set
    while it holds at least one host (its runner passes then act on those
    hosts alone, :meth:`~reconciler.store.store.Store.acting_hosts`), and
    :meth:`tick` polls every ``lease / 5`` seconds: it reads the live members,
    deals the declared hosts among them (:func:`assign`), takes the free hosts
    dealt to it and gives back, between passes, those dealt to another. A
    daemon that dies is out of the members at once when it was killed on this
    node, else once its membership expires; its hosts are free as soon as its
    host leases are, and the survivors take them on their next poll. A host
    lease that lapses under this daemon (it was frozen) fences its pass, and
    the host goes to whoever the deal names.
    """

    def __init__(
        self, store: store_module.Store, lease: float, hosts: Callable[[], Sequence[str]]
    ) -> None:
        self.store = store
        self.lease = lease
        self.leading = threading.Event()
        self.healthy = True
        self._hosts = hosts
        self._held: frozenset[str] = frozenset()
        self._fenced: tuple[str, float] | None = None
        self._mixed = False  # a daemon without --shard leads the record (said once)

    @property
    def poll_interval(self) -> float:
        return max(self.lease / 5, 0.2)

    @property
    def held(self) -> frozenset[str]:
        return self._held

    def claim(self) -> bool:
        self.store.join_shards()
        self.tick()
        if not self.leading.is_set():
            _log.info(
                "sharded: no host is free for this daemon yet; polling every %gs",
                self.poll_interval,
            )
        return self.leading.is_set()

    @property
    def fenced(self) -> str | None:
        return _still_fenced(self._fenced, self.store, self.lease)

    def tick(self) -> bool | None:
        """Poll once; True when it took a host (a full pass is due), False when it holds none."""
        now = self.store.held_hosts()
        lost = self._held - now
        if lost:
            why = f"the lease of host {', '.join(sorted(lost))} lapsed or was taken over"
            self._fenced = (why, time.monotonic())
            _log.error("fenced: %s; the pass in flight takes no further action", why)
        gained = False
        try:
            leader = self.store.leader()
            if leader is not None and not self._mixed:
                _log.error(
                    "a daemon without --shard leads this record (%s): holding no host until it "
                    "stops; start every daemon of a record with --shard, or none",
                    leader,
                )
            self._mixed = leader is not None
            if leader is not None:  # a daemon without --shard leads, on every host
                for host in sorted(now):
                    if not self.store.writing():
                        self.store.release_host(host)
                self._held = self.store.held_hosts()
                was = self.leading.is_set()
                if not self._held:
                    self.leading.clear()
                return False if was and not self._held else None
            me = self.store.shard_member()
            dealt = assign(list(self._hosts()) or [IMPLICIT_HOST], self.store.shard_members())
            wanted = {host for host, member in dealt.items() if member == me}
            for host in sorted(wanted - now):
                if self.store.hold_host(host):
                    gained = True
                    _log.info("sharded: holding host %s", host)
            for host in sorted(now - wanted):
                if not self.store.writing():  # never under a pass in flight
                    self.store.release_host(host)
                    _log.info(
                        "sharded: handing host %s over%s",
                        host,
                        f" to {dealt[host]}" if host in dealt else " (no longer declared)",
                    )
            self.healthy = True
        except errors.StoreError as exc:
            self.healthy = False
            _log.warning("cannot reach the record to share the hosts: %s", exc)
        was = self.leading.is_set()
        self._held = self.store.held_hosts()
        if self._held:
            self.leading.set()
            return True if gained or not was else None
        self.leading.clear()
        return False if was else None

    def resign(self) -> None:
        self.leading.clear()
        self._held = frozenset()
        self.store.leave_shards()
