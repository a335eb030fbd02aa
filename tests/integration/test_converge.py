"""Converge: plan and apply against the real libvirtd, on both record backends.

Each test acts as an operator would (write manifests, run the CLI) and then
reads libvirt, the pool directory and the record back.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

import libvirt
import pytest

from reconciler.models import record
from tests.integration.harness import Harness

pytestmark = pytest.mark.integration

MiB = 1 << 20


def _vcpus(h: Harness, vm: str, *, inactive: bool = True) -> int:
    return int(h.domain_xml(vm, inactive=inactive).findtext("vcpu") or 0)


def _memory_kib(h: Harness, vm: str) -> int:
    return int(h.domain_xml(vm).findtext("memory") or 0)


def test_apply_creates_everything_from_template_and_overrides_then_is_a_noop(h: Harness) -> None:
    h.write(
        h.pool(),
        h.network(),
        h.template(cpus=2),
        h.vm("run", memory="96MiB"),
        h.vm("off", powerState="Stopped"),
        h.vm("paused", powerState="Paused"),
    )
    plan = h.plan()
    assert plan.exit_code == 2, plan.output
    assert f"+ virtualmachine/{h.name('run')} (create" in plan.output

    result = h.apply()
    assert result.exit_code == 0, result.output
    assert f"virtualmachine/{h.name('run')} created, started" in result.output

    pool = h.conn.storagePoolLookupByName(h.name("pool"))
    assert pool.isActive() and pool.autostart()
    net = h.conn.networkLookupByName(h.name("net"))
    assert net.isActive() and net.bridgeName() == h.bridge()
    for short in ("run", "off", "paused"):
        volume = h.pool_dir / f"{h.name(short)}.root.qcow2"
        assert volume.exists()
        assert pool.storageVolLookupByName(volume.name).info()[1] == 16 * MiB
    assert _vcpus(h, "run") == 2  # from the template
    assert _memory_kib(h, "run") == 96 * 1024  # the VM's override
    assert _memory_kib(h, "off") == 64 * 1024  # the template's
    assert h.state("run") == libvirt.VIR_DOMAIN_RUNNING
    assert h.state("off") == libvirt.VIR_DOMAIN_SHUTOFF
    assert h.state("paused") == libvirt.VIR_DOMAIN_PAUSED
    metadata = h.domain_xml("run").find("metadata/{https://infinibay.io/ns/reconciler/1}managed")
    assert metadata is not None and metadata.get("name") == h.name("run")

    again = h.apply()
    assert again.exit_code == 0, again.output
    assert "Nothing to do" in again.output
    assert h.plan().exit_code == 0

    with h.store() as store:
        vm = store.get(record.ResourceKey("VirtualMachine", h.name("run")))
        assert vm is not None
        assert vm.status["phase"] == "Ready"
        assert vm.status["observedGeneration"] == vm.generation == 1
        reasons = {e.reason for e in store.events(vm.key)}
        assert {"Created", "Started", "VolumeCreated"} <= reasons
        runs = store.runs()
        assert len(runs) == 2 and all(r.result == "succeeded" for r in runs)


def test_rich_vm_with_two_nics_two_disks_spice_and_uefi_has_no_perpetual_diff(
    h: Harness, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Some nested hosts offer KVM but cannot run OVMF under it; TCG runs it everywhere.
    monkeypatch.setenv("INFINIBAY_DOMAIN_TYPE", "qemu")
    h.write(
        h.pool(),
        h.network(),
        h.network("net2", n=1),
        h.template(),
        h.vm(
            "rich",
            cpus=2,
            firmware="uefi",
            graphics={"type": "spice", "listen": "127.0.0.1"},
            disks=[
                {"name": "root", "size": "16MiB", "pool": h.name("pool")},
                {"name": "data", "size": "32MiB", "pool": h.name("pool")},
            ],
            networks=[
                {"network": h.name("net")},
                {"network": h.name("net2"), "mac": "52:54:00:ab:cd:ef"},
            ],
        ),
    )
    result = h.apply()
    assert result.exit_code == 0, result.output
    assert h.state("rich") == libvirt.VIR_DOMAIN_RUNNING
    xml = h.domain_xml("rich")
    assert len(xml.findall("devices/interface")) == 2
    assert len(xml.findall("devices/disk[@device='disk']")) == 2
    assert xml.find("devices/graphics").get("type") == "spice"  # type: ignore[union-attr]
    assert xml.find("os").get("firmware") == "efi"  # type: ignore[union-attr]

    plan = h.plan()
    assert plan.exit_code == 0, plan.output
    again = h.apply()
    assert again.exit_code == 0 and "Nothing to do" in again.output, again.output


def test_vcpu_change_on_running_vm_is_restart_class_and_leaves_restart_required(h: Harness) -> None:
    h.write(h.pool(), h.network(), h.template(), h.vm("web"), h.vm("off", powerState="Stopped"))
    assert h.apply().exit_code == 0

    h.write(
        h.pool(),
        h.network(),
        h.template(),
        h.vm("web", cpus=2),
        h.vm("off", powerState="Stopped", memory="128MiB"),
    )
    plan = h.plan()
    assert plan.exit_code == 2
    assert "    cpus: 1 -> 2 (restart)" in plan.output
    assert "    memory: 64MiB -> 128MiB (live)" in plan.output  # stopped VM: no restart needed

    result = h.apply()
    assert result.exit_code == 0, result.output
    assert _vcpus(h, "web", inactive=True) == 2  # persistent config written
    assert _vcpus(h, "web", inactive=False) == 1  # the running guest keeps its CPUs
    assert h.state("web") == libvirt.VIR_DOMAIN_RUNNING
    assert _memory_kib(h, "off") == 128 * 1024
    with h.store() as store:
        web = store.get(record.ResourceKey("VirtualMachine", h.name("web")))
        assert web is not None and web.generation == 2
        restart = {c["type"]: c for c in web.status["conditions"]}["RestartRequired"]
        assert restart["status"] == "True"
    assert h.plan().exit_code == 0  # pending restart is a condition, not a diff

    h.domain("web").destroy()  # the operator power-cycles it
    assert h.apply().exit_code == 0
    assert _vcpus(h, "web", inactive=False) == 2
    with h.store() as store:
        web = store.get(record.ResourceKey("VirtualMachine", h.name("web")))
        assert web is not None
        assert {c["type"]: c for c in web.status["conditions"]}["RestartRequired"][
            "status"
        ] == "False"


def test_update_policy_restart_reboots_to_apply(h: Harness) -> None:
    h.write(h.pool(), h.network(), h.template(), h.vm("web", updatePolicy="Restart"))
    assert h.apply().exit_code == 0
    h.write(h.pool(), h.network(), h.template(), h.vm("web", updatePolicy="Restart", cpus=2))
    result = h.apply()
    assert result.exit_code == 0, result.output
    assert "restarted" in result.output
    assert _vcpus(h, "web", inactive=False) == 2
    assert h.state("web") == libvirt.VIR_DOMAIN_RUNNING


def test_template_change_reaches_every_vm_using_it(h: Harness) -> None:
    h.write(
        h.pool(),
        h.network(),
        h.template(),
        h.vm("a", powerState="Stopped"),
        h.vm("b", powerState="Stopped"),
    )
    assert h.apply().exit_code == 0
    h.write(
        h.pool(),
        h.network(),
        h.template(cpus=3),
        h.vm("a", powerState="Stopped"),
        h.vm("b", powerState="Stopped"),
    )
    plan = h.plan()
    assert plan.exit_code == 2
    for vm in ("a", "b"):
        assert f"~ virtualmachine/{h.name(vm)}" in plan.output
    assert f"~ template/{h.name('tpl')}" in plan.output
    assert h.apply().exit_code == 0
    assert _vcpus(h, "a") == 3 and _vcpus(h, "b") == 3


def test_delete_removes_the_domain_and_retains_its_volume(h: Harness) -> None:
    h.write(h.pool(), h.network(), h.template(), h.vm("web"))
    assert h.apply().exit_code == 0
    result = h.run("delete", "vm", h.name("web"), "--shutdown-timeout", "1")
    assert result.exit_code == 0, result.output
    assert not h.has_domain("web")
    assert (h.pool_dir / f"{h.name('web')}.root.qcow2").exists()
    with h.store() as store:
        key = record.ResourceKey("VirtualMachine", h.name("web"))
        assert store.get(key) is None
        reasons = [e.reason for e in store.events(key)]
        assert "VolumeRetained" in reasons and "Deleted" in reasons


def test_one_failing_vm_leaves_the_others_converged(h: Harness) -> None:
    # Inside the pool roots (SPEC §13), but a file stands where a parent directory must be.
    blocker = h.pool_dir / "not-a-directory"
    blocker.write_text("")
    bad = h.pool("bad", path=blocker / "pool")
    h.write(
        h.pool(),
        bad,
        h.network(),
        h.template(),
        h.vm("good"),
        h.vm("broken", disks=[{"name": "root", "size": "16MiB", "pool": h.name("bad")}]),
    )
    result = h.apply()
    assert result.exit_code == 1
    assert (
        f"virtualmachine/{h.name('broken')} failed: depends on storagepool/{h.name('bad')}"
        in result.output
    )
    assert f"storagepool/{h.name('bad')} failed:" in result.output
    assert h.state("good") == libvirt.VIR_DOMAIN_RUNNING
    assert not h.has_domain("broken")
    with h.store() as store:
        good = store.get(record.ResourceKey("VirtualMachine", h.name("good")))
        broken = store.get(record.ResourceKey("VirtualMachine", h.name("broken")))
        assert good is not None and good.status["phase"] == "Ready"
        assert broken is not None and broken.status["phase"] == "Failed"
        assert store.runs()[0].result == "failed"


def test_apply_as_a_real_process_prints_one_line_per_action(h: Harness) -> None:
    h.write(h.pool(), h.network(), h.template(), h.vm("web", powerState="Stopped"))
    env = {**os.environ, "INFINIBAY_DATABASE_URL": h.db_url, "INFINIBAY_LIBVIRT_URI": h.uri}
    command = [sys.executable, "-m", "reconciler", "apply", "-f", str(h.workdir)]
    done = subprocess.run(
        command, env=env, capture_output=True, text=True, timeout=120, check=False
    )
    assert done.returncode == 0, done.stderr
    assert f"virtualmachine/{h.name('web')} created" in done.stdout
    assert "Traceback" not in done.stderr
    plan = subprocess.run(
        [*command[:3], "plan", "-f", str(h.workdir)],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert plan.returncode == 0, plan.stdout + plan.stderr


def test_growing_a_disk_resizes_its_volume_live(h: Harness) -> None:
    h.write(h.pool(), h.network(), h.template(), h.vm("web"))
    assert h.apply().exit_code == 0
    bigger = [{"name": "root", "size": "32MiB", "pool": h.name("pool")}]
    h.write(h.pool(), h.network(), h.template(), h.vm("web", disks=bigger))
    plan = h.plan()
    assert plan.exit_code == 2
    assert "    disks[root].size: 16MiB -> 32MiB (live)" in plan.output
    assert h.apply().exit_code == 0
    pool = h.conn.storagePoolLookupByName(h.name("pool"))
    pool.refresh()
    assert pool.storageVolLookupByName(f"{h.name('web')}.root.qcow2").info()[1] == 32 * MiB
    assert h.state("web") == libvirt.VIR_DOMAIN_RUNNING
    assert h.plan().exit_code == 0


def test_network_change_is_applied_by_redefining_and_restarting_it(h: Harness) -> None:
    h.write(h.pool(), h.network(), h.template(), h.vm("web", powerState="Stopped"))
    first = h.apply()
    assert first.exit_code == 0, first.output
    net = h.network()
    net["spec"]["ipv4"]["dhcp"]["end"] = f"{h.subnet}.120"
    h.write(h.pool(), net, h.template(), h.vm("web", powerState="Stopped"))
    plan = h.plan()
    assert plan.exit_code == 2
    assert f"~ network/{h.name('net')} (update, restart)" in plan.output
    assert "guests on it lose connectivity" in plan.output
    assert h.apply().exit_code == 0
    live = h.conn.networkLookupByName(h.name("net"))
    assert live.isActive()
    assert f"end='{h.subnet}.120'" in live.XMLDesc(0)
    assert h.plan().exit_code == 0


def test_dry_run_changes_nothing_and_json_output_is_stable(h: Harness) -> None:
    h.write(h.pool(), h.network(), h.template(), h.vm("web", powerState="Stopped"))
    dry = h.apply("--dry-run")
    assert dry.exit_code == 0
    assert f"+ virtualmachine/{h.name('web')} (create" in dry.output
    assert not h.has_domain("web")

    result = h.apply("-o", "json")
    assert result.exit_code == 0, result.output
    document = json.loads(result.output)
    assert document["converged"] is True
    assert isinstance(document["run"], int)
    results = {r["resource"]: r for r in document["results"]}
    web = results[f"virtualmachine/{h.name('web')}"]
    assert web == {
        "resource": f"virtualmachine/{h.name('web')}",
        "kind": "VirtualMachine",
        "name": h.name("web"),
        "action": "create",
        "ok": True,
        "steps": ["created"],
        "error": None,
    }
    plan = json.loads(h.plan("-o", "json").output)
    assert plan == {"changes": [], "summary": {}, "empty": True}


def test_a_new_nic_is_hot_plugged_into_the_running_guest(h: Harness) -> None:
    h.write(h.pool(), h.network(), h.network("net2", n=1), h.template(), h.vm("web"))
    assert h.apply().exit_code == 0
    nics = [{"network": h.name("net")}, {"network": h.name("net2")}]
    h.write(h.pool(), h.network(), h.network("net2", n=1), h.template(), h.vm("web", networks=nics))
    plan = h.plan()
    assert plan.exit_code == 2
    assert f"~ virtualmachine/{h.name('web')} (update, live)" in plan.output
    assert h.apply().exit_code == 0
    assert len(h.domain_xml("web", inactive=False).findall("devices/interface")) == 2
    assert len(h.domain_xml("web", inactive=True).findall("devices/interface")) == 2
    with h.store() as store:
        web = store.get(record.ResourceKey("VirtualMachine", h.name("web")))
        assert web is not None
        conditions = {c["type"]: c["status"] for c in web.status["conditions"]}
        assert conditions["RestartRequired"] == "False"
    assert h.plan().exit_code == 0
