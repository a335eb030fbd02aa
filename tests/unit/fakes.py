"""An in-memory hypervisor and record for unit tests of the planner and the executor.

:class:`FakeHypervisor` offers the methods the engine calls on
:class:`reconciler.hypervisor.adapter.Hypervisor`, with the same semantics and
the same errors (``NotFoundError`` for a missing object, ``HypervisorError``
otherwise). ``define_*`` parse the rendered XML with
:mod:`reconciler.hypervisor.projection`, so anything that goes through the fake
also goes through rendering and projection. Like libvirt, it refuses to start a
domain whose networks are inactive or whose volumes are missing, and to
redefine an object under another UUID, so ordering and identity mistakes fail
loudly instead of converging by accident. nwfilters follow libvirt 9.0: a
domain whose NIC needs a missing filter (directly or through references) does
not start, and only a filter a running guest's rules need refuses an undefine.

Volumes live in directories keyed by the pool's path, as with a real ``dir``
pool: undefining a pool leaves its files, and they reappear when a pool is
defined on the same path.

:class:`FakeHypervisor` and :class:`FakeRecord` satisfy the engine's ports
(:mod:`reconciler.engine.ports`; mypy checks it in ``test_ports.py``), so a
pass over them is the real :class:`~reconciler.engine.reconcile.Reconciler`:
:meth:`FakeRecord.converge` runs one. :class:`FakeRecord` keeps resource
records the way the store does (generation bumped on a changed hash,
tombstones, status replaced, runs and events kept).

These fakes never stand in for libvirt as proof that a feature works; the
integration suite does that against the real daemon.
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime as dt
import itertools
import posixpath
import threading
import uuid as uuid_module
from collections.abc import Callable, Collection, Iterable, Iterator, Sequence
from typing import Any

from lxml import etree

from reconciler import errors
from reconciler.engine import execute, ports, reconcile, recorded
from reconciler.hypervisor import nwfilters, patch, projection
from reconciler.models import console, desired, kinds, observed, record, seeds
from reconciler.planning import actions, planner

INSTALLATION = "inst-test"
# Filters Debian's libvirt ships that the project's filters reference.
BUILTIN_FILTERS = frozenset({"clean-traffic"})
EPOCH = dt.datetime(2024, 1, 1, tzinfo=dt.UTC)


@dataclasses.dataclass
class FakeDomain:
    name: str
    uuid: str
    owner: observed.Ownership | None
    shape: observed.VmShape
    document: str
    autostart: bool = False
    power: kinds.PowerState = kinds.PowerState.STOPPED
    live: observed.VmShape | None = None
    port: int | None = None


@dataclasses.dataclass
class FakeNetwork:
    name: str
    uuid: str
    owner: observed.Ownership | None
    shape: observed.NetworkShape
    document: str
    autostart: bool = False
    active: bool = False


@dataclasses.dataclass
class FakePool:
    name: str
    uuid: str
    path: str
    document: str
    autostart: bool = False
    active: bool = False


@dataclasses.dataclass
class FakeFilter:
    name: str
    uuid: str
    shape: observed.FilterShape


@dataclasses.dataclass
class FakeVolume:
    capacity: int
    backing: str | None = None


def _with_uuid(document: str, uuid: str) -> str:
    """The definition as libvirt hands it back: with the UUID it assigned."""
    root = etree.fromstring(document.encode())
    if root.find("uuid") is None:
        root.find("name").addnext(etree.Element("uuid"))  # type: ignore[union-attr]
        root.find("uuid").text = uuid  # type: ignore[union-attr]
    return etree.tostring(root, encoding="unicode")


class FakeHypervisor:
    """A thread-safe, in-memory libvirt connection."""

    domain_type = "qemu"
    uri = "test:///fake"

    def __init__(self, images: dict[str, int] | None = None) -> None:
        self.domains: dict[str, FakeDomain] = {}
        self.networks: dict[str, FakeNetwork] = {}
        self.pools: dict[str, FakePool] = {}
        self.filters: dict[str, FakeFilter] = {}
        self.files: dict[str, dict[str, FakeVolume]] = {}  # directory -> volume name -> volume
        self.images = dict(images or {})  # volumes found in every directory a pool is built on
        self.calls: list[tuple[str, str]] = []  # (method, object name), in call order
        self.refreshed: list[frozenset[str]] = []  # the pools each observation rescanned
        # the domains each observation was narrowed to (None: every domain)
        self.observed_domains: list[frozenset[str] | None] = []
        self.observed_volumes: list[frozenset[str] | None] = []  # the pools whose volumes
        self.fail: dict[tuple[str, str], errors.HypervisorError] = {}
        self.peers: dict[str, FakeHypervisor] = {}  # URI -> the fake a migration reaches
        self.host = observed.Host()  # what getInfo and the capabilities say (placement reads it)
        self._lock = threading.RLock()
        self._ids = itertools.count(1)
        self._ports = itertools.count(5900)

    # --- helpers --------------------------------------------------------------

    def _call(self, method: str, name: str) -> None:
        self.calls.append((method, name))
        failure = self.fail.get((method, name))
        if failure is not None:
            raise failure

    def _uuid(self) -> str:
        return str(uuid_module.UUID(int=next(self._ids)))

    def _domain(self, name: str, operation: str) -> FakeDomain:
        if name not in self.domains:
            raise errors.NotFoundError(
                operation, f"domain {name}", f"Domain not found: no domain with name '{name}'"
            )
        return self.domains[name]

    def _network(self, name: str, operation: str) -> FakeNetwork:
        if name not in self.networks:
            raise errors.NotFoundError(
                operation, f"network {name}", f"Network not found: no network with name '{name}'"
            )
        return self.networks[name]

    def _pool(self, name: str, operation: str = "look up") -> FakePool:
        if name not in self.pools:
            raise errors.NotFoundError(
                operation, f"pool {name}", f"Storage pool not found: no pool with name '{name}'"
            )
        return self.pools[name]

    def _filter(self, name: str, operation: str) -> FakeFilter:
        if name not in self.filters:
            raise errors.NotFoundError(
                operation,
                f"nwfilter {name}",
                f"Network filter not found: no nwfilter with matching name '{name}'",
            )
        return self.filters[name]

    def _filters_in_use(self) -> set[str]:
        """The filters a running guest's rules are built from: its NICs' and what they reference.

        Only these are refused an undefine, as by libvirt 9.0: a filter another
        filter or a stopped domain's NIC names can be undefined.
        """
        pending = [
            nic.filter.filter
            for domain in self.domains.values()
            if domain.live is not None
            for nic in domain.live.nics
            if nic.filter is not None
        ]
        used: set[str] = set()
        while pending:
            name = pending.pop()
            if name in used:
                continue
            used.add(name)
            found = self.filters.get(name)
            if found is not None:
                pending.extend(r.filter for r in found.shape.references)
        return used

    def _missing_filter(self, nics: Iterable[observed.NicShape]) -> str | None:
        """The first filter the NICs' rules need that is not defined, as libvirt looks."""
        pending = [n.filter.filter for n in nics if n.filter is not None]
        seen: set[str] = set()
        while pending:
            name = pending.pop(0)
            if name in seen:
                continue
            seen.add(name)
            found = self.filters.get(name)
            if found is None and name in BUILTIN_FILTERS:
                continue  # libvirt ships it (observed like any other; not listed here)
            if found is None:
                return name
            pending.extend(r.filter for r in found.shape.references)
        return None

    def _volumes(self, pool: str, operation: str, volume: str) -> dict[str, FakeVolume]:
        storage = self._pool(pool)
        if not storage.active:
            raise errors.HypervisorError(
                operation, f"volume {pool}/{volume}", f"storage pool '{pool}' is not active"
            )
        return self.files.setdefault(storage.path, {})

    def _volume(self, pool: str, name: str, operation: str) -> FakeVolume:
        volumes = self._volumes(pool, operation, name)
        if name not in volumes:
            raise errors.NotFoundError(
                operation,
                f"volume {pool}/{name}",
                f"Storage volume not found: no storage vol with matching name '{name}'",
            )
        return volumes[name]

    # --- the connection ------------------------------------------------------

    down_since: float | None = None  # an in-memory connection is never lost

    def ensure_alive(self) -> None:
        """Nothing to reopen; a test replaces this to stand for libvirt gone away."""

    # --- observation ----------------------------------------------------------

    def observe(
        self,
        *,
        refresh: Collection[str] = (),
        domains: Collection[str] | None = None,
        volumes: Collection[str] | None = None,
    ) -> observed.World:
        """The world; ``refresh`` is recorded, as the real adapter rescans only those pools.

        ``domains`` narrows the domains to those named, and ``volumes`` the pools
        whose volumes are listed, as the real adapter does.
        """
        with self._lock:
            self.refreshed.append(frozenset(refresh))
            self.observed_domains.append(None if domains is None else frozenset(domains))
            self.observed_volumes.append(None if volumes is None else frozenset(volumes))
            pools = {}
            for pool in self.pools.values():
                listed: dict[str, observed.ObservedVolume] = {}
                if pool.active and (volumes is None or pool.name in volumes):
                    for name, volume in self.files.get(pool.path, {}).items():
                        listed[name] = observed.ObservedVolume(
                            pool=pool.name,
                            name=name,
                            path=posixpath.join(pool.path, name),
                            capacity=volume.capacity,
                            backing=volume.backing,
                        )
                pools[pool.name] = observed.ObservedPool(
                    name=pool.name,
                    uuid=pool.uuid,
                    shape=observed.PoolShape(path=pool.path, autostart=pool.autostart),
                    active=pool.active,
                    volumes=listed,
                )
            return observed.World(
                host=self.host,
                domains={
                    d.name: observed.ObservedDomain(
                        name=d.name,
                        uuid=d.uuid,
                        owner=d.owner,
                        shape=dataclasses.replace(d.shape, autostart=d.autostart),
                        live=dataclasses.replace(d.live, autostart=d.autostart)
                        if d.live is not None
                        else None,
                        power=d.power,
                        graphics_port=d.port,
                    )
                    for d in self.domains.values()
                    if domains is None or d.name in domains
                },
                networks={
                    n.name: observed.ObservedNetwork(
                        name=n.name,
                        uuid=n.uuid,
                        owner=n.owner,
                        shape=dataclasses.replace(n.shape, autostart=n.autostart),
                        active=n.active,
                    )
                    for n in self.networks.values()
                },
                pools=pools,
                filters={
                    f.name: observed.ObservedFilter(name=f.name, uuid=f.uuid, shape=f.shape)
                    for f in self.filters.values()
                },
            )

    def guest_addresses(self, world: observed.World) -> dict[str, tuple[str, ...]]:
        """A lease per NIC of each running guest (what dnsmasq would hand out)."""
        with self._lock:
            leases: dict[str, tuple[str, ...]] = {}
            for index, domain in enumerate(sorted(self.domains.values(), key=lambda d: d.name)):
                if domain.power is kinds.PowerState.RUNNING and domain.live is not None:
                    for nic in domain.live.nics:
                        leases[nic.mac] = (f"10.99.0.{10 + index}",)
            return leases

    # --- definitions ----------------------------------------------------------

    def domain_definition(self, name: str) -> str:
        with self._lock:
            domain = self._domain(name, "read the definition of")
            return _with_uuid(domain.document, domain.uuid)

    def network_definition(self, name: str) -> str:
        with self._lock:
            network = self._network(name, "read the definition of")
            return _with_uuid(network.document, network.uuid)

    def pool_definition(self, name: str) -> str:
        with self._lock:
            return self._pool(name, "read the definition of").document

    def pool_directories(self) -> dict[str, str]:
        with self._lock:
            return {pool.path: pool.name for pool in self.pools.values()}

    def filter_definition(self, name: str) -> str:
        """libvirt's own rendering of the filter: canonical values, with its UUID."""
        with self._lock:
            found = self._filter(name, "read the definition of")
            return nwfilters.render(found.name, found.shape, uuid=found.uuid)

    # --- domains --------------------------------------------------------------

    def define_domain(self, name: str, document: str) -> str:
        with self._lock:
            self._call("define_domain", name)
            given, owner, shape, _ = projection.parse_domain(document, autostart=False)
            existing = self.domains.get(name)
            if existing is not None:
                if given != existing.uuid:
                    raise errors.HypervisorError(
                        "define",
                        f"domain {name}",
                        f"operation failed: domain '{name}' already exists with uuid "
                        f"{existing.uuid}",
                    )
                existing.owner, existing.shape, existing.document = owner, shape, document
                return existing.uuid
            for other in self.domains.values():
                if given and other.uuid == given:
                    raise errors.HypervisorError(
                        "define", f"domain {name}", f"domain '{other.name}' has uuid {given}"
                    )
            self.domains[name] = FakeDomain(
                name=name, uuid=given or self._uuid(), owner=owner, shape=shape, document=document
            )
            return self.domains[name].uuid

    def set_domain_autostart(self, name: str, autostart: bool) -> None:
        with self._lock:
            self._call("set_domain_autostart", name)
            self._domain(name, "set autostart of").autostart = autostart

    def start_domain(self, name: str, *, paused: bool = False) -> None:
        with self._lock:
            self._call("start_domain", name)
            domain = self._domain(name, "start")
            if domain.power is not kinds.PowerState.STOPPED:
                return
            for nic in domain.shape.nics:
                network = self.networks.get(nic.network)
                if network is None or not network.active:
                    raise errors.HypervisorError(
                        "start",
                        f"domain {name}",
                        f"Requested operation is not valid: network '{nic.network}' is not active",
                    )
            missing = self._missing_filter(domain.shape.nics)
            if missing is not None:
                raise errors.HypervisorError(
                    "start",
                    f"domain {name}",
                    f"internal error: referenced filter '{missing}' is missing",
                )
            for disk in domain.shape.disks:
                pool = self.pools.get(disk.pool)
                if pool is None or not pool.active:
                    raise errors.HypervisorError(
                        "start", f"domain {name}", f"storage pool '{disk.pool}' is not active"
                    )
                if disk.volume not in self.files.get(pool.path, {}):
                    raise errors.HypervisorError(
                        "start",
                        f"domain {name}",
                        f"Cannot access storage file '{pool.path}/{disk.volume}'",
                    )
            domain.power = kinds.PowerState.PAUSED if paused else kinds.PowerState.RUNNING
            domain.live = domain.shape
            if domain.shape.graphics_type is not kinds.GraphicsType.NONE:
                domain.port = next(self._ports)

    def suspend_domain(self, name: str) -> None:
        with self._lock:
            self._call("suspend_domain", name)
            domain = self._domain(name, "pause")
            if domain.power is kinds.PowerState.STOPPED:
                raise errors.HypervisorError(
                    "pause", f"domain {name}", "Requested operation is not valid: not running"
                )
            domain.power = kinds.PowerState.PAUSED

    def resume_domain(self, name: str) -> None:
        with self._lock:
            self._call("resume_domain", name)
            domain = self._domain(name, "resume")
            if domain.power is not kinds.PowerState.PAUSED:
                raise errors.HypervisorError(
                    "resume", f"domain {name}", "Requested operation is not valid: not paused"
                )
            domain.power = kinds.PowerState.RUNNING

    def stop_domain(
        self, name: str, *, timeout: float, guard: Callable[[], None] | None = None
    ) -> bool:
        with self._lock:
            self._call("stop_domain", name)
            domain = self._domain(name, "shut down")
            if domain.power is kinds.PowerState.STOPPED:
                return True
            if guard is not None:  # the real one checks while waiting and before forcing
                guard()
            domain.power, domain.live, domain.port = kinds.PowerState.STOPPED, None, None
            return timeout > 0  # a guest that sits in firmware never answers ACPI in 0 s

    def attach_device(self, name: str, document: str) -> None:
        """Hot-plug an ``<interface>`` into the running guest only, as AFFECT_LIVE does."""
        with self._lock:
            self._call("attach_device", name)
            domain = self._domain(name, "hot-plug a device into")
            if domain.live is None:
                raise errors.HypervisorError(
                    "hot-plug a device into", f"domain {name}", "domain is not running"
                )
            wrapped = f"<domain><name>{name}</name><devices>{document}</devices></domain>"
            _, _, shape, _ = projection.parse_domain(wrapped, autostart=False)
            for nic in shape.nics:
                network = self.networks.get(nic.network)
                if network is None or not network.active:
                    raise errors.HypervisorError(
                        "hot-plug a device into",
                        f"domain {name}",
                        f"network '{nic.network}' is not active",
                    )
            missing = self._missing_filter(shape.nics)
            if missing is not None:
                raise errors.HypervisorError(
                    "hot-plug a device into",
                    f"domain {name}",
                    f"internal error: referenced filter '{missing}' is missing",
                )
            domain.live = dataclasses.replace(domain.live, nics=domain.live.nics + shape.nics)

    def update_interface_filter(
        self, domain: str, mac: str, filter: observed.FilterRef | None
    ) -> None:
        """The NIC's filterref in the config, and in the running guest when there is one."""
        with self._lock:
            self._call("update_interface_filter", domain)
            found = self._domain(domain, "update the filter of an interface of")
            root = etree.fromstring(found.document.encode())
            interface = next(
                (
                    i
                    for i in root.iterfind("devices/interface")
                    if (i.find("mac").get("address") or "").lower() == mac.lower()  # type: ignore[union-attr]
                ),
                None,
            )
            if interface is None:
                raise errors.NotFoundError(
                    "update the filter of an interface of",
                    f"domain {domain}",
                    f"no interface {mac}",
                )
            patch.set_filter(interface, filter)
            found.document = etree.tostring(root, encoding="unicode")
            found.shape = projection.parse_domain(found.document, autostart=False)[2]
            if found.live is not None:
                nics = tuple(
                    dataclasses.replace(n, filter=filter) if n.mac == mac.lower() else n
                    for n in found.live.nics
                )
                found.live = dataclasses.replace(found.live, nics=nics)

    def sync_graphics_password(self, name: str) -> None:
        """The running display takes the config's password (whether it has one)."""
        with self._lock:
            self._call("sync_graphics_password", name)
            found = self._domain(name, "set the display password of")
            if found.live is not None:
                found.live = dataclasses.replace(
                    found.live, graphics_password=found.shape.graphics_password
                )

    def rotate_graphics_password(self, name: str) -> None:
        with self._lock:
            self._call("rotate_graphics_password", name)
            self._domain(name, "rotate the display password of")

    def console(self, name: str) -> console.Console:
        with self._lock:
            found = self._domain(name, "read the display of")
            return console.Console(found.shape.graphics_type, "127.0.0.1", found.port or 0, "")

    def undefine_domain(self, name: str, *, keep_tpm: bool = False) -> None:
        with self._lock:
            self._call("undefine_domain", name)
            self._domain(name, "undefine")
            del self.domains[name]

    def migrate_domain(self, name: str, target_uri: str) -> None:
        with self._lock:
            self._call("migrate_domain", name)
            domain = self._domain(name, "migrate")
            target = self.peers.get(target_uri)
            if target is None:
                raise errors.HypervisorError(
                    "migrate", f"domain {name}", f"{target_uri} unreachable"
                )
            with target._lock:
                target.domains[name] = domain
            del self.domains[name]

    # --- volumes --------------------------------------------------------------

    def create_volume(
        self,
        pool: str,
        name: str,
        capacity: int,
        *,
        backing: str | None = None,
        backing_pool: str | None = None,
    ) -> observed.ObservedVolume:
        with self._lock:
            self._call("create_volume", name)
            volumes = self._volumes(pool, "create", name)
            backing_path = None
            if backing is not None:
                source = backing_pool or pool
                images = self._volumes(source, "look up", backing)
                if backing not in images:
                    raise errors.NotFoundError(
                        "look up",
                        f"image {backing} in pool {source}",
                        f"Storage volume not found: no storage vol with matching name '{backing}'",
                    )
                backing_path = posixpath.join(self.pools[source].path, backing)
            if name in volumes:
                raise errors.ExistsError(
                    "create", f"volume {pool}/{name}", f"storage volume '{name}' exists already"
                )
            volumes[name] = FakeVolume(capacity, backing_path)
            return observed.ObservedVolume(
                pool=pool,
                name=name,
                path=posixpath.join(self.pools[pool].path, name),
                capacity=capacity,
                backing=backing_path,
            )

    def volume(self, pool: str, name: str) -> observed.ObservedVolume:
        with self._lock:
            self._call("volume", name)
            found = self._volume(pool, name, "look up")
            return observed.ObservedVolume(
                pool=pool,
                name=name,
                path=posixpath.join(self.pools[pool].path, name),
                capacity=found.capacity,
                backing=found.backing,
            )

    def grow_volume(
        self, pool: str, name: str, capacity: int, *, domain: str | None = None
    ) -> None:
        with self._lock:
            self._call("grow_volume", name)
            volume = self._volume(pool, name, "resize")
            if capacity < volume.capacity:
                raise errors.HypervisorError(
                    "resize", f"volume {pool}/{name}", "Can't shrink capacity below current"
                )
            if domain is not None:
                self._domain(domain, "resize")
            volume.capacity = capacity

    def upload_seed(self, pool: str, name: str, seed: seeds.Seed) -> None:
        with self._lock:
            self._call("upload_seed", name)
            volumes = self._volumes(pool, "create", name)
            if name in volumes:
                raise errors.ExistsError(
                    "create", f"volume {pool}/{name}", f"storage volume '{name}' exists already"
                )
            volumes[name] = FakeVolume(sum(len(data) for _, data in seed.files), None)

    def read_volume(self, pool: str, name: str) -> Iterator[bytes]:
        with self._lock:
            self._call("read_volume", name)
            volume = self._volume(pool, name, "download")
        yield bytes(min(volume.capacity, 4096))  # a fake volume has a size, no content

    def write_volume(
        self, pool: str, name: str, capacity: int, volume_format: str, chunks: Iterable[bytes]
    ) -> None:
        data = b"".join(chunks)
        with self._lock:
            self._call("write_volume", name)
            volumes = self._volumes(pool, "create", name)
            if name in volumes:
                raise errors.ExistsError(
                    "create", f"volume {pool}/{name}", f"storage volume '{name}' exists already"
                )
            volumes[name] = FakeVolume(max(capacity, len(data)), None)

    def volume_format(self, pool: str, name: str) -> str:
        return "qcow2"

    def delete_volume(self, pool: str, name: str) -> None:
        with self._lock:
            self._call("delete_volume", name)
            self._volume(pool, name, "delete")
            del self.files[self.pools[pool].path][name]

    # --- networks -------------------------------------------------------------

    def define_network(self, name: str, document: str) -> str:
        with self._lock:
            self._call("define_network", name)
            given, owner, shape = projection.parse_network(document, autostart=False)
            existing = self.networks.get(name)
            if existing is not None:
                if given != existing.uuid:
                    raise errors.HypervisorError(
                        "define",
                        f"network {name}",
                        f"operation failed: network '{name}' already exists with uuid "
                        f"{existing.uuid}",
                    )
                existing.owner, existing.shape, existing.document = owner, shape, document
                return existing.uuid
            self.networks[name] = FakeNetwork(
                name=name, uuid=given or self._uuid(), owner=owner, shape=shape, document=document
            )
            return self.networks[name].uuid

    def start_network(self, name: str) -> None:
        with self._lock:
            self._call("start_network", name)
            self._network(name, "start").active = True

    def stop_network(self, name: str) -> None:
        with self._lock:
            self._call("stop_network", name)
            self._network(name, "stop").active = False

    def set_network_autostart(self, name: str, autostart: bool) -> None:
        with self._lock:
            self._call("set_network_autostart", name)
            self._network(name, "set autostart of").autostart = autostart

    def undefine_network(self, name: str) -> None:
        with self._lock:
            self._call("undefine_network", name)
            self._network(name, "undefine")
            del self.networks[name]

    # --- pools ----------------------------------------------------------------

    def define_pool(self, name: str, document: str) -> str:
        with self._lock:
            self._call("define_pool", name)
            given, shape = projection.parse_pool(document, autostart=False)
            if name in self.pools:
                raise errors.HypervisorError(
                    "define", f"pool {name}", f"operation failed: pool '{name}' already exists"
                )
            self.pools[name] = FakePool(
                name=name, uuid=given or self._uuid(), path=shape.path, document=document
            )
            return self.pools[name].uuid

    def start_pool(self, name: str) -> None:
        with self._lock:
            self._call("start_pool", name)
            pool = self._pool(name, "start")
            if not pool.active:
                directory = self.files.setdefault(pool.path, {})
                for image, capacity in self.images.items():
                    directory.setdefault(image, FakeVolume(capacity))
                pool.active = True

    def set_pool_autostart(self, name: str, autostart: bool) -> None:
        with self._lock:
            self._call("set_pool_autostart", name)
            self._pool(name, "set autostart of").autostart = autostart

    def undefine_pool(self, name: str) -> None:
        with self._lock:
            self._call("undefine_pool", name)
            self._pool(name, "undefine")
            del self.pools[name]

    # --- nwfilters -------------------------------------------------------------

    def define_filter(self, name: str, document: str) -> str:
        with self._lock:
            self._call("define_filter", name)
            try:
                shape = nwfilters.project(document)
            except ValueError as exc:
                raise errors.HypervisorError(
                    "define", f"nwfilter {name}", f"XML error: {exc}", retryable=False
                ) from exc
            given = etree.fromstring(document.encode()).findtext("uuid")
            existing = self.filters.get(name)
            if existing is not None:
                if given != existing.uuid:  # libvirt makes one up for a document without
                    raise errors.HypervisorError(
                        "define",
                        f"nwfilter {name}",
                        f"operation failed: filter '{name}' already exists with uuid "
                        f"{existing.uuid}",
                    )
                existing.shape = nwfilters.canonical(shape)
                return existing.uuid
            self.filters[name] = FakeFilter(name, given or self._uuid(), nwfilters.canonical(shape))
            return self.filters[name].uuid

    def undefine_filter(self, name: str) -> None:
        with self._lock:
            self._call("undefine_filter", name)
            self._filter(name, "undefine")
            if name in self._filters_in_use():
                raise errors.HypervisorError(
                    "undefine",
                    f"nwfilter {name}",
                    "Requested operation is not valid: nwfilter is in use",
                )
            del self.filters[name]


# --- the record ------------------------------------------------------------------


class Unfenced:
    """The fence of a record no other reconciler shares: it always holds."""

    def check(self) -> None:
        """Always return: nothing can take this pass's lease away."""


class FakeRecord:
    """A :class:`~reconciler.engine.ports.Store` in memory, keeping records as the store does.

    Generation bumped on a changed hash, tombstones, status replaced, volume
    claims kept per owner, runs opened and closed, events appended; one writer
    at a time. A pass over it is the real
    :class:`~reconciler.engine.reconcile.Reconciler` (:meth:`converge`).
    """

    def __init__(self, installation: str = INSTALLATION) -> None:
        self.installation = installation
        self.by_key: dict[record.ResourceKey, record.ResourceRecord] = {}
        self.events: list[record.NewEvent] = []
        self.inventory: dict[tuple[str, str], record.VolumeRecord] = {}
        self.runs: dict[record.RunId, record.RunRecord] = {}
        self._lock = threading.RLock()

    # --- what the engine calls (ports.Store) -------------------------------------

    def installation_id(self) -> str:
        return self.installation

    def resources(
        self, *, include_deleted: bool = False, vms: Collection[str] | None = None
    ) -> list[record.ResourceRecord]:
        vm = kinds.Kind.VIRTUAL_MACHINE.value
        return sorted(
            (
                r
                for r in self.by_key.values()
                if (include_deleted or r.deleted_at is None)
                and (vms is None or r.key.kind != vm or r.key.name in vms)
            ),
            key=lambda r: r.key,
        )

    def volumes(self) -> list[record.VolumeRecord]:
        return sorted(self.inventory.values())

    def claim_volumes(self, volumes: Iterable[record.VolumeRecord]) -> None:
        for volume in volumes:
            self.inventory.setdefault((volume.pool, volume.name), volume)

    def release_volumes(self, volumes: Iterable[record.VolumeRecord]) -> None:
        for volume in volumes:
            known = self.inventory.get((volume.pool, volume.name))
            if known is not None and known.owner == volume.owner:
                del self.inventory[(volume.pool, volume.name)]

    def apply_specs(self, writes: Iterable[record.SpecWrite]) -> list[record.ResourceRecord]:
        applied = []
        for write in writes:
            old = self.by_key.get(write.key)
            fields: dict[str, Any] = write.applied() | {"deleted_at": None, "updated_at": EPOCH}
            if old is None:
                self.by_key[write.key] = record.ResourceRecord(
                    key=write.key,
                    uid=str(uuid_module.uuid4()),
                    generation=1,
                    status={},
                    created_at=EPOCH,
                    **fields,
                )
            else:
                bump = old.spec_hash != write.spec_hash or old.deleted_at is not None
                self.by_key[write.key] = dataclasses.replace(
                    old, generation=old.generation + bump, **fields
                )
            applied.append(self.by_key[write.key])
        return applied

    def tombstone(self, keys: Iterable[record.ResourceKey]) -> None:
        for key in keys:
            old = self.by_key.get(key)
            if old is not None and old.deleted_at is None:
                self.by_key[key] = dataclasses.replace(old, deleted_at=EPOCH)

    def write_status(self, writes: Iterable[record.StatusWrite]) -> None:
        for write in writes:
            if write.key in self.by_key:
                self.by_key[write.key] = dataclasses.replace(
                    self.by_key[write.key], status=write.status
                )

    def stamp_revision(self, keys: Sequence[record.ResourceKey], revision: str | None) -> None:
        for key in keys:
            rec = self.by_key.get(key)
            if rec is not None and rec.deleted_at is None:
                self.by_key[key] = dataclasses.replace(rec, source_revision=revision)

    def record_events(self, events: Iterable[record.NewEvent]) -> None:
        self.events.extend(events)

    def events_of_runs(self, run_ids: Sequence[record.RunId]) -> list[record.EventRecord]:
        return [
            record.EventRecord(
                id=number,
                key=e.key,
                uid=None,
                type=e.type,
                reason=e.reason,
                message=e.message,
                diff=e.diff,
                revision=e.revision,
                run_id=e.run_id,
                count=1,
                first_seen=EPOCH,
                last_seen=EPOCH,
            )
            for number, e in enumerate(self.events, start=1)
            if e.run_id is not None and e.run_id in run_ids
        ]

    def start_run(
        self,
        trigger: record.Trigger,
        revision: str | None,
        scope: Sequence[record.ResourceKey] | None = None,
    ) -> record.RunId:
        run_id = record.RunId(len(self.runs) + 1)
        self.runs[run_id] = record.RunRecord(
            run_id,
            trigger,
            revision,
            EPOCH,
            None,
            {},
            None,
            None if scope is None else tuple(sorted(str(k) for k in scope)),
        )
        return run_id

    def finish_run(self, run_id: record.RunId, counts: dict[str, int], result: str) -> None:
        run = self.runs[run_id]
        self.runs[run_id] = dataclasses.replace(
            run, finished_at=EPOCH, counts=dict(counts), result=result
        )

    def abort_unfinished_runs(self) -> list[record.RunId]:
        open_runs = [run_id for run_id, run in self.runs.items() if run.finished_at is None]
        for run_id in open_runs:
            self.finish_run(run_id, self.runs[run_id].counts, "aborted")
        return open_runs

    @contextlib.contextmanager
    def writer_lock(self, timeout: float | None = None) -> Iterator[None]:
        del timeout  # nobody else writes this record
        with self._lock:
            yield

    def fence(self) -> Unfenced:
        return Unfenced()

    # --- for the tests ------------------------------------------------------------

    @property
    def records(self) -> list[record.ResourceRecord]:
        return list(self.by_key.values())

    def live(self) -> list[record.ResourceRecord]:
        return [r for r in self.by_key.values() if r.deleted_at is None]

    def plan(
        self,
        state: desired.DesiredState,
        hv: FakeHypervisor,
        *,
        prune: bool = False,
        adopt: bool = False,
    ) -> actions.Plan:
        """The planner's answer, errors included (a pass would refuse to run them)."""
        return planner.plan(
            state,
            self.records,
            hv.observe(),
            installation=self.installation,
            volumes=self.volumes(),
            prune=prune,
            adopt=adopt,
        )

    def converge(
        self,
        state: desired.DesiredState,
        hv: FakeHypervisor,
        *,
        prune: bool = False,
        adopt: bool = False,
        on_plan: Callable[[actions.Plan], None] = lambda _p: None,
    ) -> tuple[actions.Plan, list[execute.Outcome]]:
        """One real reconcile pass over this record and ``hv``, data loss allowed."""
        result = reconciler(self, hv).apply(
            lambda _records: state,
            reconcile.Pass(
                prune=prune,
                allow_empty=True,
                adopt=adopt,
                # Made per pass: the trust boundary is read from the environment then.
                options=execute.Options(allow_data_loss=True, shutdown_timeout=0),
            ),
            on_plan=on_plan,
        )
        return result.plan, list(result.outcomes)


def reconciler(rec: ports.Store, hv: ports.Hypervisor) -> reconcile.Reconciler:
    """The engine's Reconciler, its status stamped at :data:`EPOCH`."""
    return reconcile.Reconciler(rec, hv, clock=lambda: EPOCH)


def key(kind: kinds.Kind, name: str) -> record.ResourceKey:
    return record.ResourceKey(kind.value, name)


def loaded(document: dict[str, Any], line: int = 1) -> desired.Loaded:
    """A manifest as the loader would hand it over, from a plain document."""
    manifest = kinds.KINDS[kinds.Kind(document["kind"])].model_validate(
        {"apiVersion": kinds.API_VERSION, **document}
    )
    return desired.Loaded(manifest, desired.Source("manifests.yaml", line, 1, line - 1))


def state_of(documents: Sequence[dict[str, Any]]) -> desired.DesiredState:
    """A desired state from plain documents, VMs merged over their templates."""
    state = desired.DesiredState()
    for line, document in enumerate(documents, start=1):
        item = loaded(document, line=line * 10)
        state.by_kind(item.kind)[item.name] = item
    state.effective_vms.update(recorded.effective_vms(state))
    return state
