"""What every lease shares: the protocol, the holder, waiting, fences and the heartbeat.

The backends (:mod:`reconciler.store._pg_lease` for PostgreSQL,
:mod:`reconciler.store._file_lock` for SQLite) implement :class:`Lease`;
:mod:`reconciler.store._locks` describes the design and picks one.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import logging
import os
import socket
import threading
import time
from collections.abc import Sequence
from typing import Protocol

from reconciler import errors

__all__ = [
    "LEADER_ROW",
    "POLL_S",
    "RENEWALS_PER_LEASE",
    "TITLES",
    "WRITER_ROW",
    "Fence",
    "Heartbeat",
    "Holder",
    "Lease",
    "TryOnce",
    "fenced",
    "poll",
    "timeout_error",
]

_log = logging.getLogger(__name__)

WRITER_ROW = "writer"
LEADER_ROW = "leader"
TITLES = {WRITER_ROW: "writer lock", LEADER_ROW: "leadership"}
MEMBER_PREFIX = "member:"  # a sharded daemon's membership (SPEC §10): ``member:<id>``
HOST_PREFIX = "host:"  # one host's lease among sharded daemons: ``host:<digest>``


def title(name: str) -> str:
    """What a lease row is, for messages: ``writer lock``, ``lease of a host``..."""
    if name.startswith(HOST_PREFIX):
        return "lease of a host"
    if name.startswith(MEMBER_PREFIX):
        return "shard membership"
    return TITLES.get(name, name)


RENEWALS_PER_LEASE = 4
POLL_S = 0.1


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


def timeout_error(holder: Holder | None, waited: float) -> errors.LockTimeout:
    who = f"by {holder.describe()}" if holder else "by another reconciler (holder unknown)"
    return errors.LockTimeout(
        f"the record is locked {who}; waited {waited:g}s "
        "(raise --lock-timeout or stop the other reconciler)"
    )


def poll(try_once: TryOnce, timeout: float) -> bool:
    deadline = time.monotonic() + max(timeout, 0.0)
    while True:
        if try_once():
            return True
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            return False
        time.sleep(min(POLL_S, remaining))


class TryOnce(Protocol):
    def __call__(self) -> bool: ...


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
        f"this reconciler's {title(name)} (epoch {epoch}) {why}; "
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
        self._leases = list(leases)
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

    def add(self, lease: Lease) -> None:
        """Renew ``lease`` too from now on (a sharded daemon's host leases come and go)."""
        with self._guard:
            if lease not in self._leases:
                self._leases.append(lease)

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
            with self._guard:
                leases = list(self._leases)
            for lease in leases:
                if lease.epoch is None:
                    continue
                try:
                    lease.renew()
                except Exception:  # never die: a dead heartbeat only lets the leases lapse
                    _log.exception("renewing the %s lease failed", lease.name)
