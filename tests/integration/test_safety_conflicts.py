"""Ownership: a same-named libvirt object this installation does not own is never touched.

An operator defines a domain or a network with plain libvirt (no
``<ib:managed>`` metadata) under a name a manifest also uses: ``plan`` reports
``? KIND/NAME: conflict`` and exits 2, ``apply`` fails for that resource only
(exit 1), converges the rest and leaves the object's XML byte-identical;
``apply --adopt`` then writes our metadata and converges it. An object carrying
*another* installation's id is never modified, not even with ``--adopt``, and
never pruned.
"""

from __future__ import annotations

from pathlib import Path

import libvirt
import pytest
from lxml import etree

from reconciler.hypervisor import xml
from reconciler.models import record
from tests.fixtures.libvirt import dir_pool, firmware_only_domain
from tests.integration.harness import Harness

pytestmark = pytest.mark.integration

MANAGED = f"metadata/{{{xml.NS}}}managed"


def _plain_domain(h: Harness, name: str, domain_type: str, *, installation: str = "") -> str:
    """Define a firmware-only domain by hand, as ``virsh define`` would; return its XML."""
    managed = (
        {
            "kind": "VirtualMachine",
            "name": name,
            "installation": installation,
            "spec-hash": "0123456789abcdef",
        }
        if installation
        else None
    )
    document = firmware_only_domain(name, domain_type, memory_mib=64, managed=managed)
    return str(h.conn.defineXML(document).XMLDesc(libvirt.VIR_DOMAIN_XML_INACTIVE))


def _xml(h: Harness, name: str) -> str:
    return str(h.conn.lookupByName(name).XMLDesc(libvirt.VIR_DOMAIN_XML_INACTIVE))


def _rec(h: Harness, kind: str, short: str) -> record.ResourceRecord:
    with h.store() as store:
        rec = store.get(record.ResourceKey(kind, h.name(short)))
    assert rec is not None
    return rec


def _reasons(h: Harness, kind: str, short: str) -> list[str]:
    with h.store() as store:
        return [e.reason for e in store.events(record.ResourceKey(kind, h.name(short)))]


def _installation(h: Harness) -> str:
    with h.store() as store:
        return store.installation_id()


def test_unmanaged_domain_is_a_conflict_left_byte_identical_until_adopted(
    h: Harness, domain_type: str
) -> None:
    h.write(h.pool(), h.network(), h.template(), h.vm("web", cpus=2), h.vm("other"))
    before = _plain_domain(h, h.name("web"), domain_type)

    plan = h.plan()
    assert plan.exit_code == 2, plan.output
    assert f"? virtualmachine/{h.name('web')}: conflict: " in plan.output
    assert "--adopt" in plan.output

    result = h.apply()
    assert result.exit_code == 1, result.output
    assert f"virtualmachine/{h.name('web')} failed:" in result.output
    assert h.state("other") == libvirt.VIR_DOMAIN_RUNNING  # the rest converged
    assert _xml(h, h.name("web")) == before
    assert h.state("web") == libvirt.VIR_DOMAIN_SHUTOFF
    assert not (h.pool_dir / f"{h.name('web')}.root.qcow2").exists()
    assert _rec(h, "VirtualMachine", "web").status["phase"] == "Conflict"
    assert _rec(h, "VirtualMachine", "other").status["phase"] == "Ready"
    assert "Conflict" in _reasons(h, "VirtualMachine", "web")
    assert h.plan().exit_code == 2  # still a conflict: nothing was taken over
    assert _xml(h, h.name("web")) == before

    uuid = h.domain("web").UUIDString()
    adopt_plan = h.plan("--adopt")
    assert adopt_plan.exit_code == 2
    assert f"~ virtualmachine/{h.name('web')} (update, adopt, live)" in adopt_plan.output
    result = h.apply("--adopt")
    assert result.exit_code == 0, result.output
    managed = h.domain_xml("web").find(MANAGED)
    assert managed is not None
    assert managed.get("installation") == _installation(h)
    assert managed.get("name") == h.name("web")
    assert h.domain("web").UUIDString() == uuid  # the same domain, taken over, not replaced
    assert h.domain_xml("web").findtext("vcpu") == "2"  # converged on the manifest
    assert h.state("web") == libvirt.VIR_DOMAIN_RUNNING
    assert (h.pool_dir / f"{h.name('web')}.root.qcow2").is_file()
    web = _rec(h, "VirtualMachine", "web")
    assert web.status["phase"] == "Ready" and web.status["uuid"] == uuid
    assert "Adopted" in _reasons(h, "VirtualMachine", "web")
    assert h.plan().exit_code == 0  # owned now: no flag needed any more


def test_unmanaged_network_is_a_conflict_that_fails_its_vms_until_adopted(h: Harness) -> None:
    h.write(h.pool(), h.network(), h.template(), h.vm("web"))
    theirs = (
        f"<network><name>{h.name('net')}</name><bridge name='{h.bridge(7)}'/>"
        "<ip address='192.168.251.1' netmask='255.255.255.0'/></network>"
    )
    before = str(h.conn.networkDefineXML(theirs).XMLDesc(libvirt.VIR_NETWORK_XML_INACTIVE))

    def current() -> str:
        net = h.conn.networkLookupByName(h.name("net"))
        return str(net.XMLDesc(libvirt.VIR_NETWORK_XML_INACTIVE))

    plan = h.plan()
    assert plan.exit_code == 2, plan.output
    assert f"? network/{h.name('net')}: conflict: " in plan.output

    result = h.apply()
    assert result.exit_code == 1, result.output
    assert f"network/{h.name('net')} failed:" in result.output
    assert f"virtualmachine/{h.name('web')} failed: depends on network/" in result.output
    assert current() == before
    assert not h.conn.networkLookupByName(h.name("net")).isActive()
    assert not h.has_domain("web")
    assert _rec(h, "StoragePool", "pool").status["phase"] == "Ready"  # the rest converged
    assert _rec(h, "Network", "net").status["phase"] == "Conflict"
    assert "DependencyFailed" in _reasons(h, "VirtualMachine", "web")

    result = h.apply("--adopt")
    assert result.exit_code == 0, result.output
    net = h.conn.networkLookupByName(h.name("net"))
    root = etree.fromstring(current().encode())
    managed = root.find(MANAGED)
    assert managed is not None and managed.get("installation") == _installation(h)
    assert net.isActive() and net.bridgeName() == h.bridge()
    assert h.state("web") == libvirt.VIR_DOMAIN_RUNNING
    assert "Adopted" in _reasons(h, "Network", "net")
    assert h.plan().exit_code == 0


def test_domain_of_another_installation_is_never_adopted_modified_or_pruned(
    h: Harness, domain_type: str
) -> None:
    h.write(h.pool(), h.network(), h.template(), h.vm("web"), h.vm("gone"))
    result = h.apply()
    assert result.exit_code == 0, result.output
    # The other installation's VMs: one under a name only they use, one that a manifest
    # of ours names too; and our "gone" leaves the manifests.
    theirs = _plain_domain(h, h.name("theirs"), domain_type, installation="another-installation")
    clash = _plain_domain(h, h.name("clash"), domain_type, installation="another-installation")
    h.write(h.pool(), h.network(), h.template(), h.vm("web"), h.vm("clash"))

    for flags in ((), ("--adopt",)):
        plan = h.plan(*flags)
        assert plan.exit_code == 2, plan.output
        assert f"? virtualmachine/{h.name('clash')}: conflict: " in plan.output
        assert "another installation (another-installation)" in plan.output
        result = h.apply(*flags)
        assert result.exit_code == 1, result.output
        assert _xml(h, h.name("clash")) == clash

    # Prune removes our own leftover, never theirs.
    plan = h.plan("--prune")
    assert f"- virtualmachine/{h.name('gone')} (delete" in plan.output
    assert h.name("theirs") not in plan.output
    result = h.apply("--prune", "--adopt")
    assert result.exit_code == 1, result.output  # the clash still fails
    assert not h.has_domain("gone")
    assert _xml(h, h.name("theirs")) == theirs
    assert _xml(h, h.name("clash")) == clash
    assert h.state("web") == libvirt.VIR_DOMAIN_RUNNING


def test_a_foreign_pool_whose_directory_is_gone_is_never_rescanned_or_stopped(
    h: Harness, tmp_path: Path
) -> None:
    """A rescan of a pool whose directory has gone makes libvirt stop it: not ours to do."""
    directory = tmp_path / "foreign-pool"
    directory.mkdir()
    foreign = h.conn.storagePoolDefineXML(dir_pool(h.name("foreign"), directory), 0)
    try:
        foreign.create(0)
        directory.rmdir()
        h.write(h.pool(), h.network(), h.template(), h.vm("web"))
        assert h.apply().exit_code == 0
        assert h.plan().exit_code == 0
        assert h.run("get", "vms").exit_code == 0
        assert foreign.isActive() == 1
    finally:
        if foreign.isActive():
            foreign.destroy()
        foreign.undefine()
