"""``infinibay export`` of what an administrator made, then ``apply --adopt`` and ``plan``.

A pool and a NAT network are defined straight through libvirt (as ``virsh
pool-define`` and ``net-define`` would), and a domain with Debian's
``virt-install`` (``--import`` of a small local qcow2, ``--print-xml``, then
defined), in the configurations the adoption tests use. Each object is exported
by name into a directory; adopting that directory must exit 0, the following
``plan`` must exit 0, the domain's inactive XML must keep every element but our
metadata (no device lost), and a second export without ``--all`` has nothing
left to say. A domain named ``Win11.x`` is exported as a DNS label with the
real name in ``infinibay.io/libvirt-name``, and the reconciler keeps using the
real name in libvirt.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml
from lxml import etree

from reconciler.models import naming
from tests.fixtures.libvirt import dir_pool
from tests.integration.harness import Harness
from tests.integration.test_adopt_virt_install import (
    CONFIGURATIONS,
    _disk,
    _elements,
    _fill,
    _inactive,
    _virt_install,
)

pytestmark = pytest.mark.integration


def _made_by_hand(h: Harness) -> None:
    """A dir pool on the test's directory and a NAT network, neither made by us."""
    pool = h.conn.storagePoolDefineXML(dir_pool(h.name("pool"), h.pool_dir))
    pool.create()
    base = h.subnet_of(0)
    network = etree.Element("network")
    etree.SubElement(network, "name").text = h.name("net")
    etree.SubElement(network, "forward", mode="nat")
    etree.SubElement(network, "bridge", name=h.bridge(), stp="on", delay="0")
    ip = etree.SubElement(network, "ip", address=f"{base}.1", netmask="255.255.255.0")
    etree.SubElement(etree.SubElement(ip, "dhcp"), "range", start=f"{base}.100", end=f"{base}.150")
    h.conn.networkDefineXML(etree.tostring(network, encoding="unicode")).create()


def _devices(document: str) -> list[tuple[str, str]]:
    devices = etree.fromstring(document.encode()).find("devices")
    assert devices is not None
    return [(str(d.tag), d.get("type") or d.get("model") or "") for d in devices]


def _export(h: Harness, out: Path, *args: str) -> None:
    result = h.run("export", *args, "-o", str(out))
    assert result.exit_code == 0, result.output


def _documents(directory: Path) -> dict[str, dict[str, Any]]:
    found = {}
    for path in sorted(directory.glob("*.yaml")):
        document = yaml.safe_load(path.read_text())
        found[f"{document['kind']}/{document['metadata']['name']}"] = document
    return found


def _adopt_and_plan(h: Harness, out: Path) -> None:
    adopt = h.run("apply", "-f", str(out), "--adopt", "--shutdown-timeout", "1")
    assert adopt.exit_code == 0, adopt.output
    plan = h.run("plan", "-f", str(out))
    assert plan.exit_code == 0, plan.output


@pytest.mark.parametrize("configuration", sorted(CONFIGURATIONS))
def test_an_exported_virt_install_domain_is_adopted_unchanged_and_plans_empty(
    h: Harness, domain_type: str, configuration: str, tmp_path: Path
) -> None:
    disk = _disk(h, "vm")
    _made_by_hand(h)
    args, spec = _fill(CONFIGURATIONS[configuration], h.name("net"))
    virt_type = "qemu" if configuration == "uefi-secure-boot" else domain_type
    _virt_install(h, "vm", disk, *args, virt_type=virt_type)
    before = _inactive(h, "vm")
    out = tmp_path / "exported"
    for kind, short in (("pool", "pool"), ("network", "net"), ("vm", "vm")):
        _export(h, out, kind, h.name(short))

    documents = _documents(out)
    assert set(documents) == {
        f"StoragePool/{h.name('pool')}",
        f"Network/{h.name('net')}",
        f"VirtualMachine/{h.name('vm')}",
    }
    vm = documents[f"VirtualMachine/{h.name('vm')}"]["spec"]
    assert vm["disks"] == [{"name": "root", "pool": h.name("pool"), "volume": disk.name}]
    assert vm["networks"] == spec["networks"]  # keyed by MAC, two may share the network
    assert vm["graphics"]["type"] == spec["graphics"]["type"]
    assert (vm["cpus"], vm["memory"], vm["machine"]) == (spec["cpus"], "64MiB", spec["machine"])
    assert vm["firmware"] == spec.get("firmware", "bios")
    assert vm["powerState"] == "Stopped"
    network = documents[f"Network/{h.name('net')}"]["spec"]
    assert network["bridge"] == h.bridge()
    assert network["ipv4"]["address"] == f"{h.subnet_of(0)}.1/24"

    _adopt_and_plan(h, out)
    after = _inactive(h, "vm")
    assert _devices(after) == _devices(before)
    assert _elements(after) == _elements(before)
    again = h.run("export", "vm", h.name("vm"))
    assert again.exit_code == 0, again.output
    assert again.stdout == ""
    assert "Nothing to export." in again.stderr
    everything = h.run("export", "vm", h.name("vm"), "--all")
    assert everything.exit_code == 0, everything.output
    assert yaml.safe_load(everything.stdout)["spec"] == vm


def test_names_of_a_kind_stay_unique_when_converted(h: Harness, tmp_path: Path) -> None:
    h.conn.storagePoolDefineXML(dir_pool(h.name("Images.A"), h.pool_dir))
    other = tmp_path / "other"
    other.mkdir(mode=0o755)
    h.conn.storagePoolDefineXML(dir_pool(h.name("images-a"), other))
    first = h.run("export", "pool", h.name("Images.A"))
    assert first.exit_code == 0, first.output
    document = yaml.safe_load(first.stdout)
    assert document["metadata"]["name"] == h.name("images-a-2")
    assert document["metadata"]["annotations"] == {naming.LIBVIRT_NAME: h.name("Images.A")}
    assert document["spec"] == {"path": str(h.pool_dir), "autostart": False}
