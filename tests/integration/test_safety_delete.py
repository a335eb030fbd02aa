"""``infinibay delete`` is as safe as prune: only what we own, planned whole, refusals listed.

An operator runs ``delete vm NAME`` on a domain made with ``virsh define``
(also a running one): it is refused as not owned, exit 1, and its XML stays
byte-identical, until ``--adopt`` says to take it. A name that exists nowhere
is ``not found``, exit 1, and writes no event. ``delete -f DIR`` whose VMs are
protected keeps the template, pool and network those VMs still
use, lists each refusal with its reason and exits 1. ``--dry-run`` prints the
plan and changes nothing.
"""

from __future__ import annotations

import libvirt
import pytest

from reconciler.models import record
from tests.fixtures.libvirt import firmware_only_domain
from tests.integration.harness import Harness

pytestmark = pytest.mark.integration


def _base(h: Harness) -> list[dict[str, object]]:
    return [h.pool(), h.network(), h.template()]


def _xml(h: Harness, short: str) -> str:
    return str(h.domain(short).XMLDesc(libvirt.VIR_DOMAIN_XML_INACTIVE))


def _events(h: Harness, kind: str, short: str) -> list[record.EventRecord]:
    with h.store() as store:
        return store.events(record.ResourceKey(kind, h.name(short)))


@pytest.mark.parametrize("running", [False, True], ids=["defined", "running"])
def test_delete_refuses_a_hand_made_domain_as_not_owned_until_adopt(
    h: Harness, domain_type: str, running: bool
) -> None:
    stray = h.conn.defineXML(firmware_only_domain(h.name("stray"), domain_type, memory_mib=64))
    if running:
        stray.create()
    before = _xml(h, "stray")

    result = h.run("delete", "vm", h.name("stray"), "--shutdown-timeout", "1")

    assert result.exit_code == 1, result.output
    assert f"virtualmachine/{h.name('stray')} failed: not owned" in result.output
    assert "--adopt" in result.output
    assert _xml(h, "stray") == before
    assert h.domain("stray").isActive() == running
    assert "Deleted" not in [e.reason for e in _events(h, "VirtualMachine", "stray")]

    adopted = h.run("delete", "vm", h.name("stray"), "--adopt", "--shutdown-timeout", "1")

    assert adopted.exit_code == 0, adopted.output
    assert f"virtualmachine/{h.name('stray')} deleted" in adopted.output
    assert not h.has_domain("stray")


def test_delete_of_a_name_that_exists_nowhere_is_not_found_without_an_event(h: Harness) -> None:
    h.write(*_base(h))
    assert h.apply().exit_code == 0
    with h.store() as store:
        runs_before = len(store.runs())

    result = h.run("delete", "vm", h.name("missing"))

    assert result.exit_code == 1, result.output
    assert f"virtualmachine/{h.name('missing')} not found" in result.output
    assert "deleted" not in result.output
    assert _events(h, "VirtualMachine", "missing") == []
    with h.store() as store:
        assert len(store.runs()) == runs_before


def test_delete_dir_keeps_the_template_protected_vms_still_use(h: Harness) -> None:
    disks = [{"name": "root", "size": "16MiB", "pool": h.name("pool"), "reclaimPolicy": "Delete"}]
    vms = [h.vm(f"vm{i}", disks=disks) for i in range(3)]
    for vm in vms:
        vm["metadata"]["annotations"] = {"infinibay.io/protect": "true"}
    h.write(*_base(h), *vms)
    assert h.apply().exit_code == 0

    result = h.run("delete", "-f", str(h.workdir), "--shutdown-timeout", "1")

    assert result.exit_code == 1, result.output
    for i in range(3):
        assert h.state(f"vm{i}") == libvirt.VIR_DOMAIN_RUNNING
        assert f"virtualmachine/{h.name(f'vm{i}')} failed:" in result.output
    assert "protected by annotation infinibay.io/protect" in result.output
    for kind, short in (("template", "tpl"), ("network", "net"), ("storagepool", "pool")):
        line = f"{kind}/{h.name(short)} failed: not deleted: still used by virtualmachine/"
        assert line in result.output
    with h.store() as store:
        assert store.get(record.ResourceKey("Template", h.name("tpl"))) is not None
        assert len(store.resources()) == 6
    assert h.conn.networkLookupByName(h.name("net")).isActive()
    assert h.conn.storagePoolLookupByName(h.name("pool")).isActive()
    assert h.plan().exit_code == 0  # nothing was half-deleted

    for vm in vms:
        del vm["metadata"]["annotations"]
    h.write(*_base(h), *vms)
    assert h.apply().exit_code == 0
    allowed = h.run("delete", "-f", str(h.workdir), "--shutdown-timeout", "1")

    assert allowed.exit_code == 0, allowed.output  # reclaimPolicy Delete is the consent
    with h.store() as store:
        assert store.resources() == []
    assert not any(h.has_domain(f"vm{i}") for i in range(3))
    assert not any(h.pool_dir.glob("*.qcow2"))


def test_delete_dry_run_prints_the_plan_and_changes_nothing(h: Harness) -> None:
    h.write(*_base(h), h.vm("web"))
    applied = h.apply()
    assert applied.exit_code == 0, applied.output
    before = _xml(h, "web")
    with h.store() as store:
        runs_before = len(store.runs())
        events_before = len(store.events())

    result = h.run("delete", "vm", h.name("web"), h.name("missing"), "--dry-run")

    assert result.exit_code == 1, result.output  # the real run would fail on the missing name
    assert f"- virtualmachine/{h.name('web')} (delete, live)" in result.output
    assert f"virtualmachine/{h.name('missing')} not found" in result.output
    assert "Plan: 1 to delete." in result.output
    assert h.state("web") == libvirt.VIR_DOMAIN_RUNNING and _xml(h, "web") == before
    with h.store() as store:
        assert store.get(record.ResourceKey("VirtualMachine", h.name("web"))) is not None
        assert (len(store.runs()), len(store.events())) == (runs_before, events_before)

    clean = h.run("delete", "vm", h.name("web"), "--dry-run")
    assert clean.exit_code == 0, clean.output
    assert h.has_domain("web")
