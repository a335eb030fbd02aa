"""What ``/healthz`` answers: whether this daemon still works, or should be restarted.

Liveness, not readiness (``/readyz`` says whether the last pass converged).
A daemon is unhealthy when

* a thread it depends on died (:meth:`Health.thread_died`) — it then exits
  non-zero so that systemd restarts it, and the probes say so first;
* it is stopping (SIGTERM: a new process will take over);
* libvirt or the record has been unreachable for longer than
  ``--unhealthy-after``: a short outage (libvirtd restarted, PostgreSQL failed
  over) is ridden out with retries and must not get the daemon killed, a long
  one is worth an alert and a restart.

An :class:`Outage` is kept by whoever observes the dependency: the loop and
the leadership poll for the record, the adapter itself for libvirt
(:attr:`reconciler.hypervisor.adapter.Hypervisor.down_since`).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

__all__ = ["Health", "Outage"]


class Outage:
    """Since when one dependency has been unreachable; ``since`` is ``None`` while it answers."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self.since: float | None = None

    def down(self) -> None:
        """Seen unreachable; the first failure in a row dates the outage."""
        if self.since is None:
            self.since = self._clock()

    def up(self) -> None:
        self.since = None


class Health:
    """Collects the reasons this daemon is unhealthy; see the module docstring."""

    def __init__(
        self,
        unhealthy_after: float,
        dependencies: dict[str, Callable[[], float | None]] | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.unhealthy_after = unhealthy_after
        self._dependencies = dict(dependencies or {})
        self._clock = clock
        self._guard = threading.Lock()
        self._fatal: str | None = None

    def watch(self, name: str, down_since: Callable[[], float | None]) -> None:
        """Count ``name`` as unreachable while ``down_since()`` is older than the limit."""
        with self._guard:
            self._dependencies[name] = down_since

    def thread_died(self, reason: str) -> None:
        """Record the first fatal failure; the daemon is unhealthy from now on."""
        with self._guard:
            if self._fatal is None:
                self._fatal = reason

    @property
    def fatal(self) -> str | None:
        with self._guard:
            return self._fatal

    def problems(self) -> list[str]:
        """One sentence per reason to be unhealthy; empty while healthy."""
        with self._guard:
            found = [self._fatal] if self._fatal else []
            dependencies = list(self._dependencies.items())
        now = self._clock()
        for name, down_since in dependencies:
            since = down_since()
            if since is not None and now - since > self.unhealthy_after:
                found.append(
                    f"{name} unreachable for {now - since:.0f}s "
                    f"(more than --unhealthy-after {self.unhealthy_after:g}s)"
                )
        return found
