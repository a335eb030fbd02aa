"""Guest addresses in status: real DHCP leases, and drivers that have none.

A lease on a real libvirt network is made without booting a guest: a veth pair
joins the network's bridge, its far end in a network namespace of the test's
own, and busybox's ``udhcpc`` asks the network's dnsmasq for an address with the
MAC the VM's NIC is declared with. ``get`` then shows the VM with that address,
read through the reconciler's lease reading. libvirt's test driver
(``test:///default``) has neither leases nor nwfilters: ``apply`` and ``get``
must work there all the same.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import libvirt
import pytest
import yaml
from click.testing import CliRunner

from reconciler.cli import main
from reconciler.hypervisor import adapter
from reconciler.hypervisor import addresses as reading
from tests.integration.harness import Harness

pytestmark = pytest.mark.integration

TEST_DRIVER = "test:///default"
MAC = "52:54:00:5e:a1:0c"


def _ip(*args: str) -> None:
    subprocess.run(["ip", *args], check=True, capture_output=True, text=True)


@pytest.fixture
def dhcp_client(h: Harness) -> Iterator[tuple[str, str]]:
    """(namespace, interface): a veth whose far end, in a namespace, carries :data:`MAC`."""
    assert shutil.which("busybox"), "busybox (udhcpc) is installed by scripts/test"
    tag = h.prefix.split("-")[1][:4]
    namespace, host_end, guest_end = f"{h.prefix}ns", f"ib{tag}h", f"ib{tag}g"
    _ip("netns", "add", namespace)
    try:
        _ip("link", "add", host_end, "type", "veth", "peer", "name", guest_end)
        _ip("link", "set", guest_end, "netns", namespace)
        _ip("-n", namespace, "link", "set", guest_end, "address", MAC)
        _ip("-n", namespace, "link", "set", guest_end, "up")
        yield namespace, guest_end
    finally:
        subprocess.run(["ip", "link", "del", host_end], capture_output=True)
        subprocess.run(["ip", "netns", "del", namespace], capture_output=True)


def _lease(namespace: str, interface: str, bridge: str) -> None:
    _ip("link", "set", f"{interface[:-1]}h", "master", bridge, "up")
    client = ["busybox", "udhcpc", "-i", interface, "-n", "-q", "-f", "-t", "10", "-T", "1"]
    subprocess.run(
        ["ip", "netns", "exec", namespace, *client, "-s", "/bin/true"],
        check=True,
        capture_output=True,
        timeout=60,
    )


def test_get_shows_the_address_a_real_network_leased_to_the_vms_mac(
    h: Harness, dhcp_client: tuple[str, str]
) -> None:
    network = h.name("net")
    h.write(
        h.pool(),
        h.network(),
        h.template(),
        h.vm("a", powerState="Stopped", networks=[{"network": network, "mac": MAC}]),
    )
    assert h.apply().exit_code == 0
    namespace, interface = dhcp_client

    _lease(namespace, interface, h.bridge())

    deadline = time.monotonic() + 10
    leased: tuple[str, ...] = ()
    with adapter.Hypervisor(h.uri) as hv:
        while not leased and time.monotonic() < deadline:
            leased = hv.guest_addresses(hv.observe()).get(MAC, ())
            time.sleep(0.2)
    assert len(leased) == 1 and leased[0].startswith(h.subnet + "."), leased
    listed = h.run("get", "vm", h.name("a"), "-o", "json")
    assert listed.exit_code == 0, listed.output
    assert json.loads(listed.output)["status"]["ips"] == list(leased)
    table = h.run("get", "vms")
    assert leased[0] in table.output
    # The status a pass writes carries it too.
    assert h.apply().exit_code == 0
    with h.store() as store:
        vm = next(r for r in store.resources() if r.key.name == h.name("a"))
    assert vm.status["ips"] == list(leased)


def _manifests(tmp_path: Path) -> Path:
    documents = [
        {
            "apiVersion": "infinibay.io/v1alpha1",
            "kind": "Network",
            "metadata": {"name": "lab"},
            "spec": {"mode": "nat", "ipv4": {"address": "10.77.0.1/24"}},
        },
        {
            "apiVersion": "infinibay.io/v1alpha1",
            "kind": "VirtualMachine",
            "metadata": {"name": "web-1"},
            "spec": {"cpus": 1, "memory": "64MiB", "networks": [{"network": "lab"}]},
        },
    ]
    path = tmp_path / "manifests.yaml"
    path.write_text(yaml.safe_dump_all(documents))
    return path


def test_apply_and_get_succeed_on_a_driver_without_leases(tmp_path: Path) -> None:
    db = f"sqlite:///{tmp_path / 'state.db'}"
    runner = CliRunner()

    applied = runner.invoke(
        main.cli, ["--db", db, "-c", TEST_DRIVER, "apply", "-f", str(_manifests(tmp_path))]
    )

    assert applied.exit_code == 0, applied.output
    assert "virtualmachine/web-1 created" in applied.output
    for args in (["get", "vms"], ["get", "vm", "web-1", "-o", "json"], ["describe", "vm", "web-1"]):
        shown = runner.invoke(main.cli, ["--db", db, "-c", TEST_DRIVER, *args])
        assert shown.exit_code == 0, (args, shown.output)
        assert "IP addresses" not in shown.output  # no warning about leases


def test_the_test_driver_reports_no_leases_and_its_agent_addresses_are_read() -> None:
    conn = libvirt.open(TEST_DRIVER)
    try:
        with adapter.Hypervisor(TEST_DRIVER) as hv:
            assert hv.guest_addresses(hv.observe()) == {}  # no agent channel, no leases
        # The test driver's own domain answers interfaceAddresses(SRC_AGENT) as an agent would.
        name = conn.listAllDomains()[0].name()
        found = reading.agent(conn, [name, "no-such-domain"])
    finally:
        conn.close()
    assert found == {"aa:bb:cc:dd:ee:ff": ("192.168.122.3",)}
