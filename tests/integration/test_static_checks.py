"""``validate`` reads the record as ``plan`` does, and says when it could not.

A VM whose template was applied earlier validates on its own, as it plans; a
record that cannot be read is named on stderr and the manifests are checked
alone; without a record nothing is created. The static checks are one located
line each: overlapping subnets (between manifests, with a network of the record
no longer declared, and, at plan, with any network libvirt has), a MAC given
twice, an image missing from its pool, a disk shrink.
"""

from __future__ import annotations

from pathlib import Path

import libvirt
import pytest
import yaml
from lxml import etree

from reconciler.models import record
from tests.integration.harness import Harness

pytestmark = pytest.mark.integration


def test_validate_accepts_a_vm_whose_template_is_in_the_record(h: Harness) -> None:
    h.write(h.pool(), h.network(), h.template())
    applied = h.cli("apply", "-f", str(h.workdir))
    assert applied.returncode == 0, applied.stdout + applied.stderr
    alone = h.workdir.parent / "vm.yaml"
    alone.write_text(yaml.safe_dump(h.vm("web", powerState="Stopped")))

    done = h.cli("validate", "-f", str(alone))

    assert done.returncode == 0, done.stdout + done.stderr
    assert "1 manifests valid" in done.stdout
    assert h.cli("plan", "-f", str(alone)).returncode == 2


def test_validate_says_when_the_record_could_not_be_read(h: Harness, tmp_path: Path) -> None:
    broken = tmp_path / "broken.db"
    broken.write_text("this is not a database\n" * 100)
    alone = tmp_path / "vm.yaml"
    alone.write_text(yaml.safe_dump(h.vm("web")))

    done = h.cli("validate", "-f", str(alone), db=f"sqlite:///{broken}")

    assert done.returncode == 1, done.stdout + done.stderr
    assert "note: the record was not read (" in done.stderr
    assert "references checked against the manifests only" in done.stderr
    assert "spec.template: " in done.stderr


def test_validate_without_a_record_creates_none(h: Harness, tmp_path: Path) -> None:
    where = tmp_path / "none" / "x.db"
    h.write(h.pool(), h.network(), h.template(), h.vm("web"))
    done = h.cli("validate", "-f", str(h.workdir), db=f"sqlite:///{where}")
    assert done.returncode == 0, done.stdout + done.stderr
    assert not where.parent.exists()


def _line_of(path: Path, needle: str) -> int:
    return next(i for i, line in enumerate(path.read_text().splitlines(), 1) if needle in line)


def test_overlapping_subnets_are_a_located_error_in_validate_and_plan(h: Harness) -> None:
    other = h.network("net2")
    other["spec"]["bridge"] = h.bridge(1)
    other["spec"]["ipv4"] = {"address": f"{h.subnet}.129/25"}
    h.write(h.pool(), h.network(), other)
    path = h.workdir / "manifests.yaml"
    line = _line_of(path, f"address: {h.subnet}.129/25")

    for command in ("validate", "plan"):
        done = h.cli(command, "-f", str(h.workdir))
        assert done.returncode == 1, done.stdout + done.stderr
        assert (
            f"{path}:{line}:14: Network/{h.name('net2')}: spec.ipv4.address: subnet "
            f"{h.subnet}.128/25 overlaps {h.subnet}.0/24 of network/{h.name('net')}"
        ) in done.stderr
    assert h.name("net") not in {n.name() for n in h.conn.listAllNetworks()}


def _foreign_network(h: Harness, short: str, n: int) -> libvirt.virNetwork:
    """A NAT network made without the reconciler, on this test's ``n``-th subnet."""
    base = h.subnet_of(n)
    network = etree.Element("network")
    etree.SubElement(network, "name").text = h.name(short)
    etree.SubElement(network, "forward", mode="nat")
    etree.SubElement(network, "bridge", name=h.bridge(n), stp="on", delay="0")
    etree.SubElement(network, "ip", address=f"{base}.1", netmask="255.255.255.0")
    return h.conn.networkDefineXML(etree.tostring(network, encoding="unicode"))


def test_a_subnet_libvirt_has_on_a_network_we_do_not_manage_is_a_located_plan_error(
    h: Harness,
) -> None:
    foreign = _foreign_network(h, "theirs", 3)
    try:
        mine = h.network()
        mine["spec"]["ipv4"] = {"address": f"{h.subnet_of(3)}.1/25"}
        h.write(h.pool(), mine)
        path = h.workdir / "manifests.yaml"
        line = _line_of(path, f"address: {h.subnet_of(3)}.1/25")

        for command in ("plan", "apply"):
            done = h.cli(command, "-f", str(h.workdir))
            assert done.returncode == 1, done.stdout + done.stderr
            assert (
                f"{path}:{line}:14: Network/{h.name('net')}: spec.ipv4.address: subnet "
                f"{h.subnet_of(3)}.0/25 overlaps {h.subnet_of(3)}.0/24 of libvirt network "
                f"'{h.name('theirs')}', which this installation does not manage"
            ) in done.stderr.splitlines(), done.stderr
            assert done.stderr.splitlines()[-1] == (
                "error: 1 invalid manifest entry; nothing was applied"
            )
            assert "Traceback" not in done.stderr
        assert h.name("net") not in {n.name() for n in h.conn.listAllNetworks()}

        # The same network, taken over with --adopt, is no obstacle to itself.
        adopted = h.network("theirs", n=3)
        h.write(h.pool(), adopted)
        done = h.cli("plan", "-f", str(h.workdir), "--adopt")
        assert done.returncode == 2, done.stdout + done.stderr
        assert "overlaps" not in done.stderr
    finally:
        foreign.undefine()


def test_a_subnet_of_a_recorded_network_no_longer_declared_is_refused_by_validate_and_plan(
    h: Harness,
) -> None:
    h.write(h.pool(), h.network())
    applied = h.cli("apply", "-f", str(h.workdir))
    assert applied.returncode == 0, applied.stdout + applied.stderr
    successor = h.network("net2", n=1)
    successor["spec"]["ipv4"] = {"address": f"{h.subnet}.1/24"}
    h.write(h.pool(), successor)
    path = h.workdir / "manifests.yaml"
    line = _line_of(path, f"address: {h.subnet}.1/24")

    for command in ("validate", "plan"):
        done = h.cli(command, "-f", str(h.workdir))
        assert done.returncode == 1, done.stdout + done.stderr
        assert done.stderr.splitlines()[0] == (
            f"{path}:{line}:14: Network/{h.name('net2')}: spec.ipv4.address: subnet "
            f"{h.subnet}.0/24 overlaps {h.subnet}.0/24 of network/{h.name('net')} (in the record)"
        ), done.stderr
    assert h.name("net2") not in {n.name() for n in h.conn.listAllNetworks()}

    # Declared again on a subnet of its own, the old network changes nothing for the new one.
    h.write(h.pool(), h.network(), h.network("net2", n=1))
    planned = h.cli("plan", "-f", str(h.workdir))
    assert planned.returncode == 2, planned.stdout + planned.stderr


def test_a_mac_on_two_vms_is_a_located_error(h: Harness) -> None:
    mac = "52:54:00:12:34:56"
    nic = [{"network": h.name("net"), "mac": mac}]
    h.write(h.pool(), h.network(), h.template(), h.vm("a", networks=nic), h.vm("b", networks=nic))
    path = h.workdir / "manifests.yaml"

    done = h.cli("validate", "-f", str(h.workdir))

    assert done.returncode == 1, done.stdout + done.stderr
    found = [line for line in done.stderr.splitlines() if f"MAC {mac}" in line]
    assert len(found) == 1, done.stderr
    assert found[0].startswith(f"{path}:")
    assert (
        f"VirtualMachine/{h.name('b')}: spec.networks[0].mac: MAC {mac} is already used by "
        f"virtualmachine/{h.name('a')}"
    ) in found[0]


def test_a_mac_of_a_vm_in_the_record_is_refused(h: Harness) -> None:
    h.write(h.pool(), h.network(), h.template(), h.vm("a", powerState="Stopped"))
    assert h.cli("apply", "-f", str(h.workdir)).returncode == 0
    with h.store() as store:
        rec = store.get(record.ResourceKey("VirtualMachine", h.name("a")))
        assert rec is not None
        mac = str(rec.status["macs"][h.name("net")])
    alone = h.workdir.parent / "b.yaml"
    nic = [{"network": h.name("net"), "mac": mac}]
    alone.write_text(yaml.safe_dump(h.vm("b", powerState="Stopped", networks=nic)))

    for command in ("validate", "plan"):
        done = h.cli(command, "-f", str(alone))
        assert done.returncode == 1, done.stdout + done.stderr
        assert (
            f"spec.networks[0].mac: MAC {mac} is already used by "
            f"virtualmachine/{h.name('a')} (in the record)"
        ) in done.stderr
    assert not h.has_domain("b")


def test_an_image_missing_from_its_pool_is_a_located_plan_error(h: Harness) -> None:
    disks = [{"name": "root", "size": "16MiB", "pool": h.name("pool"), "image": "nope.qcow2"}]
    h.write(h.pool(images=True), h.network(), h.template())
    assert h.cli("apply", "-f", str(h.workdir)).returncode == 0
    h.write(h.pool(images=True), h.network(), h.template(), h.vm("web", disks=disks))
    path = h.workdir / "manifests.yaml"

    done = h.cli("plan", "-f", str(h.workdir))

    assert done.returncode == 1, done.stdout + done.stderr
    assert done.stderr.startswith(f"{path}:")
    assert (
        f"VirtualMachine/{h.name('web')}: spec.disks[0].image: image 'nope.qcow2' is not a "
        f"volume of pool '{h.name('pool')}'"
    ) in done.stderr
    assert "nothing was applied" in done.stderr
    assert h.cli("apply", "-f", str(h.workdir)).returncode == 1
    assert not h.has_domain("web")
    assert not (h.pool_dir / f"{h.name('web')}.root.qcow2").exists()


def test_a_disk_shrink_is_a_located_plan_error(h: Harness) -> None:
    h.write(h.pool(), h.network(), h.template(), h.vm("web", powerState="Stopped"))
    assert h.cli("apply", "-f", str(h.workdir)).returncode == 0
    smaller = [{"name": "root", "size": "8MiB", "pool": h.name("pool")}]
    h.write(h.pool(), h.network(), h.template(), h.vm("web", powerState="Stopped", disks=smaller))

    done = h.cli("plan", "-f", str(h.workdir))

    assert done.returncode == 1, done.stdout + done.stderr
    assert (
        f"VirtualMachine/{h.name('web')}: spec.disks[0].size: shrinking disk 'root' from "
        "16MiB to 8MiB would lose data; disks can only grow"
    ) in done.stderr
