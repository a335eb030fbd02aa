"""The work queue: keyed, de-duplicated, delayed items, and per-key backoff.

Modelled on client-go's workqueue, which controller-runtime builds on:

* A key is in the queue at most once. Adding a key that is already waiting
  keeps one item (the trigger with the higher :data:`PRIORITY` wins, so a new
  commit is never recorded as a mere resync). A key that is being processed
  may be added again: it runs once more after :meth:`WorkQueue.done`, never
  twice at the same time — per-object serial, across-objects parallel.
* :meth:`WorkQueue.add_after` delays a key; an earlier time wins, and an
  immediate :meth:`WorkQueue.add` overrides any delay.
* :meth:`WorkQueue.get` hands a worker *every* key that is due at once: the
  daemon's unit of work is a whole pass, which reconciles all those keys
  together, so a burst of events costs one pass, not one per event.
* :class:`Backoff` is separate and pure: the delay for a key's n-th failure
  in a row is ``base * 2**(n-1)`` capped at ``cap``, with "equal jitter"
  (between half and all of it, never below ``base``) so that a fleet of
  daemons does not retry in lockstep; :meth:`Backoff.forget` clears it on
  success.
"""

from __future__ import annotations

import dataclasses
import heapq
import random
import threading
import time
from collections.abc import Callable

from reconciler.models import record

__all__ = ["PRIORITY", "Backoff", "Item", "WorkQueue"]

PRIORITY = {
    record.Trigger.GIT: 3,
    record.Trigger.WATCH: 3,
    record.Trigger.LIBVIRT_EVENT: 2,
    record.Trigger.RESYNC: 1,
}


@dataclasses.dataclass(frozen=True)
class Item:
    key: str
    trigger: record.Trigger


def _stronger(old: record.Trigger | None, new: record.Trigger) -> record.Trigger:
    if old is None or PRIORITY.get(new, 0) > PRIORITY.get(old, 0):
        return new
    return old


class WorkQueue:
    """A thread-safe queue of keys; see the module docstring for the semantics."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._cond = threading.Condition()
        self._ready: dict[str, record.Trigger] = {}
        self._delayed: dict[str, tuple[float, record.Trigger]] = {}
        self._heap: list[tuple[float, str]] = []
        self._processing: set[str] = set()
        self._shut = False

    def add(self, key: str, trigger: record.Trigger) -> None:
        """Make ``key`` due now."""
        with self._cond:
            if self._shut:
                return
            delayed = self._delayed.pop(key, None)
            previous = self._ready.get(key, delayed[1] if delayed else None)
            self._ready[key] = _stronger(previous, trigger)
            self._cond.notify_all()

    def add_after(self, key: str, delay: float, trigger: record.Trigger) -> None:
        """Make ``key`` due in ``delay`` seconds, unless it is due sooner already."""
        if delay <= 0:
            self.add(key, trigger)
            return
        with self._cond:
            if self._shut or key in self._ready:
                return
            when = self._clock() + delay
            current = self._delayed.get(key)
            if current is not None and current[0] <= when:
                return
            self._delayed[key] = (when, trigger)
            heapq.heappush(self._heap, (when, key))
            self._cond.notify_all()

    def forget(self, key: str) -> None:
        """Drop a delayed retry of ``key`` (it succeeded meanwhile)."""
        with self._cond:
            self._delayed.pop(key, None)

    def _promote(self, now: float) -> float | None:
        """Move due delayed keys to ready; return the time until the next one."""
        while self._heap:
            when, key = self._heap[0]
            current = self._delayed.get(key)
            if current is None or current[0] != when:
                heapq.heappop(self._heap)  # stale: superseded or forgotten
                continue
            if when > now:
                return when - now
            heapq.heappop(self._heap)
            del self._delayed[key]
            self._ready[key] = _stronger(self._ready.get(key), current[1])
        return None

    def _take(self) -> list[Item]:
        items = [Item(k, t) for k, t in self._ready.items() if k not in self._processing]
        for item in items:
            del self._ready[item.key]
            self._processing.add(item.key)
        return items

    def get(self, timeout: float | None = None) -> list[Item]:
        """Wait for due keys and return them all (marked as processing); ``[]`` on
        timeout or shutdown. Call :meth:`done` with them when finished."""
        deadline = None if timeout is None else self._clock() + timeout
        with self._cond:
            while not self._shut:
                next_due = self._promote(self._clock())
                items = self._take()
                if items:
                    return items
                waits = [w for w in (next_due,) if w is not None]
                if deadline is not None:
                    remaining = deadline - self._clock()
                    if remaining <= 0:
                        return []
                    waits.append(remaining)
                self._cond.wait(min(waits) if waits else None)
            return []

    def done(self, items: list[Item]) -> None:
        with self._cond:
            for item in items:
                self._processing.discard(item.key)
            self._cond.notify_all()

    def shutdown(self) -> None:
        """Stop handing out work; :meth:`get` returns ``[]`` from now on."""
        with self._cond:
            self._shut = True
            self._cond.notify_all()

    def depth(self) -> int:
        """Keys waiting, due or delayed (not those being processed)."""
        with self._cond:
            return len(self._ready) + len(self._delayed)

    def delayed(self) -> dict[str, float]:
        """Seconds until each delayed key is due."""
        with self._cond:
            now = self._clock()
            return {key: max(when - now, 0.0) for key, (when, _) in self._delayed.items()}


class Backoff:
    """Per-key exponential backoff with jitter, from ``base`` up to ``cap`` seconds."""

    def __init__(
        self,
        base: float = 1.0,
        cap: float = 300.0,
        rng: Callable[[float, float], float] = random.uniform,
    ) -> None:
        self.base = base
        self.cap = cap
        self._rng = rng
        self._failures: dict[str, int] = {}
        self._guard = threading.Lock()

    def next(self, key: str) -> float:
        """Count one more failure of ``key`` and return how long to wait before retrying."""
        with self._guard:
            failures = self._failures.get(key, 0) + 1
            self._failures[key] = failures
        ceiling = min(self.cap, self.base * 2 ** min(failures - 1, 32))
        return max(self.base, self._rng(ceiling / 2, ceiling))

    def failures(self, key: str) -> int:
        with self._guard:
            return self._failures.get(key, 0)

    def forget(self, key: str) -> None:
        with self._guard:
            self._failures.pop(key, None)

    def retrying(self) -> list[str]:
        with self._guard:
            return list(self._failures)
