"""Manifests for libvirt objects that exist now (``infinibay export``, SPEC §12).

:func:`export` turns one observation of libvirt into manifests that ``apply
--adopt`` takes over without changing what matters to the guest: exactly the
fields the schema models, read back from the same projection the planner
compares (:mod:`reconciler.hypervisor.projection`), so a ``plan`` after the
adoption is empty. What the schema does not model (cdroms, bridge NICs, a TPM,
channels) is not written and is kept by every patch; it is listed in the
document's notes. A disk is its existing volume (``volume:`` and ``pool``),
a NIC its network and MAC.

Names: an object whose libvirt name is not a DNS label gets one
(:func:`reconciler.models.naming.dns_label`, unique among the names of its
kind) and the annotation :data:`~reconciler.models.naming.LIBVIRT_NAME` with
the real name. References (a disk's pool, a NIC's network) use the names the
referenced objects are exported under, or are managed under already.
"""

from __future__ import annotations

import contextlib
import dataclasses
from collections.abc import Collection, Mapping
from typing import Any

import pydantic

from reconciler.models import fields, kinds, naming, observed

__all__ = ["Exported", "Skipped", "export", "resource_names"]

_KINDS = (kinds.Kind.STORAGE_POOL, kinds.Kind.NETWORK, kinds.Kind.VIRTUAL_MACHINE)
_MODELS: dict[kinds.Kind, type[pydantic.BaseModel]] = {
    kinds.Kind.STORAGE_POOL: kinds.StoragePool,
    kinds.Kind.NETWORK: kinds.Network,
    kinds.Kind.VIRTUAL_MACHINE: kinds.VirtualMachine,
}


@dataclasses.dataclass(frozen=True)
class Exported:
    """One manifest: its kind, resource name, libvirt name, document and notes."""

    kind: kinds.Kind
    name: str
    libvirt_name: str
    document: dict[str, Any]
    notes: tuple[str, ...] = ()


@dataclasses.dataclass(frozen=True)
class Skipped:
    """A libvirt object no manifest can represent, and why."""

    kind: kinds.Kind
    libvirt_name: str
    reason: str


def _objects(world: observed.World, kind: kinds.Kind) -> Mapping[str, object]:
    match kind:
        case kinds.Kind.VIRTUAL_MACHINE:
            return world.domains
        case kinds.Kind.NETWORK:
            return world.networks
        case kinds.Kind.STORAGE_POOL:
            return world.pools
        case _:
            return {}


def resource_names(
    world: observed.World, managed: Mapping[kinds.Kind, Mapping[str, str]]
) -> dict[kinds.Kind, dict[str, str]]:
    """Libvirt name -> resource name, per kind, for every object of ``world``.

    ``managed`` gives the names of objects that are resources already (libvirt
    name -> resource name); they keep theirs. A libvirt name that is a DNS label
    is kept too; the others get :func:`naming.dns_label`, in sorted order.
    """
    found: dict[kinds.Kind, dict[str, str]] = {}
    for kind in _KINDS:
        known = dict(managed.get(kind, {}))
        names = {n: known[n] for n in _objects(world, kind) if n in known}
        taken = set(known.values())
        for name in sorted(_objects(world, kind)):
            if name not in names and naming.is_dns_label(name) and name not in taken:
                names[name] = name
                taken.add(name)
        for name in sorted(_objects(world, kind)):
            if name not in names:
                names[name] = naming.dns_label(name, taken, fallback=_fallback(kind))
                taken.add(names[name])
        found[kind] = names
    return found


def _fallback(kind: kinds.Kind) -> str:
    return {"VirtualMachine": "vm", "Network": "network", "StoragePool": "pool"}[kind.value]


def _metadata(name: str, libvirt: str) -> dict[str, Any]:
    metadata: dict[str, Any] = {"name": name}
    if name != libvirt:
        metadata["annotations"] = {naming.LIBVIRT_NAME: libvirt}
    return metadata


def _document(kind: kinds.Kind, name: str, libvirt: str, spec: dict[str, Any]) -> dict[str, Any]:
    return {
        "apiVersion": kinds.API_VERSION,
        "kind": kind.value,
        "metadata": _metadata(name, libvirt),
        "spec": spec,
    }


def _pool(pool: observed.ObservedPool) -> dict[str, Any]:
    return {"path": pool.shape.path, "autostart": pool.shape.autostart}


def _network(network: observed.ObservedNetwork) -> dict[str, Any]:
    shape = network.shape
    spec: dict[str, Any] = {"mode": shape.mode.value}
    if shape.bridge:
        spec["bridge"] = shape.bridge
    if shape.address is not None:
        ipv4: dict[str, Any] = {"address": shape.address}
        if shape.dhcp is not None:
            ipv4["dhcp"] = {"start": shape.dhcp[0], "end": shape.dhcp[1]}
        if shape.hosts:
            ipv4["hosts"] = [
                {"mac": h.mac, "ip": h.ip, **({"name": h.name} if h.name is not None else {})}
                for h in shape.hosts
            ]
        spec["ipv4"] = ipv4
    if shape.domain is not None:
        spec["domain"] = shape.domain
    if shape.mtu is not None:
        spec["mtu"] = shape.mtu
    spec["autostart"] = shape.autostart
    return spec


def _hardware(shape: observed.VmShape) -> dict[str, Any]:
    """The guest hardware fields the domain has and a manifest can say as they are.

    Left out (so neither compared nor patched): what the vocabulary lacks (a
    ``cirrus`` video, a custom CPU), ``os`` (windows would add a driver cdrom),
    cdroms, and a guest agent whose SPICE agent channel the manifest's
    ``guestAgent`` would not reproduce.
    """
    spec: dict[str, Any] = {}
    if shape.cpu_mode in {m.value for m in kinds.CpuMode}:
        spec["cpu"] = {"mode": shape.cpu_mode}
    if shape.tpm:
        spec["tpm"] = True
    spice = shape.graphics_type is kinds.GraphicsType.SPICE
    if shape.guest_agent is not None and shape.spice_agent == (shape.guest_agent and spice):
        spec["guestAgent"] = shape.guest_agent
    if shape.video in {v.value for v in kinds.Video}:
        spec["video"] = shape.video
    boot = shape.boot or ()
    if boot and all(b in {d.value for d in kinds.BootDevice} for b in boot):
        spec["bootOrder"] = list(boot)
    if shape.host_devices:
        spec["hostDevices"] = [{"pci": address} for address in shape.host_devices]
    return spec


def _vm(
    domain: observed.ObservedDomain, names: Mapping[kinds.Kind, Mapping[str, str]]
) -> tuple[dict[str, Any], list[str]]:
    shape = domain.shape
    notes = [f"not modelled, kept as is: {p.what}" for p in domain.unmodelled if p.kept]
    spec: dict[str, Any] = {
        "powerState": domain.power.value,
        "autostart": shape.autostart,
        "cpus": shape.cpus,
        "memory": fields.format_size(shape.memory),
        "firmware": shape.firmware.value,
        "machine": shape.machine.value,
    }
    graphics: dict[str, Any] = {"type": shape.graphics_type.value}
    if shape.graphics_listen:
        graphics["listen"] = shape.graphics_listen
    if shape.graphics_password:  # kept as libvirt has it, never printed
        graphics["password"] = kinds.GraphicsPassword.GENERATE.value
    spec["graphics"] = graphics
    disks: list[dict[str, str]] = []
    pools = names.get(kinds.Kind.STORAGE_POOL, {})
    for disk in shape.disks:
        if not disk.modelled:
            continue  # in no pool: listed by unmodelled, kept as is
        disks.append(
            {
                "name": "root" if not disks else f"disk{len(disks)}",
                "pool": pools.get(disk.pool, disk.pool),
                "volume": disk.volume,
            }
        )
    if disks:
        spec["disks"] = disks
    networks = names.get(kinds.Kind.NETWORK, {})
    nics = [
        {"network": networks.get(nic.network, nic.network), "mac": nic.mac}
        for nic in shape.nics
        if nic.modelled
    ]
    if nics:
        spec["networks"] = nics
    if any(nic.filter is not None for nic in shape.nics if nic.modelled):
        notes.append("its NICs' nwfilter references are not exported: adopting removes them")
    return spec, notes


def export(
    world: observed.World,
    names: Mapping[kinds.Kind, Mapping[str, str]],
    selected: Mapping[kinds.Kind, Collection[str]],
) -> tuple[list[Exported], list[Skipped]]:
    """Manifests for the ``selected`` libvirt objects of ``world`` (libvirt names, per kind).

    ``names`` is :func:`resource_names`. Each document is validated against its
    kind's model; one that does not validate (a NAT network without an address)
    or that holds what adoption refuses (another architecture) is skipped, with
    the reason.
    """
    exported: list[Exported] = []
    skipped: list[Skipped] = []
    for kind in _KINDS:
        objects = _objects(world, kind)
        for libvirt in sorted(selected.get(kind, ())):
            found = objects.get(libvirt)
            if found is None:
                continue
            notes: list[str] = []
            refused: list[str] = []
            if isinstance(found, observed.ObservedPool):
                spec = _pool(found)
            elif isinstance(found, observed.ObservedNetwork):
                spec = _network(found)
                refused = [p.what for p in found.unmodelled if not p.kept]
            else:
                assert isinstance(found, observed.ObservedDomain)
                spec, notes = _vm(found, names)
                refused = [p.what for p in found.unmodelled if not p.kept]
            if refused:
                skipped.append(
                    Skipped(
                        kind, libvirt, "the manifests cannot represent its " + "; ".join(refused)
                    )
                )
                continue
            name = names[kind][libvirt]
            document = _document(kind, name, libvirt, spec)
            if isinstance(found, observed.ObservedDomain):
                hardware = _document(kind, name, libvirt, {**spec, **_hardware(found.shape)})
                with contextlib.suppress(pydantic.ValidationError):
                    # Guest hardware the manifests refuse (a boot order without its device)
                    # is left out, as if unset: kept as it is.
                    _MODELS[kind].model_validate(hardware)
                    document = hardware
            try:
                _MODELS[kind].model_validate(document)
            except pydantic.ValidationError as exc:
                problems = "; ".join(
                    f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']}" for e in exc.errors()
                )
                skipped.append(
                    Skipped(kind, libvirt, f"its manifest would not be valid: {problems}")
                )
                continue
            exported.append(Exported(kind, name, libvirt, document, tuple(notes)))
    return exported, skipped
