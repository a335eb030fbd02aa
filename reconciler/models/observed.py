"""Shapes: the fields the spec owns, as comparable values; and the observed world.

A *shape* is the projection of a libvirt object onto exactly the fields a
manifest controls. The planner builds the desired shape from the manifests and
the hypervisor adapter projects libvirt's XML onto the same shape, so a plain
``==`` decides whether anything changed. Everything libvirt fills in or
normalises (PCI addresses, aliases, generated UUIDs, ``host-model`` rewrites,
``stp``/``delay`` on bridges) is simply not part of a shape, which is why there
are no perpetual diffs. The XML renderer takes a shape too: ``parse(render(s))
== s`` is a tested property.
"""

from __future__ import annotations

import dataclasses

from reconciler.models import kinds

__all__ = [
    "DiskShape",
    "NetworkShape",
    "NicShape",
    "ObservedDomain",
    "ObservedNetwork",
    "ObservedPool",
    "ObservedVolume",
    "Ownership",
    "PoolShape",
    "StaticLease",
    "VmShape",
    "World",
]


@dataclasses.dataclass(frozen=True)
class Ownership:
    """The ``<ib:managed>`` element the reconciler writes into objects it creates."""

    kind: str
    name: str
    installation: str
    spec_hash: str


@dataclasses.dataclass(frozen=True)
class DiskShape:
    name: str
    pool: str
    volume: str


@dataclasses.dataclass(frozen=True)
class NicShape:
    network: str
    mac: str


@dataclasses.dataclass(frozen=True)
class VmShape:
    """A domain's persistent configuration as the spec owns it (power state apart)."""

    cpus: int
    memory: int  # bytes
    firmware: kinds.Firmware
    machine: kinds.Machine
    graphics_type: kinds.GraphicsType
    graphics_listen: str  # "" when graphics_type is none
    disks: tuple[DiskShape, ...]
    nics: tuple[NicShape, ...]
    autostart: bool


@dataclasses.dataclass(frozen=True)
class StaticLease:
    mac: str
    ip: str
    name: str | None


@dataclasses.dataclass(frozen=True)
class NetworkShape:
    mode: kinds.NetworkMode
    bridge: str
    address: str | None  # "10.20.0.1/24"
    dhcp: tuple[str, str] | None
    hosts: tuple[StaticLease, ...]
    domain: str | None
    mtu: int | None
    autostart: bool


@dataclasses.dataclass(frozen=True)
class PoolShape:
    path: str
    autostart: bool


@dataclasses.dataclass(frozen=True)
class ObservedDomain:
    name: str
    uuid: str
    owner: Ownership | None
    shape: VmShape  # persistent (inactive) config
    live: VmShape | None  # running config when the domain is active
    power: kinds.PowerState
    graphics_port: int | None


@dataclasses.dataclass(frozen=True)
class ObservedNetwork:
    name: str
    uuid: str
    owner: Ownership | None
    shape: NetworkShape
    active: bool


@dataclasses.dataclass(frozen=True)
class ObservedVolume:
    pool: str
    name: str
    path: str
    capacity: int
    backing: str | None  # path of the backing file, if any


@dataclasses.dataclass(frozen=True)
class ObservedPool:
    name: str
    uuid: str
    shape: PoolShape
    active: bool
    volumes: dict[str, ObservedVolume]


@dataclasses.dataclass(frozen=True)
class World:
    """Everything one observation pass saw on the libvirt connection."""

    domains: dict[str, ObservedDomain] = dataclasses.field(default_factory=dict)
    networks: dict[str, ObservedNetwork] = dataclasses.field(default_factory=dict)
    pools: dict[str, ObservedPool] = dataclasses.field(default_factory=dict)
