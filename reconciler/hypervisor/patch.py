"""Patch libvirt XML: edit the fields the schema owns, leave every other node as it was.

This is Kubernetes server-side apply's field ownership for libvirt objects. The
reconciler owns exactly what a shape holds (see :mod:`reconciler.models.observed`);
to change an object it reads the object's current inactive XML, edits the owned
elements and defines the result. Devices, timers, features, other tools'
metadata, a NIC's model and a disk's bus are never touched, so what
virt-install, virt-manager or an operator's ``virsh define`` put there survives
every update. The guest hardware fields (CPU mode, TPM, agent channels, tablet,
video, Hyper-V, cdroms, boot order, PCI host devices) are owned only where the
manifests set them; unset, they are left as they are. Rendering from scratch
(:mod:`reconciler.hypervisor.xml`) is for creation only.

Each owned field is compared with the current XML's projection first and
edited only when it differs, so an object that already matches comes back
unchanged apart from the ``<ib:managed>`` metadata. Where an edit has to touch
more than the field itself, the reason is written next to it: a new machine
type drops the PCI addresses and controllers libvirt assigned for the old one
(and moves IDE disks to SATA on q35), and leaving spice drops the devices that
only work through spice (its channels, USB redirection and audio).

Devices are matched the way the planner matches them: disks by pool and
volume (a file inside a pool's directory is that pool's volume), NICs by MAC.
A NIC's owned fields are its network and its ``<filterref>`` (set, replaced or
removed); its model, address, target and the rest stay.
Disks and NICs the schema cannot represent (a path outside every pool, a
network disk, a bridge or direct interface) are never matched and so never
removed.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Callable, Iterable, Mapping

from lxml import etree

from reconciler.hypervisor import graphics, nwfilters, projection, xml
from reconciler.models import kinds, observed
from reconciler.models import seeds as seeds_module

__all__ = ["patch_domain", "patch_network", "patch_pool", "set_filter"]

_IB = f"{{{xml.NS}}}"
_MACHINES = {kinds.Machine.Q35: "q35", kinds.Machine.PC: "pc"}
_GRAPHICS_KEPT = ("passwd", "passwdValidTo", "connected", "keymap")


def _serialize(root: etree._Element) -> str:
    return etree.tostring(root, encoding="unicode")


def _child(parent: etree._Element, tag: str, *, after: tuple[str, ...] = ()) -> etree._Element:
    """``parent``'s first ``tag`` child, created after the last of ``after`` when missing."""
    found = parent.find(tag)
    if found is not None:
        return found
    element = etree.Element(tag)
    anchors = [c for c in parent if c.tag in after]
    if anchors:
        anchors[-1].addnext(element)
    else:
        parent.insert(0, element)
    return element


def _managed(root: etree._Element, owner: observed.Ownership) -> None:
    """Write our ``<ib:managed>`` into ``<metadata>``; other tools' metadata stays."""
    metadata = _child(root, "metadata", after=("name", "uuid", "genid", "title", "description"))
    managed = metadata.find(_IB + "managed")
    if managed is None:
        managed = etree.SubElement(metadata, _IB + "managed", nsmap={"ib": xml.NS})
    managed.set("kind", owner.kind)
    managed.set("name", owner.name)
    managed.set("installation", owner.installation)
    managed.set("spec-hash", owner.spec_hash)


def _replace_at(slots: list[etree._Element], wanted: list[etree._Element]) -> None:
    """Put ``wanted`` where ``slots`` are, in order; extra ones after the last slot.

    ``slots`` are the owned devices now in the document, ``wanted`` the owned
    devices it should hold (reused elements and new ones): unowned siblings
    keep their place, and removed devices leave the tree.
    """
    if not slots:
        return
    markers = []
    for slot in slots:
        marker = etree.Element("slot")
        slot.addprevious(marker)
        markers.append(marker)
        slot.getparent().remove(slot)  # type: ignore[union-attr]
    for marker, element in zip(markers, wanted, strict=False):
        marker.addprevious(element)
    for element in reversed(wanted[len(markers) :]):
        markers[-1].addnext(element)
    for marker in markers:
        marker.getparent().remove(marker)  # type: ignore[union-attr]


def _append_device(devices: etree._Element, element: etree._Element, tag: str) -> None:
    """A new device after the last of its kind, else at the end of ``<devices>``."""
    same = devices.findall(tag)
    if same:
        same[-1].addnext(element)
    else:
        devices.append(element)


# --- domains ------------------------------------------------------------------------


def _memory(root: etree._Element, memory: int) -> None:
    kib = str(memory // 1024)
    element = _child(root, "memory", after=("name", "uuid", "metadata"))
    element.text = kib
    element.set("unit", "KiB")
    current = root.find("currentMemory")
    if current is not None:
        current.text = kib
        current.set("unit", "KiB")


def _vcpu(root: etree._Element, cpus: int) -> None:
    element = _child(root, "vcpu", after=("name", "uuid", "metadata", "memory", "currentMemory"))
    maximum = int((element.text or "0").strip() or "0")
    if element.get("current") is not None and cpus < maximum:
        element.set("current", str(cpus))  # the maximum (for hot-plug) is kept
        return
    element.text = str(cpus)
    if "current" in element.attrib:
        del element.attrib["current"]
    if not element.get("placement"):
        element.set("placement", "static")


def _firmware(os_element: etree._Element, firmware: kinds.Firmware) -> None:
    if firmware is kinds.Firmware.UEFI:
        os_element.set("firmware", "efi")
        if os_element.find("firmware") is None and os_element.find("loader") is None:
            # As at creation: secure boot needs SMM, which nested and TCG hosts often lack.
            features = etree.Element("firmware")
            etree.SubElement(features, "feature", enabled="no", name="secure-boot")
            type_element = os_element.find("type")
            if type_element is not None:
                type_element.addnext(features)
            else:
                os_element.insert(0, features)
        return
    if "firmware" in os_element.attrib:
        del os_element.attrib["firmware"]
    for tag in ("loader", "nvram", "firmware"):
        for element in os_element.findall(tag):
            os_element.remove(element)


def _machine(root: etree._Element, os_element: etree._Element, machine: kinds.Machine) -> None:
    type_element = _child(os_element, "type")
    if not (type_element.text or "").strip():
        type_element.text = "hvm"
    type_element.set("machine", _MACHINES[machine])
    devices = root.find("devices")
    if devices is None:
        return
    # PCI addresses and PCI controllers belong to the old machine's bus layout (pcie-root
    # on q35, pci-root on pc); libvirt assigns new ones for the new machine type.
    for address in devices.iterfind(".//address[@type='pci']"):
        address.getparent().remove(address)  # type: ignore[union-attr]
    for controller in devices.findall("controller[@type='pci']"):
        devices.remove(controller)
    if machine is kinds.Machine.Q35:
        # q35 has no IDE controller: IDE disks and cdroms move to its SATA controller.
        for controller in devices.findall("controller[@type='ide']"):
            devices.remove(controller)
        taken = {t.get("dev", "") for t in devices.iterfind("disk/target")}
        for disk in devices.findall("disk"):
            target = disk.find("target[@bus='ide']")
            if target is None:
                continue
            target.set("bus", "sata")
            dev = target.get("dev", "")
            if dev.startswith("hd") and "sd" + dev[2:] not in taken:
                target.set("dev", "sd" + dev[2:])
                taken.add("sd" + dev[2:])
            for address in disk.findall("address[@type='drive']"):
                disk.remove(address)


def _graphics_element(kind: kinds.GraphicsType, listen: str) -> etree._Element:
    element = etree.Element("graphics", type=kind.value, autoport="yes")
    etree.SubElement(element, "listen", type="address", address=listen)
    return element


_SPICE_DEVICES = (
    "channel[@type='spicevmc']",
    "channel[@type='spiceport']",
    "redirdev[@type='spicevmc']",
    "smartcard[@type='spicevmc']",
    "audio[@type='spice']",
)


def _graphics(devices: etree._Element, kind: kinds.GraphicsType, listen: str) -> None:
    ours = [g for g in devices.findall("graphics") if g.get("type") in ("vnc", "spice")]
    if kind is not kinds.GraphicsType.SPICE and any(g.get("type") == "spice" for g in ours):
        # Channels, USB redirection and audio through spice cannot exist without spice
        # graphics: libvirt refuses the domain. They leave with the spice display.
        for path in _SPICE_DEVICES:
            for device in devices.findall(path):
                devices.remove(device)
    if kind is kinds.GraphicsType.NONE:
        for element in ours:
            devices.remove(element)
        return
    if not ours:
        _append_device(devices, _graphics_element(kind, listen), "graphics")
        return
    current = ours[0]
    if current.get("type") != kind.value:
        # VNC and SPICE take different children (channels, image compression): a fresh
        # element of the new type, keeping the password and keymap.
        element = _graphics_element(kind, listen)
        for name in _GRAPHICS_KEPT:
            value = current.get(name)
            if value is not None:
                element.set(name, value)
        current.addprevious(element)
        devices.remove(current)
        return
    if current.get("listen") is not None:
        current.set("listen", listen)
    first = current.find("listen")
    if first is None:
        first = etree.Element("listen")
        current.insert(0, first)
    for attribute in list(first.attrib):
        if attribute not in ("type", "address"):
            del first.attrib[attribute]
    first.set("type", "address")
    first.set("address", listen)


def _password(devices: etree._Element, wanted: bool, fresh: str | None) -> None:
    """The display's password: kept while wanted, ``fresh`` when it has none, gone when unwanted.

    A kept password that the display type cannot use in full (a SPICE one, now on
    VNC) is replaced by ``fresh`` too.
    """
    displays = (g for g in devices.findall("graphics") if g.get("type") in ("vnc", "spice"))
    display = next(displays, None)
    if display is None:
        return
    if not wanted:
        for name in ("passwd", "passwdValidTo"):
            display.attrib.pop(name, "")
        return
    current = display.get("passwd")
    if current and graphics.fits(kinds.GraphicsType(display.get("type", "")), current):
        return
    if fresh is None:
        raise ValueError("a display password is wanted but none was given")
    display.set("passwd", fresh)


def _target_dev(taken: set[str]) -> str:
    index = 0
    while True:
        letters, rest = "", index + 1
        while rest:
            rest, digit = divmod(rest - 1, 26)
            letters = chr(ord("a") + digit) + letters
        if "vd" + letters not in taken:
            return "vd" + letters
        index += 1


def _volume_disk(disk: observed.DiskShape, taken: set[str]) -> etree._Element:
    element = etree.Element("disk", type="volume", device="disk")
    etree.SubElement(
        element, "driver", name="qemu", type="qcow2", cache="writeback", discard="unmap"
    )
    etree.SubElement(element, "source", pool=disk.pool, volume=disk.volume)
    dev = _target_dev(taken)
    taken.add(dev)
    etree.SubElement(element, "target", dev=dev, bus="virtio")
    return element


def _point_at(element: etree._Element, disk: observed.DiskShape) -> None:
    """Turn an existing disk element to another volume, keeping its bus, address and boot order."""
    element.set("type", "volume")
    source = element.find("source")
    replacement = etree.Element("source", pool=disk.pool, volume=disk.volume)
    if source is not None:
        source.addprevious(replacement)
        element.remove(source)
    else:
        element.insert(0, replacement)
    for stale in element.findall("backingStore"):
        element.remove(stale)
    driver = element.find("driver")
    if driver is not None:
        driver.set("type", "qcow2")


def _disks(
    devices: etree._Element,
    vm: str,
    disks: tuple[observed.DiskShape, ...],
    pools: Mapping[str, str],
) -> None:
    owned: list[tuple[etree._Element, observed.DiskShape]] = []
    for element in devices.findall("disk"):
        shape = projection.disk_shape(vm, element, pools)
        if shape is not None and shape.modelled:
            owned.append((element, shape))
    taken = {t.get("dev", "") for t in devices.iterfind("disk/target")}
    by_volume = {(s.pool, s.volume): e for e, s in owned}
    wanted_volumes = {(d.pool, d.volume) for d in disks}
    spare = {s.name: e for e, s in owned if (s.pool, s.volume) not in wanted_volumes}
    wanted: list[etree._Element] = []
    for disk in disks:
        found = by_volume.get((disk.pool, disk.volume))
        if found is None and disk.name in spare:
            found = spare.pop(disk.name)  # the same disk on another volume: keep its slot
            _point_at(found, disk)
        wanted.append(found if found is not None else _volume_disk(disk, taken))
    slots = [e for e, _ in owned]
    if slots:
        _replace_at(slots, wanted)
    else:
        for element in wanted:
            _append_device(devices, element, "disk")


def _interface(nic: observed.NicShape) -> etree._Element:
    element = etree.Element("interface", type="network")
    etree.SubElement(element, "mac", address=nic.mac)
    etree.SubElement(element, "source", network=nic.network)
    etree.SubElement(element, "model", type="virtio")
    if nic.filter is not None:
        element.append(nwfilters.render_reference(nic.filter))
    return element


def set_filter(interface: etree._Element, wanted: observed.FilterRef | None) -> None:
    """Give ``interface`` the ``<filterref>`` ``wanted`` (none: remove it), in its place.

    An interface whose filterref already projects onto ``wanted`` is left as it is;
    a new one goes after the interface's ``<model>`` (else at its end).
    """
    current = interface.find("filterref")
    if current is not None and nwfilters.project_reference(current) == wanted:
        return
    if wanted is None:
        if current is not None:
            interface.remove(current)
        return
    element = nwfilters.render_reference(wanted)
    if current is not None:
        current.addprevious(element)
        interface.remove(current)
        return
    model = interface.find("model")
    if model is not None:
        model.addnext(element)
    else:
        interface.append(element)


def _mac(interface: etree._Element) -> str:
    mac = interface.find("mac")
    return (mac.get("address", "") if mac is not None else "").lower()


def _nics(devices: etree._Element, nics: tuple[observed.NicShape, ...]) -> None:
    owned = [i for i in devices.findall("interface") if i.get("type") == "network"]
    by_mac = {_mac(i): i for i in owned}
    wanted: list[etree._Element] = []
    for nic in nics:
        element = by_mac.pop(nic.mac, None)
        if element is None:
            element = _interface(nic)
        else:
            source = element.find("source")
            if source is None:
                source = etree.SubElement(element, "source")
            if source.get("network") != nic.network:
                for name in list(source.attrib):
                    del source.attrib[name]
                source.set("network", nic.network)
            set_filter(element, nic.filter)
        wanted.append(element)
    if owned:
        _replace_at(owned, wanted)
    else:
        for element in wanted:
            _append_device(devices, element, "interface")


# --- guest hardware: one function per field, each called only when the field is owned
# (not None in the shape) and differs from what the document has.


_MIGRATABLE = ("host-passthrough", "maximum")


def _cpu(root: etree._Element, mode: str) -> None:
    """Set the CPU mode; a custom model's name, vendor and match leave with ``custom``.

    Topology, NUMA cells, cache and feature tweaks stay: every mode takes them.
    """
    cpu = root.find("cpu")
    if cpu is None:
        cpu = _child(
            root,
            "cpu",
            after=("name", "uuid", "metadata", "memory", "currentMemory", "vcpu", "os", "features"),
        )
    cpu.set("mode", mode)
    # libvirt takes ``migratable`` only on the modes that pass the host's CPU through.
    dropped = ("match", "check") + (() if mode in _MIGRATABLE else ("migratable",))
    for attribute in dropped:
        if attribute in cpu.attrib:
            del cpu.attrib[attribute]
    for tag in ("model", "vendor"):
        for element in cpu.findall(tag):
            cpu.remove(element)


def _present(
    devices: etree._Element, path: str, want: bool, build: Callable[[], etree._Element]
) -> None:
    """A device that is there or not: added (after its kind) when wanted, else removed."""
    found = devices.findall(path)
    if want and not found:
        element = build()
        _append_device(devices, element, element.tag)
    elif not want:
        for element in found:
            devices.remove(element)


def _tpm(devices: etree._Element, want: bool) -> None:
    # A TPM with another backend (passthrough of the host's) is not ours: never removed.
    for tpm in devices.findall("tpm"):
        if tpm.find("backend[@type='emulator']") is not None and not want:
            devices.remove(tpm)
    if want and devices.find("tpm/backend[@type='emulator']") is None:
        _append_device(devices, xml.tpm_element(), "tpm")


def _channel(devices: etree._Element, name: str, want: bool) -> None:
    build = xml.agent_channel if name == xml.AGENT_CHANNEL else xml.spice_channel
    found = [c for c in devices.findall("channel") if c.find(f"target[@name='{name}']") is not None]
    if want and not found:
        _append_device(devices, build(), "channel")
    elif not want:
        for element in found:
            devices.remove(element)


def _video(devices: etree._Element, model: str) -> None:
    """The first video device gets a fresh ``<model>`` (qxl's memory sizes do not fit virtio)."""
    videos = devices.findall("video")
    if model == kinds.Video.NONE.value:
        # libvirt refuses a 'none' video next to any other.
        for video in videos:
            devices.remove(video)
        _append_device(devices, xml.video_element(model), "video")
        return
    if not videos:
        _append_device(devices, xml.video_element(model), "video")
        return
    first = videos[0]
    fresh = etree.Element("model", type=model)
    current = first.find("model")
    if current is not None:
        current.addprevious(fresh)
        first.remove(current)
    else:
        first.insert(0, fresh)


def _hyperv(root: etree._Element, want: bool) -> None:
    features = _child(
        root,
        "features",
        after=("name", "uuid", "metadata", "memory", "currentMemory", "vcpu", "os"),
    )
    for element in features.findall("hyperv"):
        features.remove(element)
    if want:
        features.append(xml.hyperv_element())


def _cdroms(
    devices: etree._Element,
    cdroms: tuple[observed.CdromShape, ...],
    pools: Mapping[str, str],
    *,
    seeds: bool = False,
) -> None:
    """Cdroms holding pool volumes, matched by volume; empty drives and other files stay.

    Seed ISOs (``seeds``) and the other cdroms are two fields: each leaves the other be.
    """
    wanted = list(cdroms)
    for disk in devices.findall("disk"):
        shape = projection.cdrom_shape(disk, pools)
        if shape is None or seeds_module.is_seed(shape.volume) is not seeds:
            continue
        if shape in wanted:
            wanted.remove(shape)
        else:
            devices.remove(disk)
    taken = {t.get("dev", "") for t in devices.iterfind("disk/target")}
    for cdrom in wanted:
        _append_device(devices, xml.cdrom_element(cdrom, xml.sata_dev(taken)), "disk")


def _boot(os_element: etree._Element, devices: etree._Element, boot: tuple[str, ...]) -> None:
    """``<os><boot>`` in order; per-device boot orders go, libvirt refuses both at once."""
    for element in os_element.findall("boot"):
        os_element.remove(element)
    for device in devices:
        for element in device.findall("boot") if isinstance(device.tag, str) else ():
            device.remove(element)
    anchors = [c for c in os_element if c.tag in ("type", "firmware", "loader", "nvram")]
    for element in reversed(xml.boot_elements(boot)):
        if anchors:
            anchors[-1].addnext(element)
        else:
            os_element.append(element)


def _host_devices(devices: etree._Element, wanted: tuple[str, ...]) -> None:
    """PCI host devices by address; USB and other host devices are not modelled and stay."""
    missing = list(wanted)
    for hostdev in devices.findall("hostdev"):
        address = projection.pci_address(hostdev)
        if address is None:
            continue
        if address in missing:
            missing.remove(address)
        else:
            devices.remove(hostdev)
    for address in missing:
        _append_device(devices, xml.hostdev_element(address), "hostdev")


def _guest_hardware(
    root: etree._Element,
    os_element: etree._Element,
    devices: etree._Element,
    was: observed.VmShape,
    shape: observed.VmShape,
    pools: Mapping[str, str],
) -> None:
    if shape.cpu_mode and was.cpu_mode != shape.cpu_mode:
        _cpu(root, shape.cpu_mode)
    if shape.hyperv is not None and was.hyperv != shape.hyperv:
        _hyperv(root, shape.hyperv)
    if shape.tpm is not None and was.tpm != shape.tpm:
        _tpm(devices, shape.tpm)
    if shape.guest_agent is not None and was.guest_agent != shape.guest_agent:
        _channel(devices, xml.AGENT_CHANNEL, shape.guest_agent)
    spice = shape.graphics_type is kinds.GraphicsType.SPICE
    if shape.spice_agent is not None and was.spice_agent != (shape.spice_agent and spice):
        _channel(devices, xml.SPICE_CHANNEL, shape.spice_agent and spice)
    if shape.tablet is not None and was.tablet != shape.tablet:
        _present(devices, "input[@type='tablet']", shape.tablet, xml.tablet_element)
    if shape.video is not None and was.video != shape.video:
        _video(devices, shape.video)
    if shape.cdroms is not None and was.cdroms != shape.cdroms:
        _cdroms(devices, shape.cdroms, pools)
    if shape.seeds is not None and was.seeds != shape.seeds:
        _cdroms(devices, shape.seeds, pools, seeds=True)
    if shape.boot is not None and was.boot != shape.boot:
        _boot(os_element, devices, shape.boot)
    if shape.host_devices is not None and was.host_devices != shape.host_devices:
        _host_devices(devices, shape.host_devices)


def _volumes(disks: Iterable[observed.DiskShape]) -> list[tuple[str, str]]:
    """What identifies disks in XML (their names are the manifest's, never written)."""
    return [(d.pool, d.volume) for d in disks]


def patch_domain(
    current: str,
    shape: observed.VmShape,
    *,
    owner: observed.Ownership,
    pools: Mapping[str, str] | None = None,
    name: str | None = None,
    graphics_password: str | None = None,
) -> str:
    """``current`` (a domain's inactive XML) with the owned fields of ``shape`` written in.

    ``pools`` maps pool directories to pool names, as for
    :func:`reconciler.hypervisor.projection.parse_domain`. Autostart is not XML.
    ``name`` is the libvirt name (:mod:`reconciler.models.naming`), by default
    the owner's resource name.
    ``current`` must be read with ``VIR_DOMAIN_XML_SECURE``, so that a display
    password survives; ``graphics_password`` is the one to set when the shape
    wants one and the display has none.
    """
    pools = pools or {}
    root = projection.tree(current)
    was_named = root.findtext("name", "")
    _, _, was, _ = projection.parse_domain(current, autostart=shape.autostart, pools=pools)
    if was_named != (name or owner.name):
        _child(root, "name").text = name or owner.name
    _managed(root, owner)
    if was.memory != shape.memory:
        _memory(root, shape.memory)
    if was.cpus != shape.cpus:
        _vcpu(root, shape.cpus)
    os_element = _child(root, "os", after=("name", "uuid", "metadata", "memory", "vcpu"))
    if was.firmware != shape.firmware:
        _firmware(os_element, shape.firmware)
    if was.machine != shape.machine:
        _machine(root, os_element, shape.machine)
    devices = _child(root, "devices", after=tuple(c.tag for c in root if isinstance(c.tag, str)))
    if (was.graphics_type, was.graphics_listen) != (shape.graphics_type, shape.graphics_listen):
        _graphics(devices, shape.graphics_type, shape.graphics_listen)
    password = was.graphics_password if shape.graphics_password is None else shape.graphics_password
    if (was.graphics_type, was.graphics_password) != (shape.graphics_type, password):
        _password(devices, bool(password), graphics_password)
    if _volumes(d for d in was.disks if d.modelled) != _volumes(shape.disks):
        _disks(devices, was_named, shape.disks, pools)
    if tuple(n for n in was.nics if n.modelled) != shape.nics:
        _nics(devices, shape.nics)
    _, _, now, _ = projection.parse_domain(_serialize(root), autostart=shape.autostart, pools=pools)
    _guest_hardware(root, os_element, devices, now, shape, pools)
    return _serialize(root)


# --- networks -----------------------------------------------------------------------


def _forward(root: etree._Element, mode: kinds.NetworkMode) -> None:
    forward = root.find("forward")
    if mode is kinds.NetworkMode.ISOLATED:
        if forward is not None:
            root.remove(forward)
        return
    if forward is None:
        forward = _child(root, "forward", after=("name", "uuid", "metadata"))
    forward.set("mode", mode.value)
    if mode is not kinds.NetworkMode.NAT:
        for nat in forward.findall("nat"):
            forward.remove(nat)


def _ipv4(root: etree._Element) -> etree._Element | None:
    return next((ip for ip in root.findall("ip") if ip.get("family", "ipv4") == "ipv4"), None)


def _address(root: etree._Element, address: str | None) -> None:
    ip = _ipv4(root)
    if address is None:
        if ip is not None:
            root.remove(ip)
        return
    interface = ipaddress.IPv4Interface(address)
    if ip is None:
        ip = etree.Element("ip")
        anchors = root.findall("ip")
        if anchors:
            anchors[0].addprevious(ip)
        else:
            root.append(ip)
    ip.set("address", str(interface.ip))
    if "netmask" in ip.attrib:
        del ip.attrib["netmask"]
    ip.set("prefix", str(interface.network.prefixlen))


def _dhcp(
    root: etree._Element,
    dhcp_range: tuple[str, str] | None,
    hosts: tuple[observed.StaticLease, ...],
) -> None:
    ip = _ipv4(root)
    if ip is None:
        return
    dhcp = ip.find("dhcp")
    if dhcp_range is None and not hosts:
        if dhcp is not None:
            ip.remove(dhcp)
        return
    if dhcp is None:
        dhcp = etree.SubElement(ip, "dhcp")
    first = dhcp.find("range")
    if dhcp_range is None:
        if first is not None:
            dhcp.remove(first)
    else:
        if first is None:
            first = etree.Element("range")
            dhcp.insert(0, first)
        first.set("start", dhcp_range[0])
        first.set("end", dhcp_range[1])  # a <lease> inside the range stays
    existing = {h.get("mac", "").lower(): h for h in dhcp.findall("host")}
    for host in hosts:
        element = existing.pop(host.mac, None)
        if element is None:
            element = etree.SubElement(dhcp, "host", mac=host.mac)
        element.set("ip", host.ip)
        if host.name is not None:
            element.set("name", host.name)
        elif "name" in element.attrib:
            del element.attrib["name"]
    for stale in existing.values():
        dhcp.remove(stale)


def patch_network(
    current: str,
    shape: observed.NetworkShape,
    *,
    owner: observed.Ownership,
    name: str | None = None,
) -> str:
    """``current`` (a network's inactive XML) with the owned fields of ``shape`` written in.

    IPv6 addresses, DNS records, lease times, forward devices, NAT port ranges
    and the bridge's MAC are not owned and stay as they are. ``name`` is the
    libvirt name, by default the owner's resource name.
    """
    root = projection.tree(current)
    _, _, was = projection.parse_network(current, autostart=shape.autostart)
    if root.findtext("name", "") != (name or owner.name):
        _child(root, "name").text = name or owner.name
    _managed(root, owner)
    if was.mode != shape.mode:
        _forward(root, shape.mode)
    if was.bridge != shape.bridge:
        _child(root, "bridge", after=("name", "uuid", "metadata", "forward")).set(
            "name", shape.bridge
        )
    if was.mtu != shape.mtu:
        mtu = root.find("mtu")
        if shape.mtu is None:
            if mtu is not None:
                root.remove(mtu)
        else:
            _child(root, "mtu", after=("name", "uuid", "metadata", "forward", "bridge")).set(
                "size", str(shape.mtu)
            )
    if was.domain != shape.domain:
        domain = root.find("domain")
        if shape.domain is None:
            if domain is not None:
                root.remove(domain)
        else:
            if domain is None:
                domain = _child(
                    root,
                    "domain",
                    after=("name", "uuid", "metadata", "forward", "bridge", "mac", "mtu"),
                )
                domain.set("localOnly", "yes")
            domain.set("name", shape.domain)
    if was.address != shape.address:
        _address(root, shape.address)
    if (was.dhcp, was.hosts) != (shape.dhcp, shape.hosts) or was.address != shape.address:
        _dhcp(root, shape.dhcp, shape.hosts)
    return _serialize(root)


# --- pools --------------------------------------------------------------------------


def patch_pool(current: str, shape: observed.PoolShape) -> str:
    """``current`` (a pool's XML) pointed at ``shape.path``; permissions and the rest stay."""
    root = projection.tree(current)
    target = _child(
        root, "target", after=("name", "uuid", "capacity", "allocation", "available", "source")
    )
    _child(target, "path").text = shape.path
    return _serialize(root)
