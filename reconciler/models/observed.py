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

from reconciler.models import kinds, volumes

__all__ = [
    "CdromShape",
    "DiskShape",
    "Host",
    "NetworkShape",
    "NicShape",
    "ObservedDomain",
    "ObservedNetwork",
    "ObservedPool",
    "ObservedVolume",
    "Ownership",
    "PoolShape",
    "StaticLease",
    "Unmodelled",
    "VmShape",
    "World",
    "disk_name",
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
    name: str  # see disk_name: both the desired and the observed shape derive it alike
    pool: str  # "" for a disk outside every known pool (a path, a network or nvme disk)
    volume: str

    @property
    def modelled(self) -> bool:
        """A volume of a pool, which a manifest can name; anything else is left as it is."""
        return self.pool != ""


def disk_name(vm: str, volume: str) -> str:
    """A disk's name in a shape, from its volume (:func:`reconciler.models.volumes.disk_of`)."""
    return volumes.disk_of(vm, volume)


@dataclasses.dataclass(frozen=True)
class NicShape:
    network: str  # "<bridge>", "<direct>", ... for an interface that is not on a network
    mac: str
    filter: FilterRef | None = None  # the interface's <filterref>, parameters sorted by name

    @property
    def modelled(self) -> bool:
        """On a libvirt network, which a manifest can name; anything else is left as it is."""
        return not self.network.startswith("<")


@dataclasses.dataclass(frozen=True)
class CdromShape:
    """A read-only ISO volume on a cdrom drive; drives without a pool volume are not modelled."""

    pool: str
    volume: str


@dataclasses.dataclass(frozen=True)
class VmShape:
    """A domain's persistent configuration as the spec owns it (power state apart).

    The guest hardware fields after ``autostart`` are ``None`` in a desired shape
    where the manifests leave them unset for a domain that exists (not owned:
    neither compared nor patched); a projection always fills them in. ``cpu_mode``
    is ``""`` for a domain without one of our CPU modes (libvirt's default model),
    ``video`` the first video device's model as libvirt spells it (``"none"``
    without one), ``boot`` the ``<os><boot>`` devices in our vocabulary.
    """

    cpus: int
    memory: int  # bytes
    firmware: kinds.Firmware
    machine: kinds.Machine
    graphics_type: kinds.GraphicsType
    graphics_listen: str  # "" when graphics_type is none
    disks: tuple[DiskShape, ...]
    nics: tuple[NicShape, ...]
    autostart: bool
    cpu_mode: str | None = None
    tpm: bool | None = None
    guest_agent: bool | None = None
    spice_agent: bool | None = None
    tablet: bool | None = None
    video: str | None = None
    hyperv: bool | None = None
    cdroms: tuple[CdromShape, ...] | None = None
    boot: tuple[str, ...] | None = None
    host_devices: tuple[str, ...] | None = None
    # First-boot seed ISOs (reconciler.models.seeds), cdroms apart from ``cdroms``: always
    # owned, since only this installation names volumes so.
    seeds: tuple[CdromShape, ...] | None = ()

    # The display has a password (its value lives in libvirt alone and is never part of
    # a shape); only a read with VIR_DOMAIN_XML_SECURE can see it. ``None`` in a target:
    # the manifest says nothing, so whatever password the display has is kept.
    graphics_password: bool | None = False


# Where a nested KVM host runs guests, passing its CPU through (host-passthrough,
# host-model, maximum) often fails to start them: the outer hypervisor does not
# emulate every MSR the inner CPU advertises (an AMD EPYC host refuses MSR 0x10a).
_PREFERRED = ("host-passthrough", "host-model", "maximum")


@dataclasses.dataclass(frozen=True)
class Host:
    """What the hypervisor host offers guests: CPU modes and PCI devices.

    ``cpu_modes`` are the modes the host's domain capabilities call supported for
    ``domain_type``; ``nested`` says the host is itself a guest; ``pci`` the node
    devices' PCI addresses (``None`` when the driver cannot list them).
    """

    domain_type: str = "kvm"
    cpu_modes: tuple[str, ...] = _PREFERRED
    nested: bool = False
    pci: frozenset[str] | None = None
    cpus: int = 0  # getInfo's logical CPUs, what placement counts vCPUs against
    memory_mib: int = 0  # getInfo's memory

    def default_cpu(self) -> tuple[str, str]:
        """The CPU mode a VM gets when its manifests name none, and why ("" when preferred).

        ``""`` as the mode leaves the CPU to libvirt (its default model).
        """
        if self.nested and self.domain_type == "kvm":
            return "", (
                "host-passthrough is not used on a nested KVM host, where passing the CPU "
                "through often cannot start; libvirt's default CPU model is used"
            )
        for mode in _PREFERRED:
            if mode in self.cpu_modes:
                why = (
                    ""
                    if mode == _PREFERRED[0]
                    else (
                        f"host-passthrough is not supported by this host ({self.domain_type}); "
                        f"{mode} is used"
                    )
                )
                return mode, why
        return "", "the host supports none of host-passthrough, host-model and maximum"


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
class Unmodelled:
    """A part of a libvirt object the manifest schema cannot represent.

    ``kept`` parts are never touched by a patch (a bridge NIC, a network disk), so
    adopting the object leaves them as they are and the plan says so; the others
    (an aarch64 guest, a network in ``open`` forward mode) make the object
    impossible to adopt honestly, and adoption is refused.
    """

    what: str
    kept: bool


@dataclasses.dataclass(frozen=True)
class ObservedDomain:
    name: str
    uuid: str
    owner: Ownership | None
    shape: VmShape  # persistent (inactive) config
    live: VmShape | None  # running config when the domain is active
    power: kinds.PowerState
    graphics_port: int | None
    unmodelled: tuple[Unmodelled, ...] = ()
    # A guest agent is connected to the running domain's channel: it may be asked for addresses.
    agent: bool = False


@dataclasses.dataclass(frozen=True)
class ObservedNetwork:
    name: str
    uuid: str
    owner: Ownership | None
    shape: NetworkShape
    active: bool
    unmodelled: tuple[Unmodelled, ...] = ()


@dataclasses.dataclass(frozen=True)
class ObservedVolume:
    pool: str
    name: str
    path: str
    capacity: int
    backing: str | None  # path of the backing file, if any
    # Bytes the volume takes on disk, what a replaced disk would lose; it moves as the
    # guest writes, so it is reported, never compared.
    allocation: int = dataclasses.field(default=0, compare=False)


@dataclasses.dataclass(frozen=True)
class ObservedPool:
    name: str
    uuid: str
    shape: PoolShape
    active: bool
    volumes: dict[str, ObservedVolume]


@dataclasses.dataclass(frozen=True)
class FilterRule:
    """One ``<rule>`` of an nwfilter: action, direction, priority and one protocol element."""

    action: str  # accept | drop | reject | return | continue
    direction: str  # in (to the guest) | out (from it) | inout
    priority: int
    protocol: str  # the element: tcp, udp, icmp, all, arp, mac, ip, ...; "" for none
    attributes: tuple[tuple[str, str], ...] = ()  # the element's attributes, sorted by name
    statematch: bool = True


@dataclasses.dataclass(frozen=True)
class FilterRef:
    """A ``<filterref>``: another filter, with parameters (``MAC``, ``IP``) sorted by name."""

    filter: str
    parameters: tuple[tuple[str, str], ...] = ()


@dataclasses.dataclass(frozen=True)
class FilterShape:
    """An nwfilter as the spec owns it: libvirt's uuid and default priorities left out.

    Rules and references keep document order, which for filters we render is
    priority order (each rule has a priority of its own).
    """

    chain: str = "root"
    references: tuple[FilterRef, ...] = ()
    rules: tuple[FilterRule, ...] = ()


@dataclasses.dataclass(frozen=True)
class ObservedFilter:
    name: str
    uuid: str
    shape: FilterShape


@dataclasses.dataclass(frozen=True)
class World:
    """Everything one observation pass saw on the libvirt connection."""

    domains: dict[str, ObservedDomain] = dataclasses.field(default_factory=dict)
    networks: dict[str, ObservedNetwork] = dataclasses.field(default_factory=dict)
    pools: dict[str, ObservedPool] = dataclasses.field(default_factory=dict)
    filters: dict[str, ObservedFilter] = dataclasses.field(default_factory=dict)
    host: Host = dataclasses.field(default_factory=Host)
