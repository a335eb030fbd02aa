"""Adopting what virt-install made keeps everything the manifests do not model.

Each test builds a guest as an administrator would, with Debian's ``virt-install``
(``--print-xml``, then defined): a ``type='file'`` qcow2 disk created by the test
inside its pool's directory, and one configuration each of host-passthrough CPU
with an rng and the guest agent, a TPM (swtpm) with spice channels and USB
redirection, UEFI with secure boot, and two NICs on one network. A matching
manifest names the existing volume (``volume:``) and the NICs by MAC. After
``apply --adopt`` the domain's inactive XML must be the same element by element
apart from our ``<ib:managed>`` metadata, the disk must still be the same file
(inode and content), and ``plan`` must exit 0. Guests are never started: they
would boot nothing anyway. Patched documents drawn by the unit property test
must also be ones libvirt accepts under schema validation.
"""

from __future__ import annotations

import hashlib
import subprocess
from pathlib import Path
from typing import Any

import libvirt
import pytest
from hypothesis import HealthCheck, assume, given, settings
from lxml import etree

from reconciler.hypervisor import patch, xml
from reconciler.models import kinds
from tests.integration.harness import Harness, doc
from tests.unit import test_patch

pytestmark = pytest.mark.integration

MANAGED = f"{{{xml.NS}}}managed"
# Placeholders in CONFIGURATIONS, filled per test (parallel tests must not share them).
MAC_1, MAC_2 = "{mac1}", "{mac2}"


def _elements(document: str) -> list[tuple[str, list[tuple[str | bytes, str | bytes]], str]]:
    """Every element but our metadata, as (path, attributes, text), in document order.

    ``<metadata>`` itself is left out too (adoption creates it where there was none);
    what other tools keep in it is compared like everything else.
    """
    root = etree.fromstring(document.encode())
    tree = root.getroottree()
    found = []
    for element in root.iter():
        if not isinstance(element.tag, str):
            continue
        if element.tag in (MANAGED, "metadata") or any(
            a.tag == MANAGED for a in element.iterancestors()
        ):
            continue
        found.append(
            (tree.getpath(element), sorted(element.attrib.items()), (element.text or "").strip())
        )
    return found


def _inactive(h: Harness, short: str) -> str:
    flags = libvirt.VIR_DOMAIN_XML_INACTIVE | libvirt.VIR_DOMAIN_XML_SECURE
    return str(h.domain(short).XMLDesc(flags))


def _disk(h: Harness, short: str) -> Path:
    """A tiny qcow2 file in the test's pool directory, as virt-install's pool would hold."""
    path = h.pool_dir / f"{h.name(short)}.qcow2"
    subprocess.run(["qemu-img", "create", "-q", "-f", "qcow2", str(path), "16M"], check=True)
    path.chmod(0o644)
    return path


def _fingerprint(path: Path) -> tuple[int, str]:
    return path.stat().st_ino, hashlib.sha256(path.read_bytes()).hexdigest()


def _virt_install(h: Harness, short: str, disk: Path, *args: str, virt_type: str) -> None:
    printed = subprocess.run(
        [
            "virt-install",
            "--connect",
            h.uri,
            "--print-xml",
            "--import",
            "--noautoconsole",
            "--virt-type",
            virt_type,
            "--name",
            h.name(short),
            "--memory",
            "64",
            "--vcpus",
            "1",
            "--osinfo",
            "debian11",
            "--disk",
            f"path={disk},format=qcow2",
            *args,
        ],
        capture_output=True,
        text=True,
    )
    assert printed.returncode == 0, printed.stderr
    h.conn.defineXML(printed.stdout)


def _base(h: Harness) -> list[dict[str, Any]]:
    return [h.pool(), h.network()]


def _manifest(h: Harness, short: str, disk: Path, **spec: Any) -> dict[str, Any]:
    return doc(
        "VirtualMachine",
        h.name(short),
        {
            "powerState": "Stopped",
            "memory": "64MiB",
            "disks": [{"name": "root", "pool": h.name("pool"), "volume": disk.name}],
            **spec,
        },
    )


CONFIGURATIONS: dict[str, tuple[list[str], dict[str, Any]]] = {
    "passthrough": (
        [
            "--vcpus",
            "2,maxvcpus=4",
            "--machine",
            "q35",
            "--cpu",
            "host-passthrough",
            "--rng",
            "/dev/urandom",
            "--channel",
            "unix,target.type=virtio,name=org.qemu.guest_agent.0",
            "--graphics",
            "vnc,listen=127.0.0.1",
            "--network",
            "network={net},mac=" + MAC_1,
        ],
        {
            "cpus": 2,
            "machine": "q35",
            "graphics": {"type": "vnc", "listen": "127.0.0.1"},
            "networks": [{"network": "{net}", "mac": MAC_1}],
        },
    ),
    "tpm-spice": (
        [
            "--machine",
            "q35",
            "--tpm",
            "emulator,model=tpm-crb,version=2.0",
            "--graphics",
            "spice,listen=127.0.0.1,password=not-a-secret",
            "--channel",
            "spicevmc",
            "--channel",
            "unix,target.type=virtio,name=org.qemu.guest_agent.0",
            "--redirdev",
            "usb,type=spicevmc",
            "--redirdev",
            "usb,type=spicevmc",
            "--sound",
            "ich9",
            "--video",
            "qxl",
            "--network",
            "network={net},mac=" + MAC_1,
        ],
        {
            "cpus": 1,
            "machine": "q35",
            "graphics": {"type": "spice", "listen": "127.0.0.1"},
            "networks": [{"network": "{net}", "mac": MAC_1}],
        },
    ),
    "uefi-secure-boot": (
        [
            "--machine",
            "q35",
            "--boot",
            "uefi,firmware.feature0.name=secure-boot,firmware.feature0.enabled=yes,"
            "loader_secure=yes",
            "--features",
            "smm.state=on",
            "--graphics",
            "none",
            "--network",
            "network={net},mac=" + MAC_1 + ",model=e1000e",
        ],
        {
            "cpus": 1,
            "machine": "q35",
            "firmware": "uefi",
            "graphics": {"type": "none"},
            "networks": [{"network": "{net}", "mac": MAC_1}],
        },
    ),
    "two-nics-one-network": (
        [
            "--machine",
            "pc",
            "--graphics",
            "vnc,listen=127.0.0.1",
            "--network",
            "network={net},mac=" + MAC_1 + ",model=e1000",
            "--network",
            "network={net},mac=" + MAC_2 + ",model=virtio",
        ],
        {
            "cpus": 1,
            "machine": "pc",
            "graphics": {"type": "vnc", "listen": "127.0.0.1"},
            "networks": [
                {"network": "{net}", "mac": MAC_1},
                {"network": "{net}", "mac": MAC_2},
            ],
        },
    ),
}


def _fill(value: Any, h: Harness) -> Any:
    """A configuration with this test's network name and MACs."""
    if isinstance(value, str):
        for placeholder, filled in (("{net}", h.name("net")), (MAC_1, h.mac(1)), (MAC_2, h.mac(2))):
            value = value.replace(placeholder, filled)
        return value
    if isinstance(value, list | tuple):
        return type(value)(_fill(v, h) for v in value)
    if isinstance(value, dict):
        return {k: _fill(v, h) for k, v in value.items()}
    return value


@pytest.mark.parametrize("configuration", sorted(CONFIGURATIONS))
def test_adopting_a_virt_install_domain_keeps_every_unowned_element_and_its_disk(
    h: Harness, domain_type: str, configuration: str
) -> None:
    h.write(*_base(h))
    assert h.apply().exit_code == 0
    args, spec = _fill(CONFIGURATIONS[configuration], h)
    disk = _disk(h, "vm")
    # UEFI needs TCG on nested hosts that offer KVM yet cannot run OVMF under it.
    virt_type = "qemu" if configuration == "uefi-secure-boot" else domain_type
    _virt_install(h, "vm", disk, *args, virt_type=virt_type)
    before = _inactive(h, "vm")
    fingerprint = _fingerprint(disk)
    h.write(*_base(h), _manifest(h, "vm", disk, **spec))

    adopt = h.plan("--adopt")
    assert adopt.exit_code == 2, adopt.output
    assert f"~ virtualmachine/{h.name('vm')} (update, adopt, live)" in adopt.output
    if configuration == "passthrough":  # what the schema cannot say is named, and kept
        kept = "vcpu current 2 of maximum 4 (the maximum is kept)"
        assert f"    note: not modelled, kept as is: {kept}" in adopt.output
    result = h.apply("--adopt")
    assert result.exit_code == 0, result.output

    after = _inactive(h, "vm")
    assert _elements(after) == _elements(before)
    managed = etree.fromstring(after.encode()).find(f"metadata/{MANAGED}")
    assert managed is not None and managed.get("name") == h.name("vm")
    source = etree.fromstring(after.encode()).find("devices/disk[@device='disk']/source")
    assert source is not None and source.get("file") == str(disk)
    assert _fingerprint(disk) == fingerprint
    assert h.state("vm") == libvirt.VIR_DOMAIN_SHUTOFF
    plan = h.plan()
    assert plan.exit_code == 0, plan.output


def test_an_update_keeps_a_tpm_and_an_rng_added_out_of_band(h: Harness, domain_type: str) -> None:
    h.write(*_base(h))
    assert h.apply().exit_code == 0
    disk = _disk(h, "vm")
    _virt_install(
        h,
        "vm",
        disk,
        "--machine",
        "q35",
        "--graphics",
        "vnc,listen=127.0.0.1",
        "--network",
        f"network={h.name('net')},mac={h.mac(1)}",
        virt_type=domain_type,
    )
    spec = {
        "machine": "q35",
        "graphics": {"type": "vnc", "listen": "127.0.0.1"},
        "networks": [{"network": h.name("net"), "mac": h.mac(1)}],
    }
    h.write(*_base(h), _manifest(h, "vm", disk, **spec))
    assert h.apply("--adopt").exit_code == 0
    # The operator adds a TPM and an rng with virsh define, behind our back.
    root = etree.fromstring(_inactive(h, "vm").encode())
    devices = root.find("devices")
    assert devices is not None
    for stale in devices.findall("tpm") + devices.findall("rng"):
        devices.remove(stale)
    tpm = etree.SubElement(devices, "tpm", model="tpm-crb")
    etree.SubElement(tpm, "backend", type="emulator", version="2.0")
    rng = etree.SubElement(devices, "rng", model="virtio")
    etree.SubElement(rng, "backend", model="random").text = "/dev/urandom"
    h.conn.defineXML(etree.tostring(root, encoding="unicode"))
    added = _elements(_inactive(h, "vm"))

    h.write(*_base(h), _manifest(h, "vm", disk, **{**spec, "memory": "96MiB"}))
    plan = h.plan()
    assert plan.exit_code == 2, plan.output
    assert "    memory: 64MiB -> 96MiB (live)" in plan.output
    result = h.apply()
    assert result.exit_code == 0, result.output

    after = etree.fromstring(_inactive(h, "vm").encode())
    assert after.findtext("memory") == str(96 * 1024)
    assert after.find("devices/tpm/backend[@type='emulator']") is not None
    assert after.findtext("devices/rng/backend[@model='random']") == "/dev/urandom"
    memory = {"/domain/memory", "/domain/currentMemory"}
    assert [e for e in _elements(_inactive(h, "vm")) if e[0] not in memory] == [
        e for e in added if e[0] not in memory
    ]
    assert h.plan().exit_code == 0


def test_replacing_the_disk_of_an_adopted_domain_is_data_loss_and_refused(
    h: Harness, domain_type: str
) -> None:
    h.write(*_base(h))
    assert h.apply().exit_code == 0
    disk = _disk(h, "vm")
    _virt_install(
        h,
        "vm",
        disk,
        "--machine",
        "q35",
        "--graphics",
        "vnc,listen=127.0.0.1",
        "--network",
        f"network={h.name('net')},mac={h.mac(1)}",
        virt_type=domain_type,
    )
    before = _inactive(h, "vm")
    fingerprint = _fingerprint(disk)
    # The manifest asks for a new 16MiB root disk instead of naming the existing volume.
    vm = _manifest(
        h,
        "vm",
        disk,
        machine="q35",
        graphics={"type": "vnc", "listen": "127.0.0.1"},
        networks=[{"network": h.name("net"), "mac": h.mac(1)}],
    )
    vm["spec"]["disks"] = [{"name": "root", "pool": h.name("pool"), "size": "16MiB"}]
    h.write(*_base(h), vm)
    pool = h.conn.storagePoolLookupByName(h.name("pool"))
    pool.refresh(0)
    allocation = pool.storageVolLookupByName(disk.name).info()[2]

    plan = h.plan("--adopt")
    assert plan.exit_code == 2, plan.output
    assert f"~ virtualmachine/{h.name('vm')} (update, adopt, data-loss)" in plan.output
    assert (
        f"    disks[{disk.name}]: {h.name('pool')}/{disk.name} ({allocation} bytes allocated) "
        "-> (none) (data-loss)"
    ) in plan.output

    result = h.apply("--adopt")
    assert result.exit_code == 1, result.output
    assert "--allow-data-loss" in result.output
    assert _inactive(h, "vm") == before
    assert _fingerprint(disk) == fingerprint

    result = h.apply("--adopt", "--allow-data-loss")
    assert result.exit_code == 0, result.output
    sources = h.domain_xml("vm").findall("devices/disk[@device='disk']/source")
    assert [s.get("pool") for s in sources] == [h.name("pool")]
    assert sources[0].get("volume") != disk.name
    assert _fingerprint(disk) == fingerprint  # detached, never deleted
    assert h.plan().exit_code == 0


def test_adopting_a_network_keeps_ipv6_dns_hosts_and_the_lease_time(h: Harness) -> None:
    base = h.subnet_of(0)
    network = etree.Element("network")
    etree.SubElement(network, "name").text = h.name("net")
    forward = etree.SubElement(network, "forward", mode="nat")
    nat = etree.SubElement(forward, "nat")
    etree.SubElement(nat, "port", start="20000", end="30000")
    etree.SubElement(network, "bridge", name=h.bridge(), stp="on", delay="0")
    etree.SubElement(network, "mac", address="52:54:00:5a:0f:01")
    etree.SubElement(network, "domain", name="lab.internal", localOnly="yes")
    dns = etree.SubElement(network, "dns")
    host = etree.SubElement(dns, "host", ip=f"{base}.5")
    etree.SubElement(host, "hostname").text = "files"
    ipv4 = etree.SubElement(network, "ip", address=f"{base}.1", netmask="255.255.255.0")
    dhcp = etree.SubElement(ipv4, "dhcp")
    lease_range = etree.SubElement(dhcp, "range", start=f"{base}.100", end=f"{base}.150")
    etree.SubElement(lease_range, "lease", expiry="2", unit="hours")
    etree.SubElement(dhcp, "host", mac="52:54:00:5a:0f:10", name="db-1", ip=f"{base}.10")
    ipv6 = etree.SubElement(network, "ip", family="ipv6", address="fd00:5a::1", prefix="64")
    etree.SubElement(
        etree.SubElement(ipv6, "dhcp"), "range", start="fd00:5a::100", end="fd00:5a::1ff"
    )
    h.conn.networkDefineXML(etree.tostring(network, encoding="unicode"))

    def current() -> str:
        net = h.conn.networkLookupByName(h.name("net"))
        return str(net.XMLDesc(libvirt.VIR_NETWORK_XML_INACTIVE))

    before = current()
    manifest = doc(
        "Network",
        h.name("net"),
        {
            "mode": "nat",
            "bridge": h.bridge(),
            "domain": "lab.internal",
            "ipv4": {
                "address": f"{base}.1/24",
                "dhcp": {"start": f"{base}.100", "end": f"{base}.150"},
                "hosts": [{"mac": "52:54:00:5a:0f:10", "ip": f"{base}.10", "name": "db-1"}],
            },
        },
    )
    h.write(manifest)

    adopt = h.plan("--adopt")
    assert adopt.exit_code == 2, adopt.output
    assert f"~ network/{h.name('net')} (update, adopt, live)" in adopt.output
    result = h.apply("--adopt")
    assert result.exit_code == 0, result.output

    after = current()
    assert _elements(after) == _elements(before)
    root = etree.fromstring(after.encode())
    assert root.find(f"metadata/{MANAGED}") is not None
    assert root.find("ip[@family='ipv6']") is not None
    assert root.findtext("dns/host/hostname") == "files"
    assert root.find("ip/dhcp/range/lease").get("expiry") == "2"  # type: ignore[union-attr]
    assert h.conn.networkLookupByName(h.name("net")).isActive()
    plan = h.plan()
    assert plan.exit_code == 0, plan.output


def test_adopting_a_network_in_a_forward_mode_we_do_not_model_is_refused(h: Harness) -> None:
    network = etree.Element("network")
    etree.SubElement(network, "name").text = h.name("net")
    etree.SubElement(network, "forward", mode="open")
    etree.SubElement(network, "bridge", name=h.bridge(), stp="on", delay="0")
    etree.SubElement(network, "ip", address=f"{h.subnet_of(0)}.1", prefix="24")
    h.conn.networkDefineXML(etree.tostring(network, encoding="unicode"))
    before = str(
        h.conn.networkLookupByName(h.name("net")).XMLDesc(libvirt.VIR_NETWORK_XML_INACTIVE)
    )
    h.write(h.network())

    plan = h.plan("--adopt")
    assert plan.exit_code == 2, plan.output
    assert (
        f"? network/{h.name('net')}: conflict: the libvirt network named {h.name('net')!r} "
        "cannot be adopted: the manifests cannot represent its forward mode 'open' "
        "(nat, route, bridge or none); it is left untouched"
    ) in plan.output
    result = h.apply("--adopt")
    assert result.exit_code == 1, result.output
    after = h.conn.networkLookupByName(h.name("net")).XMLDesc(libvirt.VIR_NETWORK_XML_INACTIVE)
    assert after == before


@settings(
    max_examples=40,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(case=test_patch.cases())
def test_every_patched_virt_install_domain_is_one_libvirt_accepts(
    libvirt_conn: libvirt.virConnect, prefix: str, libvirt_cleanup: None, case: Any
) -> None:
    name, original, target = case
    # Secure boot needs q35: libvirt refuses it on pc, and apply reports that refusal.
    assume(not (name == "vi-uefi-secboot" and target.machine is kinds.Machine.PC))
    root = etree.fromstring(original.encode())
    root.remove(root.find("uuid"))  # type: ignore[arg-type]
    root.find("name").text = f"{prefix}valid"  # type: ignore[union-attr]
    document = etree.tostring(root, encoding="unicode")

    patched = patch.patch_domain(
        document,
        target,
        owner=test_patch.owner(f"{prefix}valid"),
        pools=test_patch.POOLS,
        graphics_password="Fr3shPw0",
    )

    domain = libvirt_conn.defineXMLFlags(patched, libvirt.VIR_DOMAIN_DEFINE_VALIDATE)
    domain.undefineFlags(libvirt.VIR_DOMAIN_UNDEFINE_NVRAM)
