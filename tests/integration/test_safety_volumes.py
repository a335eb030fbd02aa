"""Volumes: generated names cannot collide, and a volume we did not create is never ours.

The operator declares VM ``a`` with disk ``b-root`` next to VM ``a-b`` with disk
``root``: they get two volumes (``VM.DISK.qcow2``) and deleting one leaves the
other. A file already in the pool under a generated name is a conflict for its
VM, located in the manifest, and stays untouched (not grown, not used, not
deleted with the VM). A volume named with ``volume:`` is used as it is, only
with ``--adopt``, and survives ``reclaimPolicy: Delete``. A template a VM still
uses is never pruned. A record from before the inventory keeps each VM on the
``VM-DISK.qcow2`` volume it has.
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

import libvirt
import pytest
import sqlalchemy as sa
from alembic import command
from lxml import etree

from reconciler.models import record
from reconciler.store import _engine, _migrate, upgrade_schema
from tests.fixtures.libvirt import qcow2_volume
from tests.integration.harness import Harness, doc

pytestmark = pytest.mark.integration

MiB = 1 << 20


def _base(h: Harness) -> list[dict[str, Any]]:
    return [h.pool(), h.network(), h.template()]


def _plain_vm(h: Harness, short: str, *disks: dict[str, Any], **spec: Any) -> dict[str, Any]:
    """A VM without a template, so its disks are exactly ``disks``."""
    return doc(
        "VirtualMachine",
        h.name(short),
        {
            "cpus": 1,
            "memory": "64MiB",
            "graphics": {"type": "none"},
            "disks": [{"size": "16MiB", "pool": h.name("pool"), **d} for d in disks],
            "networks": [{"network": h.name("net")}],
            **spec,
        },
    )


def _files(h: Harness) -> set[str]:
    return {p.name for p in h.pool_dir.iterdir()}


def _sources(h: Harness, short: str) -> list[str | None]:
    return [s.get("volume") for s in h.domain_xml(short).iterfind("devices/disk/source")]


def _fingerprint(path: Path) -> tuple[int, int, str]:
    stat = path.stat()
    return stat.st_ino, stat.st_size, hashlib.sha256(path.read_bytes()).hexdigest()


def _hand_made_volume(h: Harness, name: str, mib: int = 1) -> Path:
    pool = h.conn.storagePoolLookupByName(h.name("pool"))
    pool.createXML(qcow2_volume(name, mib), 0)
    return h.pool_dir / name


def _events(h: Harness, short: str) -> list[record.EventRecord]:
    with h.store() as store:
        return store.events(record.ResourceKey("VirtualMachine", h.name(short)))


def test_vm_a_disk_b_root_and_vm_a_b_disk_root_get_two_volumes_and_delete_keeps_the_other(
    h: Harness,
) -> None:
    delete = {"reclaimPolicy": "Delete"}
    h.write(
        h.pool(),
        h.network(),
        _plain_vm(h, "a", {"name": "b-root", **delete}),
        _plain_vm(h, "a-b", {"name": "root", **delete}),
    )
    result = h.apply()
    assert result.exit_code == 0, result.output
    mine, theirs = f"{h.name('a')}.b-root.qcow2", f"{h.name('a-b')}.root.qcow2"
    assert _files(h) == {mine, theirs}
    assert _sources(h, "a") == [mine] and _sources(h, "a-b") == [theirs]
    before = _fingerprint(h.pool_dir / theirs)

    deleted = h.run("delete", "vm", h.name("a"), "--allow-data-loss", "--shutdown-timeout", "1")

    assert deleted.exit_code == 0, deleted.output
    assert _files(h) == {theirs}
    assert _fingerprint(h.pool_dir / theirs) == before
    assert h.state("a-b") == libvirt.VIR_DOMAIN_RUNNING


def test_a_file_under_the_generated_name_is_a_located_conflict_and_is_never_touched(
    h: Harness,
) -> None:
    h.write(h.pool(), h.network())
    assert h.apply().exit_code == 0
    stray = _hand_made_volume(h, f"{h.name('web')}.root.qcow2")
    before = _fingerprint(stray)
    h.write(  # beside manifests.yaml, which declares the pool and network
        _plain_vm(h, "web", {"name": "root", "reclaimPolicy": "Delete"}),
        _plain_vm(h, "other", {"name": "root"}),
        filename="vms.yaml",
    )

    plan = h.plan()
    assert plan.exit_code == 2, plan.output
    conflict = next(line for line in plan.output.splitlines() if line.startswith("?"))
    assert conflict.startswith(f"? virtualmachine/{h.name('web')}: conflict: ")
    assert f"{h.workdir / 'vms.yaml'}:" in conflict and "spec.disks[0]" in conflict
    assert "was not created by this installation" in conflict

    result = h.apply()
    assert result.exit_code == 1, result.output
    assert f"virtualmachine/{h.name('web')} failed:" in result.output
    assert not h.has_domain("web")
    assert h.state("other") == libvirt.VIR_DOMAIN_RUNNING  # its neighbour converged
    assert _fingerprint(stray) == before  # not grown to 16MiB, not reused
    assert "VolumeReused" not in [e.reason for e in _events(h, "web")]

    deleted = h.run("delete", "vm", h.name("web"), "--allow-data-loss", "--shutdown-timeout", "1")
    assert deleted.exit_code == 0, deleted.output
    assert _fingerprint(stray) == before  # reclaimPolicy Delete deletes only what we created
    assert "VolumeDeleted" not in [e.reason for e in _events(h, "web")]


def test_a_named_volume_is_used_as_it_is_with_adopt_and_survives_reclaim_delete(
    h: Harness, domain_type: str
) -> None:
    h.write(h.pool(), h.network())
    assert h.apply().exit_code == 0
    existing = _hand_made_volume(h, f"{h.name('legacy')}.img")
    before = _fingerprint(existing)
    disk = {"name": "root", "volume": existing.name, "size": "64MiB", "reclaimPolicy": "Delete"}
    h.write(h.pool(), h.network(), _plain_vm(h, "web", disk, powerState="Stopped"))

    refused = h.apply()
    assert refused.exit_code == 1, refused.output
    assert "pass --adopt to use it as it is" in refused.output
    assert not h.has_domain("web")

    adopted = h.apply("--adopt")
    assert adopted.exit_code == 0, adopted.output
    assert _sources(h, "web") == [existing.name]
    assert _fingerprint(existing) == before  # not grown to 64MiB, not rewritten
    assert _files(h) == {existing.name}  # no generated volume beside it
    assert "VolumeAdopted" in [e.reason for e in _events(h, "web")]
    assert h.plan().exit_code == 0  # owned from now on, without --adopt

    deleted = h.run("delete", "vm", h.name("web"), "--allow-data-loss", "--shutdown-timeout", "1")
    assert deleted.exit_code == 0, deleted.output
    assert not h.has_domain("web")
    assert _fingerprint(existing) == before
    retained = [e.message for e in _events(h, "web") if e.reason == "VolumeRetained"]
    assert retained == [
        f"volume {h.name('pool')}/{existing.name} retained (not created by this installation)"
    ]


def test_prune_keeps_a_template_a_vm_still_uses_and_deletes_an_unused_one(h: Harness) -> None:
    unused = h.template("spare")
    h.write(*_base(h), unused, h.vm("web"))
    assert h.apply().exit_code == 0
    h.write(h.pool(), h.network(), h.vm("web"))  # both templates left out

    plan = h.plan("--prune")
    assert plan.exit_code == 2, plan.output
    assert f"- template/{h.name('tpl')} (protected" in plan.output
    assert f"still used by virtualmachine/{h.name('web')}" in plan.output
    assert f"- template/{h.name('spare')} (delete" in plan.output

    result = h.apply("--prune")
    assert result.exit_code == 0, result.output
    with h.store() as store:
        assert store.get(record.ResourceKey("Template", h.name("tpl"))) is not None
        assert store.get(record.ResourceKey("Template", h.name("spare"))) is None
    assert h.state("web") == libvirt.VIR_DOMAIN_RUNNING


def _make_old_installation(h: Harness, short: str) -> str:
    """Move a converged VM onto the ``VM-DISK.qcow2`` volume older versions created,
    and take the record back to the schema from before the inventory."""
    pool = h.conn.storagePoolLookupByName(h.name("pool"))
    old = f"{h.name(short)}-root.qcow2"
    pool.createXML(qcow2_volume(old, 16), 0)
    domain = h.domain_xml(short)
    source = domain.find("devices/disk/source")
    assert source is not None
    source.set("volume", old)
    h.conn.defineXML(etree.tostring(domain, encoding="unicode"))
    pool.storageVolLookupByName(f"{h.name(short)}.root.qcow2").delete(0)
    engine = _engine.create(_engine.normalise(h.db_url))
    try:
        with engine.connect() as conn, conn.begin():
            command.downgrade(_migrate.alembic_config(conn), "0001")
        assert "volumes" not in sa.inspect(engine).get_table_names()
    finally:
        engine.dispose()
    return old


def test_a_record_from_before_the_inventory_keeps_each_vm_on_its_old_volume(h: Harness) -> None:
    h.write(*_base(h), h.vm("web", powerState="Stopped"))
    assert h.apply().exit_code == 0
    old = _make_old_installation(h, "web")

    assert upgrade_schema(h.db_url).up_to_date
    with h.store() as store:
        key = record.ResourceKey("VirtualMachine", h.name("web"))
        assert store.volumes() == [record.VolumeRecord(h.name("pool"), old, key, "root")]
    plan = h.plan()
    assert plan.exit_code == 0, plan.output  # no volume change, nothing at all
    assert _sources(h, "web") == [old]

    data = {"name": "data", "size": "16MiB", "pool": h.name("pool")}
    h.write(*_base(h), h.vm("web", powerState="Stopped", disks=[data]))
    result = h.apply()
    assert result.exit_code == 0, result.output
    assert _sources(h, "web") == [old, f"{h.name('web')}.data.qcow2"]  # new disks: new names
    assert _files(h) == {old, f"{h.name('web')}.data.qcow2"}
