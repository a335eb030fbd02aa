"""The libvirt adapter: the only module that imports ``libvirt``.

Every call goes through :func:`_calling`, which translates ``libvirtError``
into :class:`reconciler.errors.HypervisorError` naming the operation and the
object and saying from libvirt's error code whether retrying can help
(``retryable``), so nothing above this module ever sees a libvirt exception. One
connection is shared by the executor's worker threads: libvirt's client is
thread-safe and the Python binding releases the GIL around each call.

Observation is one bulk pass (``listAllDomains``, ``listAllNetworks``,
``listAllStoragePools``, then each object's XML and state) projected onto
shapes by :mod:`reconciler.hypervisor.projection`.

A connection dies when libvirtd restarts or its socket is cut, and libvirt
never reopens one by itself: every later call fails with "client socket is
closed". A long-lived caller (the daemon) therefore opens the connection
with ``keepalive=True`` — libvirt's event loop then runs, keepalives find a
hung peer and a close callback marks the connection dead at once — and calls
:meth:`Hypervisor.ensure_alive` before each pass, which reopens a dead
connection (also one found dead by ``isAlive()``). The caller decides how
often to try: the daemon's passes back off while libvirt stays away.
:attr:`Hypervisor.down_since` says since when it has been unreachable.
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import dataclasses
import logging
import os
import posixpath
import threading
import time
from collections.abc import Callable, Collection, Iterator
from typing import Any

import libvirt
from lxml import etree

from reconciler import errors
from reconciler.hypervisor import projection, xml
from reconciler.models import kinds, observed

__all__ = ["Hypervisor", "LifecycleEvents"]

log = logging.getLogger(__name__)

_READERS = 4  # concurrent domain reads during observation
_NOT_FOUND = {
    libvirt.VIR_ERR_NO_DOMAIN,
    libvirt.VIR_ERR_NO_NETWORK,
    libvirt.VIR_ERR_NO_STORAGE_POOL,
    libvirt.VIR_ERR_NO_STORAGE_VOL,
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
_POWER = {
    libvirt.VIR_DOMAIN_RUNNING: kinds.PowerState.RUNNING,
    libvirt.VIR_DOMAIN_BLOCKED: kinds.PowerState.RUNNING,
    libvirt.VIR_DOMAIN_PAUSED: kinds.PowerState.PAUSED,
    libvirt.VIR_DOMAIN_PMSUSPENDED: kinds.PowerState.PAUSED,
}
_CLOSE_REASONS = {
    libvirt.VIR_CONNECT_CLOSE_REASON_ERROR: "a socket error",
    libvirt.VIR_CONNECT_CLOSE_REASON_EOF: "libvirtd went away",
    libvirt.VIR_CONNECT_CLOSE_REASON_KEEPALIVE: "keepalive timed out",
    libvirt.VIR_CONNECT_CLOSE_REASON_CLIENT: "closed by us",
}


@contextlib.contextmanager
def _calling(operation: str, obj: str) -> Iterator[None]:
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


def _network_xml(net: Any) -> str:
    """The persistent definition; drivers without that flag (test:///default) give the live one."""
    try:
        return str(net.XMLDesc(libvirt.VIR_NETWORK_XML_INACTIVE))
    except libvirt.libvirtError as exc:
        if exc.get_error_code() != libvirt.VIR_ERR_INVALID_ARG:
            raise
        return str(net.XMLDesc(0))


def _silence_default_handler(_ctx: Any, _err: Any) -> None:
    """libvirt prints every error to stderr by default; we report them ourselves."""


def _resume(dom: libvirt.virDomain) -> None:
    """``resume``, which may race libvirt finishing a start: running is what was wanted."""
    try:
        dom.resume()
    except libvirt.libvirtError:
        if dom.state()[0] == libvirt.VIR_DOMAIN_PAUSED:
            raise


class Hypervisor:
    """A connection to one libvirt daemon with the operations the engine needs.

    ``keepalive``: run libvirt's event loop so that the connection sends
    keepalives and its death is noticed when it happens, not at the next call
    (see the module docstring). One-shot commands do without.
    """

    def __init__(self, uri: str, *, keepalive: bool = False) -> None:
        self.uri = uri
        self._keepalive = keepalive
        self._reopening = threading.Lock()
        self._dead = threading.Event()  # set by the close callback
        self._down_since: float | None = None
        libvirt.registerErrorHandler(_silence_default_handler, None)
        if keepalive:
            _ensure_event_loop()
        self._conn = self._open("connect to")
        self.domain_type = self._detect_domain_type()

    def _open(self, operation: str) -> Any:
        with _calling(operation, self.uri):
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
        if conn is not self._conn:
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
                    if self._conn.isAlive() == 1:
                        return
            if self._down_since is None:
                self._down_since = time.monotonic()
            self._discard(self._conn)
            try:
                self._conn = self._open("reconnect to")
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
            self._discard(self._conn)

    def __enter__(self) -> Hypervisor:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()

    def _detect_domain_type(self) -> str:
        """``kvm`` when the host offers it (and, locally, /dev/kvm is usable), else ``qemu``.

        ``INFINIBAY_DOMAIN_TYPE=qemu`` forces TCG: some nested hosts offer KVM yet fail
        to run OVMF under it (an emulation failure in the firmware).
        """
        forced = os.environ.get("INFINIBAY_DOMAIN_TYPE", "auto")
        if forced in ("kvm", "qemu"):
            return forced
        with _calling("read capabilities of", self.uri):
            caps = etree.fromstring(self._conn.getCapabilities().encode())
        offers_kvm = bool(caps.xpath("//guest[arch/@name='x86_64']/arch/domain[@type='kvm']"))
        local = self.uri.startswith(("qemu:///", "qemu+unix:///"))
        if local and not os.access("/dev/kvm", os.R_OK | os.W_OK):
            return "qemu"
        return "kvm" if offers_kvm else "qemu"

    # --- observation --------------------------------------------------------

    def observe(self, *, refresh: Collection[str] = ()) -> observed.World:
        """Every domain, network and pool of the connection, projected onto shapes.

        Only the pools named in ``refresh`` are rescanned for volumes made out of
        band; the others are read from libvirt's own list. A rescan is not
        harmless: libvirt stops a pool whose directory has gone. So the caller
        names the pools its desired state and record involve, and pools that are
        nobody's business here are never rescanned.
        """
        with _calling("observe", self.uri):
            # Filtered listings answer for every object at once what would otherwise be
            # one call per object: shut off (so neither state() nor isPersistent() is
            # needed), transient, active, autostart. On a host of stopped VMs that
            # leaves one XMLDesc per domain. An object that changes between the
            # listings is seen as it was a moment ago; the next pass sees it as it is.
            list_domains = self._conn.listAllDomains
            shut_off = _names(list_domains, libvirt.VIR_CONNECT_LIST_DOMAINS_INACTIVE)
            transient = _names(list_domains, libvirt.VIR_CONNECT_LIST_DOMAINS_TRANSIENT)
            autostart = _names(list_domains, libvirt.VIR_CONNECT_LIST_DOMAINS_AUTOSTART)
            list_networks = self._conn.listAllNetworks
            networks_active = _names(list_networks, libvirt.VIR_CONNECT_LIST_NETWORKS_ACTIVE)
            networks_auto = _names(list_networks, libvirt.VIR_CONNECT_LIST_NETWORKS_AUTOSTART)
            list_pools = self._conn.listAllStoragePools
            pools_active = _names(list_pools, libvirt.VIR_CONNECT_LIST_STORAGE_POOLS_ACTIVE)
            pools_auto = _names(list_pools, libvirt.VIR_CONNECT_LIST_STORAGE_POOLS_AUTOSTART)
            domains = list_domains(0)
            networks = list_networks(0)
            pools = list_pools(0)

            found_pools = [
                p
                for p in (
                    _observe_pool(
                        pool,
                        active=pool.name() in pools_active,
                        autostart=pool.name() in pools_auto,
                        refresh=pool.name() in refresh,
                    )
                    for pool in pools
                )
                if p is not None
            ]
            directories = _pool_directories(found_pools)

            def read(dom: Any) -> _DomainReading | None:
                name = dom.name()
                return _read_domain(
                    dom,
                    shut_off=name in shut_off,
                    persistent=name not in transient,
                    autostart=name in autostart,
                )

            # Each read is a round trip to libvirtd, which answers several at once on
            # its worker threads; the XML is parsed here as the readings arrive, so
            # parsing overlaps the reads still in flight.
            with concurrent.futures.ThreadPoolExecutor(
                _READERS, thread_name_prefix="observe"
            ) as readers:
                seen = [
                    _project_domain(r, directories)
                    for r in readers.map(read, domains)
                    if r is not None
                ]
            found_networks = (
                _observe_network(
                    net, active=net.name() in networks_active, autostart=net.name() in networks_auto
                )
                for net in networks
            )
            return observed.World(
                domains={d.name: d for d in seen},
                networks={n.name: n for n in found_networks if n is not None},
                pools={p.name: p for p in found_pools},
            )

    def dhcp_leases(self) -> dict[str, str]:
        """MAC -> IPv4 address from the DHCP leases of every active network."""
        leases: dict[str, str] = {}
        with _calling("read DHCP leases on", self.uri):
            for net in self._conn.listAllNetworks(libvirt.VIR_CONNECT_LIST_NETWORKS_ACTIVE):
                try:
                    found = net.DHCPLeases()
                except libvirt.libvirtError as exc:
                    if exc.get_error_code() == libvirt.VIR_ERR_NO_NETWORK:
                        continue  # undefined since the listing: it has no leases to report
                    raise
                for lease in found:
                    if lease.get("type") == libvirt.VIR_IP_ADDR_TYPE_IPV4:
                        leases[str(lease["mac"]).lower()] = str(lease["ipaddr"])
        return leases

    # --- definitions: what a patch starts from --------------------------------

    def domain_definition(self, name: str) -> str:
        """The persistent XML, secrets included (a graphics password must survive a patch)."""
        dom = self._domain(name)
        with _calling("read the definition of", f"domain {name}"):
            return str(dom.XMLDesc(libvirt.VIR_DOMAIN_XML_INACTIVE | libvirt.VIR_DOMAIN_XML_SECURE))

    def network_definition(self, name: str) -> str:
        net = self._network(name)
        with _calling("read the definition of", f"network {name}"):
            return _network_xml(net)

    def pool_definition(self, name: str) -> str:
        pool = self._pool(name)
        with _calling("read the definition of", f"pool {name}"):
            return str(pool.XMLDesc(libvirt.VIR_STORAGE_XML_INACTIVE))

    def pool_directories(self) -> dict[str, str]:
        """Pool directory -> pool name, for mapping file disks back onto volumes."""
        with _calling("list the pools of", self.uri):
            found = {}
            for pool in self._conn.listAllStoragePools(0):
                with contextlib.suppress(libvirt.libvirtError):
                    _, shape = projection.parse_pool(pool.XMLDesc(0), autostart=False)
                    found[posixpath.normpath(shape.path)] = pool.name()
            return found

    # --- domains ------------------------------------------------------------

    def define_domain(self, name: str, document: str) -> str:
        with _calling("define", f"domain {name}"):
            return str(self._conn.defineXML(document).UUIDString())

    def _domain(self, name: str) -> Any:
        with _calling("look up", f"domain {name}"):
            return self._conn.lookupByName(name)

    def set_domain_autostart(self, name: str, autostart: bool) -> None:
        dom = self._domain(name)
        with _calling("set autostart of", f"domain {name}"):
            dom.setAutostart(int(autostart))

    def start_domain(self, name: str, *, paused: bool = False) -> None:
        dom = self._domain(name)
        with _calling("start", f"domain {name}"):
            if not dom.isActive():
                dom.createWithFlags(libvirt.VIR_DOMAIN_START_PAUSED if paused else 0)

    def suspend_domain(self, name: str) -> None:
        dom = self._domain(name)
        with _calling("pause", f"domain {name}"):
            if dom.state()[0] != libvirt.VIR_DOMAIN_PAUSED:
                dom.suspend()

    def resume_domain(self, name: str) -> None:
        """Resume a paused domain; a no-op once it runs.

        A domain being started shows as paused (reason "starting up") until
        libvirt resumes it: observed mid-start, for instance after a killed
        apply, it is planned for a resume it no longer needs by the time it runs.
        """
        dom = self._domain(name)
        with _calling("resume", f"domain {name}"):
            for _ in range(50):
                state, reason = dom.state()
                if state != libvirt.VIR_DOMAIN_PAUSED:
                    return
                if reason != libvirt.VIR_DOMAIN_PAUSED_STARTING_UP:
                    _resume(dom)
                    return
                time.sleep(0.1)  # libvirt finishes the start and resumes it itself
            _resume(dom)

    def stop_domain(
        self, name: str, *, timeout: float, guard: Callable[[], None] | None = None
    ) -> bool:
        """Shut down gracefully (ACPI), then force after ``timeout``; True when graceful.

        ``guard`` is called while waiting for the guest and right before it is
        forced off; whatever it raises propagates and leaves the guest as it is
        (the wait may outlast the caller's right to act: see engine.fence).
        """
        dom = self._domain(name)
        with _calling("shut down", f"domain {name}"):
            if not dom.isActive():
                return True
            if timeout > 0:
                with contextlib.suppress(libvirt.libvirtError):
                    if dom.state()[0] == libvirt.VIR_DOMAIN_PAUSED:
                        dom.resume()
                    dom.shutdown()
                deadline = time.monotonic() + timeout
                while time.monotonic() < deadline:
                    if not dom.isActive():
                        return True
                    if guard is not None:
                        guard()
                    time.sleep(0.2)
            if guard is not None:
                guard()
            with contextlib.suppress(libvirt.libvirtError):
                dom.destroy()
            if dom.isActive():
                raise errors.HypervisorError(
                    "stop", f"domain {name}", "still running after destroy"
                )
            return False

    def attach_device(self, name: str, document: str) -> None:
        """Hot-plug a device into the running domain (its persistent config is defined apart).

        Idempotent for interfaces: one whose MAC the running guest already has
        (a NIC removed from the config only, out of band) is not plugged twice.
        """
        dom = self._domain(name)
        with _calling("hot-plug a device into", f"domain {name}"):
            mac = etree.fromstring(document.encode()).find("mac")
            if mac is not None:
                live = etree.fromstring(dom.XMLDesc(0).encode())
                plugged = {m.get("address", "").lower() for m in live.iterfind(".//interface/mac")}
                if mac.get("address", "").lower() in plugged:
                    return
            dom.attachDeviceFlags(document, libvirt.VIR_DOMAIN_AFFECT_LIVE)

    def undefine_domain(self, name: str) -> None:
        dom = self._domain(name)
        with _calling("undefine", f"domain {name}"):
            if dom.isActive():
                dom.destroy()
            dom.undefineFlags(
                libvirt.VIR_DOMAIN_UNDEFINE_NVRAM
                | libvirt.VIR_DOMAIN_UNDEFINE_MANAGED_SAVE
                | libvirt.VIR_DOMAIN_UNDEFINE_SNAPSHOTS_METADATA
            )

    # --- volumes ------------------------------------------------------------

    def _pool(self, name: str) -> Any:
        with _calling("look up", f"pool {name}"):
            return self._conn.storagePoolLookupByName(name)

    def create_volume(
        self,
        pool: str,
        name: str,
        capacity: int,
        *,
        backing: str | None = None,
        backing_pool: str | None = None,
    ) -> observed.ObservedVolume:
        """Create a qcow2 volume; over ``backing``, a volume of ``backing_pool`` (default ``pool``).

        The backing file must be a regular file inside the image pool's directory
        once symlinks are resolved, checked now rather than at validation: a
        volume in a pool can be a symlink to any host file.
        """
        storage = self._pool(pool)
        backing_path = backing_format = None
        if backing is not None:
            source = backing_pool or pool
            images = self._pool(source) if source != pool else storage
            with _calling("look up", f"image {backing} in pool {source}"):
                image = images.storageVolLookupByName(backing)
                backing_path = image.path()
                image_format = etree.fromstring(image.XMLDesc(0).encode()).find("target/format")
                backing_format = image_format.get("type") if image_format is not None else None
                directory = etree.fromstring(images.XMLDesc(0).encode()).findtext("target/path")
            _contained(backing_path, directory or "", f"image {backing} in pool {source}")
        document = xml.render_volume(
            name, capacity, backing_path=backing_path, backing_format=backing_format or "qcow2"
        )
        with _calling("create", f"volume {pool}/{name}"):
            vol = storage.createXML(document, 0)
            return projection.parse_volume(vol.XMLDesc(0), pool)

    def volume(self, pool: str, name: str) -> observed.ObservedVolume:
        storage = self._pool(pool)
        with _calling("look up", f"volume {pool}/{name}"):
            return projection.parse_volume(storage.storageVolLookupByName(name).XMLDesc(0), pool)

    def grow_volume(
        self, pool: str, name: str, capacity: int, *, domain: str | None = None
    ) -> None:
        """Grow a volume; through the running domain when there is one, so the guest sees it."""
        storage = self._pool(pool)
        with _calling("resize", f"volume {pool}/{name}"):
            vol = storage.storageVolLookupByName(name)
            dom = self._conn.lookupByName(domain) if domain is not None else None
            if dom is not None and dom.isActive():
                dom.blockResize(vol.path(), capacity, libvirt.VIR_DOMAIN_BLOCK_RESIZE_BYTES)
            else:
                vol.resize(capacity, 0)

    def delete_volume(self, pool: str, name: str) -> None:
        storage = self._pool(pool)
        with _calling("delete", f"volume {pool}/{name}"):
            storage.storageVolLookupByName(name).delete(0)

    # --- networks -----------------------------------------------------------

    def define_network(self, name: str, document: str) -> str:
        with _calling("define", f"network {name}"):
            return str(self._conn.networkDefineXML(document).UUIDString())

    def _network(self, name: str) -> Any:
        with _calling("look up", f"network {name}"):
            return self._conn.networkLookupByName(name)

    def start_network(self, name: str) -> None:
        net = self._network(name)
        with _calling("start", f"network {name}"):
            if not net.isActive():
                net.create()

    def stop_network(self, name: str) -> None:
        net = self._network(name)
        with _calling("stop", f"network {name}"):
            if net.isActive():
                net.destroy()

    def set_network_autostart(self, name: str, autostart: bool) -> None:
        net = self._network(name)
        with _calling("set autostart of", f"network {name}"):
            net.setAutostart(int(autostart))

    def undefine_network(self, name: str) -> None:
        net = self._network(name)
        with _calling("undefine", f"network {name}"):
            if net.isActive():
                net.destroy()
            net.undefine()

    # --- pools --------------------------------------------------------------

    def define_pool(self, name: str, document: str) -> str:
        with _calling("define", f"pool {name}"):
            pool = self._conn.storagePoolDefineXML(document, 0)
            return str(pool.UUIDString())

    def start_pool(self, name: str) -> None:
        pool = self._pool(name)
        with _calling("start", f"pool {name}"):
            if not pool.isActive():
                pool.build(0)
                pool.create(0)

    def set_pool_autostart(self, name: str, autostart: bool) -> None:
        pool = self._pool(name)
        with _calling("set autostart of", f"pool {name}"):
            pool.setAutostart(int(autostart))

    def undefine_pool(self, name: str) -> None:
        pool = self._pool(name)
        with _calling("undefine", f"pool {name}"):
            if pool.isActive():
                pool.destroy()
            pool.undefine()


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


def _ensure_event_loop() -> None:
    """Register libvirt's default event loop and run it on a daemon thread, once per process.

    Events (and connection keepalives) are only delivered while
    ``virEventRunDefaultImpl`` runs; it must be registered before the
    connection that subscribes is opened.
    """
    global _event_loop_started
    with _event_loop_guard:
        if _event_loop_started:
            return
        with _calling("register the event loop of", "libvirt"):
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
        _ensure_event_loop()
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
        with _calling("subscribe to lifecycle events of", self.uri):
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


@dataclasses.dataclass(frozen=True)
class _DomainReading:
    """What libvirt said of one domain, before any XML is parsed."""

    name: str
    state: int
    autostart: bool
    xml: str  # the persistent definition (the running one for a transient domain)
    live_xml: str | None  # the running definition, when the domain is active


def _read_domain(
    dom: Any, *, shut_off: bool, persistent: bool, autostart: bool
) -> _DomainReading | None:
    """The round trips for one domain; ``None`` when it was undefined since the listing."""
    try:
        state = libvirt.VIR_DOMAIN_SHUTOFF if shut_off else dom.state()[0]
        xml_text = dom.XMLDesc(libvirt.VIR_DOMAIN_XML_INACTIVE if persistent else 0)
        active = state not in (
            libvirt.VIR_DOMAIN_SHUTOFF,
            libvirt.VIR_DOMAIN_CRASHED,
            libvirt.VIR_DOMAIN_NOSTATE,
        )
        live_xml = dom.XMLDesc(0) if active else None
    except libvirt.libvirtError as exc:
        if exc.get_error_code() == libvirt.VIR_ERR_NO_DOMAIN:
            return None
        raise
    return _DomainReading(dom.name(), state, autostart, xml_text, live_xml)


def _pool_directories(pools: list[observed.ObservedPool]) -> dict[str, str]:
    return {posixpath.normpath(p.shape.path): p.name for p in pools}


def _project_domain(
    reading: _DomainReading, directories: dict[str, str]
) -> observed.ObservedDomain:
    uuid, owner, shape, _ = projection.parse_domain(
        reading.xml, autostart=reading.autostart, pools=directories
    )
    live = port = None
    if reading.live_xml is not None:
        _, _, live, port = projection.parse_domain(
            reading.live_xml, autostart=reading.autostart, pools=directories
        )
    return observed.ObservedDomain(
        name=reading.name,
        uuid=uuid,
        owner=owner,
        shape=shape,
        live=live,
        power=_POWER.get(reading.state, kinds.PowerState.STOPPED),
        graphics_port=port,
        unmodelled=projection.unmodelled_domain(reading.xml, directories),
    )


def _names(listing: Callable[[int], list[Any]], flags: int) -> set[str]:
    """The names of the objects a filtered ``listAll*`` call returns."""
    return {item.name() for item in listing(flags)}


def _observe_network(net: Any, *, active: bool, autostart: bool) -> observed.ObservedNetwork | None:
    try:
        document = _network_xml(net)
        uuid, owner, shape = projection.parse_network(document, autostart=autostart)
    except libvirt.libvirtError as exc:
        if exc.get_error_code() == libvirt.VIR_ERR_NO_NETWORK:
            return None  # undefined between the listing and the read (a shared host)
        raise
    return observed.ObservedNetwork(
        name=net.name(),
        uuid=uuid,
        owner=owner,
        shape=shape,
        active=active,
        unmodelled=projection.unmodelled_network(document),
    )


def _contained(path: str, directory: str, what: str) -> None:
    """Refuse ``path`` unless it resolves to a regular file inside ``directory``."""
    real, root = os.path.realpath(path), os.path.realpath(directory)
    if not directory or os.path.commonpath([real, root]) != root or not os.path.isfile(real):
        raise errors.RefusedError(
            f"{what} is not a regular file inside the pool's directory {root!r} "
            "once symlinks are resolved; refusing to use it as a backing file"
        )


def _observe_pool(
    pool: Any, *, active: bool, autostart: bool, refresh: bool = False
) -> observed.ObservedPool | None:
    try:
        uuid, shape = projection.parse_pool(pool.XMLDesc(0), autostart=autostart)
        volumes: dict[str, observed.ObservedVolume] = {}
        if active and refresh:
            with contextlib.suppress(libvirt.libvirtError):
                pool.refresh(0)
        if active:
            try:
                listed = pool.listAllVolumes(0)
            except libvirt.libvirtError as exc:
                # Stopped between the listing and the read (a shared host): it is seen
                # as inactive now, as the next listing would show it.
                if exc.get_error_code() != libvirt.VIR_ERR_OPERATION_INVALID or pool.isActive():
                    raise
                listed, active = [], False
            for vol in listed:
                with contextlib.suppress(libvirt.libvirtError):
                    parsed = projection.parse_volume(vol.XMLDesc(0), pool.name())
                    volumes[parsed.name] = parsed
    except libvirt.libvirtError as exc:
        if exc.get_error_code() == libvirt.VIR_ERR_NO_STORAGE_POOL:
            return None  # undefined between the listing and the read (a shared host)
        raise
    return observed.ObservedPool(
        name=pool.name(), uuid=uuid, shape=shape, active=active, volumes=volumes
    )
