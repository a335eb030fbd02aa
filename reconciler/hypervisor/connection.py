"""One libvirt connection, kept open, and the translation of libvirt's errors.

Every libvirt call of the package goes through :func:`calling`, which turns
``libvirtError`` into :class:`reconciler.errors.HypervisorError` naming the
operation and the object, and says from libvirt's error code whether retrying
can help (``retryable``), so nothing above the package ever sees a libvirt
exception.

A connection dies when libvirtd restarts or its socket is cut, and libvirt
never reopens one by itself: every later call fails with "client socket is
closed". With ``keepalive=True`` (libvirt's event loop must run already, see
:func:`reconciler.hypervisor.events.ensure_event_loop`) keepalives find a hung
peer and a close callback marks the connection dead at once;
:meth:`Connection.ensure_alive` reopens a dead connection (also one found dead
by ``isAlive()``). The caller decides how often to try.
"""

from __future__ import annotations

import contextlib
import logging
import os
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import libvirt
from lxml import etree

from reconciler import errors

__all__ = ["Connection", "calling", "names"]

log = logging.getLogger(__name__)

_NOT_FOUND = {
    libvirt.VIR_ERR_NO_DOMAIN,
    libvirt.VIR_ERR_NO_NETWORK,
    libvirt.VIR_ERR_NO_STORAGE_POOL,
    libvirt.VIR_ERR_NO_STORAGE_VOL,
    libvirt.VIR_ERR_NO_NWFILTER,
}
_EXISTS = {
    libvirt.VIR_ERR_STORAGE_VOL_EXIST,
    libvirt.VIR_ERR_DOM_EXIST,
    libvirt.VIR_ERR_NETWORK_EXIST,
}
# libvirt refused the request itself: the same request fails the same way until the spec
# changes, so retrying it is pointless. Everything else (a dead socket, an RPC or system
# error, a timeout, a race with a state change, a code we do not know) may pass next time.
# VIR_ERR_INTERNAL_ERROR stays retryable: libvirt uses it for QEMU failing to start as
# much as for bad input. VIR_ERR_OPERATION_INVALID too: it is mostly a race (the
# domain is not running *yet*, or any more).
_PERMANENT = {
    libvirt.VIR_ERR_XML_ERROR,
    libvirt.VIR_ERR_XML_DETAIL,
    libvirt.VIR_ERR_XML_INVALID_SCHEMA,
    libvirt.VIR_ERR_INVALID_ARG,
    libvirt.VIR_ERR_CONFIG_UNSUPPORTED,
    libvirt.VIR_ERR_NO_SUPPORT,
    libvirt.VIR_ERR_OPERATION_UNSUPPORTED,
}
_CLOSE_REASONS = {
    libvirt.VIR_CONNECT_CLOSE_REASON_ERROR: "a socket error",
    libvirt.VIR_CONNECT_CLOSE_REASON_EOF: "libvirtd went away",
    libvirt.VIR_CONNECT_CLOSE_REASON_KEEPALIVE: "keepalive timed out",
    libvirt.VIR_CONNECT_CLOSE_REASON_CLIENT: "closed by us",
}


@contextlib.contextmanager
def calling(operation: str, obj: str) -> Iterator[None]:
    """Translate a ``libvirtError`` raised inside into the project's typed error."""
    try:
        yield
    except libvirt.libvirtError as exc:
        detail = exc.get_error_message() or str(exc)
        code = exc.get_error_code()
        if code in _NOT_FOUND:
            raise errors.NotFoundError(operation, obj, detail) from exc
        if code in _EXISTS:
            raise errors.ExistsError(operation, obj, detail) from exc
        raise errors.HypervisorError(
            operation, obj, detail, retryable=code not in _PERMANENT
        ) from exc


def names(listing: Callable[[int], list[Any]], flags: int) -> set[str]:
    """The names of the objects a filtered ``listAll*`` call returns."""
    return {item.name() for item in listing(flags)}


def _silence_default_handler(_ctx: Any, _err: Any) -> None:
    """libvirt prints every error to stderr by default; we report them ourselves."""


class Connection:
    """The current ``virConnect`` to one libvirt daemon, reopened once it died.

    ``conn`` is the handle to use now; it changes when :meth:`ensure_alive`
    reopens the connection, so callers read it for each operation and keep it
    no longer.
    """

    def __init__(self, uri: str, *, keepalive: bool = False) -> None:
        self.uri = uri
        self._keepalive = keepalive
        self._reopening = threading.Lock()
        self._dead = threading.Event()  # set by the close callback
        self._down_since: float | None = None
        libvirt.registerErrorHandler(_silence_default_handler, None)
        self.conn = self._open("connect to")

    def _open(self, operation: str) -> Any:
        with calling(operation, self.uri):
            conn = libvirt.open(self.uri)
            if self._keepalive:
                try:
                    conn.setKeepAlive(5, 3)
                    conn.registerCloseCallback(self._on_close, None)
                except libvirt.libvirtError as exc:
                    if exc.get_error_code() != libvirt.VIR_ERR_NO_SUPPORT:
                        with contextlib.suppress(libvirt.libvirtError):
                            conn.close()
                        raise
                    # A local driver (test:///default) has no socket that could break.
        return conn

    def _on_close(self, conn: Any, reason: int, _opaque: Any) -> None:
        # Runs on libvirt's event loop thread: no lock here, ensure_alive may hold it
        # while it waits on libvirt.
        if conn is not self.conn:
            return  # the connection replaced by a reopen, closed late
        if self._down_since is None:
            self._down_since = time.monotonic()
        self._dead.set()
        log.warning(
            "the libvirt connection to %s closed (%s); it is reopened before the next pass",
            self.uri,
            _CLOSE_REASONS.get(reason, f"reason {reason}"),
        )

    @property
    def down_since(self) -> float | None:
        """When (``time.monotonic()``) libvirt became unreachable; ``None`` while connected."""
        return self._down_since

    def ensure_alive(self) -> None:
        """Reopen the connection if it died; :class:`HypervisorError` if libvirt is still away.

        Cheap when the connection is fine: ``isAlive()`` is answered locally.
        """
        with self._reopening:
            if not self._dead.is_set():
                with contextlib.suppress(libvirt.libvirtError):
                    if self.conn.isAlive() == 1:
                        return
            if self._down_since is None:
                self._down_since = time.monotonic()
            self._discard(self.conn)
            try:
                self.conn = self._open("reconnect to")
            except errors.HypervisorError:
                self._dead.set()  # still gone; the dead handle is not used again
                raise
            down = time.monotonic() - self._down_since
            self._dead.clear()
            self._down_since = None
        log.info("reconnected to %s after %.1fs", self.uri, down)

    def _discard(self, conn: Any) -> None:
        if self._keepalive:
            with contextlib.suppress(libvirt.libvirtError):
                conn.unregisterCloseCallback()
        with contextlib.suppress(libvirt.libvirtError):
            conn.close()

    def close(self) -> None:
        with self._reopening:
            self._discard(self.conn)

    def detect_domain_type(self) -> str:
        """``kvm`` when the host offers it (and, locally, /dev/kvm is usable), else ``qemu``.

        ``INFINIBAY_DOMAIN_TYPE=qemu`` forces TCG: some nested hosts offer KVM yet fail
        to run OVMF under it (an emulation failure in the firmware).
        """
        forced = os.environ.get("INFINIBAY_DOMAIN_TYPE", "auto")
        if forced in ("kvm", "qemu"):
            return forced
        with calling("read capabilities of", self.uri):
            caps = etree.fromstring(self.conn.getCapabilities().encode())
        offers_kvm = bool(caps.xpath("//guest[arch/@name='x86_64']/arch/domain[@type='kvm']"))
        local = self.uri.startswith(("qemu:///", "qemu+unix:///"))
        if local and not os.access("/dev/kvm", os.R_OK | os.W_OK):
            return "qemu"
        return "kvm" if offers_kvm else "qemu"
