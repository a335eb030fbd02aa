"""A libvirt connection cut and restored: the adapter reopens it, events resume.

Through a socat proxy of the real libvirtd's socket (tests/fixtures/proxy.py),
in-process: the daemon-level proof, with a VM healed after the cut, is in
``test_daemon_resilience``.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from typing import TypeVar

import libvirt
import pytest

from reconciler import errors
from reconciler.hypervisor import adapter
from tests.fixtures.libvirt import firmware_only_domain
from tests.fixtures.proxy import LibvirtProxy

pytestmark = pytest.mark.integration

T = TypeVar("T")


@pytest.fixture
def proxy() -> Iterator[LibvirtProxy]:
    found = LibvirtProxy()
    found.restore()
    try:
        yield found
    finally:
        found.close()


def until(predicate: Callable[[], T], timeout: float, what: str) -> T:
    deadline = time.monotonic() + timeout
    while not (value := predicate()):
        if time.monotonic() > deadline:
            pytest.fail(f"not within {timeout:g}s: {what}", pytrace=False)
        time.sleep(0.05)
    return value


def test_a_cut_connection_is_noticed_at_once_and_reopened_once_libvirt_answers(
    proxy: LibvirtProxy,
    libvirt_conn: libvirt.virConnect,
    libvirt_cleanup: None,
    prefix: str,
    domain_type: str,
) -> None:
    hv = adapter.Hypervisor(proxy.uri, keepalive=True)
    try:
        hv.ensure_alive()  # alive: nothing to do
        assert hv.down_since is None
        cut = time.monotonic()
        proxy.cut()
        until(lambda: hv.down_since is not None, 5, "the close callback marks it dead")
        with pytest.raises(errors.HypervisorError, match=r"^reconnect to .*proxy"):
            hv.ensure_alive()
        assert hv.down_since is not None and cut <= hv.down_since

        proxy.restore()
        hv.ensure_alive()
        assert hv.down_since is None
        hv.define_domain(f"{prefix}new", firmware_only_domain(f"{prefix}new", domain_type))
        assert libvirt_conn.lookupByName(f"{prefix}new").isPersistent()  # the new one works
    finally:
        hv.close()


def test_without_keepalive_the_first_failed_call_shows_the_connection_dead(
    proxy: LibvirtProxy,
    libvirt_conn: libvirt.virConnect,
    libvirt_cleanup: None,
    prefix: str,
    domain_type: str,
) -> None:
    hv = adapter.Hypervisor(proxy.uri)  # as the one-shot commands open it
    document = firmware_only_domain(f"{prefix}new", domain_type)
    try:
        proxy.cut()
        with pytest.raises(errors.HypervisorError, match=r"^define domain"):
            hv.define_domain(f"{prefix}new", document)  # "End of file...": translated
        with pytest.raises(errors.HypervisorError, match=r"^reconnect to"):
            hv.ensure_alive()
        proxy.restore()
        hv.ensure_alive()
        assert hv.down_since is None
        hv.define_domain(f"{prefix}new", document)
        assert libvirt_conn.lookupByName(f"{prefix}new").isPersistent()
    finally:
        hv.close()


def test_lifecycle_events_resubscribe_after_a_cut_and_say_so(
    proxy: LibvirtProxy,
    libvirt_conn: libvirt.virConnect,
    libvirt_cleanup: None,
    prefix: str,
    domain_type: str,
) -> None:
    seen: list[tuple[str, str]] = []
    lock = threading.Lock()

    def callback(name: str, event: str) -> None:
        with lock:
            seen.append((name, event))

    def saw(item: tuple[str, str]) -> bool:
        with lock:
            return item in seen

    events = adapter.LifecycleEvents(proxy.uri, callback, retry=0.5)
    events.start()
    try:
        proxy.cut()
        time.sleep(1.5)  # a few failed attempts to subscribe again
        assert events.alive()
        proxy.restore()
        until(lambda: saw(("", "reconnected")), 5, "the subscription is renewed")
        libvirt_conn.defineXML(firmware_only_domain(f"{prefix}after", domain_type))
        until(lambda: saw((f"{prefix}after", "defined")), 5, "events flow again")
    finally:
        events.stop()
    assert not events.alive()
