"""The second hypervisor the multi-host tests use is a real, separate libvirtd.

``scripts/test`` starts it in its own mount, network and UTS namespaces
(scripts/lib/second-libvirtd.sh). These tests prove what the multi-host tests
rely on: it is another daemon with its own objects and identity, it runs guests
on isolated networks whose bridges live only in its namespace, and the reconciler
converges a manifest there through ``-c`` alone.
"""

from __future__ import annotations

import os
import shlex
import subprocess
from pathlib import Path

import libvirt
import pytest
from lxml import etree

from tests.fixtures import libvirt as libvirt_fixtures
from tests.fixtures import second_libvirt
from tests.integration.harness import Harness

pytestmark = pytest.mark.integration

SCRIPT = Path(__file__).resolve().parents[2] / "scripts" / "lib" / "second-libvirtd.sh"


def _host_uuid(conn: libvirt.virConnect) -> str:
    return etree.fromstring(conn.getCapabilities().encode()).findtext("host/uuid") or ""


def _host_links() -> set[str]:
    return {path.name for path in Path("/sys/class/net").iterdir()}


def _links_of(pid: int) -> set[str]:
    """The interfaces of ``pid``'s network namespace, from its /proc/PID/net/dev."""
    lines = Path(f"/proc/{pid}/net/dev").read_text().splitlines()[2:]
    return {line.split(":", 1)[0].strip() for line in lines}


def _names(conn: libvirt.virConnect) -> set[str]:
    return {n.name() for n in conn.listAllNetworks()} | {d.name() for d in conn.listAllDomains()}


def test_the_second_host_is_another_libvirtd_with_its_own_objects(
    libvirt_conn: libvirt.virConnect,
    libvirt_conn2: libvirt.virConnect,
    libvirt_cleanup2: None,
    prefix: str,
    domain_type: str,
) -> None:
    assert libvirt_conn2.getURI() != libvirt_conn.getURI()
    assert libvirt_conn2.getHostname() != libvirt_conn.getHostname()
    assert _host_uuid(libvirt_conn2) != _host_uuid(libvirt_conn)

    libvirt_conn2.networkDefineXML(
        libvirt_fixtures.isolated_network(f"{prefix}on2", libvirt_fixtures.bridge_name(prefix, 0))
    )
    libvirt_conn2.defineXML(libvirt_fixtures.firmware_only_domain(f"{prefix}vm2", domain_type))
    libvirt_conn.networkDefineXML(
        libvirt_fixtures.isolated_network(f"{prefix}on1", libvirt_fixtures.bridge_name(prefix, 1))
    )
    libvirt_conn.defineXML(libvirt_fixtures.firmware_only_domain(f"{prefix}vm1", domain_type))

    on_host, on_second = _names(libvirt_conn), _names(libvirt_conn2)
    assert {f"{prefix}on1", f"{prefix}vm1"} <= on_host
    assert {f"{prefix}on2", f"{prefix}vm2"} <= on_second
    assert not {f"{prefix}on2", f"{prefix}vm2"} & on_host
    assert not {f"{prefix}on1", f"{prefix}vm1"} & on_second


def test_a_guest_on_an_isolated_network_runs_there_and_its_bridge_stays_in_its_namespace(
    libvirt_uri2: str,
    libvirt_conn2: libvirt.virConnect,
    libvirt_cleanup2: None,
    prefix: str,
    domain_type: str,
) -> None:
    pid = second_libvirt.namespace_pid(libvirt_uri2)
    if pid is None:
        second_libvirt.unavailable(
            f"{libvirt_uri2} was not started by scripts/lib/second-libvirtd.sh"
        )
    bridge = libvirt_fixtures.bridge_name(prefix, 0)
    network = libvirt_conn2.networkDefineXML(
        libvirt_fixtures.isolated_network(f"{prefix}iso", bridge)
    )
    network.create()
    document = etree.fromstring(
        libvirt_fixtures.firmware_only_domain(
            f"{prefix}guest", domain_type, vnc=True, network=f"{prefix}iso"
        )
    )
    # A tap name of this test's own: libvirt's vnetN numbering is per daemon, so the
    # host's guests have the same names.
    tap = f"{bridge}t"
    nic = document.find("devices/interface")
    assert nic is not None
    etree.SubElement(nic, "target", dev=tap)
    guest = libvirt_conn2.defineXML(etree.tostring(document, encoding="unicode"))
    guest.create()

    assert guest.state()[0] == libvirt.VIR_DOMAIN_RUNNING
    live = etree.fromstring(guest.XMLDesc(0).encode())
    assert live.xpath("string(devices/interface/target/@dev)") == tap
    assert network.bridgeName() == bridge
    assert {bridge, tap} <= _links_of(pid)
    assert not {bridge, tap} & _host_links()
    shown = subprocess.run(
        ["ip", "link", "show", "dev", bridge], capture_output=True, text=True, check=False
    )
    assert shown.returncode != 0, shown.stdout


def test_apply_on_the_second_host_converges_and_plans_nothing_after(
    h2: Harness, libvirt_conn: libvirt.virConnect
) -> None:
    h2.write(h2.pool(), h2.network(), h2.template(), h2.vm("web"))

    applied = h2.cli("apply", "-f", str(h2.workdir), "--shutdown-timeout", "1")
    assert applied.returncode == 0, applied.stdout + applied.stderr
    planned = h2.cli("plan", "-f", str(h2.workdir))

    assert planned.returncode == 0, planned.stdout + planned.stderr
    assert h2.state("web") == libvirt.VIR_DOMAIN_RUNNING
    assert h2.conn.storagePoolLookupByName(h2.name("pool")).isActive()
    assert h2.conn.networkLookupByName(h2.name("net")).isActive()
    assert not {h2.name("web"), h2.name("net")} & _names(libvirt_conn)
    assert h2.bridge(0) not in _host_links()


def _script(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(SCRIPT), *args], capture_output=True, text=True, timeout=120, check=False
    )


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def test_the_script_starts_a_daemon_once_and_its_stop_leaves_nothing(tmp_path: Path) -> None:
    if os.geteuid() != 0:
        second_libvirt.unavailable("the second libvirtd needs root (mount and network namespaces)")
    root = tmp_path / "hv2"

    started = _script("start", str(root))
    assert started.returncode == 0, started.stdout + started.stderr
    exports = dict(word.split("=", 1) for word in shlex.split(started.stdout)[1:])
    assert exports["IB_HV2_ROOT"] == str(root)
    uri = exports["INFINIBAY_TEST_LIBVIRT_URI2"]
    pid = second_libvirt.namespace_pid(uri)
    assert pid is not None and _alive(pid)
    conn = libvirt.open(uri)
    try:
        assert conn.getHostname().endswith("-hv2")
        assert not conn.listAllDomains() and not conn.listAllNetworks()
        assert not conn.listAllStoragePools()
    finally:
        conn.close()

    again = _script("start", str(root))
    assert again.returncode == 0, again.stdout + again.stderr
    assert second_libvirt.namespace_pid(uri) == pid

    stopped = _script("stop", str(root))
    assert stopped.returncode == 0, stopped.stdout + stopped.stderr
    assert not root.exists()
    assert not _alive(pid)
