"""Project libvirt XML onto shapes: the fields the spec owns, nothing else.

libvirt rewrites what it is given: it expands ``q35`` to ``pc-q35-7.2``, adds
PCI addresses, aliases, controllers, a generated UUID, ``<nat><port/>`` and
``stp``/``delay`` on bridges, and may turn ``firmware='efi'`` into explicit
loader and NVRAM paths. Each parser here reads only the owned fields and maps
libvirt's spellings back onto the manifest's vocabulary, which is what keeps
plans empty after an apply.

A ``type='file'`` disk whose path lies directly inside a known pool's
directory is that pool's volume (virt-install's
``/var/lib/libvirt/images/NAME.qcow2`` is volume ``NAME.qcow2`` of the pool on
that directory), so a manifest can name it. NICs are told apart by MAC, never by
network: two may share one. What the schema cannot represent is listed by
:func:`unmodelled_domain` and :func:`unmodelled_network`, which is what an
honest ``plan --adopt`` reports.
"""

from __future__ import annotations

import ipaddress
import posixpath
from collections.abc import Mapping

from lxml import etree

from reconciler.hypervisor import nwfilters, xml
from reconciler.models import kinds, observed, seeds

__all__ = [
    "cdrom_shape",
    "disk_shape",
    "parse_domain",
    "parse_network",
    "parse_pool",
    "parse_volume",
    "pci_address",
    "tree",
    "unmodelled_domain",
    "unmodelled_network",
]

_MEMORY_UNITS = {
    "b": 1,
    "bytes": 1,
    "k": 1024,
    "kib": 1024,
    "kb": 1000,
    "m": 1 << 20,
    "mib": 1 << 20,
    "mb": 10**6,
    "g": 1 << 30,
    "gib": 1 << 30,
    "gb": 10**9,
    "t": 1 << 40,
    "tib": 1 << 40,
}
_PARSER = etree.XMLParser(resolve_entities=False, no_network=True)


_ARCH = "x86_64"
_DOMAIN_TYPES = ("kvm", "qemu")
_FORWARD_MODES = ("nat", "route", "bridge")


def _root(text: str) -> etree._Element:
    return etree.fromstring(text.encode(), parser=_PARSER)


def tree(text: str) -> etree._Element:
    """Parse libvirt XML as every reader here does (no entities, no network): for patches."""
    return _root(text)


def _owner(root: etree._Element) -> observed.Ownership | None:
    managed = root.find(f"metadata/{{{xml.NS}}}managed")
    if managed is None:
        return None
    return observed.Ownership(
        kind=managed.get("kind", ""),
        name=managed.get("name", ""),
        installation=managed.get("installation", ""),
        spec_hash=managed.get("spec-hash", ""),
    )


def _scaled(element: etree._Element | None, default_unit: str = "kib") -> int:
    if element is None or element.text is None:
        return 0
    unit = (element.get("unit") or default_unit).lower()
    return int(element.text.strip()) * _MEMORY_UNITS[unit]


def _firmware(os_element: etree._Element | None) -> kinds.Firmware:
    if os_element is None:
        return kinds.Firmware.BIOS
    if os_element.get("firmware") == "efi":
        return kinds.Firmware.UEFI
    loader = os_element.find("loader")
    if loader is not None and (loader.get("type") == "pflash" or "OVMF" in (loader.text or "")):
        return kinds.Firmware.UEFI
    return kinds.Firmware.BIOS


def _machine(os_element: etree._Element | None) -> kinds.Machine:
    type_element = os_element.find("type") if os_element is not None else None
    machine = type_element.get("machine", "") if type_element is not None else ""
    return kinds.Machine.Q35 if "q35" in machine else kinds.Machine.PC


def _graphics(devices: etree._Element | None) -> tuple[kinds.GraphicsType, str, int | None]:
    graphics = devices.find("graphics") if devices is not None else None
    if graphics is None:
        return kinds.GraphicsType.NONE, "", None
    kind = graphics.get("type", "")
    if kind not in (kinds.GraphicsType.VNC.value, kinds.GraphicsType.SPICE.value):
        return kinds.GraphicsType.NONE, "", None
    listen = graphics.find("listen")
    address = listen.get("address") if listen is not None else None
    port = graphics.get("port")
    port_number = int(port) if port is not None and int(port) > 0 else None
    return kinds.GraphicsType(kind), address or graphics.get("listen") or "", port_number


def _has_password(devices: etree._Element | None) -> bool:
    """The display has a password: only XML read with ``VIR_DOMAIN_XML_SECURE`` shows it.

    The value itself is never carried into a shape.
    """
    graphics = devices.find("graphics") if devices is not None else None
    if graphics is None or graphics.get("type") not in ("vnc", "spice"):
        return False
    return bool(graphics.get("passwd"))


def disk_shape(
    vm: str, disk: etree._Element, pools: Mapping[str, str] | None = None
) -> observed.DiskShape | None:
    """The shape of one ``<disk device='disk'>``; ``None`` for a cdrom or a disk without source.

    ``pools`` maps pool directories to pool names: a file disk directly inside
    one is that pool's volume.
    """
    if disk.get("device", "disk") != "disk":
        return None
    source = disk.find("source")
    if source is None:
        return None
    pool = source.get("pool")
    volume = source.get("volume")
    if pool is None or volume is None:
        path = source.get("file") or source.get("dev") or ""
        pool, volume = "", path
        directory = posixpath.dirname(posixpath.normpath(path)) if path else ""
        if disk.get("type", "file") == "file" and pools and directory in pools:
            pool, volume = pools[directory], posixpath.basename(path)
    return observed.DiskShape(name=observed.disk_name(vm, volume), pool=pool, volume=volume)


def cdrom_shape(
    disk: etree._Element, pools: Mapping[str, str] | None = None
) -> observed.CdromShape | None:
    """A ``<disk device='cdrom'>`` holding a pool's volume; ``None`` for anything else.

    An empty drive, or one holding a file outside every pool, is not modelled: kept as is.
    """
    if disk.get("device") != "cdrom":
        return None
    source = disk.find("source")
    if source is None:
        return None
    pool, volume = source.get("pool"), source.get("volume")
    if pool is not None and volume is not None:
        return observed.CdromShape(pool, volume)
    path = source.get("file")
    directory = posixpath.dirname(posixpath.normpath(path)) if path else ""
    if path and pools and directory in pools:
        return observed.CdromShape(pools[directory], posixpath.basename(path))
    return None


def pci_address(hostdev: etree._Element) -> str | None:
    """``0000:01:00.0`` of a PCI ``<hostdev>``, as the manifests write it."""
    if hostdev.get("type") != "pci":
        return None
    address = hostdev.find("source/address")
    if address is None:
        return None
    try:
        parts = [int(address.get(f, "0"), 0) for f in ("domain", "bus", "slot", "function")]
    except ValueError:
        return None
    return "{:04x}:{:02x}:{:02x}.{:x}".format(*parts)


_BOOT_NAMES = {dev: name for name, dev in xml.BOOT_DEVS.items()}
_BOOT_DEVICES = {"disk": "disk", "cdrom": "cdrom", "interface": "network"}


def _boot(os_element: etree._Element | None, devices: etree._Element | None) -> tuple[str, ...]:
    """The boot devices in order: ``<os><boot>``, else the devices' own ``<boot order>``."""
    if os_element is not None and os_element.find("boot") is not None:
        return tuple(
            _BOOT_NAMES.get(b.get("dev", ""), b.get("dev", "")) for b in os_element.findall("boot")
        )
    ordered: list[tuple[int, str]] = []
    for device in devices if devices is not None else ():
        boot = device.find("boot")
        if boot is None or not isinstance(device.tag, str):
            continue
        kind = device.get("device", "disk") if device.tag == "disk" else device.tag
        name = _BOOT_DEVICES.get(kind, kind)
        ordered.append((int(boot.get("order", "0")), name))
    names: list[str] = []
    for _, name in sorted(ordered):
        if name not in names:
            names.append(name)
    return tuple(names)


def _channel(devices: etree._Element | None, name: str) -> bool:
    return devices is not None and devices.find(f"channel/target[@name='{name}']") is not None


def _video(devices: etree._Element | None) -> str:
    model = devices.find("video/model") if devices is not None else None
    return model.get("type", "none") if model is not None else "none"


def _hyperv(features: etree._Element | None) -> bool:
    hyperv = features.find("hyperv") if features is not None else None
    if hyperv is None:
        return False
    return hyperv.get("mode") == "passthrough" or any(c.get("state") == "on" for c in hyperv)


def _tpm(devices: etree._Element | None) -> bool:
    return devices is not None and devices.find("tpm/backend[@type='emulator']") is not None


def _cpu_mode(root: etree._Element) -> str:
    cpu = root.find("cpu")
    return cpu.get("mode", "custom") if cpu is not None else ""


def _disks(
    name: str, devices: etree._Element | None, pools: Mapping[str, str] | None
) -> tuple[observed.DiskShape, ...]:
    if devices is None:
        return ()
    shapes = (disk_shape(name, disk, pools) for disk in devices.findall("disk"))
    return tuple(shape for shape in shapes if shape is not None)


def _nics(devices: etree._Element | None) -> tuple[observed.NicShape, ...]:
    if devices is None:
        return ()
    nics = []
    for interface in devices.findall("interface"):
        source = interface.find("source")
        mac = interface.find("mac")
        network = source.get("network") if source is not None else None
        if network is None:
            network = f"<{interface.get('type', 'unknown')}>"
        reference = interface.find("filterref")
        nics.append(
            observed.NicShape(
                network=network,
                mac=(mac.get("address", "") if mac is not None else "").lower(),
                filter=nwfilters.project_reference(reference) if reference is not None else None,
            )
        )
    return tuple(nics)


def parse_domain(
    text: str | etree._Element, *, autostart: bool, pools: Mapping[str, str] | None = None
) -> tuple[str, observed.Ownership | None, observed.VmShape, int | None]:
    """Return (uuid, owner, shape, graphics port) of a domain XML document.

    ``text`` may be the document already parsed by :func:`tree`: observation
    reads it here and in :func:`unmodelled_domain`, and parsing is most of the
    cost of projecting a domain. ``pools`` maps pool directories to pool names
    (see :func:`disk_shape`).
    """
    root = _root(text) if isinstance(text, str) else text
    name = root.findtext("name", "")
    devices = root.find("devices")
    os_element = root.find("os")
    graphics_type, listen, port = _graphics(devices)
    vcpu = root.find("vcpu")
    cpus = int(vcpu.get("current") or vcpu.text or "1") if vcpu is not None else 1
    media = [
        c
        for c in (
            cdrom_shape(d, pools) for d in (devices.findall("disk") if devices is not None else ())
        )
        if c is not None
    ]
    shape = observed.VmShape(
        cpus=cpus,
        memory=_scaled(root.find("memory")),
        firmware=_firmware(os_element),
        machine=_machine(os_element),
        graphics_type=graphics_type,
        graphics_listen=listen,
        disks=_disks(name, devices, pools),
        nics=_nics(devices),
        autostart=autostart,
        cpu_mode=_cpu_mode(root),
        tpm=_tpm(devices),
        guest_agent=_channel(devices, xml.AGENT_CHANNEL),
        spice_agent=_channel(devices, xml.SPICE_CHANNEL),
        tablet=devices is not None and devices.find("input[@type='tablet']") is not None,
        video=_video(devices),
        hyperv=_hyperv(root.find("features")),
        cdroms=tuple(c for c in media if not seeds.is_seed(c.volume)),
        seeds=tuple(c for c in media if seeds.is_seed(c.volume)),
        boot=_boot(os_element, devices),
        host_devices=tuple(
            a
            for a in (
                pci_address(d) for d in (devices.findall("hostdev") if devices is not None else ())
            )
            if a is not None
        ),
        graphics_password=_has_password(devices),
    )
    return root.findtext("uuid", ""), _owner(root), shape, port


def parse_network(
    text: str, *, autostart: bool
) -> tuple[str, observed.Ownership | None, observed.NetworkShape]:
    root = _root(text)
    forward = root.find("forward")
    mode_text = forward.get("mode", "nat") if forward is not None else "isolated"
    mode = (
        kinds.NetworkMode(mode_text)
        if mode_text in kinds.NetworkMode.__members__.values()
        else kinds.NetworkMode.ISOLATED
    )
    bridge = root.find("bridge")
    mtu = root.find("mtu")
    domain = root.find("domain")
    address: str | None = None
    dhcp_range: tuple[str, str] | None = None
    hosts: list[observed.StaticLease] = []
    for ip in root.findall("ip"):
        if ip.get("family", "ipv4") != "ipv4":
            continue
        gateway = ip.get("address", "")
        prefix = ip.get("prefix")
        netmask = ip.get("netmask")
        address = str(ipaddress.IPv4Interface(f"{gateway}/{prefix or netmask or 24}"))
        dhcp = ip.find("dhcp")
        if dhcp is not None:
            range_element = dhcp.find("range")
            if range_element is not None:
                dhcp_range = (range_element.get("start", ""), range_element.get("end", ""))
            for host in dhcp.findall("host"):
                hosts.append(
                    observed.StaticLease(
                        mac=host.get("mac", "").lower(),
                        ip=host.get("ip", ""),
                        name=host.get("name"),
                    )
                )
        break
    shape = observed.NetworkShape(
        mode=mode,
        bridge=bridge.get("name", "") if bridge is not None else "",
        address=address,
        dhcp=dhcp_range,
        hosts=tuple(hosts),
        domain=domain.get("name") if domain is not None else None,
        mtu=int(mtu.get("size", "0")) if mtu is not None else None,
        autostart=autostart,
    )
    return root.findtext("uuid", ""), _owner(root), shape


def parse_pool(text: str, *, autostart: bool) -> tuple[str, observed.PoolShape]:
    root = _root(text)
    return root.findtext("uuid", ""), observed.PoolShape(
        path=root.findtext("target/path", ""), autostart=autostart
    )


def parse_volume(text: str, pool: str) -> observed.ObservedVolume:
    root = _root(text)
    backing = root.findtext("backingStore/path")
    return observed.ObservedVolume(
        pool=pool,
        name=root.findtext("name", ""),
        path=root.findtext("target/path", ""),
        capacity=_scaled(root.find("capacity"), default_unit="bytes"),
        backing=backing or None,
        allocation=_scaled(root.find("allocation"), default_unit="bytes"),
    )


def unmodelled_domain(
    text: str | etree._Element, pools: Mapping[str, str] | None = None
) -> tuple[observed.Unmodelled, ...]:
    """What of a domain the schema cannot represent, one entry per part.

    Another architecture, hypervisor or OS type refuses adoption; NICs off any
    libvirt network and disks outside every pool are kept as they are; a vCPU
    count below its maximum keeps the maximum. ``text`` may be already parsed
    (see :func:`parse_domain`).
    """
    root = _root(text) if isinstance(text, str) else text
    name = root.findtext("name", "")
    found: list[observed.Unmodelled] = []
    domain_type = root.get("type", "")
    if domain_type not in _DOMAIN_TYPES:
        found.append(observed.Unmodelled(f"domain type {domain_type!r} (kvm or qemu)", False))
    os_type = root.find("os/type")
    arch = os_type.get("arch", _ARCH) if os_type is not None else _ARCH
    if arch != _ARCH:
        found.append(observed.Unmodelled(f"architecture {arch!r} ({_ARCH} only)", False))
    kind = (os_type.text or "hvm").strip() if os_type is not None else "hvm"
    if kind != "hvm":
        found.append(observed.Unmodelled(f"OS type {kind!r} (hvm only)", False))
    vcpu = root.find("vcpu")
    if vcpu is not None and vcpu.get("current") is not None:
        current, maximum = int(vcpu.get("current", "0")), int((vcpu.text or "0").strip())
        if current < maximum:
            found.append(
                observed.Unmodelled(
                    f"vcpu current {current} of maximum {maximum} (the maximum is kept)", True
                )
            )
    devices = root.find("devices")
    for disk in devices.findall("disk") if devices is not None else ():
        shape = disk_shape(name, disk, pools)
        if shape is None or shape.modelled:
            continue
        target = disk.find("target")
        dev = target.get("dev", "?") if target is not None else "?"
        source = disk.find("source")
        detail = shape.volume
        if disk.get("type") == "network" and source is not None:
            detail = f"{source.get('protocol', '?')} {source.get('name', '')}".strip()
        elif disk.get("type") == "nvme" and source is not None:
            detail = f"nvme {source.get('type', '')}".strip()
        found.append(
            observed.Unmodelled(
                f"disk {dev} ({disk.get('type', 'file')}: {detail}) in no storage pool",
                True,
            )
        )
    for nic in _nics(devices):
        if not nic.modelled:
            found.append(observed.Unmodelled(f"interface {nic.network} {nic.mac}", True))
    return tuple(found)


def unmodelled_network(text: str) -> tuple[observed.Unmodelled, ...]:
    """What of a network the schema cannot represent: a forward mode other than ours."""
    forward = _root(text).find("forward")
    if forward is None:
        return ()
    mode = forward.get("mode", "nat")
    if mode in _FORWARD_MODES:
        return ()
    return (observed.Unmodelled(f"forward mode {mode!r} (nat, route, bridge or none)", False),)
