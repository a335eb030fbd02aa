"""The effective VM spec: a VirtualMachine merged over its Template.

Merge rules (SPEC §1): scalar fields of the VM override the template's; ``disks``
merge by ``name`` and ``networks`` by ``network``, field by field, so a VM can
grow the template's root disk without restating its pool. A network listed more
than once (NICs told apart by MAC) is not merged: the VM's NICs on it, if it
lists any, replace the template's. What remains unset
after the merge takes the installation-wide default below. The result is a
frozen value with every field resolved, which is what the planner compares and
what the XML renderer writes.

:func:`resolve` is the one way a VM is merged over its template, wherever the
template comes from: the loader looks in the manifests, then in the record;
the record's desired state (:mod:`reconciler.engine.recorded`) in the record.
"""

from __future__ import annotations

import dataclasses
import enum
import ipaddress
from collections.abc import Callable, Mapping
from typing import Any, TypeVar

from reconciler import errors
from reconciler.models import kinds, volumes
from reconciler.models import seeds as seeds_module

__all__ = [
    "ADDED",
    "DEFAULT_CPUS",
    "DEFAULT_MEMORY",
    "EffectiveCdrom",
    "EffectiveDisk",
    "EffectiveNic",
    "EffectiveVM",
    "MissingTemplate",
    "merge",
    "resolve",
    "template_for",
]

DEFAULT_CPUS = 1
DEFAULT_MEMORY = 512 << 20
DEFAULT_POOL = "default"
# Field metadata of what was added after the first release: the record's copy of an
# effective spec leaves it out while it holds its default, as the manifest dumps do
# (see :mod:`reconciler.models.kinds`), so specs recorded before it keep their hash.
ADDED = {"omit_at_default": True}


def _text(value: Any) -> str:
    if not isinstance(value, str):
        raise TypeError(f"{value!r} is not a string")
    return value


@dataclasses.dataclass(frozen=True)
class EffectiveDisk:
    name: str
    size: int  # 0 for a named volume given without a size: it is used as it is
    pool: str
    image: str | None
    reclaim: kinds.ReclaimPolicy
    # ``imagePool`` as written; else ``image`` is in ``pool``.
    image_pool: str | None = dataclasses.field(default=None, metadata=ADDED)
    # An existing volume named in the manifest (``volume:``).
    volume: str | None = dataclasses.field(default=None, metadata=ADDED)

    @property
    def image_source(self) -> str | None:
        """The pool ``image`` is read from, when there is an image."""
        return (self.image_pool or self.pool) if self.image is not None else None

    def volume_name(self, vm: str) -> str:
        """The volume's file name in its pool: the one named, else ``VM.DISK.qcow2``.

        See :mod:`reconciler.models.volumes`; the planner's inventory also knows
        the names disks were created under before.
        """
        return volumes.volume_name(vm, self.name, named=self.volume)

    @classmethod
    def from_record(cls, document: Any, *, vm: str | None = None) -> EffectiveDisk:
        """A disk of a record's ``effective`` spec, as :func:`merge` once resolved it.

        :class:`~reconciler.errors.RecordCorrupt`, naming the disk (and ``vm``
        when given) and the field, if the document is not one.
        """
        owner = f"virtualmachine/{vm}" if vm is not None else "a VM"
        if not isinstance(document, dict):
            raise errors.RecordCorrupt(
                f"a disk of {owner} in the record is corrupt: {document!r} is not a mapping"
            )
        where = f"disk {document.get('name')!r} of {owner}"

        def field(name: str, convert: Callable[[Any], Any]) -> Any:
            if name not in document:
                raise errors.RecordCorrupt(f"{where} in the record is corrupt: {name} is missing")
            try:
                return convert(document[name])
            except (TypeError, ValueError) as exc:
                raise errors.RecordCorrupt(
                    f"{where} in the record is corrupt at {name}: {document[name]!r}"
                ) from exc

        return cls(
            name=field("name", _text),
            size=field("size", int),
            pool=field("pool", _text),
            image=document.get("image"),
            reclaim=field("reclaim", kinds.ReclaimPolicy),
            image_pool=document.get("image_pool"),
            volume=document.get("volume"),
        )


@dataclasses.dataclass(frozen=True)
class EffectiveNic:
    network: str
    mac: str | None


@dataclasses.dataclass(frozen=True)
class EffectiveCdrom:
    name: str
    pool: str
    image: str


@dataclasses.dataclass(frozen=True)
class EffectiveFirstBoot:
    """First-boot media; ``pool`` is where its seeds live (``None``: the VM has no disk)."""

    pool: str | None
    user_data: str | None = None  # None: no cloud-init seed
    instance_id: str | None = None
    network_config: dict[str, Any] | None = None
    windows_unattend: str | None = None

    def seeds(self, vm: str) -> tuple[seeds_module.Seed, ...]:
        """The seed ISOs this asks for, cloud-init's first."""
        found = []
        if self.user_data is not None:
            found.append(
                seeds_module.cloud_init(
                    vm,
                    self.user_data,
                    instance_id=self.instance_id,
                    network_config=self.network_config,
                )
            )
        if self.windows_unattend is not None:
            found.append(seeds_module.windows_unattend(self.windows_unattend))
        return tuple(found)


@dataclasses.dataclass(frozen=True)
class EffectiveVM:
    name: str
    template: str | None
    cpus: int
    memory: int
    firmware: kinds.Firmware
    machine: kinds.Machine
    graphics_type: kinds.GraphicsType
    graphics_listen: str
    disks: tuple[EffectiveDisk, ...]
    nics: tuple[EffectiveNic, ...]
    power: kinds.PowerState
    autostart: bool
    update_policy: kinds.UpdatePolicy
    protected: bool
    department: str | None = dataclasses.field(default=None, metadata=ADDED)
    # Guest hardware as the VM and its template declare it: ``None`` where neither does,
    # which leaves the domain's own (see :mod:`reconciler.models.kinds`, ``_Hardware``).
    cpu_mode: kinds.CpuMode | None = dataclasses.field(default=None, metadata=ADDED)
    tpm: bool | None = dataclasses.field(default=None, metadata=ADDED)
    os: kinds.GuestOs | None = dataclasses.field(default=None, metadata=ADDED)
    guest_agent: bool | None = dataclasses.field(default=None, metadata=ADDED)
    video: kinds.Video | None = dataclasses.field(default=None, metadata=ADDED)
    cdroms: tuple[EffectiveCdrom, ...] | None = dataclasses.field(default=None, metadata=ADDED)
    boot_order: tuple[kinds.BootDevice, ...] | None = dataclasses.field(
        default=None, metadata=ADDED
    )
    host_devices: tuple[str, ...] | None = dataclasses.field(default=None, metadata=ADDED)
    graphics_password: kinds.GraphicsPassword | None = dataclasses.field(
        default=None, metadata=ADDED
    )
    first_boot: EffectiveFirstBoot | None = dataclasses.field(default=None, metadata=ADDED)


def _merge_members(
    base: list[dict[str, Any]], over: list[dict[str, Any]], key: str
) -> list[dict[str, Any]]:
    merged = {item[key]: dict(item) for item in base}
    for item in over:
        merged[item[key]] = {**merged.get(item[key], {}), **item}
    return list(merged.values())


def _merge_nics(base: list[dict[str, Any]], over: list[dict[str, Any]]) -> list[dict[str, Any]]:
    def count(items: list[dict[str, Any]], network: str) -> int:
        return sum(1 for item in items if item["network"] == network)

    def paired(network: str) -> bool:
        return count(base, network) == 1 and count(over, network) == 1

    merged = []
    for nic in base:
        network = nic["network"]
        if paired(network):
            merged.append({**nic, **next(o for o in over if o["network"] == network)})
        elif count(over, network) == 0:
            merged.append(dict(nic))
    merged += [dict(nic) for nic in over if not paired(nic["network"])]
    return merged


def _explicit(model: kinds._Hardware) -> dict[str, Any]:
    """The fields the user wrote (None and defaults are not overrides)."""
    return model.model_dump(exclude_none=True, exclude_unset=True)


def merge(
    vm: kinds.VirtualMachine,
    template: kinds.Template | None,
    department_network: str | None = None,
) -> EffectiveVM:
    """Resolve ``vm`` over ``template``; raises ValueError naming a missing disk field.

    ``department_network`` is the network of the VM's department: its one NIC
    when neither the VM nor its template lists any.
    """
    base = _explicit(template.spec) if template is not None else {}
    over = _explicit(vm.spec)
    disks = _merge_members(base.get("disks", []), over.get("disks", []), "name")
    nics = _merge_nics(base.get("networks", []), over.get("networks", []))
    if not nics and department_network is not None:
        nics = [{"network": department_network}]
    scalars = {**base, **over}
    graphics = {**base.get("graphics", {}), **over.get("graphics", {})}
    cpu = {**base.get("cpu", {}), **over.get("cpu", {})}
    cdroms = None
    if "cdroms" in base or "cdroms" in over:
        merged = _merge_members(base.get("cdroms", []), over.get("cdroms", []), "name")
        cdroms = tuple(EffectiveCdrom(c["name"], c["pool"], c["image"]) for c in merged)
    boot = scalars.get("bootOrder")
    devices = scalars.get("hostDevices")
    effective_disks = []
    for disk in disks:
        if "size" not in disk and "volume" not in disk:
            raise ValueError(f"disk {disk['name']!r} has no size in the VM or its template")
        effective_disks.append(
            EffectiveDisk(
                name=disk["name"],
                size=disk.get("size", 0),
                pool=disk.get("pool", DEFAULT_POOL),
                image=disk.get("image"),
                reclaim=kinds.ReclaimPolicy(disk.get("reclaimPolicy", kinds.ReclaimPolicy.RETAIN)),
                image_pool=disk.get("imagePool"),
                volume=disk.get("volume"),
            )
        )
    return EffectiveVM(
        name=vm.metadata.name,
        template=vm.spec.template,
        cpus=scalars.get("cpus", DEFAULT_CPUS),
        memory=scalars.get("memory", DEFAULT_MEMORY),
        firmware=kinds.Firmware(scalars.get("firmware", kinds.Firmware.BIOS)),
        machine=kinds.Machine(scalars.get("machine", kinds.Machine.Q35)),
        graphics_type=kinds.GraphicsType(graphics.get("type", kinds.GraphicsType.VNC)),
        graphics_listen=str(graphics.get("listen", ipaddress.IPv4Address("127.0.0.1"))),
        disks=tuple(effective_disks),
        nics=tuple(EffectiveNic(network=n["network"], mac=n.get("mac")) for n in nics),
        power=vm.spec.powerState,
        autostart=vm.spec.autostart,
        update_policy=vm.spec.updatePolicy,
        protected=vm.metadata.protected,
        department=vm.spec.department,
        cpu_mode=_optional(kinds.CpuMode, cpu.get("mode")),
        tpm=scalars.get("tpm"),
        os=_optional(kinds.GuestOs, scalars.get("os")),
        guest_agent=scalars.get("guestAgent"),
        video=_optional(kinds.Video, scalars.get("video")),
        cdroms=cdroms,
        boot_order=tuple(kinds.BootDevice(b) for b in boot) if boot is not None else None,
        host_devices=tuple(d["pci"] for d in devices) if devices is not None else None,
        graphics_password=_password(vm, template),
        first_boot=_first_boot(base.get("firstBoot"), over.get("firstBoot"), effective_disks),
    )


def _first_boot(
    base: dict[str, Any] | None, over: dict[str, Any] | None, disks: list[EffectiveDisk]
) -> EffectiveFirstBoot | None:
    """The VM's ``firstBoot`` over its template's, key by key; seeds go in the first disk's pool."""
    if base is None and over is None:
        return None
    merged = {**(base or {}), **(over or {})}
    cloud = merged.get("cloudInit")
    pool = merged.get("pool") or (disks[0].pool if disks else None)
    return EffectiveFirstBoot(
        pool=pool,
        user_data=cloud["userData"] if cloud is not None else None,
        instance_id=cloud.get("instanceId") if cloud is not None else None,
        network_config=cloud.get("networkConfig") if cloud is not None else None,
        windows_unattend=merged.get("windowsUnattend"),
    )


_E = TypeVar("_E", bound=enum.Enum)


def _optional(kind: type[_E], value: Any) -> _E | None:
    return kind(value) if value is not None else None


def _password(
    vm: kinds.VirtualMachine, template: kinds.Template | None
) -> kinds.GraphicsPassword | None:
    """The VM's ``graphics.password`` where it sets one, else its template's, else ``None``.

    ``None`` leaves the display's password as it is: one an administrator set (say with
    virt-install) is never removed, and so the console never opened, by a manifest that
    says nothing about it.

    Read from the models, not their dumps: a dump leaves an added field out at its
    default, and a VM's explicit ``none`` must still override a template's ``generate``.
    """
    for spec in (vm.spec, template.spec if template is not None else None):
        graphics = spec.graphics if spec is not None else None
        if graphics is not None and "password" in graphics.model_fields_set:
            return graphics.password
    return None


class MissingTemplate(ValueError):
    """A VM names a template that none of the places looked in holds."""

    def __init__(self, vm: str, template: str) -> None:
        self.vm = vm
        self.template = template
        super().__init__(f"template {template!r} of VM {vm!r} is not known")


def template_for(
    vm: kinds.VirtualMachine, *sources: Mapping[str, kinds.Template]
) -> kinds.Template | None:
    """The template ``vm`` names, from the first of ``sources`` that holds it.

    ``None`` when the VM names none; :class:`MissingTemplate` when no source has it.
    """
    name = vm.spec.template
    if name is None:
        return None
    for source in sources:
        found = source.get(name)
        if found is not None:
            return found
    raise MissingTemplate(vm.metadata.name, name)


def resolve(
    vm: kinds.VirtualMachine,
    *sources: Mapping[str, kinds.Template],
    departments: Mapping[str, kinds.Department] | None = None,
) -> EffectiveVM:
    """:func:`merge` ``vm`` over its template, looked up in ``sources`` in order.

    ``departments`` gives the VM's department, whose network is its default NIC.
    Raises :class:`MissingTemplate` or, from :func:`merge`, a ValueError naming a disk.
    """
    department = (departments or {}).get(vm.spec.department or "")
    network = department.spec.network if department is not None else None
    return merge(vm, template_for(vm, *sources), network)
