"""The libvirt adapter's facade: :class:`Hypervisor`, the operations the engine needs.

The work is done per kind, one module each: :mod:`~reconciler.hypervisor.domains`,
:mod:`~reconciler.hypervisor.networks` and :mod:`~reconciler.hypervisor.pools`
(pools and their volumes), each the kind's handler as
:mod:`~reconciler.hypervisor.handler` describes it. The connection and the
translation of every ``libvirtError`` into
:class:`reconciler.errors.HypervisorError` (with ``retryable`` from libvirt's
error code) live in :mod:`~reconciler.hypervisor.connection`; libvirt's event
loop and :class:`LifecycleEvents` in :mod:`~reconciler.hypervisor.events`.
Nothing above the package ever sees a libvirt exception. One connection is
shared by the executor's worker threads: libvirt's client is thread-safe and
the Python binding releases the GIL around each call.

Observation is one bulk pass (pools first, whose directories map file disks
onto volumes, then domains, then networks, then nwfilters), projected onto
shapes by :mod:`reconciler.hypervisor.projection` (nwfilters by
:mod:`reconciler.hypervisor.nwfilters`).

A long-lived caller (the daemon) opens the connection with ``keepalive=True``
— libvirt's event loop then runs, keepalives find a hung peer and a close
callback marks the connection dead at once — and calls
:meth:`Hypervisor.ensure_alive` before each pass, which reopens a dead
connection. The caller decides how often to try: the daemon's passes back off
while libvirt stays away. :attr:`Hypervisor.down_since` says since when it has
been unreachable.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Collection, Iterable, Iterator

from reconciler.hypervisor import (
    addresses,
    connection,
    domains,
    events,
    graphics,
    handler,
    host,
    networks,
    nwfilters,
    pools,
)
from reconciler.hypervisor import domains as domain_kind
from reconciler.hypervisor import seed as seed_iso
from reconciler.models import addresses as guest_addresses
from reconciler.models import console, kinds, observed, seeds

__all__ = ["Hypervisor", "LifecycleEvents"]

LifecycleEvents = events.LifecycleEvents


def _handler(kind: kinds.Kind) -> handler.KindHandler:
    found = handler.handler(kind)
    if found is None:
        raise TypeError(f"a {kind} has no libvirt object")
    return found


class Hypervisor:
    """A connection to one libvirt daemon with the operations the engine needs.

    ``keepalive``: run libvirt's event loop so that the connection sends
    keepalives and its death is noticed when it happens, not at the next call
    (see the module docstring). One-shot commands do without.
    """

    def __init__(self, uri: str, *, keepalive: bool = False) -> None:
        self.uri = uri
        if keepalive:
            events.ensure_event_loop()
        self._connection = connection.Connection(uri, keepalive=keepalive)
        self.domain_type = self._connection.detect_domain_type()
        self._host: observed.Host | None = None  # its CPU modes, read once (see host)

    @property
    def down_since(self) -> float | None:
        """When (``time.monotonic()``) libvirt became unreachable; ``None`` while connected."""
        return self._connection.down_since

    def ensure_alive(self) -> None:
        """Reopen the connection if it died; :class:`HypervisorError` if libvirt is still away.

        Cheap when the connection is fine: ``isAlive()`` is answered locally.
        """
        self._connection.ensure_alive()

    def close(self) -> None:
        self._connection.close()

    def __enter__(self) -> Hypervisor:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()

    # --- observation --------------------------------------------------------

    def observe(
        self,
        *,
        refresh: Collection[str] = (),
        domains: Collection[str] | None = None,
        volumes: Collection[str] | None = None,
    ) -> observed.World:
        """Every domain, network, pool and nwfilter of the connection, projected onto shapes.

        ``domains``, when given, narrows the domains to those named (a pass for a
        few VMs reads those, not every domain of the host); ``volumes`` likewise
        names the pools whose volumes are listed (the others are seen without any).

        Only the pools named in ``refresh`` are rescanned for volumes made out of
        band; the others are read from libvirt's own list. A rescan is not
        harmless: libvirt stops a pool whose directory has gone. So the caller
        names the pools its desired state and record involve, and pools that are
        nobody's business here are never rescanned.
        """
        conn = self._connection.conn
        with connection.calling("observe", self.uri):
            found_pools = pools.observe(conn, refresh=refresh, volumes=volumes)
            found_domains = domain_kind.observe(
                conn, pools.directories_of(found_pools.values()), only=domains
            )
            found_networks = networks.observe(conn)
            found_filters = nwfilters.observe(conn)
            if self._host is None:
                self._host = host.cpu(conn, self.uri, self.domain_type)
            found_host = dataclasses.replace(self._host, pci=host.pci_devices(conn, self.uri))
        return observed.World(
            domains=found_domains,
            networks=found_networks,
            pools=found_pools,
            filters=found_filters,
            host=found_host,
        )

    def guest_addresses(self, world: observed.World) -> dict[str, tuple[str, ...]]:
        """MAC -> the guests' addresses: DHCP leases, merged with what connected agents report.

        The agent is asked only of the domains of ``world`` whose agent is connected.
        """
        conn = self._connection.conn
        agents = [d.name for d in world.domains.values() if d.agent]
        return guest_addresses.merge(
            addresses.leases(conn, self.uri), addresses.agent(conn, agents)
        )

    # --- definitions: what a patch starts from --------------------------------

    def domain_definition(self, name: str) -> str:
        """The persistent XML, secrets included (a graphics password must survive a patch)."""
        return _handler(kinds.Kind.VIRTUAL_MACHINE).definition(self._connection.conn, name)

    def network_definition(self, name: str) -> str:
        return _handler(kinds.Kind.NETWORK).definition(self._connection.conn, name)

    def pool_definition(self, name: str) -> str:
        return _handler(kinds.Kind.STORAGE_POOL).definition(self._connection.conn, name)

    def filter_definition(self, name: str) -> str:
        return _handler(kinds.Kind.FIREWALL_POLICY).definition(self._connection.conn, name)

    def pool_directories(self) -> dict[str, str]:
        """Pool directory -> pool name, for mapping file disks back onto volumes."""
        return pools.directories(self._connection.conn, self.uri)

    # --- domains ------------------------------------------------------------

    def define_domain(self, name: str, document: str) -> str:
        return _handler(kinds.Kind.VIRTUAL_MACHINE).define(self._connection.conn, name, document)

    def set_domain_autostart(self, name: str, autostart: bool) -> None:
        domains.set_autostart(self._connection.conn, name, autostart)

    def start_domain(self, name: str, *, paused: bool = False) -> None:
        domains.start(self._connection.conn, name, paused=paused)

    def suspend_domain(self, name: str) -> None:
        domains.suspend(self._connection.conn, name)

    def resume_domain(self, name: str) -> None:
        """Resume a paused domain; a no-op once it runs (see :func:`domains.resume`)."""
        domains.resume(self._connection.conn, name)

    def stop_domain(
        self, name: str, *, timeout: float, guard: Callable[[], None] | None = None
    ) -> bool:
        """Shut down gracefully (ACPI), then force after ``timeout``; True when graceful.

        ``guard`` is called while waiting for the guest and right before it is
        forced off; whatever it raises propagates and leaves the guest as it is
        (the wait may outlast the caller's right to act: see engine.fence).
        """
        return domains.stop(self._connection.conn, name, timeout=timeout, guard=guard)

    def attach_device(self, name: str, document: str) -> None:
        """Hot-plug a device into the running domain (its persistent config is defined apart).

        Idempotent for interfaces: one whose MAC the running guest already has
        is not plugged twice.
        """
        domains.attach_device(self._connection.conn, name, document)

    def update_interface_filter(
        self, domain: str, mac: str, filter: observed.FilterRef | None
    ) -> None:
        """Change the filterref of a NIC in place: live and in the config of a running guest.

        The guest is not restarted; libvirt re-instantiates the NIC's rules.
        """
        domains.update_interface_filter(self._connection.conn, domain, mac, filter)

    def sync_graphics_password(self, name: str) -> None:
        """Give the running display the password of the persistent config, in place."""
        graphics.sync_live(self._connection.conn, name)

    def rotate_graphics_password(self, name: str) -> None:
        """A new random display password: in the config, and live when the guest runs."""
        graphics.rotate(self._connection.conn, name)

    def console(self, name: str) -> console.Console:
        """The running display's type, address, port and password."""
        return graphics.console(self._connection.conn, name, self.uri)

    def undefine_domain(self, name: str, *, keep_tpm: bool = False) -> None:
        """Undefine the domain (stopping it first); its TPM state goes unless ``keep_tpm``."""
        domains.undefine(self._connection.conn, name, keep_tpm=keep_tpm)

    def migrate_domain(self, name: str, target_uri: str) -> None:
        """Migrate the running domain live to ``target_uri`` (shared storage, verified first)."""
        domains.migrate(self._connection.conn, name, target_uri)

    # --- volumes ------------------------------------------------------------

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

        The backing file must be a regular file inside the image pool's
        directory once symlinks are resolved (:class:`RefusedError` otherwise).
        """
        return pools.create_volume(
            self._connection.conn, pool, name, capacity, backing=backing, backing_pool=backing_pool
        )

    def volume(self, pool: str, name: str) -> observed.ObservedVolume:
        return pools.volume(self._connection.conn, pool, name)

    def grow_volume(
        self, pool: str, name: str, capacity: int, *, domain: str | None = None
    ) -> None:
        """Grow a volume; through the running domain when there is one, so the guest sees it."""
        pools.grow_volume(self._connection.conn, pool, name, capacity, domain=domain)

    def delete_volume(self, pool: str, name: str) -> None:
        pools.delete_volume(self._connection.conn, pool, name)

    def upload_seed(self, pool: str, name: str, seed: seeds.Seed) -> None:
        pools.upload_volume(self._connection.conn, pool, name, seed_iso.build(seed))

    def read_volume(self, pool: str, name: str) -> Iterator[bytes]:
        """The volume's file in chunks, over the libvirt connection (its download stream)."""
        return pools.read_volume(self._connection.conn, pool, name)

    def write_volume(
        self, pool: str, name: str, capacity: int, volume_format: str, chunks: Iterable[bytes]
    ) -> None:
        """Create ``pool/name`` holding ``chunks``, over the connection (its upload stream)."""
        pools.write_volume(self._connection.conn, pool, name, capacity, volume_format, chunks)

    def volume_format(self, pool: str, name: str) -> str:
        return pools.volume_format(self._connection.conn, pool, name)

    # --- networks -----------------------------------------------------------

    def define_network(self, name: str, document: str) -> str:
        return _handler(kinds.Kind.NETWORK).define(self._connection.conn, name, document)

    def start_network(self, name: str) -> None:
        networks.start(self._connection.conn, name)

    def stop_network(self, name: str) -> None:
        networks.stop(self._connection.conn, name)

    def set_network_autostart(self, name: str, autostart: bool) -> None:
        networks.set_autostart(self._connection.conn, name, autostart)

    def undefine_network(self, name: str) -> None:
        _handler(kinds.Kind.NETWORK).undefine(self._connection.conn, name)

    # --- pools --------------------------------------------------------------

    def define_pool(self, name: str, document: str) -> str:
        return _handler(kinds.Kind.STORAGE_POOL).define(self._connection.conn, name, document)

    def start_pool(self, name: str) -> None:
        pools.start(self._connection.conn, name)

    def set_pool_autostart(self, name: str, autostart: bool) -> None:
        pools.set_autostart(self._connection.conn, name, autostart)

    def undefine_pool(self, name: str) -> None:
        _handler(kinds.Kind.STORAGE_POOL).undefine(self._connection.conn, name)

    # --- nwfilters ----------------------------------------------------------

    def define_filter(self, name: str, document: str) -> str:
        """Define or replace an nwfilter; libvirt re-instantiates it on running guests."""
        return _handler(kinds.Kind.FIREWALL_POLICY).define(self._connection.conn, name, document)

    def undefine_filter(self, name: str) -> None:
        """Undefine an nwfilter; refused while a running guest's rules need it."""
        _handler(kinds.Kind.FIREWALL_POLICY).undefine(self._connection.conn, name)
