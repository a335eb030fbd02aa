"""Rendering and projection agree, and libvirt's rewrites of our XML project to the same shape.

``parse(render(shape)) == shape`` is the property that keeps plans empty right
after an apply; the hand-written documents below are what libvirt actually
hands back (expanded machine types, PCI addresses, aliases, controllers, NAT
port ranges, netmasks, explicit OVMF loaders, live ports and bridges), and
they must project onto the shape we rendered — the "no perpetual diffs"
guarantee of SPEC §2.
"""

from __future__ import annotations

import dataclasses
import string
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st
from lxml import etree

from reconciler.hypervisor import projection, xml
from reconciler.models import kinds, observed

OWNER = observed.Ownership(
    kind="VirtualMachine", name="web-1", installation="inst-1", spec_hash="0123456789abcdef"
)
NET_OWNER = dataclasses.replace(OWNER, kind="Network", name="lab")

labels = st.from_regex(r"\A[a-z0-9]([-a-z0-9]{0,10}[a-z0-9])?\Z")
pci_addresses = st.from_regex(r"\A[0-9a-f]{4}:[0-9a-f]{2}:[0-9a-f]{2}\.[0-7]\Z")
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


def without_guest_hardware(shape: observed.VmShape) -> observed.VmShape:
    """``shape`` with the guest hardware unset, for documents written before it existed."""
    unset: dict[str, Any] = dict.fromkeys(GUEST_FIELDS)
    return dataclasses.replace(shape, **unset)


macs = st.lists(st.integers(0, 255), min_size=3, max_size=3).map(
    lambda octets: "52:54:00:" + ":".join(f"{o:02x}" for o in octets)
)
listens = st.sampled_from(["127.0.0.1", "0.0.0.0", "192.168.122.1"])


def filter_refs(mac: str) -> st.SearchStrategy[observed.FilterRef]:
    """A NIC's filterref: a filter name, with the NIC's MAC and maybe an IP, sorted by name."""
    parameters = st.sampled_from([(), (("MAC", mac),), (("IP", "10.0.0.5"), ("MAC", mac))])
    return st.builds(observed.FilterRef, filter=labels, parameters=parameters)


@st.composite
def vm_shapes(draw: st.DrawFn) -> tuple[str, observed.VmShape]:
    name = draw(labels)
    graphics = draw(st.sampled_from(list(kinds.GraphicsType)))
    disk_names = draw(st.lists(labels, unique=True, max_size=3))
    networks = draw(st.lists(labels, unique=True, max_size=3))
    nic_macs = draw(st.lists(macs, unique=True, min_size=len(networks), max_size=len(networks)))
    shape = observed.VmShape(
        cpus=draw(st.integers(1, 8)),
        memory=draw(st.integers(16, 16384)) << 20,
        firmware=draw(st.sampled_from(list(kinds.Firmware))),
        machine=draw(st.sampled_from(list(kinds.Machine))),
        graphics_type=graphics,
        graphics_listen="" if graphics is kinds.GraphicsType.NONE else draw(listens),
        disks=tuple(
            observed.DiskShape(name=d, pool=draw(labels), volume=f"{name}-{d}.qcow2")
            for d in disk_names
        ),
        nics=tuple(
            observed.NicShape(network=n, mac=m, filter=draw(st.none() | filter_refs(m)))
            for n, m in zip(networks, nic_macs, strict=True)
        ),
        autostart=draw(st.booleans()),
        cpu_mode=draw(st.sampled_from(["", *(m.value for m in kinds.CpuMode)])),
        tpm=draw(st.booleans()),
        guest_agent=draw(st.booleans()),
        spice_agent=draw(st.booleans()),
        tablet=draw(st.booleans()),
        video=draw(st.sampled_from([v.value for v in kinds.Video])),
        hyperv=draw(st.booleans()),
        cdroms=tuple(
            observed.CdromShape(pool=draw(labels), volume=f"{c}.iso")
            for c in draw(st.lists(labels, unique=True, max_size=2))
        ),
        boot=tuple(draw(st.lists(st.sampled_from(["disk", "cdrom", "network"]), unique=True))),
        host_devices=tuple(draw(st.lists(pci_addresses, unique=True, max_size=2))),
    )
    if not shape.boot:
        shape = dataclasses.replace(shape, boot=("disk",))  # rendered as the default
    return name, shape


@st.composite
def network_shapes(draw: st.DrawFn) -> observed.NetworkShape:
    mode = draw(st.sampled_from(list(kinds.NetworkMode)))
    address = dhcp = None
    hosts: tuple[observed.StaticLease, ...] = ()
    if mode is not kinds.NetworkMode.BRIDGE and draw(st.booleans()):
        third = draw(st.integers(0, 255))
        prefix = draw(st.sampled_from([16, 24]))
        address = f"10.{third}.0.1/{prefix}"
        if draw(st.booleans()):
            dhcp = (f"10.{third}.0.100", f"10.{third}.0.{draw(st.integers(100, 254))}")
        hosts = tuple(
            observed.StaticLease(mac=mac, ip=f"10.{third}.0.{10 + index}", name=host)
            for index, (mac, host) in enumerate(
                draw(
                    st.lists(
                        st.tuples(macs, st.none() | labels), max_size=2, unique_by=lambda t: t[0]
                    )
                )
            )
        )
    return observed.NetworkShape(
        mode=mode,
        bridge=draw(st.from_regex(r"\A[a-z][a-z0-9-]{0,14}\Z")),
        address=address,
        dhcp=dhcp,
        hosts=hosts,
        domain=draw(st.none() | labels.map(lambda d: f"{d}.internal")),
        mtu=draw(st.none() | st.integers(576, 9000)),
        autostart=draw(st.booleans()),
    )


# --- round trips --------------------------------------------------------------------


@settings(max_examples=150, deadline=None)
@given(vm=vm_shapes(), uuid=st.none() | st.uuids().map(str))
def test_a_rendered_domain_projects_back_onto_its_shape_and_owner(
    vm: tuple[str, observed.VmShape], uuid: str | None
) -> None:
    name, shape = vm
    document = xml.render_domain(name, shape, domain_type="kvm", owner=OWNER, uuid=uuid)

    parsed_uuid, owner, parsed, port = projection.parse_domain(document, autostart=shape.autostart)

    assert parsed == shape
    assert owner == OWNER
    assert parsed_uuid == (uuid or "")
    assert port is None


@settings(max_examples=150, deadline=None)
@given(shape=network_shapes())
def test_a_rendered_network_projects_back_onto_its_shape_and_owner(
    shape: observed.NetworkShape,
) -> None:
    document = xml.render_network("lab", shape, owner=NET_OWNER)

    _, owner, parsed = projection.parse_network(document, autostart=shape.autostart)

    assert parsed == shape
    assert owner == NET_OWNER


@given(
    path=st.lists(labels, min_size=1, max_size=4).map(lambda parts: "/" + "/".join(parts)),
    autostart=st.booleans(),
)
def test_a_rendered_pool_projects_back_onto_its_shape(path: str, autostart: bool) -> None:
    shape = observed.PoolShape(path=path, autostart=autostart)

    uuid, parsed = projection.parse_pool(xml.render_pool("default", shape), autostart=autostart)

    assert parsed == shape
    assert uuid == ""


def test_a_rendered_volume_keeps_its_capacity_and_backing_file() -> None:
    document = xml.render_volume(
        "web-1-root.qcow2", 20 << 30, backing_path="/pools/default/golden.qcow2"
    )

    volume = projection.parse_volume(document, "default")

    assert (volume.pool, volume.name, volume.capacity, volume.backing) == (
        "default",
        "web-1-root.qcow2",
        20 << 30,
        "/pools/default/golden.qcow2",
    )
    assert etree.fromstring(document).find("backingStore/format").get("type") == "qcow2"  # type: ignore[union-attr]


# --- what libvirt hands back ------------------------------------------------------------

WEB_1 = observed.VmShape(
    cpus=2,
    memory=2 << 30,
    firmware=kinds.Firmware.UEFI,
    machine=kinds.Machine.Q35,
    graphics_type=kinds.GraphicsType.VNC,
    graphics_listen="127.0.0.1",
    disks=(
        observed.DiskShape(name="root", pool="default", volume="web-1-root.qcow2"),
        observed.DiskShape(name="data", pool="fast", volume="web-1-data.qcow2"),
    ),
    nics=(observed.NicShape(network="lab", mac="52:54:00:12:34:56"),),
    autostart=True,
)

_DOMAIN_HEAD = """
  <name>web-1</name>
  <uuid>4dea22b3-1d52-d8f3-2516-782e98ab3fa0</uuid>
  <metadata>
    <libosinfo:libosinfo xmlns:libosinfo="http://libosinfo.org/xmlns/libvirt/domain/1.0">
      <libosinfo:os id="http://ubuntu.com/ubuntu/22.04"/>
    </libosinfo:libosinfo>
    <ib:managed xmlns:ib="https://infinibay.io/ns/reconciler/1" kind="VirtualMachine"
        name="web-1" installation="inst-1" spec-hash="0123456789abcdef"/>
  </metadata>
  <memory unit='KiB'>2097152</memory>
  <currentMemory unit='KiB'>2097152</currentMemory>
  <vcpu placement='static'>2</vcpu>
  <resource><partition>/machine</partition></resource>
  <os>
    <type arch='x86_64' machine='pc-q35-7.2'>hvm</type>
    <loader readonly='yes' type='pflash'>/usr/share/OVMF/OVMF_CODE_4M.fd</loader>
    <nvram template='/usr/share/OVMF/OVMF_VARS_4M.fd'
      >/var/lib/libvirt/qemu/nvram/web-1_VARS.fd</nvram>
    <boot dev='hd'/>
  </os>
  <features><acpi/><apic/><vmport state='off'/></features>
  <cpu mode='custom' match='exact' check='none'><model fallback='forbid'>qemu64</model></cpu>
  <clock offset='utc'><timer name='rtc' tickpolicy='catchup'/></clock>
  <on_poweroff>destroy</on_poweroff>
  <on_reboot>restart</on_reboot>
  <on_crash>destroy</on_crash>
"""

DOMAIN_INACTIVE = f"""<domain type='kvm'>{_DOMAIN_HEAD}
  <devices>
    <emulator>/usr/bin/qemu-system-x86_64</emulator>
    <disk type='volume' device='disk'>
      <driver name='qemu' type='qcow2' cache='writeback' discard='unmap'/>
      <source pool='default' volume='web-1-root.qcow2'/>
      <target dev='vda' bus='virtio'/>
      <address type='pci' domain='0x0000' bus='0x04' slot='0x00' function='0x0'/>
    </disk>
    <disk type='volume' device='disk'>
      <driver name='qemu' type='qcow2' cache='writeback' discard='unmap'/>
      <source pool='fast' volume='web-1-data.qcow2'/>
      <target dev='vdb' bus='virtio'/>
      <address type='pci' domain='0x0000' bus='0x05' slot='0x00' function='0x0'/>
    </disk>
    <disk type='file' device='cdrom'>
      <driver name='qemu' type='raw'/>
      <source file='/isos/ubuntu.iso'/>
      <target dev='sda' bus='sata'/>
      <readonly/>
    </disk>
    <controller type='usb' index='0' model='qemu-xhci' ports='15'>
      <address type='pci' domain='0x0000' bus='0x02' slot='0x00' function='0x0'/>
    </controller>
    <controller type='pci' index='0' model='pcie-root'/>
    <controller type='sata' index='0'>
      <address type='pci' domain='0x0000' bus='0x00' slot='0x1f' function='0x2'/>
    </controller>
    <interface type='network'>
      <mac address='52:54:00:12:34:56'/>
      <source network='lab'/>
      <model type='virtio'/>
      <address type='pci' domain='0x0000' bus='0x01' slot='0x00' function='0x0'/>
    </interface>
    <serial type='pty'>
      <target type='isa-serial' port='0'><model name='isa-serial'/></target>
    </serial>
    <console type='pty'><target type='serial' port='0'/></console>
    <input type='mouse' bus='ps2'/>
    <input type='keyboard' bus='ps2'/>
    <graphics type='vnc' port='-1' autoport='yes' listen='127.0.0.1'>
      <listen type='address' address='127.0.0.1'/>
    </graphics>
    <audio id='1' type='none'/>
    <video>
      <model type='vga' vram='16384' heads='1' primary='yes'/>
      <address type='pci' domain='0x0000' bus='0x00' slot='0x01' function='0x0'/>
    </video>
    <memballoon model='virtio'>
      <address type='pci' domain='0x0000' bus='0x03' slot='0x00' function='0x0'/>
    </memballoon>
  </devices>
</domain>
"""

DOMAIN_LIVE = f"""<domain type='kvm' id='7'>{_DOMAIN_HEAD}
  <devices>
    <emulator>/usr/bin/qemu-system-x86_64</emulator>
    <disk type='volume' device='disk'>
      <driver name='qemu' type='qcow2' cache='writeback' discard='unmap'/>
      <source pool='default' volume='web-1-root.qcow2' index='2'/>
      <backingStore/>
      <target dev='vda' bus='virtio'/>
      <alias name='virtio-disk0'/>
      <address type='pci' domain='0x0000' bus='0x04' slot='0x00' function='0x0'/>
    </disk>
    <disk type='volume' device='disk'>
      <driver name='qemu' type='qcow2' cache='writeback' discard='unmap'/>
      <source pool='fast' volume='web-1-data.qcow2' index='1'/>
      <backingStore/>
      <target dev='vdb' bus='virtio'/>
      <alias name='virtio-disk1'/>
      <address type='pci' domain='0x0000' bus='0x05' slot='0x00' function='0x0'/>
    </disk>
    <interface type='network'>
      <mac address='52:54:00:12:34:56'/>
      <source network='lab' portid='6b7e7a3c-44a4-4a43-a1a6-5b1c4a3f2d1e' bridge='virbr1'/>
      <target dev='vnet3'/>
      <model type='virtio'/>
      <alias name='net0'/>
      <address type='pci' domain='0x0000' bus='0x01' slot='0x00' function='0x0'/>
    </interface>
    <console type='pty' tty='/dev/pts/3'>
      <source path='/dev/pts/3'/>
      <target type='serial' port='0'/>
      <alias name='serial0'/>
    </console>
    <graphics type='vnc' port='5901' autoport='yes' listen='127.0.0.1'>
      <listen type='address' address='127.0.0.1'/>
    </graphics>
  </devices>
  <seclabel type='dynamic' model='apparmor' relabel='yes'>
    <label>libvirt-4dea22b3-1d52-d8f3-2516-782e98ab3fa0</label>
  </seclabel>
</domain>
"""


def test_libvirts_normalised_inactive_domain_projects_onto_the_rendered_shape() -> None:
    rendered = xml.render_domain("web-1", WEB_1, domain_type="kvm", owner=OWNER)
    _, _, ours, _ = projection.parse_domain(rendered, autostart=True)

    uuid, owner, theirs, port = projection.parse_domain(DOMAIN_INACTIVE, autostart=True)

    assert without_guest_hardware(theirs) == without_guest_hardware(ours) == WEB_1
    assert owner == OWNER
    assert uuid == "4dea22b3-1d52-d8f3-2516-782e98ab3fa0"
    assert port is None  # port='-1' means "not allocated yet"


def test_libvirts_live_domain_projects_onto_the_same_shape_and_reports_the_port() -> None:
    _, owner, live, port = projection.parse_domain(DOMAIN_LIVE, autostart=True)

    assert without_guest_hardware(live) == WEB_1
    assert owner == OWNER
    assert port == 5901


def test_a_firmware_attribute_kept_next_to_the_expanded_loader_is_still_uefi() -> None:
    document = DOMAIN_INACTIVE.replace("<os>", "<os firmware='efi'>")

    assert projection.parse_domain(document, autostart=True)[2].firmware is kinds.Firmware.UEFI


def test_an_i440fx_machine_without_loader_is_pc_and_bios() -> None:
    document = (
        DOMAIN_INACTIVE.replace("pc-q35-7.2", "pc-i440fx-7.2")
        .replace(
            "<loader readonly='yes' type='pflash'>/usr/share/OVMF/OVMF_CODE_4M.fd</loader>", ""
        )
        .replace("<nvram template='/usr/share/OVMF/OVMF_VARS_4M.fd'", "<!-- ")
        .replace("/var/lib/libvirt/qemu/nvram/web-1_VARS.fd</nvram>", " -->")
    )

    shape = projection.parse_domain(document, autostart=False)[2]

    assert (shape.machine, shape.firmware) == (kinds.Machine.PC, kinds.Firmware.BIOS)


def test_mac_addresses_written_in_upper_case_compare_equal() -> None:
    document = DOMAIN_INACTIVE.replace("52:54:00:12:34:56", "52:54:00:12:34:5E".upper())

    nics = projection.parse_domain(document, autostart=True)[2].nics

    assert nics == (observed.NicShape(network="lab", mac="52:54:00:12:34:5e"),)


def test_a_domain_someone_else_made_has_no_owner_and_file_disks_keep_their_path() -> None:
    document = """<domain type='kvm'><name>legacy</name><uuid>u-1</uuid>
      <memory unit='GiB'>1</memory><vcpu placement='static' current='1'>4</vcpu>
      <os><type arch='x86_64' machine='pc-q35-8.0'>hvm</type></os>
      <devices>
        <disk type='file' device='disk'><source file='/var/lib/libvirt/images/legacy.qcow2'/>
          <target dev='vda' bus='virtio'/></disk>
        <interface type='bridge'>
          <mac address='52:54:00:aa:bb:cc'/><source bridge='br0'/></interface>
        <graphics type='spice' autoport='yes' listen='0.0.0.0'/>
      </devices></domain>"""

    uuid, owner, shape, _ = projection.parse_domain(document, autostart=False)

    assert owner is None
    assert (uuid, shape.cpus, shape.memory) == ("u-1", 1, 1 << 30)
    assert shape.disks == (
        observed.DiskShape(
            name="/var/lib/libvirt/images/legacy.qcow2",
            pool="",
            volume="/var/lib/libvirt/images/legacy.qcow2",
        ),
    )
    assert shape.nics == (observed.NicShape(network="<bridge>", mac="52:54:00:aa:bb:cc"),)
    assert (shape.graphics_type, shape.graphics_listen) == (kinds.GraphicsType.SPICE, "0.0.0.0")


LAB = observed.NetworkShape(
    mode=kinds.NetworkMode.NAT,
    bridge="ib-lab",
    address="10.20.0.1/24",
    dhcp=("10.20.0.100", "10.20.0.200"),
    hosts=(observed.StaticLease(mac="52:54:00:00:00:10", ip="10.20.0.10", name="db-1"),),
    domain="lab.internal",
    mtu=1500,
    autostart=True,
)

NETWORK_NORMALISED = """<network>
  <name>lab</name>
  <uuid>0b6b0b66-2a8e-4b53-9d41-1f0a1d7c7e2a</uuid>
  <metadata>
    <ib:managed xmlns:ib="https://infinibay.io/ns/reconciler/1" kind="Network" name="lab"
        installation="inst-1" spec-hash="0123456789abcdef"/>
  </metadata>
  <forward mode='nat'>
    <nat>
      <port start='1024' end='65535'/>
    </nat>
  </forward>
  <bridge name='ib-lab' stp='on' delay='0'/>
  <mac address='52:54:00:5c:2e:91'/>
  <mtu size='1500'/>
  <domain name='lab.internal' localOnly='yes'/>
  <ip family='ipv6' address='fd00:20::1' prefix='64'/>
  <ip address='10.20.0.1' netmask='255.255.255.0'>
    <dhcp>
      <range start='10.20.0.100' end='10.20.0.200'/>
      <host mac='52:54:00:00:00:10' name='db-1' ip='10.20.0.10'/>
    </dhcp>
  </ip>
</network>
"""


def test_libvirts_normalised_network_projects_onto_the_rendered_shape() -> None:
    rendered = xml.render_network("lab", LAB, owner=NET_OWNER)
    ours = projection.parse_network(rendered, autostart=True)[2]

    uuid, owner, theirs = projection.parse_network(NETWORK_NORMALISED, autostart=True)

    assert theirs == ours == LAB
    assert owner == NET_OWNER
    assert uuid == "0b6b0b66-2a8e-4b53-9d41-1f0a1d7c7e2a"


def test_a_network_without_forward_is_isolated_and_a_host_bridge_network_is_bridge() -> None:
    isolated = "<network><name>x</name><bridge name='virbr9' stp='on' delay='0'/></network>"
    bridged = "<network><name>y</name><forward mode='bridge'/><bridge name='br0'/></network>"

    assert projection.parse_network(isolated, autostart=False)[2].mode is kinds.NetworkMode.ISOLATED
    shape = projection.parse_network(bridged, autostart=False)[2]
    assert (shape.mode, shape.bridge, shape.address) == (kinds.NetworkMode.BRIDGE, "br0", None)


POOL_NORMALISED = """<pool type='dir'>
  <name>default</name>
  <uuid>5f3c5c0a-7f38-4a79-a9b8-1f8b9d3b8a11</uuid>
  <capacity unit='bytes'>105089261568</capacity>
  <allocation unit='bytes'>21474836480</allocation>
  <available unit='bytes'>83614425088</available>
  <source>
  </source>
  <target>
    <path>/var/lib/infinibay/pools/default</path>
    <permissions>
      <mode>0711</mode>
      <owner>0</owner>
      <group>0</group>
    </permissions>
  </target>
</pool>
"""

VOLUME_NORMALISED = """<volume type='file'>
  <name>web-1-root.qcow2</name>
  <key>/var/lib/infinibay/pools/default/web-1-root.qcow2</key>
  <capacity unit='bytes'>21474836480</capacity>
  <allocation unit='bytes'>200704</allocation>
  <physical unit='bytes'>196928</physical>
  <target>
    <path>/var/lib/infinibay/pools/default/web-1-root.qcow2</path>
    <format type='qcow2'/>
    <permissions><mode>0600</mode><owner>0</owner><group>0</group></permissions>
    <compat>1.1</compat>
    <clusterSize unit='B'>65536</clusterSize>
  </target>
  <backingStore>
    <path>/var/lib/infinibay/pools/default/golden.qcow2</path>
    <format type='qcow2'/>
  </backingStore>
</volume>
"""


def test_libvirts_normalised_pool_and_volume_project_onto_the_owned_fields() -> None:
    shape = observed.PoolShape(path="/var/lib/infinibay/pools/default", autostart=True)
    rendered = projection.parse_pool(xml.render_pool("default", shape), autostart=True)[1]

    uuid, theirs = projection.parse_pool(POOL_NORMALISED, autostart=True)
    volume = projection.parse_volume(VOLUME_NORMALISED, "default")

    assert theirs == rendered == shape
    assert uuid == "5f3c5c0a-7f38-4a79-a9b8-1f8b9d3b8a11"
    assert volume == observed.ObservedVolume(
        pool="default",
        name="web-1-root.qcow2",
        path="/var/lib/infinibay/pools/default/web-1-root.qcow2",
        capacity=20 << 30,
        backing="/var/lib/infinibay/pools/default/golden.qcow2",
    )


def test_memory_in_other_units_is_read_in_bytes() -> None:
    for unit, text, expected in [
        ("MiB", "2048", 2 << 30),
        ("G", "2", 2 << 30),
        ("b", "1024", 1024),
    ]:
        document = f"<domain><name>x</name><memory unit='{unit}'>{text}</memory></domain>"
        assert projection.parse_domain(document, autostart=False)[2].memory == expected
    bare = "<domain><name>x</name><memory>4096</memory></domain>"
    assert projection.parse_domain(bare, autostart=False)[2].memory == 4 << 20  # KiB by default


# --- rendering never lets a value turn into markup ------------------------------------

HOSTILE = 'a"b\'c<d>&e</name><evil/><x y="'


@given(text=st.text(alphabet=string.printable.replace("\x0b", "").replace("\x0c", "") + "<&\"'>"))
def test_hostile_values_in_domain_xml_are_escaped_and_read_back_verbatim(text: str) -> None:
    shape = dataclasses.replace(
        WEB_1,
        graphics_listen=text,
        disks=(observed.DiskShape(name="root", pool=text, volume=text),),
        nics=(observed.NicShape(network=text, mac="52:54:00:12:34:56"),),
    )
    owner = dataclasses.replace(OWNER, installation=text, spec_hash=text)

    document = xml.render_domain(HOSTILE, shape, domain_type="kvm", owner=owner)

    root = etree.fromstring(document.encode())
    assert root.find(".//evil") is None and root.findtext("name") == HOSTILE
    _, parsed_owner, parsed, _ = projection.parse_domain(document, autostart=True)
    assert parsed_owner == owner
    assert parsed.graphics_listen == text
    assert parsed.nics[0].network == text
    assert parsed.disks[0].pool == text


def test_a_hostile_network_domain_or_backing_path_cannot_inject_elements() -> None:
    shape = dataclasses.replace(LAB, domain='lab"/><forward mode="bridge"/><x a="', bridge=HOSTILE)

    document = xml.render_network("lab", shape, owner=NET_OWNER)
    volume = xml.render_volume("v.qcow2", 1 << 30, backing_path="/p/</path><evil/>&.qcow2")

    assert projection.parse_network(document, autostart=True)[2] == shape
    assert len(etree.fromstring(document.encode()).findall("forward")) == 1
    assert projection.parse_volume(volume, "p").backing == "/p/</path><evil/>&.qcow2"
    assert etree.fromstring(volume.encode()).find(".//evil") is None


def test_projection_does_not_expand_external_entities() -> None:
    document = """<?xml version="1.0"?>
<!DOCTYPE domain [<!ENTITY leak SYSTEM "file:///etc/hostname">]>
<domain><name>&leak;</name><memory unit='KiB'>1024</memory></domain>"""

    root = projection._root(document)

    assert not (root.findtext("name") or "").strip()
