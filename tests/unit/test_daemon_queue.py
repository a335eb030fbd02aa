"""The work queue (keys de-duplicated, delayed, never processed twice at once) and backoff."""

from __future__ import annotations

import random
import threading

import pytest

from reconciler.daemon import queue
from reconciler.models import record

GIT = record.Trigger.GIT
RESYNC = record.Trigger.RESYNC
EVENT = record.Trigger.LIBVIRT_EVENT


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_a_key_added_many_times_is_handed_out_once_with_the_strongest_trigger() -> None:
    q = queue.WorkQueue()
    q.add("all", RESYNC)
    q.add("all", GIT)
    q.add("all", EVENT)
    assert q.depth() == 1
    assert q.get(timeout=0) == [queue.Item("all", GIT)]
    assert q.get(timeout=0) == []


def test_get_hands_out_every_due_key_at_once() -> None:
    q = queue.WorkQueue()
    q.add("all", RESYNC)
    q.add("virtualmachine/a", EVENT)
    assert {item.key for item in q.get(timeout=0)} == {"all", "virtualmachine/a"}


def test_a_key_being_processed_is_not_handed_out_again_until_done() -> None:
    q = queue.WorkQueue()
    q.add("all", RESYNC)
    first = q.get(timeout=0)
    q.add("all", GIT)  # changed while the pass runs: one more pass afterwards
    assert q.get(timeout=0) == []
    q.done(first)
    assert q.get(timeout=0) == [queue.Item("all", GIT)]


def test_delayed_keys_become_due_at_their_time_and_the_earliest_time_wins() -> None:
    clock = Clock()
    q = queue.WorkQueue(clock)
    q.add_after("vm/a", 10, RESYNC)
    q.add_after("vm/a", 5, RESYNC)
    q.add_after("vm/a", 20, RESYNC)
    assert q.depth() == 1
    assert q.delayed() == {"vm/a": 5}
    clock.now += 4.9
    assert q.get(timeout=0) == []
    clock.now += 0.1
    assert q.get(timeout=0) == [queue.Item("vm/a", RESYNC)]


def test_adding_a_delayed_key_now_overrides_its_delay() -> None:
    q = queue.WorkQueue(Clock())
    q.add_after("vm/a", 60, RESYNC)
    q.add("vm/a", EVENT)
    assert q.get(timeout=0) == [queue.Item("vm/a", EVENT)]
    assert q.depth() == 0


def test_forget_drops_a_pending_retry() -> None:
    clock = Clock()
    q = queue.WorkQueue(clock)
    q.add_after("vm/a", 1, RESYNC)
    q.forget("vm/a")
    clock.now += 2
    assert q.get(timeout=0) == []
    assert q.depth() == 0


def test_get_waits_for_a_delayed_key_in_real_time() -> None:
    q = queue.WorkQueue()
    q.add_after("vm/a", 0.2, RESYNC)
    assert q.get(timeout=2) == [queue.Item("vm/a", RESYNC)]


def test_shutdown_wakes_a_waiting_worker_and_refuses_new_work() -> None:
    q = queue.WorkQueue()
    got: list[list[queue.Item]] = []
    worker = threading.Thread(target=lambda: got.append(q.get()))
    worker.start()
    q.shutdown()
    worker.join(timeout=2)
    assert not worker.is_alive()
    assert got == [[]]
    q.add("all", GIT)
    assert q.depth() == 0


def test_backoff_doubles_from_one_second_to_five_minutes_with_jitter() -> None:
    backoff = queue.Backoff()
    delays = [backoff.next("vm/a") for _ in range(12)]
    ceilings = [min(300.0, 2.0**n) for n in range(12)]
    for delay, ceiling in zip(delays, ceilings, strict=True):
        assert max(1.0, ceiling / 2) <= delay <= ceiling
    assert delays[-1] >= 150.0
    assert backoff.failures("vm/a") == 12


def test_backoff_is_per_key_and_cleared_on_success() -> None:
    backoff = queue.Backoff(rng=lambda low, high: high)
    assert [backoff.next("vm/a") for _ in range(4)] == [1.0, 2.0, 4.0, 8.0]
    assert backoff.next("vm/b") == 1.0
    backoff.forget("vm/a")
    assert backoff.next("vm/a") == 1.0
    assert sorted(backoff.retrying()) == ["vm/a", "vm/b"]


@pytest.mark.parametrize("seed", range(5))
def test_jitter_spreads_the_retries_of_a_fleet(seed: int) -> None:
    rng = random.Random(seed)
    backoffs = [queue.Backoff(rng=rng.uniform) for _ in range(20)]
    delays = {round([b.next("vm/a") for _ in range(6)][-1], 3) for b in backoffs}
    assert len(delays) > 10
    assert all(16.0 <= d <= 32.0 for d in delays)
