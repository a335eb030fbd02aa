"""The writer lock between real processes, on both backends (SPEC §3 Concurrency).

Another Python process takes the lock and holds it; the test process then
contends for it: it waits and proceeds once the holder lets go, times out with a
message naming the holder's pid and host, and gets the lock at once when the
holder is killed (the OS or the server releases it with the process).
"""

from __future__ import annotations

import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager

import pytest

from reconciler import errors
from reconciler.store import Store

pytestmark = pytest.mark.integration

_HOLDER = """
import sys, time
from reconciler.store import Store

store = Store.open(sys.argv[1])
with store.writer_lock(timeout=30):
    print("locked", flush=True)
    time.sleep(float(sys.argv[2]))
store.close()
"""


@contextmanager
def _holder(db_url: str, hold_seconds: float) -> Iterator[subprocess.Popen[str]]:
    """Another process that holds the writer lock for ``hold_seconds``."""
    process = subprocess.Popen(
        [sys.executable, "-c", _HOLDER, db_url, str(hold_seconds)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert process.stdout is not None
        line = process.stdout.readline()
        if line.strip() != "locked":
            process.kill()
            pytest.fail(f"the holder process did not take the lock: {process.communicate()}")
        yield process
    finally:
        if process.poll() is None:
            process.kill()
        process.communicate(timeout=30)


def test_second_process_waits_for_the_lock_then_proceeds(store: Store, db_url: str) -> None:
    with _holder(db_url, hold_seconds=2.0) as holder:
        started = time.monotonic()
        with store.writer_lock(timeout=30):
            waited = time.monotonic() - started
            assert holder.wait(timeout=10) == 0  # the holder finished first
    assert waited > 1.0


def test_short_timeout_fails_naming_the_holder_pid_and_host(store: Store, db_url: str) -> None:
    with _holder(db_url, hold_seconds=30) as holder:
        started = time.monotonic()
        with pytest.raises(errors.LockTimeout) as caught, store.writer_lock(timeout=0.5):
            pytest.fail("the lock was granted while another process held it")
        elapsed = time.monotonic() - started

    message = str(caught.value)
    assert f"pid {holder.pid} on host {socket.gethostname()} since " in message
    assert "waited 0.5s" in message and "--lock-timeout" in message
    assert 0.5 <= elapsed < 5
    assert isinstance(caught.value, errors.StoreError)


def test_lock_timeout_defaults_to_the_store_setting(db_url: str) -> None:
    with (
        Store.open(db_url, lock_timeout=0.2) as store,
        _holder(db_url, hold_seconds=30),
        pytest.raises(errors.LockTimeout, match=r"waited 0\.2s"),
        store.writer_lock(),
    ):
        pytest.fail("the lock was granted while another process held it")


def test_a_killed_holder_releases_the_lock(store: Store, db_url: str) -> None:
    with _holder(db_url, hold_seconds=60) as holder:
        holder.send_signal(signal.SIGKILL)
        holder.wait(timeout=10)
        started = time.monotonic()
        with store.writer_lock(timeout=15):
            assert time.monotonic() - started < 10


def test_the_lock_is_reentrant_and_released_on_exit(store: Store, db_url: str) -> None:
    with store.writer_lock(timeout=1), store.writer_lock(timeout=1):
        pass
    with Store.open(db_url) as other, other.writer_lock(timeout=5):
        pass  # a second store gets it: the first released it


def test_close_releases_a_held_lock(db_url: str) -> None:
    first = Store.open(db_url)
    lock = first.writer_lock(timeout=1)
    lock.__enter__()
    first.close()
    with Store.open(db_url) as other, other.writer_lock(timeout=5):
        pass
