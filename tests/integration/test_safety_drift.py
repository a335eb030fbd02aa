"""Drift: someone changes an owned VM behind the reconciler's back; plan shows it, apply heals it.

Each scenario converges a VM, then acts as an operator with libvirt directly
(``virsh destroy``, ``suspend``, ``define`` of an edited XML that keeps our
metadata, ``autostart``, ``vol-delete``), and checks the whole loop: ``plan``
prints ``! virtualmachine/NAME (drift, ...)`` with the field diff and exits 2,
``apply`` puts libvirt back and records ``DriftDetected`` (with the diff as
JSON) and ``DriftCorrected``, and a second ``plan`` exits 0.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Callable

import libvirt
import pytest
from lxml import etree

from reconciler.models import record
from tests.integration.harness import Harness

pytestmark = pytest.mark.integration

MiB = 1 << 20


def _redefine(h: Harness, short: str, edit: Callable[[etree._Element], None]) -> None:
    """``virsh edit``: rewrite the persistent XML, keeping everything else (our metadata too)."""
    root = h.domain_xml(short)
    edit(root)
    h.conn.defineXML(etree.tostring(root, encoding="unicode"))


def _set_vcpus(root: etree._Element) -> None:
    vcpu = root.find("vcpu")
    assert vcpu is not None
    vcpu.text = "2"


def _set_memory(root: etree._Element) -> None:
    for tag in ("memory", "currentMemory"):
        element = root.find(tag)
        assert element is not None
        element.set("unit", "KiB")
        element.text = str(128 * 1024)


def _drop_nic(root: etree._Element) -> None:
    devices = root.find("devices")
    assert devices is not None
    for nic in devices.findall("interface"):
        devices.remove(nic)


def _volume_name(h: Harness, short: str) -> str:
    return f"{h.name(short)}.root.qcow2"


@dataclasses.dataclass(frozen=True)
class Drift:
    """One out-of-band change and what the plan must say about it."""

    act: Callable[[Harness], None]
    header: str  # the plan's headline for the VM, after the resource ("*": any impact)
    field: Callable[[Harness], str]  # the field diff line, without indentation ("*" as above)
    path: str  # the field path in the DriftDetected diff
    check: Callable[[Harness], None]  # libvirt after apply


def _running(h: Harness) -> None:
    assert h.state("web") == libvirt.VIR_DOMAIN_RUNNING


def _one_vcpu(h: Harness) -> None:
    assert h.domain_xml("web").findtext("vcpu") == "1"
    _running(h)


def _memory_back(h: Harness) -> None:
    assert h.domain_xml("web").findtext("memory") == str(64 * 1024)


def _nic_back(h: Harness) -> None:
    for inactive in (True, False):  # the config has it back; the running guest still has one
        sources = h.domain_xml("web", inactive=inactive).findall("devices/interface/source")
        assert [s.get("network") for s in sources] == [h.name("net")], inactive


def _no_autostart(h: Harness) -> None:
    assert h.domain("web").autostart() == 0


def _volume_back(h: Harness) -> None:
    assert (h.pool_dir / _volume_name(h, "web")).is_file()
    _running(h)


def _mac(h: Harness) -> str:
    with h.store() as store:
        rec = store.get(record.ResourceKey("VirtualMachine", h.name("web")))
        assert rec is not None
        return str(rec.status["macs"][h.name("net")])


DRIFTS = {
    "stopped": Drift(
        act=lambda h: h.domain("web").destroy(),
        header="(drift, live)",
        field=lambda h: "powerState: declared Running, found Stopped (live)",
        path="powerState",
        check=_running,
    ),
    "paused": Drift(
        act=lambda h: h.domain("web").suspend(),
        header="(drift, live)",
        field=lambda h: "powerState: declared Running, found Paused (live)",
        path="powerState",
        check=_running,
    ),
    "vcpus-redefined": Drift(
        act=lambda h: _redefine(h, "web", _set_vcpus),
        header="(drift, restart)",
        field=lambda h: "cpus: declared 1, found 2 (restart)",
        path="cpus",
        check=_one_vcpu,
    ),
    "memory-redefined": Drift(
        act=lambda h: _redefine(h, "web", _set_memory),
        header="(drift, restart)",
        field=lambda h: "memory: declared 64MiB, found 128MiB (restart)",
        path="memory",
        check=_memory_back,
    ),
    "nic-removed": Drift(
        act=lambda h: _redefine(h, "web", _drop_nic),
        header="(drift, *)",  # a NIC comes back live (hot-plug) or at the next boot
        field=lambda h: f"networks[{h.name('net')}]: declared {_mac(h)}, found (none) (*)",
        path="networks[{net}]",
        check=_nic_back,
    ),
    "autostart-flipped": Drift(
        act=lambda h: h.domain("web").setAutostart(1),
        header="(drift, live)",
        field=lambda h: "autostart: declared False, found True (live)",
        path="autostart",
        check=_no_autostart,
    ),
    "volume-deleted": Drift(
        act=lambda h: (
            h.conn.storagePoolLookupByName(h.name("pool"))
            .storageVolLookupByName(_volume_name(h, "web"))
            .delete(0)
        ),
        header="(drift, live)",
        field=lambda h: (
            f"disks[root].volume: declared {h.name('pool')}/{_volume_name(h, 'web')} "
            "(16MiB), found (none) (live)"
        ),
        path="disks[root].volume",
        check=_volume_back,
    ),
}


def _converged(h: Harness) -> None:
    h.write(h.pool(), h.network(), h.template(), h.vm("web"))
    result = h.apply()
    assert result.exit_code == 0, result.output
    assert h.state("web") == libvirt.VIR_DOMAIN_RUNNING


def _events(h: Harness, short: str) -> list[record.EventRecord]:
    with h.store() as store:
        return store.events(record.ResourceKey("VirtualMachine", h.name(short)))


def _conditions(h: Harness, short: str) -> dict[str, dict[str, str]]:
    with h.store() as store:
        rec = store.get(record.ResourceKey("VirtualMachine", h.name(short)))
        assert rec is not None
        return {c["type"]: c for c in rec.status["conditions"]}


@pytest.mark.parametrize("what", list(DRIFTS))
def test_out_of_band_change_is_planned_as_drift_and_corrected_by_apply(
    h: Harness, what: str
) -> None:
    drift = DRIFTS[what]
    _converged(h)
    field_line = None
    if what == "nic-removed":
        field_line = drift.field(h)  # the MAC, read from the record before the NIC goes
    drift.act(h)

    plan = h.plan()
    assert plan.exit_code == 2, plan.output
    header = re.escape(f"! virtualmachine/{h.name('web')} {drift.header}")
    field = re.escape(f"    {field_line or drift.field(h)}")
    for line in (header, field):
        assert re.search("^" + line.replace(r"\*", "(live|restart)") + "$", plan.output, re.M), (
            plan.output
        )
    assert "Plan: 1 drifted." in plan.output

    result = h.apply()
    assert result.exit_code == 0, result.output
    drift.check(h)
    assert h.plan().exit_code == 0

    events = _events(h, "web")
    detected = [e for e in events if e.reason == "DriftDetected"]
    assert len(detected) == 1
    assert detected[0].type is record.EventType.WARNING
    assert detected[0].diff is not None
    path = drift.path.format(net=h.name("net"))
    assert path in [c["field"] for c in detected[0].diff["changes"]]
    corrected = [e for e in events if e.reason == "DriftCorrected"]
    assert len(corrected) == 1 and corrected[0].type is record.EventType.NORMAL
    assert corrected[0].diff == detected[0].diff
    conditions = _conditions(h, "web")
    assert conditions["Ready"]["status"] == "True"
    assert conditions["Drifted"]["status"] == "False"


def test_undefined_domain_is_recreated_as_drift_and_keeps_its_volume_and_mac(h: Harness) -> None:
    _converged(h)
    mac = _mac(h)
    volume = h.pool_dir / _volume_name(h, "web")
    inode = volume.stat().st_ino
    dom = h.domain("web")
    dom.destroy()
    dom.undefine()

    plan = h.plan()
    assert plan.exit_code == 2, plan.output
    assert f"! virtualmachine/{h.name('web')} (drift, recreate" in plan.output

    result = h.apply()
    assert result.exit_code == 0, result.output
    assert h.state("web") == libvirt.VIR_DOMAIN_RUNNING
    assert volume.stat().st_ino == inode  # the data stayed; the domain came back onto it
    assert [m.get("address") for m in h.domain_xml("web").findall("devices/interface/mac")] == [mac]
    reasons = [e.reason for e in _events(h, "web")]
    assert "DriftDetected" in reasons and "DriftCorrected" in reasons
    assert "VolumeCreated" in reasons and "VolumeReused" not in reasons  # only the first apply's
    assert h.plan().exit_code == 0


def test_drift_that_cannot_be_corrected_sets_drifted_until_it_is(h: Harness) -> None:
    _converged(h)
    volume = h.pool_dir / _volume_name(h, "web")
    h.domain("web").destroy()
    volume.write_bytes(bytes(16 * MiB))  # the disk is overwritten: qemu can no longer open it

    result = h.apply()
    assert result.exit_code == 1, result.output
    assert f"virtualmachine/{h.name('web')} failed:" in result.output
    assert h.state("web") == libvirt.VIR_DOMAIN_SHUTOFF
    conditions = _conditions(h, "web")
    assert conditions["Ready"]["status"] == "False"
    assert conditions["Drifted"]["status"] == "True"
    assert "powerState" in conditions["Drifted"]["message"]
    reasons = [e.reason for e in _events(h, "web")]
    assert "DriftDetected" in reasons and "ApplyFailed" in reasons
    assert "DriftCorrected" not in reasons
    assert h.plan().exit_code == 2  # still drifted

    # The operator removes the broken volume; the next pass recreates it and starts the VM.
    pool = h.conn.storagePoolLookupByName(h.name("pool"))
    pool.refresh(0)
    pool.storageVolLookupByName(volume.name).delete(0)
    result = h.apply()
    assert result.exit_code == 0, result.output
    assert h.state("web") == libvirt.VIR_DOMAIN_RUNNING
    conditions = _conditions(h, "web")
    assert conditions["Ready"]["status"] == "True"
    assert conditions["Drifted"]["status"] == "False"
    assert "DriftCorrected" in [e.reason for e in _events(h, "web")]
