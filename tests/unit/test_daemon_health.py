"""Liveness: outages ridden out up to ``--unhealthy-after``, dead threads never hidden.

The subprocess proofs (a dead thread turns the probes 503 and the daemon exits
1; a cut libvirt socket turns /healthz 503 only after the limit) are in
``tests/integration/test_daemon_resilience.py``.
"""

from __future__ import annotations

import threading
import time

import pytest

from reconciler.daemon import config, health
from reconciler.daemon import daemon as daemon_module
from reconciler.store import _locks


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_an_outage_is_a_problem_only_once_it_lasts_longer_than_the_limit() -> None:
    clock = Clock()
    outage = health.Outage(clock)
    checks = health.Health(60, {"the record": lambda: outage.since}, clock)
    assert checks.problems() == []
    outage.down()
    clock.now += 30
    outage.down()  # a second failure does not restart the clock
    clock.now += 30
    assert checks.problems() == []  # exactly the limit: still ridden out
    clock.now += 1
    assert checks.problems() == ["the record unreachable for 61s (more than --unhealthy-after 60s)"]
    outage.up()
    assert checks.problems() == []


def test_a_dead_thread_is_a_problem_for_good_and_the_first_reason_stays() -> None:
    checks = health.Health(60)
    checks.watch("libvirt", lambda: None)
    checks.thread_died("the runner thread died (OSError)")
    checks.thread_died("the http thread died")
    assert checks.fatal == "the runner thread died (OSError)"
    assert checks.problems() == ["the runner thread died (OSError)"]


def daemon() -> daemon_module.Daemon:
    cfg = config.Config(source=".", unhealthy_after=5)
    return daemon_module.Daemon(cfg, database_url="sqlite://", libvirt_uri="test:///default")


def test_a_thread_that_raises_makes_the_daemon_unhealthy_and_stops_it() -> None:
    d = daemon()

    def broken() -> None:
        raise OSError(24, "Too many open files")

    d._thread("source", broken).join(5)
    assert d.health.fatal == "the source thread died (OSError)"
    assert d.stopping.is_set()  # run() drains, resigns, then raises: exit 1
    assert d.queue.get(timeout=0) == []  # no new pass starts


def test_a_thread_that_returns_before_the_daemon_stops_counts_as_dead() -> None:
    d = daemon()
    d._thread("resync", lambda: None).join(5)
    assert d.health.fatal == "the resync thread ended"
    assert d.stopping.is_set()


def test_threads_that_end_because_the_daemon_stops_are_not_a_failure() -> None:
    d = daemon()
    started = threading.Event()

    def until_stopped() -> None:
        started.set()
        d.stopping.wait()

    thread = d._thread("resync", until_stopped)
    started.wait(5)
    d.stop()
    thread.join(5)
    assert d.health.fatal is None and d.health.problems() == []


def test_a_component_whose_thread_is_gone_is_found_by_the_supervision() -> None:
    d = daemon()
    alive = [True]
    d._components.append(("http", lambda: alive[0]))
    d._supervise()
    assert d.health.fatal is None
    alive[0] = False
    d._supervise()
    assert d.health.fatal == "the http thread died" and d.stopping.is_set()


class _DyingLease:
    name = "leadership"
    epoch = 1

    def renew(self) -> bool:
        raise SystemExit  # what no `except Exception` catches: the thread just ends


@pytest.mark.filterwarnings("ignore::pytest.PytestUnhandledThreadExceptionWarning")
def test_a_lease_heartbeat_whose_thread_ended_is_not_alive_until_stopped() -> None:
    beat = _locks.Heartbeat([_DyingLease()], interval=0.01)  # type: ignore[list-item]
    assert beat.alive()  # not started yet: nothing to renew
    beat.start()
    deadline = time.monotonic() + 5
    while beat.alive() and time.monotonic() < deadline:
        time.sleep(0.01)
    assert not beat.alive()  # the daemon's supervision sees it and exits 1
    beat.stop()
    assert beat.alive()  # stopped on purpose: not a failure
