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
from click.testing import CliRunner
from lxml import etree

from reconciler.cli import main
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


def _made_by_hand(h: Harness, pool_name: str = "pool", network_name: str = "net") -> None:
    """A dir pool on the test's directory and a NAT network, neither made by us."""
    pool = h.conn.storagePoolDefineXML(dir_pool(h.name(pool_name), h.pool_dir))
    pool.create()
    base = h.subnet_of(0)
    network = etree.Element("network")
    etree.SubElement(network, "name").text = h.name(network_name)
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
    result = h.sh("export", *args, "-o", str(out))
    assert result.exit_code == 0, result.output


def _documents(directory: Path) -> dict[str, dict[str, Any]]:
    found = {}
    for path in sorted(directory.glob("*.yaml")):
        document = yaml.safe_load(path.read_text())
        found[f"{document['kind']}/{document['metadata']['name']}"] = document
    return found


def _adopt_and_plan(h: Harness, out: Path) -> None:
    adopt = h.sh("apply", "-f", str(out), "--adopt", "--shutdown-timeout", "1")
    assert adopt.exit_code == 0, adopt.output
    plan = h.sh("plan", "-f", str(out))
    assert plan.exit_code == 0, plan.output


@pytest.mark.parametrize("configuration", sorted(CONFIGURATIONS))
def test_an_exported_virt_install_domain_is_adopted_unchanged_and_plans_empty(
    h: Harness, domain_type: str, configuration: str, tmp_path: Path
) -> None:
    disk = _disk(h, "vm")
    _made_by_hand(h)
    args, spec = _fill(CONFIGURATIONS[configuration], h)
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
    assert "not-a-secret" not in (out / f"vm-{h.name('vm')}.yaml").read_text()
    assert (vm["cpus"], vm["memory"], vm["machine"]) == (spec["cpus"], "64MiB", spec["machine"])
    assert vm["firmware"] == spec.get("firmware", "bios")
    assert vm["powerState"] == "Stopped"
    expected: dict[str, dict[str, Any]] = {  # guest hardware virt-install set
        "passthrough": {"cpu": {"mode": "host-passthrough"}, "guestAgent": True},
        "tpm-spice": {"tpm": True, "video": "qxl", "guestAgent": True},
        "uefi-secure-boot": {"video": "none"},
        "two-nics-one-network": {},
    }
    hardware = expected[configuration]
    assert {k: vm[k] for k in hardware} == hardware
    # A display password is kept as libvirt has it: said to exist, never printed.
    assert vm["graphics"].get("password") == ("generate" if configuration == "tpm-spice" else None)
    network = documents[f"Network/{h.name('net')}"]["spec"]
    assert network["bridge"] == h.bridge()
    assert network["ipv4"]["address"] == f"{h.subnet_of(0)}.1/24"

    _adopt_and_plan(h, out)
    after = _inactive(h, "vm")
    assert _devices(after) == _devices(before)
    assert _elements(after) == _elements(before)
    again = h.sh("export", "vm", h.name("vm"))
    assert again.exit_code == 0, again.output
    assert again.stdout == ""
    assert "Nothing to export." in again.stderr
    everything = h.sh("export", "vm", h.name("vm"), "--all")
    assert everything.exit_code == 0, everything.output
    assert yaml.safe_load(everything.stdout)["spec"] == vm


def test_a_domain_whose_name_is_no_dns_label_keeps_its_libvirt_name(
    h: Harness, domain_type: str, tmp_path: Path
) -> None:
    real = h.name("Win11.x")
    label = h.name("win11-x")
    disk = _disk(h, "Win11.x")
    _made_by_hand(h)
    _virt_install(
        h,
        "Win11.x",
        disk,
        "--machine",
        "q35",
        "--graphics",
        "vnc,listen=127.0.0.1",
        "--network",
        f"network={h.name('net')},mac={h.mac(1)}",
        virt_type=domain_type,
    )
    before = _inactive(h, "Win11.x")
    exported = h.sh("export", "vm", real)
    assert exported.exit_code == 0, exported.output
    (document,) = list(yaml.safe_load_all(exported.stdout))
    assert document["metadata"] == {
        "name": label,
        "annotations": {naming.LIBVIRT_NAME: real},
    }
    out = tmp_path / "exported"
    _export(h, out, "pool", h.name("pool"))
    _export(h, out, "network", h.name("net"))
    _export(h, out, "vm", label)  # the exported name finds it too
    assert (out / f"vm-{label}.yaml").is_file()

    _adopt_and_plan(h, out)
    names = {d.name() for d in h.conn.listAllDomains()}
    assert real in names and label not in names
    after = _inactive(h, "Win11.x")
    assert _devices(after) == _devices(before)
    assert _elements(after) == _elements(before)
    managed = etree.fromstring(after.encode()).find(
        "metadata/{https://infinibay.io/ns/reconciler/1}managed"
    )
    assert managed is not None and managed.get("name") == label

    # A change is patched into the domain under its real name...
    path = out / f"vm-{label}.yaml"
    changed = yaml.safe_load(path.read_text())
    changed["spec"]["memory"] = "96MiB"
    path.write_text(yaml.safe_dump(changed))
    plan = h.sh("plan", "-f", str(out))
    assert plan.exit_code == 2, plan.output
    assert f"virtualmachine/{label}" in plan.output
    applied = h.sh("apply", "-f", str(out), "--shutdown-timeout", "1")
    assert applied.exit_code == 0, applied.output
    assert h.domain_xml("Win11.x").findtext("memory") == str(96 * 1024)
    assert h.sh("plan", "-f", str(out)).exit_code == 0
    described = h.sh("get", "vm", label)
    assert described.exit_code == 0, described.output
    assert "Stopped" in described.output

    stopped = h.sh("stop", "vm", label)  # the power verbs find it under its real name too
    assert stopped.exit_code == 0, stopped.output
    assert "already stopped" in stopped.output

    # ...and deleted under it, its volume kept (adopted, never ours to delete).
    deleted = h.sh("delete", "vm", label)
    assert deleted.exit_code == 0, deleted.output
    assert real not in {d.name() for d in h.conn.listAllDomains()}
    assert disk.exists()


def test_a_pool_and_a_network_named_unlike_dns_labels_are_referred_to_by_their_real_names(
    h: Harness, domain_type: str, tmp_path: Path
) -> None:
    disk = _disk(h, "vm")
    _made_by_hand(h, "Pool.One", "Net_One")
    _virt_install(
        h,
        "vm",
        disk,
        "--graphics",
        "none",
        "--network",
        f"network={h.name('Net_One')},mac={h.mac(1)}",
        virt_type=domain_type,
    )
    before = _inactive(h, "vm")
    out = tmp_path / "exported"
    _export(h, out, "pool", h.name("Pool.One"))
    _export(h, out, "network", h.name("Net_One"))
    _export(h, out, "vm", h.name("vm"))
    vm = _documents(out)[f"VirtualMachine/{h.name('vm')}"]["spec"]
    assert vm["disks"] == [{"name": "root", "pool": h.name("pool-one"), "volume": disk.name}]
    assert vm["networks"] == [{"network": h.name("net-one"), "mac": h.mac(1)}]

    _adopt_and_plan(h, out)
    assert _elements(_inactive(h, "vm")) == _elements(before)
    source = h.domain_xml("vm").find("devices/interface/source")
    assert source is not None and source.get("network") == h.name("Net_One")
    assert h.conn.networkLookupByName(h.name("Net_One")).isActive()

    for kind, name in (("vm", h.name("vm")), ("network", h.name("net-one"))):
        deleted = h.sh("delete", kind, name, "--shutdown-timeout", "1")
        assert deleted.exit_code == 0, deleted.output
    assert h.name("vm") not in {d.name() for d in h.conn.listAllDomains()}
    assert h.name("Net_One") not in {n.name() for n in h.conn.listAllNetworks()}
    assert h.name("Pool.One") in {p.name() for p in h.conn.listAllStoragePools()}


def test_names_of_a_kind_stay_unique_when_converted(h: Harness, tmp_path: Path) -> None:
    h.conn.storagePoolDefineXML(dir_pool(h.name("Images.A"), h.pool_dir))
    other = tmp_path / "other"
    other.mkdir(mode=0o755)
    h.conn.storagePoolDefineXML(dir_pool(h.name("images-a"), other))
    first = h.sh("export", "pool", h.name("Images.A"))
    assert first.exit_code == 0, first.output
    document = yaml.safe_load(first.stdout)
    assert document["metadata"]["name"] == h.name("images-a-2")
    assert document["metadata"]["annotations"] == {naming.LIBVIRT_NAME: h.name("Images.A")}
    assert document["spec"] == {"path": str(h.pool_dir), "autostart": False}


def test_export_without_a_record_exports_everything_and_creates_none(
    h: Harness, tmp_path: Path
) -> None:
    h.conn.storagePoolDefineXML(dir_pool(h.name("pool"), h.pool_dir))
    missing = tmp_path / "nowhere" / "state.db"
    result = CliRunner().invoke(
        main.cli,
        ["--db", f"sqlite:///{missing}", "-c", h.uri, "export", "pool", h.name("pool")],
        catch_exceptions=False,
    )
    assert result.exit_code == 0, result.output
    assert yaml.safe_load(result.stdout)["metadata"] == {"name": h.name("pool")}
    assert not missing.parent.exists()
