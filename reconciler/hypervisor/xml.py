"""Render libvirt XML from shapes, with lxml (never string formatting).

Only what the spec owns is rendered, plus a few fixed choices that make a
useful VDI guest (ACPI for graceful shutdown, virtio devices, writeback cache).
The ownership ``<ib:managed>`` element goes into ``<metadata>`` of domains and
networks; libvirt keeps it verbatim, which is how a later pass tells our
objects from someone else's.
"""

from __future__ import annotations

import ipaddress

from lxml import etree

from reconciler.hypervisor import nwfilters
from reconciler.models import kinds, observed

__all__ = [
    "NS",
    "render_domain",
    "render_interface",
    "render_network",
    "render_pool",
    "render_volume",
]

NS = "https://infinibay.io/ns/reconciler/1"
_IB = f"{{{NS}}}"
_MACHINES = {kinds.Machine.Q35: "q35", kinds.Machine.PC: "pc"}


def _sub(parent: etree._Element, tag: str, text: str | None = None, **attrs: str) -> etree._Element:
    element = etree.SubElement(parent, tag, attrs)
    if text is not None:
        element.text = text
    return element


def _metadata(root: etree._Element, owner: observed.Ownership) -> None:
    metadata = _sub(root, "metadata")
    managed = etree.SubElement(metadata, _IB + "managed", nsmap={"ib": NS})
    managed.set("kind", owner.kind)
    managed.set("name", owner.name)
    managed.set("installation", owner.installation)
    managed.set("spec-hash", owner.spec_hash)


def _serialize(root: etree._Element) -> str:
    return etree.tostring(root, encoding="unicode", pretty_print=True)


def _target_dev(index: int) -> str:
    letters = ""
    index += 1
    while index:
        index, rest = divmod(index - 1, 26)
        letters = chr(ord("a") + rest) + letters
    return "vd" + letters


def _interface(nic: observed.NicShape) -> etree._Element:
    element = etree.Element("interface", type="network")
    _sub(element, "mac", address=nic.mac)
    _sub(element, "source", network=nic.network)
    _sub(element, "model", type="virtio")
    if nic.filter is not None:
        element.append(nwfilters.render_reference(nic.filter))
    return element


def render_interface(nic: observed.NicShape) -> str:
    """One ``<interface>`` device, for hot-plugging into a running domain."""
    return _serialize(_interface(nic))


def render_domain(
    name: str,
    shape: observed.VmShape,
    *,
    domain_type: str,
    owner: observed.Ownership,
    uuid: str | None = None,
) -> str:
    root = etree.Element("domain", type=domain_type)
    _sub(root, "name", name)
    if uuid is not None:
        _sub(root, "uuid", uuid)
    _metadata(root, owner)
    kib = str(shape.memory // 1024)
    _sub(root, "memory", kib, unit="KiB")
    _sub(root, "currentMemory", kib, unit="KiB")
    _sub(root, "vcpu", str(shape.cpus), placement="static")
    os_attrs = {"firmware": "efi"} if shape.firmware is kinds.Firmware.UEFI else {}
    os_element = _sub(root, "os", **os_attrs)
    _sub(os_element, "type", "hvm", arch="x86_64", machine=_MACHINES[shape.machine])
    if shape.firmware is kinds.Firmware.UEFI:
        # Secure boot needs SMM, which nested and TCG hosts often lack; plain OVMF boots anywhere.
        firmware = _sub(os_element, "firmware")
        _sub(firmware, "feature", enabled="no", name="secure-boot")
    _sub(os_element, "boot", dev="hd")
    features = _sub(root, "features")
    _sub(features, "acpi")
    _sub(features, "apic")
    _sub(root, "on_poweroff", "destroy")
    _sub(root, "on_reboot", "restart")
    _sub(root, "on_crash", "destroy")
    devices = _sub(root, "devices")
    for index, disk in enumerate(shape.disks):
        element = _sub(devices, "disk", type="volume", device="disk")
        _sub(element, "driver", name="qemu", type="qcow2", cache="writeback", discard="unmap")
        _sub(element, "source", pool=disk.pool, volume=disk.volume)
        _sub(element, "target", dev=_target_dev(index), bus="virtio")
    for nic in shape.nics:
        devices.append(_interface(nic))
    if shape.graphics_type is not kinds.GraphicsType.NONE:
        graphics = _sub(devices, "graphics", type=shape.graphics_type.value, autoport="yes")
        _sub(graphics, "listen", type="address", address=shape.graphics_listen)
    _sub(devices, "console", type="pty")
    return _serialize(root)


def render_network(
    name: str,
    shape: observed.NetworkShape,
    *,
    owner: observed.Ownership,
    uuid: str | None = None,
) -> str:
    root = etree.Element("network")
    _sub(root, "name", name)
    if uuid is not None:
        _sub(root, "uuid", uuid)
    _metadata(root, owner)
    if shape.mode is not kinds.NetworkMode.ISOLATED:
        _sub(root, "forward", mode=shape.mode.value)
    if shape.mode is kinds.NetworkMode.BRIDGE:
        _sub(root, "bridge", name=shape.bridge)
    else:
        _sub(root, "bridge", name=shape.bridge, stp="on", delay="0")
    if shape.mtu is not None:
        _sub(root, "mtu", size=str(shape.mtu))
    if shape.domain is not None:
        _sub(root, "domain", name=shape.domain, localOnly="yes")
    if shape.address is not None:
        interface = ipaddress.IPv4Interface(shape.address)
        ip = _sub(root, "ip", address=str(interface.ip), prefix=str(interface.network.prefixlen))
        if shape.dhcp is not None or shape.hosts:
            dhcp = _sub(ip, "dhcp")
            if shape.dhcp is not None:
                _sub(dhcp, "range", start=shape.dhcp[0], end=shape.dhcp[1])
            for host in shape.hosts:
                attrs = {"mac": host.mac, "ip": host.ip}
                if host.name is not None:
                    attrs["name"] = host.name
                _sub(dhcp, "host", **attrs)
    return _serialize(root)


def render_pool(name: str, shape: observed.PoolShape, *, uuid: str | None = None) -> str:
    root = etree.Element("pool", type="dir")
    _sub(root, "name", name)
    if uuid is not None:
        _sub(root, "uuid", uuid)
    target = _sub(root, "target")
    _sub(target, "path", shape.path)
    return _serialize(root)


def render_volume(
    name: str, capacity: int, *, backing_path: str | None = None, backing_format: str = "qcow2"
) -> str:
    root = etree.Element("volume")
    _sub(root, "name", name)
    _sub(root, "capacity", str(capacity), unit="bytes")
    target = _sub(root, "target")
    _sub(target, "format", type="qcow2")
    if backing_path is not None:
        backing = _sub(root, "backingStore")
        _sub(backing, "path", backing_path)
        _sub(backing, "format", type=backing_format)
    return _serialize(root)
