"""Patching owned fields never changes an element the schema does not model.

The documents in ``tests/data/domains`` are virt-install 4.1's output for several
configurations as libvirt hands them back (``tests/data/regenerate-libvirt.sh``):
host-passthrough CPU, TPM, spice with channels and USB redirection, UEFI with
secure boot, a vCPU maximum, two NICs on one network next to a bridge NIC, file
disks on sata and ide buses. Hypothesis mutates the owned fields of each; the
patched document must project onto the new shape, and every other element must
be the same, element by element (compared in canonical form).
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from lxml import etree

from reconciler.hypervisor import nwfilters, patch, projection, xml
from reconciler.models import kinds, observed

DATA = Path(__file__).parent.parent / "data"
DOMAINS = {p.stem: p.read_text() for p in sorted((DATA / "domains").glob("*.xml"))}
NETWORK = (DATA / "networks" / "vi-lab.xml").read_text()
IMAGES = "/var/lib/libvirt/images"
POOLS = {IMAGES: "images", "/srv/fast": "fast"}
MANAGED = f"{{{xml.NS}}}managed"


def owner(name: str, kind: str = "VirtualMachine") -> observed.Ownership:
    return observed.Ownership(
        kind=kind, name=name, installation="inst-1", spec_hash="0123456789abcdef"
    )


def shape_of(document: str) -> observed.VmShape:
    shape = projection.parse_domain(document, autostart=False, pools=POOLS)[2]
    return dataclasses.replace(
        shape,
        disks=tuple(d for d in shape.disks if d.modelled),
        nics=tuple(n for n in shape.nics if n.modelled),
    )


GUEST_FIELDS = (
    "cpu_mode",
    "tpm",
    "guest_agent",
    "spice_agent",
    "tablet",
    "video",
    "hyperv",
    "cdroms",
    "boot",
    "host_devices",
)


def owned(shape: observed.VmShape, like: observed.VmShape | None = None) -> observed.VmShape:
    """The shape as XML holds it: disks by pool and volume (their names are not written).

    With ``like``, only the guest hardware ``like`` owns (not ``None``) is kept; the
    spice agent exists only with spice graphics.
    """
    shape = dataclasses.replace(
        shape, disks=tuple(dataclasses.replace(d, name="") for d in shape.disks)
    )
    if like is not None:
        unset: dict[str, Any] = {
            f: None for f in (*GUEST_FIELDS, "graphics_password") if getattr(like, f) is None
        }
        shape = dataclasses.replace(shape, **unset)
    if shape.spice_agent is not None:
        spice = shape.graphics_type is kinds.GraphicsType.SPICE
        shape = dataclasses.replace(shape, spice_agent=shape.spice_agent and spice)
    return shape


def canonical(element: etree._Element) -> bytes:
    return etree.tostring(element, method="c14n")


def _owned_device(device: etree._Element) -> bool:
    """A device the schema owns; the guest hardware only where a shape sets it."""
    if device.tag == "tpm":
        return device.find("backend[@type='emulator']") is not None
    if device.tag == "channel":
        names = (xml.AGENT_CHANNEL, xml.SPICE_CHANNEL)
        return any(t.get("name") in names for t in device.findall("target"))
    if device.tag == "input":
        return device.get("type") == "tablet"
    if device.tag == "video":
        return True
    if device.tag == "hostdev":
        return projection.pci_address(device) is not None
    if device.tag == "disk" and projection.cdrom_shape(device, POOLS) is not None:
        return True
    if device.tag == "interface":
        return device.get("type") == "network"
    if device.tag == "graphics":
        return device.get("type") in ("vnc", "spice")
    if device.tag == "disk":
        shape = projection.disk_shape("", device, POOLS)
        return shape is not None and shape.modelled
    return False


def _strip_bus_layout(root: etree._Element) -> None:
    """What a machine change may redo: PCI addresses and controllers, IDE moved to SATA."""
    for address in root.iterfind(".//devices//address[@type='pci']"):
        address.getparent().remove(address)  # type: ignore[union-attr]
    for controller in root.findall("devices/controller"):
        if controller.get("type") in ("pci", "ide"):
            root.find("devices").remove(controller)  # type: ignore[union-attr]
    for disk in root.findall("devices/disk"):
        for part in disk.findall("target") + disk.findall("address[@type='drive']"):
            disk.remove(part)


_SPICE_ONLY = ("channel", "spicevmc"), ("redirdev", "spicevmc"), ("audio", "spice")


def _strip_spice(root: etree._Element) -> None:
    """What leaving spice graphics drops: the devices that only work through spice."""
    devices = root.find("devices")
    for tag, kind in _SPICE_ONLY:
        for device in devices.findall(f"{tag}[@type='{kind}']") if devices is not None else ():
            devices.remove(device)  # type: ignore[union-attr]


_OWNED_TOP = {"name", "memory", "currentMemory", "vcpu", "cpu"}
_OWNED_OS = {"type", "loader", "nvram", "firmware", "boot"}


def unowned(
    document: str, *, machine_changed: bool = False, spice_left: bool = False
) -> list[tuple[str, bytes]]:
    """Every element the schema does not own, as (where, canonical form), in document order.

    ``machine_changed`` and ``spice_left`` leave out what those owned changes must
    redo (see :mod:`reconciler.hypervisor.patch`).
    """
    root = etree.fromstring(document.encode())
    if machine_changed:
        _strip_bus_layout(root)
    if spice_left:
        _strip_spice(root)
    found: list[tuple[str, bytes]] = [("domain@", repr(sorted(root.attrib.items())).encode())]
    for child in root:
        if not isinstance(child.tag, str) or child.tag in _OWNED_TOP:
            continue
        if child.tag == "metadata":
            found += [("metadata", canonical(m)) for m in child if m.tag != MANAGED]
        elif child.tag == "os":
            found += [("os", canonical(c)) for c in child if c.tag not in _OWNED_OS]
        elif child.tag == "features":
            found += [("features", canonical(c)) for c in child if c.tag != "hyperv"]
        elif child.tag == "devices":
            found += [
                (f"devices/{d.tag}", canonical(d))
                for d in child
                if isinstance(d.tag, str) and not _owned_device(d)
            ]
        else:
            found.append((child.tag, canonical(child)))
    return found


def kept_parts(
    original: str, patched: str, shape: observed.VmShape, *, machine_changed: bool
) -> None:
    """Owned devices the shape keeps are untouched: the same disk or NIC, bus and model too.

    A NIC moved to another network keeps its model, address and everything but
    its source.
    """
    before = etree.fromstring(original.encode())
    after = etree.fromstring(patched.encode())
    if machine_changed:
        _strip_bus_layout(before)
        _strip_bus_layout(after)

    def disks(root: etree._Element) -> dict[tuple[str, str], bytes]:
        found = {}
        for element in root.iterfind("devices/disk"):
            disk = projection.disk_shape("", element, POOLS)
            if disk is not None and disk.modelled:
                found[(disk.pool, disk.volume)] = canonical(element)
        return found

    def nics(root: etree._Element) -> dict[str, etree._Element]:
        return {
            (i.find("mac").get("address") or "").lower(): i  # type: ignore[union-attr]
            for i in root.iterfind("devices/interface[@type='network']")
        }

    kept = disks(after)
    for volume, element in disks(before).items():
        if volume in {(d.pool, d.volume) for d in shape.disks}:
            assert kept[volume] == element
    now = nics(after)
    for mac, interface in nics(before).items():
        if mac not in now:
            continue
        twin = now[mac]
        # The filterref is owned too: it matches the shape, and the rest stays as it was.
        wanted = next(n.filter for n in shape.nics if n.mac == mac)
        reference = twin.find("filterref")
        assert (nwfilters.project_reference(reference) if reference is not None else None) == (
            wanted
        )
        was = interface.find("filterref")
        if was is not None and reference is not None:
            assert list(interface).index(was) == list(twin).index(reference)  # in its place
        children = [c for c in interface if c.tag != "filterref"]
        others = [c for c in twin if c.tag != "filterref"]
        for child, other in zip(children, others, strict=True):
            if child.tag != "source":
                assert canonical(child) == canonical(other)


names = st.from_regex(r"\A[a-z][a-z0-9]{0,6}\Z")
filter_refs = st.builds(
    observed.FilterRef,
    filter=st.sampled_from(["ib-vm-web", "ib-policy-base", "clean-traffic"]),
    parameters=st.sampled_from(
        [(), (("MAC", "52:54:00:11:22:33"),), (("IP", "10.0.0.5"), ("MAC", "52:54:00:11:22:33"))]
    ),
)
new_macs = st.integers(0x100, 0xFFFF).map(lambda n: f"52:54:00:99:{n >> 8:02x}:{n & 0xFF:02x}")


@st.composite
def mutations(draw: st.DrawFn, current: observed.VmShape) -> observed.VmShape:
    """A shape whose owned fields are drawn around ``current``."""
    disks = list(current.disks)
    disks = [d for d in disks if draw(st.booleans()) or len(disks) == 1]
    if draw(st.booleans()):
        disks = draw(st.permutations(disks))
    for _ in range(draw(st.integers(0, 2))):
        volume = draw(names)
        pool = draw(st.sampled_from(["images", "fast"]))
        if all((d.pool, d.volume) != (pool, f"{volume}.qcow2") for d in disks):
            disks.append(observed.DiskShape(name=volume, pool=pool, volume=f"{volume}.qcow2"))
    nics = [n for n in current.nics if draw(st.booleans())]
    nics = [
        dataclasses.replace(n, network=draw(st.sampled_from(["default", "lab"])))
        if draw(st.booleans())
        else n
        for n in nics
    ]
    nics = [
        dataclasses.replace(n, filter=draw(st.none() | filter_refs)) if draw(st.booleans()) else n
        for n in nics
    ]
    for mac in draw(st.lists(new_macs, max_size=2, unique=True)):
        nics.append(
            observed.NicShape(
                network=draw(st.sampled_from(["default", "lab"])),
                mac=mac,
                filter=draw(st.none() | filter_refs),
            )
        )
    graphics = draw(st.sampled_from(list(kinds.GraphicsType)))
    listen = (
        ""
        if graphics is kinds.GraphicsType.NONE
        else draw(st.sampled_from(["127.0.0.1", "0.0.0.0", current.graphics_listen or "::1"]))
    )
    return dataclasses.replace(
        current,
        **draw(guest_hardware()),
        cpus=draw(st.integers(1, 8)),
        memory=draw(st.integers(16, 4096)) << 20,
        firmware=draw(st.sampled_from(list(kinds.Firmware))),
        machine=draw(st.sampled_from(list(kinds.Machine))),
        graphics_type=draw(st.just(graphics)),
        graphics_listen=listen,
        disks=tuple(disks),
        nics=tuple(nics),
        graphics_password=(
            False
            if graphics is kinds.GraphicsType.NONE
            else draw(st.sampled_from([None, False, True]))
        ),
    )


ISOS = [observed.CdromShape("images", "a.iso"), observed.CdromShape("fast", "b.iso")]


@st.composite
def guest_hardware(draw: st.DrawFn) -> dict[str, Any]:
    """Guest hardware fields, each owned (a value) or not (``None``)."""

    def maybe(values: st.SearchStrategy[object]) -> object:
        return draw(st.none() | values)

    return {
        "cpu_mode": maybe(st.sampled_from([m.value for m in kinds.CpuMode])),
        "tpm": maybe(st.booleans()),
        "guest_agent": maybe(st.booleans()),
        "spice_agent": maybe(st.booleans()),
        "tablet": maybe(st.booleans()),
        "video": maybe(st.sampled_from([v.value for v in kinds.Video])),
        "hyperv": maybe(st.booleans()),
        "cdroms": maybe(st.lists(st.sampled_from(ISOS), unique=True).map(tuple)),
        "boot": maybe(
            st.lists(st.sampled_from(["disk", "cdrom", "network"]), unique=True, min_size=1).map(
                tuple
            )
        ),
        "host_devices": maybe(
            st.lists(st.sampled_from(["0000:01:00.0", "0000:02:00.1"]), unique=True).map(tuple)
        ),
    }


def with_filterrefs(document: str, chosen: list[observed.FilterRef | None]) -> str:
    """``document`` with a ``<filterref>`` at the end of each interface ``chosen`` gives one."""
    root = etree.fromstring(document.encode())
    for interface, reference in zip(root.iterfind("devices/interface"), chosen, strict=False):
        if reference is not None:
            interface.append(nwfilters.render_reference(reference))
    return etree.tostring(root, encoding="unicode")


@st.composite
def cases(draw: st.DrawFn) -> tuple[str, str, observed.VmShape]:
    name = draw(st.sampled_from(sorted(DOMAINS)))
    original = DOMAINS[name]
    if draw(st.booleans()):  # NICs that have a filterref already: kept, replaced or removed
        original = with_filterrefs(original, draw(st.lists(st.none() | filter_refs, max_size=4)))
    current = shape_of(original)
    target = draw(st.one_of(st.just(current), mutations(current)))
    return name, original, target


@settings(max_examples=300, deadline=None)
@given(case=cases())
def test_patching_owned_fields_never_changes_an_unowned_element(
    case: tuple[str, str, observed.VmShape],
) -> None:
    name, original, target = case
    before = shape_of(original)

    patched = patch.patch_domain(
        original, target, owner=owner(name), pools=POOLS, graphics_password="Fr3shPw0"
    )

    after = shape_of(patched)
    assert owned(after, target) == owned(target, target)
    for field in GUEST_FIELDS:  # what the target leaves unset stays as it was
        if getattr(target, field) is None and field != "spice_agent":
            assert getattr(after, field) == getattr(before, field), field
    changed = {
        "machine_changed": before.machine != target.machine,
        "spice_left": before.graphics_type is kinds.GraphicsType.SPICE
        and target.graphics_type is not kinds.GraphicsType.SPICE,
    }
    assert unowned(patched, **changed) == unowned(original, **changed)
    machine_changed = changed["machine_changed"]
    kept_parts(original, patched, target, machine_changed=machine_changed)
    managed = etree.fromstring(patched.encode()).find(f"metadata/{MANAGED}")
    assert managed is not None and managed.get("installation") == "inst-1"


@pytest.mark.parametrize("name", sorted(DOMAINS))
def test_a_domain_that_matches_its_shape_only_gains_our_metadata(name: str) -> None:
    original = DOMAINS[name]

    patched = patch.patch_domain(original, shape_of(original), owner=owner(name), pools=POOLS)

    root = etree.fromstring(patched.encode())
    metadata = root.find("metadata")
    managed = root.find(f"metadata/{MANAGED}")
    assert metadata is not None and managed is not None
    metadata.remove(managed)
    if etree.fromstring(original.encode()).find("metadata") is None:
        assert len(metadata) == 0
        root.remove(metadata)
    assert canonical(root) == canonical(etree.fromstring(original.encode()))


def test_a_memory_change_keeps_the_tpm_rng_cpu_mode_and_channels() -> None:
    original = DOMAINS["vi-passthrough"]
    target = dataclasses.replace(shape_of(original), memory=256 << 20)

    patched = etree.fromstring(
        patch.patch_domain(original, target, owner=owner("vi-passthrough"), pools=POOLS).encode()
    )

    assert patched.findtext("memory") == str(256 * 1024)
    assert patched.findtext("currentMemory") == str(256 * 1024)
    assert patched.find("cpu").get("mode") == "host-passthrough"  # type: ignore[union-attr]
    assert patched.find("devices/rng") is not None
    assert patched.find("devices/channel/target[@name='org.qemu.guest_agent.0']") is not None
    assert patched.find("devices/disk/target").get("bus") == "virtio"  # type: ignore[union-attr]


def test_secure_boot_and_the_vcpu_maximum_are_kept_when_cpus_change() -> None:
    original = DOMAINS["vi-uefi-secboot"]
    current = shape_of(original)
    assert (current.firmware, current.cpus) == (kinds.Firmware.UEFI, 2)

    patched = etree.fromstring(
        patch.patch_domain(
            original,
            dataclasses.replace(current, cpus=3),
            owner=owner("vi-uefi-secboot"),
            pools=POOLS,
        ).encode()
    )

    vcpu = patched.find("vcpu")
    assert vcpu is not None and (vcpu.text, vcpu.get("current")) == ("4", "3")
    feature = patched.find("os/firmware/feature[@name='secure-boot']")
    assert feature is not None and feature.get("enabled") == "yes"
    assert patched.find("os/loader").get("secure") == "yes"  # type: ignore[union-attr]


def test_a_new_listen_address_keeps_the_spice_password_and_channels() -> None:
    original = DOMAINS["vi-spice-tpm"]
    target = dataclasses.replace(shape_of(original), graphics_listen="0.0.0.0")

    patched = etree.fromstring(
        patch.patch_domain(original, target, owner=owner("vi-spice-tpm"), pools=POOLS).encode()
    )

    graphics = patched.find("devices/graphics")
    assert graphics is not None
    assert (graphics.get("type"), graphics.get("passwd")) == ("spice", "s3cret")
    assert graphics.find("listen").get("address") == "0.0.0.0"  # type: ignore[union-attr]
    assert len(patched.findall("devices/redirdev")) == 2
    assert patched.find("devices/tpm/backend[@type='emulator']") is not None


def test_two_nics_on_one_network_are_told_apart_by_mac_and_keep_their_models() -> None:
    original = DOMAINS["vi-two-nics"]
    current = shape_of(original)
    assert [(n.network, n.mac) for n in current.nics] == [
        ("default", "52:54:00:10:00:04"),
        ("default", "52:54:00:10:00:05"),
    ]
    target = dataclasses.replace(current, nics=current.nics[1:])

    patched = etree.fromstring(
        patch.patch_domain(original, target, owner=owner("vi-two-nics"), pools=POOLS).encode()
    )

    interfaces = patched.findall("devices/interface")
    assert [(i.get("type"), i.find("mac").get("address")) for i in interfaces] == [  # type: ignore[union-attr]
        ("network", "52:54:00:10:00:05"),
        ("bridge", "52:54:00:10:00:06"),  # not modelled: never touched
    ]
    assert interfaces[0].find("model").get("type") == "virtio"  # type: ignore[union-attr]


def test_a_file_disk_inside_a_pool_directory_is_that_pools_volume_and_stays_a_file() -> None:
    original = DOMAINS["vi-uefi-secboot"]
    current = shape_of(original)
    assert current.disks == (
        observed.DiskShape(
            name="vi-uefi-secboot.qcow2", pool="images", volume="vi-uefi-secboot.qcow2"
        ),
    )
    replaced = dataclasses.replace(
        current,
        disks=(observed.DiskShape(name="vi-uefi-secboot.qcow2", pool="fast", volume="new.qcow2"),),
    )

    same = etree.fromstring(
        patch.patch_domain(original, current, owner=owner("x"), pools=POOLS).encode()
    )
    moved = etree.fromstring(
        patch.patch_domain(original, replaced, owner=owner("x"), pools=POOLS).encode()
    )

    assert same.find("devices/disk").get("type") == "file"  # type: ignore[union-attr]
    disk = moved.find("devices/disk")
    assert disk is not None and disk.get("type") == "volume"
    assert disk.find("source").attrib == {"pool": "fast", "volume": "new.qcow2"}  # type: ignore[union-attr]
    assert disk.find("target").attrib == {"dev": "sda", "bus": "sata"}  # type: ignore[union-attr]


def test_a_file_disk_outside_every_pool_is_not_modelled_and_never_removed() -> None:
    original = DOMAINS["vi-passthrough"]
    shape = projection.parse_domain(original, autostart=False)[2]  # no pools known
    assert not shape.disks[0].modelled
    target = dataclasses.replace(shape, disks=(), nics=())

    patched = patch.patch_domain(original, target, owner=owner("x"))

    sources = etree.fromstring(patched.encode()).findall("devices/disk/source")
    assert [s.get("file") for s in sources] == [f"{IMAGES}/vi-passthrough.qcow2"]


# --- what cannot be represented ---------------------------------------------------------


def test_unmodelled_parts_are_named_and_kept_or_refused() -> None:
    two_nics = projection.unmodelled_domain(DOMAINS["vi-two-nics"], POOLS)
    secboot = projection.unmodelled_domain(DOMAINS["vi-uefi-secboot"], POOLS)
    arm = DOMAINS["vi-passthrough"].replace("arch='x86_64'", "arch='aarch64'")
    xen = DOMAINS["vi-passthrough"].replace("<domain type='qemu'>", "<domain type='xen'>")
    network_disk = (
        DOMAINS["vi-passthrough"]
        .replace("<disk type='file' device='disk'>", "<disk type='network' device='disk'>")
        .replace(
            f"<source file='{IMAGES}/vi-passthrough.qcow2'/>",
            "<source protocol='nbd' name='export'><host name='127.0.0.1'/></source>",
        )
    )

    assert two_nics == (observed.Unmodelled("interface <bridge> 52:54:00:10:00:06", True),)
    assert secboot == (
        observed.Unmodelled("vcpu current 2 of maximum 4 (the maximum is kept)", True),
    )
    assert projection.unmodelled_domain(arm, POOLS) == (
        observed.Unmodelled("architecture 'aarch64' (x86_64 only)", False),
    )
    assert projection.unmodelled_domain(xen, POOLS) == (
        observed.Unmodelled("domain type 'xen' (kvm or qemu)", False),
    )
    assert projection.unmodelled_domain(network_disk, POOLS) == (
        observed.Unmodelled("disk vda (network: nbd export) in no storage pool", True),
    )
    assert projection.unmodelled_network(NETWORK) == ()
    open_mode = NETWORK.replace("<forward mode='nat'>", "<forward mode='open'>")
    assert projection.unmodelled_network(open_mode) == (
        observed.Unmodelled("forward mode 'open' (nat, route, bridge or none)", False),
    )


# --- networks and pools -------------------------------------------------------------------


def _network_unowned(document: str) -> list[bytes]:
    root = etree.fromstring(document.encode())
    found = [canonical(c) for c in root if c.tag in ("uuid", "mac", "dns")]
    found += [canonical(ip) for ip in root.findall("ip[@family='ipv6']")]
    found += [canonical(c) for c in root.iterfind("forward/nat")]
    found += [canonical(c) for c in root.iterfind("ip/dhcp/range/lease")]
    return found


@st.composite
def network_targets(draw: st.DrawFn) -> observed.NetworkShape:
    current = projection.parse_network(NETWORK, autostart=False)[2]
    third = draw(st.sampled_from([77, 78]))
    hosts = draw(
        st.lists(
            st.tuples(new_macs, st.integers(10, 60), st.none() | names),
            max_size=3,
            unique_by=lambda t: (t[0], t[1]),
        )
    )
    return dataclasses.replace(
        current,
        bridge=draw(st.sampled_from([current.bridge, "ib-lab"])),
        address=f"10.{third}.0.1/{draw(st.sampled_from([24, 16]))}",
        dhcp=draw(st.sampled_from([current.dhcp, (f"10.{third}.0.100", f"10.{third}.0.200")])),
        hosts=current.hosts
        if draw(st.booleans())
        else tuple(
            observed.StaticLease(mac=m, ip=f"10.{third}.0.{ip}", name=n) for m, ip, n in hosts
        ),
        domain=draw(st.sampled_from([current.domain, None, "other.internal"])),
        mtu=draw(st.sampled_from([current.mtu, 9000])),
    )


@settings(max_examples=150, deadline=None)
@given(target=network_targets())
def test_patching_a_network_keeps_ipv6_dns_lease_times_nat_ports_and_the_bridge_mac(
    target: observed.NetworkShape,
) -> None:
    patched = patch.patch_network(NETWORK, target, owner=owner("vi-lab", "Network"))

    assert projection.parse_network(patched, autostart=False)[2] == target
    assert _network_unowned(patched) == _network_unowned(NETWORK)
    bridge = etree.fromstring(patched.encode()).find("bridge")
    assert bridge is not None and (bridge.get("stp"), bridge.get("delay")) == ("on", "0")


def test_a_network_that_matches_only_gains_our_metadata() -> None:
    current = projection.parse_network(NETWORK, autostart=False)[2]

    root = etree.fromstring(patch.patch_network(NETWORK, current, owner=owner("vi-lab")).encode())

    metadata = root.find("metadata")
    assert metadata is not None and metadata.find(MANAGED) is not None
    root.remove(metadata)
    assert canonical(root) == canonical(etree.fromstring(NETWORK.encode()))


def test_a_pool_patch_moves_the_path_and_keeps_the_permissions() -> None:
    document = """<pool type='dir'><name>p</name><uuid>u-1</uuid>
      <target><path>/old</path><permissions><mode>0711</mode></permissions></target></pool>"""

    patched = patch.patch_pool(document, observed.PoolShape(path="/new", autostart=True))

    root = etree.fromstring(patched.encode())
    assert (root.findtext("target/path"), root.findtext("uuid")) == ("/new", "u-1")
    assert root.findtext("target/permissions/mode") == "0711"
