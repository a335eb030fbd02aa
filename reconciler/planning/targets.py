"""Desired shapes: what libvirt should look like for each manifest.

Deterministic by construction, because the planner must be pure: bridge names
are derived from the network's name, and a NIC without a declared MAC keeps the
one it already has (in libvirt, else in the record) or gets one derived from a
hash of installation, VM and network, probing past any address already in use.
The spec hash covers the manifest and, for a VM, its effective (template-merged)
spec, so a template change changes the hash of every VM that uses it.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from collections.abc import Callable, Collection, Iterable, Mapping
from typing import Any

from reconciler.models import desired, effective, kinds, observed, record, seeds, volumes
from reconciler.planning import actions

__all__ = [
    "Inventory",
    "bridge_name",
    "generated_mac",
    "guest_hardware",
    "network_shape",
    "pool_shape",
    "spec_document",
    "spec_hash",
    "vm_target",
]


def bridge_name(network: str, declared: str | None) -> str:
    """The declared bridge, else ``ib-<name>`` when it fits in 15 characters, else hashed."""
    if declared is not None:
        return declared
    candidate = f"ib-{network}"
    if len(candidate) <= 15:
        return candidate
    digest = hashlib.sha256(network.encode()).hexdigest()[:4]
    return f"ib-{network[:6]}-{digest}"


def generated_mac(installation: str, vm: str, network: str, taken: Collection[str]) -> str:
    for attempt in range(1 << 16):
        digest = hashlib.sha256(f"{installation}/{vm}/{network}/{attempt}".encode()).digest()
        mac = "52:54:00:" + ":".join(f"{b:02x}" for b in digest[:3])
        if mac not in taken:
            return mac
    raise RuntimeError("no free MAC address")  # 65536 collisions in a row: not reachable


_FIELDS: dict[type, tuple[tuple[str, bool, Any], ...]] = {}


def _fields_of(kind: type) -> tuple[tuple[str, bool, Any], ...]:
    """A dataclass's (name, omitted at its default, default), looked up once per class."""
    found = _FIELDS.get(kind)
    if found is None:
        found = _FIELDS[kind] = tuple(
            (f.name, bool(f.metadata.get("omit_at_default")), f.default)
            for f in dataclasses.fields(kind)
        )
    return found


_SCALARS = frozenset({str, int, float, bool, type(None)})
_CONVERTERS: dict[type, Callable[[Any], Any]] = {}


def _plain(value: Any) -> Any:
    """What ``json.loads(json.dumps(dataclasses.asdict(value), default=str))`` gives,
    without the deep copies and the round trip through text.

    The values are immutable and go straight to JSON; asdict's copying, then the
    round trip, were most of the time of planning 10,000 VMs. How a value is
    converted depends only on its type, so that is decided once per type
    (:func:`_converter`) and looked up by ``type(value)`` after that.
    """
    kind = type(value)
    if kind in _SCALARS:
        return value
    convert = _CONVERTERS.get(kind)
    if convert is None:
        convert = _CONVERTERS[kind] = _converter(kind)
    return convert(value)


def _converter(kind: type) -> Callable[[Any], Any]:
    if issubclass(kind, str):  # a StrEnum: its value, as JSON would have it
        return str
    if dataclasses.is_dataclass(kind) and not issubclass(kind, type):
        fields = _fields_of(kind)

        def dataclass_plain(value: Any) -> dict[str, Any]:
            plain = {}
            for name, omit, default in fields:
                item = getattr(value, name)
                if omit and item == default:
                    continue  # added later: specs recorded before it keep their hash
                plain[name] = _plain(item)
            return plain

        return dataclass_plain
    if issubclass(kind, list | tuple):
        return lambda value: [_plain(item) for item in value]
    if issubclass(kind, dict):
        return lambda value: {str(key): _plain(item) for key, item in value.items()}
    if issubclass(kind, int | float):  # an IntEnum or a bool subclass
        return lambda value: json.loads(json.dumps(value))
    return str  # what json.dumps(default=str) writes


def spec_document(loaded: desired.Loaded, vm: effective.EffectiveVM | None) -> dict[str, Any]:
    document = loaded.manifest.model_dump(mode="json")
    if vm is not None:
        document["effective"] = _plain(vm)
    return document


def spec_hash(document: Mapping[str, Any]) -> str:
    canonical = json.dumps(document, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(canonical.encode()).hexdigest()[:16]


class Inventory:
    """The record's volume inventory, looked up by file and by the VM disk that uses it.

    :meth:`volume_name` is the one place a disk's volume name is decided: the
    volume named in the manifest, else the one the inventory says this disk was
    created under (names from before ``VM.DISK.qcow2``), else the generated one.
    """

    def __init__(
        self,
        volumes: Iterable[record.VolumeRecord] = (),
        *,
        pools: Callable[[str], str] = lambda pool: pool,
    ) -> None:
        # A disk names its pool by resource; volumes live in the pool's libvirt object.
        self._pool = pools
        self._by_file = {(v.pool, v.name): v for v in volumes}
        self._by_disk = {
            (v.owner, v.disk, v.pool): v.name for v in self._by_file.values() if v.created
        }
        self._by_owner: dict[record.ResourceKey, list[record.VolumeRecord]] = {}
        for v in self._by_file.values():
            if v.created:
                self._by_owner.setdefault(v.owner, []).append(v)

    def get(self, pool: str, name: str) -> record.VolumeRecord | None:
        return self._by_file.get((pool, name))

    def pool(self, name: str) -> str:
        """The libvirt name of the pool resource ``name``."""
        return self._pool(name)

    def seeds_of(self, vm: str) -> list[record.VolumeRecord]:
        """The first-boot seed volumes this installation uploaded for VM ``vm``."""
        owner = record.ResourceKey(kinds.Kind.VIRTUAL_MACHINE.value, vm)
        return [v for v in self._by_owner.get(owner, []) if seeds.is_seed(v.name)]

    def volume_name(self, vm: str, disk: effective.EffectiveDisk) -> str:
        owner = record.ResourceKey(kinds.Kind.VIRTUAL_MACHINE.value, vm)
        known = self._by_disk.get((owner, disk.name, self._pool(disk.pool)))
        return volumes.volume_name(vm, disk.name, named=disk.volume, known=known)

    def created(self, vm: str, pool: str, name: str) -> bool:
        """Whether this VM's volume ``pool/name`` is one this installation created."""
        row = self.get(pool, name)
        return (
            row is not None
            and row.created
            and row.owner == record.ResourceKey(kinds.Kind.VIRTUAL_MACHINE.value, vm)
        )

    def target(self, vm: str, disk: effective.EffectiveDisk) -> actions.VolumeTarget:
        name = self.volume_name(vm, disk)
        pool = self._pool(disk.pool)
        return actions.VolumeTarget(
            disk=disk.name,
            pool=pool,
            volume=name,
            size=disk.size,
            image=disk.image,
            reclaim=disk.reclaim,
            created=self.created(vm, pool, name),
            image_pool=self._pool(disk.image_pool) if disk.image_pool is not None else None,
            named=disk.volume is not None,
        )


def pool_shape(manifest: kinds.StoragePool) -> observed.PoolShape:
    return observed.PoolShape(path=manifest.spec.path, autostart=manifest.spec.autostart)


def network_shape(manifest: kinds.Network) -> observed.NetworkShape:
    spec = manifest.spec
    ipv4 = spec.ipv4
    return observed.NetworkShape(
        mode=spec.mode,
        bridge=bridge_name(manifest.metadata.name, spec.bridge),
        address=str(ipv4.address) if ipv4 is not None else None,
        dhcp=(str(ipv4.dhcp.start), str(ipv4.dhcp.end)) if ipv4 and ipv4.dhcp else None,
        hosts=tuple(
            observed.StaticLease(mac=h.mac, ip=str(h.ip), name=h.name)
            for h in (ipv4.hosts if ipv4 else [])
        ),
        domain=spec.domain,
        mtu=spec.mtu,
        autostart=spec.autostart,
    )


def _resolve_macs(
    vm: effective.EffectiveVM,
    current: observed.ObservedDomain | None,
    recorded: record.ResourceRecord | None,
    installation: str,
    taken: set[str],
    networks: Callable[[str], str],
) -> tuple[observed.NicShape, ...]:
    """The VM's NICs, on their networks' libvirt objects, each with its MAC."""
    declared = {n.mac for n in vm.nics if n.mac}
    existing: dict[str, list[str]] = {}
    for seen in current.shape.nics if current is not None else ():
        if seen.modelled and seen.mac not in declared:
            existing.setdefault(seen.network, []).append(seen.mac)
    remembered: dict[str, str] = recorded.status.get("macs", {}) if recorded is not None else {}
    nics = []
    for nic in vm.nics:
        network = networks(nic.network)
        kept = existing.get(network, [])
        mac = nic.mac or (kept.pop(0) if kept else None) or remembered.get(network)
        if mac is None:
            mac = generated_mac(installation, vm.name, nic.network, taken)
        taken.add(mac)
        nics.append(observed.NicShape(network=network, mac=mac))
    return tuple(nics)


def guest_hardware(
    vm: effective.EffectiveVM,
    *,
    creating: bool,
    host: observed.Host,
    virtio_win: observed.CdromShape | None = None,
) -> dict[str, Any]:
    """The guest hardware fields of the VM's shape (SPEC section 9).

    What the manifests set is owned; what they leave unset takes its default
    when the domain is created, and is ``None`` (left as it is) afterwards.
    ``os`` decides Hyper-V, and with UEFI a windows guest's TPM; a windows
    guest also gets ``virtio_win`` (the operator's driver ISO) as its last cdrom.
    """
    windows = vm.os is kinds.GuestOs.WINDOWS
    graphics = vm.graphics_type is not kinds.GraphicsType.NONE
    cpu: str | None = vm.cpu_mode.value if vm.cpu_mode is not None else None
    tpm = vm.tpm
    if tpm is None and windows and vm.firmware is kinds.Firmware.UEFI:
        tpm = True
    hyperv = windows if vm.os is not None else None
    agent = vm.guest_agent
    video = vm.video.value if vm.video is not None else None
    cdroms = (
        tuple(observed.CdromShape(c.pool, c.image) for c in vm.cdroms)
        if vm.cdroms is not None
        else None
    )
    if windows and virtio_win is not None:
        cdroms = (*(c for c in cdroms or () if c != virtio_win), virtio_win)
    boot = tuple(b.value for b in vm.boot_order) if vm.boot_order is not None else None
    host_devices = vm.host_devices
    tablet: bool | None = None
    if creating:
        cpu = cpu if cpu is not None else host.default_cpu()[0]
        tpm, hyperv = bool(tpm), bool(hyperv)
        agent = True if agent is None else agent
        if video is None:
            video = kinds.Video.VIRTIO.value if graphics else kinds.Video.NONE.value
        cdroms = cdroms or ()
        if boot is None:
            boot = ("disk", "cdrom") if cdroms else ("disk",)
        host_devices = host_devices or ()
        tablet = graphics
    spice = vm.graphics_type is kinds.GraphicsType.SPICE
    return {
        "cpu_mode": cpu,
        "tpm": tpm,
        "guest_agent": agent,
        "spice_agent": (agent and spice) if agent is not None else None,
        "tablet": tablet,
        "video": video,
        "hyperv": hyperv,
        "cdroms": cdroms,
        "boot": boot,
        "host_devices": host_devices,
    }


def vm_target(
    vm: effective.EffectiveVM,
    current: observed.ObservedDomain | None,
    recorded: record.ResourceRecord | None,
    installation: str,
    taken_macs: set[str],
    inventory: Inventory,
    host: observed.Host | None = None,
    networks: Callable[[str], str] = lambda network: network,
    virtio_win: observed.CdromShape | None = None,
) -> actions.VmTarget:
    """The VM's desired shape, its references by libvirt name (``networks``, the inventory)."""
    listen = vm.graphics_listen if vm.graphics_type is not kinds.GraphicsType.NONE else ""
    volumes = tuple(inventory.target(vm.name, d) for d in vm.disks)
    seeds = seed_targets(vm, inventory)
    shape = observed.VmShape(
        cpus=vm.cpus,
        memory=vm.memory,
        firmware=vm.firmware,
        machine=vm.machine,
        graphics_type=vm.graphics_type,
        graphics_listen=listen,
        disks=tuple(
            observed.DiskShape(
                name=observed.disk_name(vm.name, v.volume), pool=v.pool, volume=v.volume
            )
            for v in volumes
        ),
        nics=_resolve_macs(vm, current, recorded, installation, taken_macs, networks),
        autostart=vm.autostart,
        **guest_hardware(
            vm, creating=current is None, host=host or observed.Host(), virtio_win=virtio_win
        ),
        # A generated password is kept as libvirt has it, like a generated MAC: the shape
        # says only that there is one, so a pass never changes it.
        graphics_password=_password(vm),
        seeds=tuple(observed.CdromShape(s.pool, s.volume) for s in seeds),
    )
    return actions.VmTarget(
        shape=shape,
        power=vm.power,
        update_policy=vm.update_policy,
        volumes=volumes,
        seeds=seeds,
    )


def seed_targets(vm: effective.EffectiveVM, inventory: Inventory) -> tuple[actions.SeedTarget, ...]:
    """The VM's first-boot seed volumes, in its seed pool."""
    first_boot = vm.first_boot
    if first_boot is None or first_boot.pool is None:
        return ()
    pool = inventory.pool(first_boot.pool)
    return tuple(
        actions.SeedTarget(pool=pool, volume=seed.volume(vm.name), seed=seed)
        for seed in first_boot.seeds(vm.name)
    )


def _password(vm: effective.EffectiveVM) -> bool | None:
    """Whether the display is to have a password; ``None`` keeps what it has."""
    if vm.graphics_type is kinds.GraphicsType.NONE:
        return False
    if vm.graphics_password is None:
        return None
    return vm.graphics_password is kinds.GraphicsPassword.GENERATE
