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
    "AGENT_CHANNEL",
    "BOOT_DEVS",
    "NS",
    "SPICE_CHANNEL",
    "agent_channel",
    "boot_elements",
    "cdrom_element",
    "cpu_element",
    "hostdev_element",
    "hyperv_element",
    "render_domain",
    "render_interface",
    "render_network",
    "render_pool",
    "render_volume",
    "sata_dev",
    "spice_channel",
    "tablet_element",
    "tpm_element",
    "video_element",
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


# --- guest hardware: one builder per device, shared with hypervisor.patch ------------

AGENT_CHANNEL = "org.qemu.guest_agent.0"
SPICE_CHANNEL = "com.redhat.spice.0"
# Our boot device names and libvirt's <os><boot dev>.
BOOT_DEVS = {"disk": "hd", "cdrom": "cdrom", "network": "network"}


def cpu_element(mode: str) -> etree._Element:
    """``<cpu mode=...>``; libvirt adds ``check`` and ``migratable``, which are not compared."""
    return etree.Element("cpu", mode=mode)


def tpm_element() -> etree._Element:
    """An emulated TPM 2.0: libvirt runs swtpm for it and picks the model (tpm-tis, tpm-crb)."""
    element = etree.Element("tpm")
    etree.SubElement(element, "backend", type="emulator", version="2.0")
    return element


def _virtio_channel(kind: str, name: str) -> etree._Element:
    element = etree.Element("channel", type=kind)
    etree.SubElement(element, "target", type="virtio", name=name)
    return element


def agent_channel() -> etree._Element:
    """qemu-guest-agent's virtio channel; libvirt picks its socket path and address."""
    return _virtio_channel("unix", AGENT_CHANNEL)


def spice_channel() -> etree._Element:
    """The spice vdagent channel (clipboard, resolution), which exists only with spice."""
    return _virtio_channel("spicevmc", SPICE_CHANNEL)


def tablet_element() -> etree._Element:
    """A USB tablet: absolute pointing, without which a VNC or SPICE mouse drifts."""
    return etree.Element("input", type="tablet", bus="usb")


def video_element(model: str) -> etree._Element:
    """The video device; ``none`` is written out, or libvirt adds a default one."""
    element = etree.Element("video")
    etree.SubElement(element, "model", type=model)
    return element


def hyperv_element() -> etree._Element:
    """The Hyper-V enlightenments Windows guests run much faster with."""
    element = etree.Element("hyperv", mode="custom")
    etree.SubElement(element, "relaxed", state="on")
    etree.SubElement(element, "vapic", state="on")
    etree.SubElement(element, "spinlocks", state="on", retries="8191")
    return element


def sata_dev(taken: set[str]) -> str:
    """The first ``sdX`` target not in ``taken``, which it joins."""
    index = 0
    while True:
        letters, rest = "", index + 1
        while rest:
            rest, digit = divmod(rest - 1, 26)
            letters = chr(ord("a") + digit) + letters
        if "sd" + letters not in taken:
            taken.add("sd" + letters)
            return "sd" + letters
        index += 1


def cdrom_element(cdrom: observed.CdromShape, dev: str) -> etree._Element:
    """A read-only cdrom holding a pool's ISO volume, on SATA: q35 has no IDE controller."""
    element = etree.Element("disk", type="volume", device="cdrom")
    etree.SubElement(element, "driver", name="qemu", type="raw")
    etree.SubElement(element, "source", pool=cdrom.pool, volume=cdrom.volume)
    etree.SubElement(element, "target", dev=dev, bus="sata")
    etree.SubElement(element, "readonly")
    return element


def hostdev_element(pci: str) -> etree._Element:
    """A host PCI device (``0000:01:00.0``) passed through; libvirt detaches it from the host."""
    domain, bus, rest = pci.split(":")
    slot, function = rest.split(".")
    element = etree.Element("hostdev", mode="subsystem", type="pci", managed="yes")
    source = etree.SubElement(element, "source")
    etree.SubElement(
        source,
        "address",
        domain=f"0x{domain}",
        bus=f"0x{bus}",
        slot=f"0x{slot}",
        function=f"0x{function}",
    )
    return element


def boot_elements(boot: tuple[str, ...]) -> list[etree._Element]:
    return [etree.Element("boot", dev=BOOT_DEVS[device]) for device in boot]


def _guest_devices(devices: etree._Element, shape: observed.VmShape) -> None:
    """The guest hardware devices of a new domain; unset fields (``None``) add nothing."""
    taken = {t.get("dev", "") for t in devices.iterfind("disk/target")}
    for cdrom in (*(shape.cdroms or ()), *(shape.seeds or ())):
        devices.append(cdrom_element(cdrom, sata_dev(taken)))
    for pci in shape.host_devices or ():
        devices.append(hostdev_element(pci))
    if shape.guest_agent:
        devices.append(agent_channel())
    if shape.spice_agent:
        devices.append(spice_channel())
    if shape.tablet:
        devices.append(tablet_element())
    if shape.tpm:
        devices.append(tpm_element())
    if shape.video is not None:
        devices.append(video_element(shape.video))


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
    graphics_password: str | None = None,
) -> str:
    """A new domain; ``graphics_password`` is its display's, when ``shape`` wants one."""
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
    for boot in boot_elements(shape.boot if shape.boot is not None else ("disk",)):
        os_element.append(boot)
    features = _sub(root, "features")
    _sub(features, "acpi")
    _sub(features, "apic")
    if shape.hyperv:
        features.append(hyperv_element())
    if shape.cpu_mode:
        root.append(cpu_element(shape.cpu_mode))
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
        if shape.graphics_password:
            if graphics_password is None:
                raise ValueError("a display password is wanted but none was given")
            graphics.set("passwd", graphics_password)
        _sub(graphics, "listen", type="address", address=shape.graphics_listen)
    _guest_devices(devices, shape)
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
    name: str,
    capacity: int,
    *,
    backing_path: str | None = None,
    backing_format: str = "qcow2",
    volume_format: str = "qcow2",
) -> str:
    root = etree.Element("volume")
    _sub(root, "name", name)
    _sub(root, "capacity", str(capacity), unit="bytes")
    target = _sub(root, "target")
    _sub(target, "format", type=volume_format)
    if backing_path is not None:
        backing = _sub(root, "backingStore")
        _sub(backing, "path", backing_path)
        _sub(backing, "format", type=backing_format)
    return _serialize(root)
