"""libvirt's event loop, and the domain lifecycle events delivered through it.

Events, connection keepalives and close callbacks are only delivered while
libvirt's default event loop runs; :func:`ensure_event_loop` registers it and
runs it on a daemon thread, once per process, before any connection that needs
it is opened. :class:`LifecycleEvents` subscribes on a connection of its own,
which it reopens with backoff when libvirtd goes away.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from collections.abc import Callable
from typing import Any

import libvirt

from reconciler import errors
from reconciler.hypervisor import connection

__all__ = ["LifecycleEvents", "ensure_event_loop"]

log = logging.getLogger(__name__)

_LIFECYCLE = {
    libvirt.VIR_DOMAIN_EVENT_DEFINED: "defined",
    libvirt.VIR_DOMAIN_EVENT_UNDEFINED: "undefined",
    libvirt.VIR_DOMAIN_EVENT_STARTED: "started",
    libvirt.VIR_DOMAIN_EVENT_SUSPENDED: "suspended",
    libvirt.VIR_DOMAIN_EVENT_RESUMED: "resumed",
    libvirt.VIR_DOMAIN_EVENT_STOPPED: "stopped",
    libvirt.VIR_DOMAIN_EVENT_SHUTDOWN: "shutdown",
    libvirt.VIR_DOMAIN_EVENT_PMSUSPENDED: "pmsuspended",
    libvirt.VIR_DOMAIN_EVENT_CRASHED: "crashed",
}
_event_loop_guard = threading.Lock()
_event_loop_started = False


def ensure_event_loop() -> None:
    """Register libvirt's default event loop and run it on a daemon thread, once per process.

    Events (and connection keepalives) are only delivered while
    ``virEventRunDefaultImpl`` runs; it must be registered before the
    connection that subscribes is opened.
    """
    global _event_loop_started
    with _event_loop_guard:
        if _event_loop_started:
            return
        with connection.calling("register the event loop of", "libvirt"):
            libvirt.virEventRegisterDefaultImpl()

        def run() -> None:
            # Keepalives and close callbacks of every connection depend on this thread:
            # whatever a callback raises, it must go on.
            while True:
                try:
                    libvirt.virEventRunDefaultImpl()
                except Exception:  # pragma: no cover - defensive
                    log.exception("libvirt event loop")
                    time.sleep(1)

        threading.Thread(target=run, name="libvirt-events", daemon=True).start()
        _event_loop_started = True


class LifecycleEvents:
    """Domain lifecycle events of one libvirt daemon, delivered to ``callback(name, event)``.

    ``event`` is a word such as ``stopped`` or ``started``. The subscription
    has its own connection with keepalives; when libvirtd goes away it is
    re-opened with backoff (from 0.5 s doubling up to ``retry`` seconds) and
    ``callback("", "reconnected")`` is called, because events were missed
    meanwhile. The callback runs on the event loop's thread and must return
    quickly.
    """

    def __init__(
        self, uri: str, callback: Callable[[str, str], None], *, retry: float = 5.0
    ) -> None:
        self.uri = uri
        self._callback = callback
        self._retry = retry
        self._stop = threading.Event()
        self._closed = threading.Event()
        self._thread = threading.Thread(target=self._run, name="libvirt-lifecycle", daemon=True)

    def start(self) -> None:
        """Subscribe (raising :class:`HypervisorError` if the first connection fails)."""
        ensure_event_loop()
        self._subscribe()
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._closed.set()
        self._thread.join(timeout=5)

    def alive(self) -> bool:
        """Whether the thread that renews the subscription still runs."""
        return self._thread.is_alive()

    def _on_event(self, _conn: Any, dom: Any, event: int, _detail: int, _opaque: Any) -> None:
        with contextlib.suppress(libvirt.libvirtError):
            self._callback(str(dom.name()), _LIFECYCLE.get(event, str(event)))

    def _on_close(self, _conn: Any, _reason: int, _opaque: Any) -> None:
        self._closed.set()

    def _subscribe(self) -> None:
        with connection.calling("subscribe to lifecycle events of", self.uri):
            conn = libvirt.open(self.uri)
            try:
                conn.setKeepAlive(5, 3)
                conn.registerCloseCallback(self._on_close, None)
                callback_id = conn.domainEventRegisterAny(
                    None, libvirt.VIR_DOMAIN_EVENT_ID_LIFECYCLE, self._on_event, None
                )
            except libvirt.libvirtError:
                with contextlib.suppress(libvirt.libvirtError):
                    conn.close()
                raise
        self._conn = conn
        self._callback_id = callback_id
        self._closed.clear()

    def _unsubscribe(self) -> None:
        with contextlib.suppress(libvirt.libvirtError):
            self._conn.domainEventDeregisterAny(self._callback_id)
        with contextlib.suppress(libvirt.libvirtError):
            self._conn.unregisterCloseCallback()
        with contextlib.suppress(libvirt.libvirtError):
            self._conn.close()

    def _run(self) -> None:
        while not self._stop.is_set():
            self._closed.wait()
            self._unsubscribe()
            delay = min(0.5, self._retry)
            report = log.warning  # the first failure; the retries only at debug level
            while not self._stop.is_set():
                try:
                    self._subscribe()
                except errors.HypervisorError as exc:
                    report("%s; retrying with backoff up to %gs", exc, self._retry)
                    report = log.debug
                    self._stop.wait(delay)
                    delay = min(delay * 2, self._retry)
                    continue
                self._callback("", "reconnected")
                break
