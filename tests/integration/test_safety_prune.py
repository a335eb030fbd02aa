"""Prune: only what this installation owns and no longer declares, and never data by accident.

The operator removes a VM from the manifests and runs ``apply --prune``: the
owned domain goes, an unmanaged domain with a similar name stays, a
``reclaimPolicy: Retain`` volume stays on disk (``VolumeRetained``), a
``Delete`` volume goes with its VM, consented by that policy (``VolumeDeleted``), the
``infinibay.io/protect`` annotation blocks the deletion with a Warning, and an
empty desired state prunes nothing without ``--allow-empty``.
"""

from __future__ import annotations

from pathlib import Path

import libvirt
import pytest

from reconciler.models import record
from tests.fixtures.libvirt import firmware_only_domain
from tests.integration.harness import Harness

pytestmark = pytest.mark.integration


def _base(h: Harness) -> list[dict[str, object]]:
    return [h.pool(), h.network(), h.template()]


def _volume(h: Harness, short: str) -> Path:
    return h.pool_dir / f"{h.name(short)}.root.qcow2"


def _events(h: Harness, short: str) -> list[record.EventRecord]:
    with h.store() as store:
        return store.events(record.ResourceKey("VirtualMachine", h.name(short)))


def _applied(h: Harness, *extra: str) -> None:
    result = h.apply(*extra)
    assert result.exit_code == 0, result.output


def test_prune_deletes_only_the_owned_vm_left_out_and_retains_its_volume(
    h: Harness, domain_type: str
) -> None:
    h.write(*_base(h), h.vm("keep"), h.vm("gone"))
    _applied(h)
    stray = firmware_only_domain(h.name("stray"), domain_type, memory_mib=64)
    stray_xml = h.conn.defineXML(stray).XMLDesc(libvirt.VIR_DOMAIN_XML_INACTIVE)
    h.write(*_base(h), h.vm("keep"))

    assert h.plan().exit_code == 0  # without --prune a missing VM is not a change
    _applied(h)
    assert h.has_domain("gone")  # apply deletes nothing unless --prune

    plan = h.plan("--prune")
    assert plan.exit_code == 2, plan.output
    assert f"- virtualmachine/{h.name('gone')} (delete, live)" in plan.output
    assert (
        f"    volume {h.name('pool')}/{_volume(h, 'gone').name}: retain (reclaimPolicy Retain)"
        in plan.output
    )
    assert h.name("stray") not in plan.output
    assert "Plan: 1 to delete." in plan.output

    result = h.apply("--prune")
    assert result.exit_code == 0, result.output
    assert f"virtualmachine/{h.name('gone')} deleted" in result.output
    assert not h.has_domain("gone")
    assert h.conn.lookupByName(h.name("stray")).XMLDesc(libvirt.VIR_DOMAIN_XML_INACTIVE) == (
        stray_xml
    )
    assert h.state("keep") == libvirt.VIR_DOMAIN_RUNNING
    assert _volume(h, "gone").is_file()
    retained = [e for e in _events(h, "gone") if e.reason == "VolumeRetained"]
    assert len(retained) == 1 and _volume(h, "gone").name in retained[0].message
    with h.store() as store:
        assert store.get(record.ResourceKey("VirtualMachine", h.name("gone"))) is None
        tombstoned = store.get(
            record.ResourceKey("VirtualMachine", h.name("gone")), include_deleted=True
        )
        assert tombstoned is not None and tombstoned.deleted_at is not None
    assert h.plan("--prune").exit_code == 0


def test_prune_of_a_reclaim_delete_volume_is_consented_by_the_policy(h: Harness) -> None:
    disks = [{"name": "root", "size": "16MiB", "pool": h.name("pool"), "reclaimPolicy": "Delete"}]
    h.write(*_base(h), h.vm("keep"), h.vm("scratch", disks=disks))
    _applied(h)
    volume = _volume(h, "scratch")
    h.write(*_base(h), h.vm("keep"))

    plan = h.plan("--prune")
    assert plan.exit_code == 2, plan.output
    assert f"- virtualmachine/{h.name('scratch')} (delete, data-loss)" in plan.output
    assert f"volume {h.name('pool')}/{volume.name}: delete (reclaimPolicy Delete)" in plan.output

    result = h.apply("--prune")
    assert result.exit_code == 0, result.output
    assert not h.has_domain("scratch")
    assert not volume.exists()
    deleted = [e for e in _events(h, "scratch") if e.reason == "VolumeDeleted"]
    assert len(deleted) == 1 and volume.name in deleted[0].message
    assert h.state("keep") == libvirt.VIR_DOMAIN_RUNNING
    assert h.plan("--prune").exit_code == 0


def test_protect_annotation_blocks_prune_with_a_warning(h: Harness) -> None:
    protected = h.vm("precious")
    protected["metadata"]["annotations"] = {"infinibay.io/protect": "true"}
    h.write(*_base(h), h.vm("keep"), protected)
    _applied(h)
    h.write(*_base(h), h.vm("keep"))

    plan = h.plan("--prune")
    assert plan.exit_code == 2, plan.output
    assert f"- virtualmachine/{h.name('precious')} (protected" in plan.output
    assert "protected by annotation infinibay.io/protect" in plan.output

    result = h.apply("--prune", "--allow-data-loss")
    assert result.exit_code == 0, result.output
    assert f"virtualmachine/{h.name('precious')} protected" in result.output
    assert h.state("precious") == libvirt.VIR_DOMAIN_RUNNING
    assert _volume(h, "precious").is_file()
    warnings = [e for e in _events(h, "precious") if e.reason == "DeletionProtected"]
    assert len(warnings) == 1 and warnings[0].type is record.EventType.WARNING
    with h.store() as store:
        assert store.get(record.ResourceKey("VirtualMachine", h.name("precious"))) is not None

    # An explicit delete is blocked the same way.
    result = h.run("delete", "vm", h.name("precious"), "--shutdown-timeout", "1")
    assert h.has_domain("precious"), result.output
    assert [e.count for e in _events(h, "precious") if e.reason == "DeletionProtected"] == [2]


def test_prune_with_an_empty_desired_state_is_refused_and_deletes_nothing(h: Harness) -> None:
    h.write(*_base(h), h.vm("web"))
    _applied(h)
    empty = h.workdir.parent / "empty"
    empty.mkdir()

    result = h.run("apply", "-f", str(empty), "--prune", "--shutdown-timeout", "1")
    assert result.exit_code == 1, result.output
    assert "--allow-empty" in result.output
    assert h.state("web") == libvirt.VIR_DOMAIN_RUNNING
    assert h.conn.networkLookupByName(h.name("net")).isActive()
    assert h.conn.storagePoolLookupByName(h.name("pool")).isActive()
    assert _volume(h, "web").is_file()
    with h.store() as store:
        assert len(store.resources()) == 4
        assert len(store.runs()) == 1  # the refused pass never started
