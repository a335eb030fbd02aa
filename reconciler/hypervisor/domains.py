"""Domains (kind VirtualMachine): observe, define, power, hot-plug, undefine.

Each function takes the connection to use now (``conn``, a ``virConnect``) and
names the domain; every libvirt call runs inside
:func:`reconciler.hypervisor.connection.calling`. Observation reads every
domain in one bulk pass: filtered listings answer for all domains at once what
would otherwise be a call per domain, and the remaining reads (the XML) run on a
few threads, because libvirtd answers several at once.
"""

from __future__ import annotations

import collections
import concurrent.futures
import contextlib
import dataclasses
import hashlib
import threading
import time
from collections.abc import Callable, Collection, Mapping
from typing import Any

import libvirt
from lxml import etree

from reconciler import errors
from reconciler.hypervisor import addresses, connection, patch, projection
from reconciler.models import kinds, observed

__all__ = [
    "DomainReading",
    "attach_device",
    "define",
    "definition",
    "lookup",
    "observe",
    "read_domain",
    "resume",
    "set_autostart",
    "start",
    "stop",
    "suspend",
    "undefine",
    "update_interface_filter",
]

_READERS = 4  # concurrent domain reads during observation
_POWER = {
    libvirt.VIR_DOMAIN_RUNNING: kinds.PowerState.RUNNING,
    libvirt.VIR_DOMAIN_BLOCKED: kinds.PowerState.RUNNING,
    libvirt.VIR_DOMAIN_PAUSED: kinds.PowerState.PAUSED,
    libvirt.VIR_DOMAIN_PMSUSPENDED: kinds.PowerState.PAUSED,
}


# --- observation -------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class DomainReading:
    """What libvirt said of one domain, before any XML is parsed."""

    name: str
    state: int
    autostart: bool
    xml: str  # the persistent definition (the running one for a transient domain)
    live_xml: str | None  # the running definition, when the domain is active


def read_domain(
    dom: Any, *, shut_off: bool, persistent: bool, autostart: bool
) -> DomainReading | None:
    """The round trips for one domain; ``None`` when it was undefined since the listing.

    Both definitions are read with ``VIR_DOMAIN_XML_SECURE``: whether the display
    has a password is an owned field, and only a secure read shows it. The
    projection keeps that it has one, never the password.
    """
    try:
        state = libvirt.VIR_DOMAIN_SHUTOFF if shut_off else dom.state()[0]
        secure = libvirt.VIR_DOMAIN_XML_SECURE
        xml_text = dom.XMLDesc(secure | (libvirt.VIR_DOMAIN_XML_INACTIVE if persistent else 0))
        active = state not in (
            libvirt.VIR_DOMAIN_SHUTOFF,
            libvirt.VIR_DOMAIN_CRASHED,
            libvirt.VIR_DOMAIN_NOSTATE,
        )
        live_xml = dom.XMLDesc(secure) if active else None
    except libvirt.libvirtError as exc:
        if exc.get_error_code() == libvirt.VIR_ERR_NO_DOMAIN:
            return None
        raise
    return DomainReading(dom.name(), state, autostart, xml_text, live_xml)


class _Projections:
    """Projections of domains already seen, by a digest of everything they come from.

    A resync reads every domain again, and most are as they were: their XML is the
    same, so the projection is too (it is a pure function of the reading and the
    pool directories, and its result immutable). Bounded, least recently used first
    out; the XML itself is not kept, only its digest.
    """

    def __init__(self, size: int) -> None:
        self._size = size
        self._found: collections.OrderedDict[bytes, observed.ObservedDomain] = (
            collections.OrderedDict()
        )
        self._lock = threading.Lock()

    @staticmethod
    def key(reading: DomainReading, directories: Mapping[str, str]) -> bytes:
        digest = hashlib.blake2b(digest_size=20)
        for part in (
            reading.name,
            str(reading.state),
            str(reading.autostart),
            reading.xml,
            reading.live_xml if reading.live_xml is not None else "\0",
            *(f"{d}={p}" for d, p in sorted(directories.items())),
        ):
            digest.update(part.encode())
            digest.update(b"\0")
        return digest.digest()

    def get(self, key: bytes) -> observed.ObservedDomain | None:
        with self._lock:
            found = self._found.get(key)
            if found is not None:
                self._found.move_to_end(key)
            return found

    def put(self, key: bytes, domain: observed.ObservedDomain) -> None:
        with self._lock:
            self._found[key] = domain
            while len(self._found) > self._size:
                self._found.popitem(last=False)


_PROJECTIONS = _Projections(16384)


def _project(reading: DomainReading, directories: Mapping[str, str]) -> observed.ObservedDomain:
    key = _Projections.key(reading, directories)
    found = _PROJECTIONS.get(key)
    if found is None:
        found = _project_now(reading, directories)
        _PROJECTIONS.put(key, found)
    return found


def _project_now(reading: DomainReading, directories: Mapping[str, str]) -> observed.ObservedDomain:
    # Each definition is parsed once, and the tree read by every projection of it.
    root = projection.tree(reading.xml)
    uuid, owner, shape, _ = projection.parse_domain(
        root, autostart=reading.autostart, pools=directories
    )
    live = port = None
    agent = False
    if reading.live_xml is not None:
        live_root = projection.tree(reading.live_xml)
        _, _, live, port = projection.parse_domain(
            live_root, autostart=reading.autostart, pools=directories
        )
        agent = addresses.agent_connected(live_root.find("devices"))
    return observed.ObservedDomain(
        name=reading.name,
        uuid=uuid,
        owner=owner,
        shape=shape,
        live=live,
        power=_POWER.get(reading.state, kinds.PowerState.STOPPED),
        graphics_port=port,
        unmodelled=projection.unmodelled_domain(root, directories),
        agent=agent,
    )


def observe(
    conn: Any, directories: Mapping[str, str], only: Collection[str] | None = None
) -> dict[str, observed.ObservedDomain]:
    """Every domain, projected; a file disk inside one of ``directories`` is that pool's volume.

    ``only`` names the domains wanted (a pass for a few VMs): each is looked up
    by name, and one that does not exist is absent from the answer.

    Raises ``libvirtError``: the caller translates it for the whole pass.
    """
    if only is not None:
        return _observe_named(conn, directories, only)
    # Filtered listings answer for every domain at once what would otherwise be one
    # call per domain: shut off (so neither state() nor isPersistent() is needed),
    # transient, autostart. On a host of stopped VMs that leaves one XMLDesc per
    # domain. A domain that changes between the listings is seen as it was a moment
    # ago; the next pass sees it as it is.
    list_domains = conn.listAllDomains
    shut_off = connection.names(list_domains, libvirt.VIR_CONNECT_LIST_DOMAINS_INACTIVE)
    transient = connection.names(list_domains, libvirt.VIR_CONNECT_LIST_DOMAINS_TRANSIENT)
    autostart = connection.names(list_domains, libvirt.VIR_CONNECT_LIST_DOMAINS_AUTOSTART)
    domains = list_domains(0)

    def read(dom: Any) -> DomainReading | None:
        name = dom.name()
        return read_domain(
            dom,
            shut_off=name in shut_off,
            persistent=name not in transient,
            autostart=name in autostart,
        )

    # Each read is a round trip to libvirtd, which answers several at once on its
    # worker threads; the XML is parsed here as the readings arrive, so parsing
    # overlaps the reads still in flight.
    with concurrent.futures.ThreadPoolExecutor(_READERS, thread_name_prefix="observe") as readers:
        seen = [_project(r, directories) for r in readers.map(read, domains) if r is not None]
    return {d.name: d for d in seen}


def _observe_named(
    conn: Any, directories: Mapping[str, str], names: Collection[str]
) -> dict[str, observed.ObservedDomain]:
    """The domains of ``names`` that exist, each read on its own (no listing of all)."""

    def read(name: str) -> DomainReading | None:
        try:
            dom = conn.lookupByName(name)
            return read_domain(
                dom,
                shut_off=not dom.isActive(),
                persistent=bool(dom.isPersistent()),
                autostart=bool(dom.autostart()),
            )
        except libvirt.libvirtError as exc:
            if exc.get_error_code() == libvirt.VIR_ERR_NO_DOMAIN:
                return None
            raise

    seen = [_project(r, directories) for r in map(read, sorted(names)) if r is not None]
    return {d.name: d for d in seen}


# --- the kind's handler: definition, define, undefine --------------------------


def lookup(conn: Any, name: str) -> Any:
    with connection.calling("look up", f"domain {name}"):
        return conn.lookupByName(name)


def definition(conn: Any, name: str) -> str:
    """The persistent XML, secrets included (a graphics password must survive a patch)."""
    dom = lookup(conn, name)
    with connection.calling("read the definition of", f"domain {name}"):
        return str(dom.XMLDesc(libvirt.VIR_DOMAIN_XML_INACTIVE | libvirt.VIR_DOMAIN_XML_SECURE))


def define(conn: Any, name: str, document: str) -> str:
    with connection.calling("define", f"domain {name}"):
        return str(conn.defineXML(document).UUIDString())


def undefine(conn: Any, name: str, *, keep_tpm: bool = False) -> None:
    """Undefine the domain, its NVRAM and, unless ``keep_tpm``, its TPM's state.

    The TPM state (``/var/lib/libvirt/swtpm/UUID``) holds what the guest sealed in
    it (BitLocker's keys): libvirt keeps or deletes it as told.
    """
    dom = lookup(conn, name)
    tpm = libvirt.VIR_DOMAIN_UNDEFINE_KEEP_TPM if keep_tpm else libvirt.VIR_DOMAIN_UNDEFINE_TPM
    with connection.calling("undefine", f"domain {name}"):
        if dom.isActive():
            dom.destroy()
        dom.undefineFlags(
            libvirt.VIR_DOMAIN_UNDEFINE_NVRAM
            | libvirt.VIR_DOMAIN_UNDEFINE_MANAGED_SAVE
            | libvirt.VIR_DOMAIN_UNDEFINE_SNAPSHOTS_METADATA
            | tpm
        )


def migrate(conn: Any, name: str, target_uri: str) -> None:
    """Move the running domain to ``target_uri`` live, persistent there and undefined here.

    Peer to peer and tunnelled: this libvirtd opens ``target_uri`` itself and
    the guest's memory travels inside that libvirt connection, so the move
    needs no port, address or firewall rule beyond what reaches the target's
    libvirtd. ``UNSAFE`` because the caller has verified the storage is shared
    (the target sees the source's volumes); libvirt recognises only some shared
    file systems by name. ``AUTO_CONVERGE`` slows a guest that dirties memory
    faster than it can be sent, so the migration ends.
    """
    dom = lookup(conn, name)
    flags = (
        libvirt.VIR_MIGRATE_LIVE
        | libvirt.VIR_MIGRATE_PEER2PEER
        | libvirt.VIR_MIGRATE_TUNNELLED
        | libvirt.VIR_MIGRATE_PERSIST_DEST
        | libvirt.VIR_MIGRATE_UNDEFINE_SOURCE
        | libvirt.VIR_MIGRATE_AUTO_CONVERGE
        | libvirt.VIR_MIGRATE_UNSAFE
    )
    with connection.calling("migrate", f"domain {name} to {target_uri}"):
        dom.migrateToURI3(target_uri, {}, flags)


# --- power, autostart and hot-plug ---------------------------------------------


def set_autostart(conn: Any, name: str, autostart: bool) -> None:
    dom = lookup(conn, name)
    with connection.calling("set autostart of", f"domain {name}"):
        dom.setAutostart(int(autostart))


def start(conn: Any, name: str, *, paused: bool = False) -> None:
    dom = lookup(conn, name)
    with connection.calling("start", f"domain {name}"):
        if not dom.isActive():
            dom.createWithFlags(libvirt.VIR_DOMAIN_START_PAUSED if paused else 0)


def suspend(conn: Any, name: str) -> None:
    dom = lookup(conn, name)
    with connection.calling("pause", f"domain {name}"):
        if dom.state()[0] != libvirt.VIR_DOMAIN_PAUSED:
            dom.suspend()


def _resume(dom: libvirt.virDomain) -> None:
    """``resume``, which may race libvirt finishing a start: running is what was wanted."""
    try:
        dom.resume()
    except libvirt.libvirtError:
        if dom.state()[0] == libvirt.VIR_DOMAIN_PAUSED:
            raise


def resume(conn: Any, name: str) -> None:
    """Resume a paused domain; a no-op once it runs.

    A domain being started shows as paused (reason "starting up") until
    libvirt resumes it: observed mid-start, for instance after a killed
    apply, it is planned for a resume it no longer needs by the time it runs.
    """
    dom = lookup(conn, name)
    with connection.calling("resume", f"domain {name}"):
        for _ in range(50):
            state, reason = dom.state()
            if state != libvirt.VIR_DOMAIN_PAUSED:
                return
            if reason != libvirt.VIR_DOMAIN_PAUSED_STARTING_UP:
                _resume(dom)
                return
            time.sleep(0.1)  # libvirt finishes the start and resumes it itself
        _resume(dom)


def stop(conn: Any, name: str, *, timeout: float, guard: Callable[[], None] | None = None) -> bool:
    """Shut down gracefully (ACPI), then force after ``timeout``; True when graceful.

    ``guard`` is called while waiting for the guest and right before it is
    forced off; whatever it raises propagates and leaves the guest as it is
    (the wait may outlast the caller's right to act: see engine.fence).
    """
    dom = lookup(conn, name)
    with connection.calling("shut down", f"domain {name}"):
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
            raise errors.HypervisorError("stop", f"domain {name}", "still running after destroy")
        return False


def attach_device(conn: Any, name: str, document: str) -> None:
    """Hot-plug a device into the running domain (its persistent config is defined apart).

    Idempotent for interfaces: one whose MAC the running guest already has
    (a NIC removed from the config only, out of band) is not plugged twice.
    """
    dom = lookup(conn, name)
    with connection.calling("hot-plug a device into", f"domain {name}"):
        mac = etree.fromstring(document.encode()).find("mac")
        if mac is not None:
            live = etree.fromstring(dom.XMLDesc(0).encode())
            plugged = {m.get("address", "").lower() for m in live.iterfind(".//interface/mac")}
            if mac.get("address", "").lower() in plugged:
                return
        dom.attachDeviceFlags(document, libvirt.VIR_DOMAIN_AFFECT_LIVE)


def update_interface_filter(
    conn: Any, name: str, mac: str, reference: observed.FilterRef | None
) -> None:
    """Give the NIC ``mac`` the filterref ``reference`` (none: remove it), in place.

    A running guest keeps running: the interface, as the live XML has it with
    only its filterref changed, is updated in the running domain and in its
    persistent config at once, and libvirt re-instantiates the NIC's rules. A
    stopped domain's config alone is updated.
    """
    dom = lookup(conn, name)
    with connection.calling("update the filter of an interface of", f"domain {name}"):
        active = bool(dom.isActive())
        root = projection.tree(dom.XMLDesc(0 if active else libvirt.VIR_DOMAIN_XML_INACTIVE))
        interface = next(
            (
                i
                for i in root.iterfind("devices/interface")
                if any(m.get("address", "").lower() == mac.lower() for m in i.findall("mac"))
            ),
            None,
        )
        if interface is None:
            raise errors.NotFoundError(
                "update the filter of an interface of", f"domain {name}", f"no interface {mac}"
            )
        patch.set_filter(interface, reference)
        flags = libvirt.VIR_DOMAIN_AFFECT_CONFIG
        if active:
            flags |= libvirt.VIR_DOMAIN_AFFECT_LIVE
        dom.updateDeviceFlags(etree.tostring(interface, encoding="unicode"), flags)
