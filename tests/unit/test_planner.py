"""The planner, example by example: ordering, impacts, drift, ownership, pruning, MACs."""

from __future__ import annotations

import dataclasses
import re
from typing import Any

import pytest

from reconciler.models import kinds, observed, record
from reconciler.planning import actions, planner, targets
from tests.unit import fakes

Impact = actions.Impact
Verb = actions.Verb
POOL: dict[str, Any] = {
    "kind": "StoragePool",
    "metadata": {"name": "default"},
    "spec": {"path": "/pools/default"},
}
LAB: dict[str, Any] = {
    "kind": "Network",
    "metadata": {"name": "lab"},
    "spec": {"mode": "nat", "ipv4": {"address": "10.20.0.1/24"}},
}
SMALL: dict[str, Any] = {
    "kind": "Template",
    "metadata": {"name": "small"},
    "spec": {"cpus": 2, "memory": "1GiB", "disks": [{"name": "root", "size": "2GiB"}]},
}


def _vm(name: str = "web-1", metadata: dict[str, Any] | None = None, **spec: Any) -> dict[str, Any]:
    spec.setdefault("disks", [{"name": "root", "size": "2GiB"}])
    spec.setdefault("networks", [{"network": "lab"}])
    return {"kind": "VirtualMachine", "metadata": {"name": name, **(metadata or {})}, "spec": spec}


def _converged(*documents: dict[str, Any]) -> tuple[fakes.FakeHypervisor, fakes.FakeRecord]:
    hv, rec = fakes.FakeHypervisor(images={"golden.qcow2": 8 << 30}), fakes.FakeRecord()
    _, outcomes = rec.converge(fakes.state_of(list(documents)), hv)
    assert all(o.ok for o in outcomes), [o.error for o in outcomes]
    assert rec.plan(fakes.state_of(list(documents)), hv).empty
    return hv, rec


def _plan(
    hv: fakes.FakeHypervisor, rec: fakes.FakeRecord, *documents: dict[str, Any], **kw: Any
) -> actions.Plan:
    return rec.plan(fakes.state_of(list(documents)), hv, **kw)


def _only(plan: actions.Plan) -> actions.Change:
    assert len(plan.changes) == 1, [c.as_json() for c in plan.changes]
    return plan.changes[0]


def _fields(change: actions.Change) -> dict[str, tuple[Any, Any, Impact]]:
    return {f.path: (f.old, f.new, f.impact) for f in change.fields}


# --- creation -------------------------------------------------------------------------


def test_an_empty_world_gets_pools_networks_templates_then_vms_created() -> None:
    state = fakes.state_of([_vm("web-2", template="small"), _vm("web-1"), SMALL, LAB, POOL])

    plan = planner.plan(state, [], observed.World(), installation="inst-1")

    assert [(c.verb, str(c.key)) for c in plan.changes] == [
        (Verb.CREATE, "storagepool/default"),
        (Verb.CREATE, "network/lab"),
        (Verb.CREATE, "template/small"),
        (Verb.CREATE, "virtualmachine/web-1"),
        (Verb.CREATE, "virtualmachine/web-2"),
    ]
    vm = plan.changes[3]
    assert vm.depends_on == (
        fakes.key(kinds.Kind.NETWORK, "lab"),
        fakes.key(kinds.Kind.STORAGE_POOL, "default"),
    )
    assert vm.owner == observed.Ownership("VirtualMachine", "web-1", "inst-1", vm.owner.spec_hash)  # type: ignore[union-attr]
    assert _fields(vm) == {
        "disks[root].volume": (None, "default/web-1.root.qcow2 (2GiB)", Impact.LIVE)
    }
    assert not any(c.drift for c in plan.changes)
    assert {str(w.key) for w in plan.spec_writes} == {str(c.key) for c in plan.changes}
    assert plan.errors == () and plan.counts() == {"create": 5}


def test_a_vm_over_a_template_gets_the_merged_shape() -> None:
    state = fakes.state_of([POOL, LAB, SMALL, _vm(template="small", cpus=4, disks=[])])

    change = planner.plan(state, [], observed.World(), installation="i").changes[-1]

    assert isinstance(change.target, actions.VmTarget)
    assert (change.target.shape.cpus, change.target.shape.memory) == (4, 1 << 30)
    assert change.target.volumes[0].volume == "web-1.root.qcow2"


# --- impacts of updates ---------------------------------------------------------------


@pytest.mark.parametrize(
    ("power", "impact"), [("Running", Impact.RESTART), ("Stopped", Impact.LIVE)]
)
def test_cpus_need_a_restart_on_a_running_vm_and_are_live_on_a_stopped_one(
    power: str, impact: Impact
) -> None:
    hv, rec = _converged(POOL, LAB, _vm(powerState=power))

    change = _only(_plan(hv, rec, POOL, LAB, _vm(powerState=power, cpus=4)))

    assert (change.verb, change.drift, change.symbol) == (Verb.UPDATE, False, "~")
    assert _fields(change) == {"cpus": (1, 4, impact)}
    assert change.impact is impact


def test_memory_firmware_and_graphics_are_restart_changes_on_a_running_vm() -> None:
    hv, rec = _converged(POOL, LAB, _vm())
    vm = _vm(memory="1GiB", firmware="uefi", graphics={"type": "spice"})

    change = _only(_plan(hv, rec, POOL, LAB, vm))

    assert _fields(change) == {
        "memory": ("512MiB", "1GiB", Impact.RESTART),
        "firmware": ("bios", "uefi", Impact.RESTART),
        "graphics.type": ("vnc", "spice", Impact.RESTART),
    }


def test_autostart_is_a_live_change() -> None:
    hv, rec = _converged(POOL, LAB, _vm())

    change = _only(_plan(hv, rec, POOL, LAB, _vm(autostart=True)))

    assert _fields(change) == {"autostart": (False, True, Impact.LIVE)}


def test_a_power_state_change_is_live() -> None:
    hv, rec = _converged(POOL, LAB, _vm())

    change = _only(_plan(hv, rec, POOL, LAB, _vm(powerState="Paused")))

    assert _fields(change) == {"powerState": ("Running", "Paused", Impact.LIVE)}


def test_growing_a_disk_is_live() -> None:
    hv, rec = _converged(POOL, LAB, _vm())

    change = _only(_plan(hv, rec, POOL, LAB, _vm(disks=[{"name": "root", "size": "5GiB"}])))

    assert _fields(change) == {"disks[root].size": ("2GiB", "5GiB", Impact.LIVE)}


def test_changing_a_disks_image_is_data_loss() -> None:
    hv, rec = _converged(POOL, LAB, _vm())
    disks = [{"name": "root", "size": "2GiB", "image": "golden.qcow2"}]

    change = _only(_plan(hv, rec, POOL, LAB, _vm(disks=disks)))

    assert _fields(change) == {"disks[root].image": (None, "golden.qcow2", Impact.DATA_LOSS)}
    assert change.impact is Impact.DATA_LOSS


def test_shrinking_a_disk_is_a_located_error_in_the_plan() -> None:
    hv, rec = _converged(POOL, LAB, _vm(disks=[{"name": "root", "size": "4GiB"}]))
    documents = [POOL, LAB, _vm(disks=[{"name": "root", "size": "2GiB"}])]

    plan = _plan(hv, rec, *documents)

    assert plan.errors == (
        "manifests.yaml:30:1: VirtualMachine/web-1: spec.disks[0].size: shrinking disk 'root' "
        "from 4GiB to 2GiB would lose data; disks can only grow",
    )


def test_an_added_nic_is_live_on_a_running_vm_and_a_removed_one_waits_for_a_restart() -> None:
    dmz = {"kind": "Network", "metadata": {"name": "dmz"}, "spec": {"mode": "isolated"}}
    hv, rec = _converged(POOL, LAB, dmz, _vm())
    nics = [{"network": "dmz", "mac": "52:54:00:00:00:99"}]

    change = _only(_plan(hv, rec, POOL, LAB, dmz, _vm(networks=nics)))

    old_mac = hv.domains["web-1"].shape.nics[0].mac
    assert _fields(change) == {
        "networks[dmz]": (None, "52:54:00:00:00:99", Impact.LIVE),
        "networks[lab]": (old_mac, None, Impact.RESTART),
    }


def test_update_policy_restart_asks_for_a_reboot_when_the_guest_runs_an_old_config() -> None:
    hv, rec = _converged(POOL, LAB, _vm(updatePolicy="Restart"))

    change = _only(_plan(hv, rec, POOL, LAB, _vm(updatePolicy="Restart", cpus=2)))

    assert _fields(change)["restart"] == ("pending", "reboot", Impact.RESTART)


def test_update_policy_on_restart_leaves_a_pending_config_alone() -> None:
    hv, rec = _converged(POOL, LAB, _vm())
    hv.domains["web-1"].shape = dataclasses.replace(hv.domains["web-1"].shape, cpus=2)
    rec.apply_specs(_plan(hv, rec, POOL, LAB, _vm(cpus=2)).spec_writes)

    plan = _plan(hv, rec, POOL, LAB, _vm(cpus=2))

    assert plan.empty, [c.as_json() for c in plan.changes]


def test_network_changes_restart_the_network_and_say_so() -> None:
    hv, rec = _converged(POOL, LAB)
    lab = {**LAB, "spec": {**LAB["spec"], "mtu": 9000, "autostart": False}}

    change = _only(_plan(hv, rec, POOL, lab))

    assert _fields(change) == {
        "mtu": (None, 9000, Impact.RESTART),
        "autostart": (True, False, Impact.LIVE),
    }
    assert "lose connectivity" in change.note


def test_a_pool_path_change_replaces_the_pool() -> None:
    hv, rec = _converged(POOL)

    change = _only(_plan(hv, rec, {**POOL, "spec": {"path": "/elsewhere"}}))

    assert change.verb is Verb.REPLACE and change.symbol == "-/+"
    # The pool holds golden.qcow2, which stays behind in the old directory.
    assert change.impact is Impact.DATA_LOSS
    assert change.uuid == hv.pools["default"].uuid


def test_moving_an_empty_pool_only_replaces_it() -> None:
    hv, rec = fakes.FakeHypervisor(), fakes.FakeRecord()
    rec.converge(fakes.state_of([POOL]), hv)

    change = _only(_plan(hv, rec, {**POOL, "spec": {"path": "/elsewhere"}}))

    assert change.verb is Verb.REPLACE and change.impact is Impact.REPLACE


# --- drift ------------------------------------------------------------------------------


def test_an_out_of_band_change_on_a_converged_spec_is_drift() -> None:
    hv, rec = _converged(POOL, LAB, _vm())
    hv.domains["web-1"].shape = dataclasses.replace(hv.domains["web-1"].shape, cpus=3)
    hv.domains["web-1"].power = kinds.PowerState.STOPPED

    plan = _plan(hv, rec, POOL, LAB, _vm())

    change = _only(plan)
    assert (change.verb, change.drift, change.symbol) == (Verb.UPDATE, True, "!")
    assert _fields(change) == {
        "cpus": (3, 1, Impact.LIVE),
        "powerState": ("Stopped", "Running", Impact.LIVE),
    }
    assert plan.counts() == {"drift": 1}
    assert plan.spec_writes == ()


def test_a_difference_under_a_new_spec_is_a_plain_update_not_drift() -> None:
    hv, rec = _converged(POOL, LAB, _vm())
    old = rec.by_key[fakes.key(kinds.Kind.VIRTUAL_MACHINE, "web-1")]
    rec.by_key[old.key] = dataclasses.replace(old, spec_hash="0000000000000000")
    hv.domains["web-1"].power = kinds.PowerState.STOPPED

    change = _only(_plan(hv, rec, POOL, LAB, _vm()))

    assert (change.drift, change.symbol) == (False, "~")


def test_a_record_that_lags_its_generation_is_not_drift() -> None:
    hv, rec = _converged(POOL, LAB, _vm())
    old = rec.by_key[fakes.key(kinds.Kind.VIRTUAL_MACHINE, "web-1")]
    rec.by_key[old.key] = dataclasses.replace(old, status={**old.status, "observedGeneration": 0})
    hv.domains["web-1"].power = kinds.PowerState.STOPPED

    assert not _only(_plan(hv, rec, POOL, LAB, _vm())).drift


def test_a_converged_vm_undefined_out_of_band_is_recreated_as_drift() -> None:
    hv, rec = _converged(POOL, LAB, _vm())
    del hv.domains["web-1"]

    change = _only(_plan(hv, rec, POOL, LAB, _vm()))

    assert (change.verb, change.drift, change.symbol) == (Verb.CREATE, True, "!")


# --- ownership --------------------------------------------------------------------------


def _foreign_domain(owner: observed.Ownership | None) -> observed.ObservedDomain:
    shape = observed.VmShape(
        cpus=1,
        memory=512 << 20,
        firmware=kinds.Firmware.BIOS,
        machine=kinds.Machine.Q35,
        graphics_type=kinds.GraphicsType.VNC,
        graphics_listen="127.0.0.1",
        disks=(),
        nics=(observed.NicShape("lab", "52:54:00:01:02:03"),),
        autostart=False,
    )
    return observed.ObservedDomain(
        name="web-1",
        uuid="u-web-1",
        owner=owner,
        shape=shape,
        live=None,
        power=kinds.PowerState.STOPPED,
        graphics_port=None,
    )


@pytest.mark.parametrize(
    "owner",
    [None, observed.Ownership("VirtualMachine", "web-1", "another-installation", "x")],
    ids=["unmanaged", "other-installation"],
)
def test_a_domain_this_installation_does_not_own_is_a_conflict(
    owner: observed.Ownership | None,
) -> None:
    world = observed.World(domains={"web-1": _foreign_domain(owner)})
    state = fakes.state_of([POOL, LAB, _vm(disks=[])])

    plan = planner.plan(state, [], world, installation="inst-1")

    conflict = plan.changes[-1]
    assert (conflict.verb, conflict.symbol, str(conflict.key)) == (
        Verb.CONFLICT,
        "?",
        "virtualmachine/web-1",
    )
    assert "--adopt" in conflict.note
    assert conflict.fields == () and conflict.target is None


def test_adopt_never_takes_an_object_another_installation_owns() -> None:
    foreign = observed.Ownership("VirtualMachine", "web-1", "another-installation", "x")
    world = observed.World(domains={"web-1": _foreign_domain(foreign)})
    state = fakes.state_of([POOL, LAB, _vm(disks=[])])

    change = planner.plan(state, [], world, installation="inst-1", adopt=True).changes[-1]

    assert (change.verb, change.adopt) == (Verb.CONFLICT, False)
    assert "another-installation" in change.note


def test_adopt_turns_a_conflict_into_an_update_that_takes_ownership() -> None:
    world = observed.World(domains={"web-1": _foreign_domain(None)})
    state = fakes.state_of([POOL, LAB, _vm(disks=[])])

    change = planner.plan(state, [], world, installation="inst-1", adopt=True).changes[-1]

    assert (change.verb, change.adopt, change.uuid) == (Verb.UPDATE, True, "u-web-1")
    assert _fields(change)["owner"] == (None, "inst-1", Impact.LIVE)
    assert "powerState" in _fields(change)
    assert isinstance(change.target, actions.VmTarget)
    assert change.target.shape.nics == (observed.NicShape("lab", "52:54:00:01:02:03"),)


def test_a_network_and_a_pool_not_owned_are_conflicts_too() -> None:
    hv, _ = _converged(POOL, LAB)

    plan = fakes.FakeRecord("inst-2").plan(fakes.state_of([POOL, LAB]), hv)

    assert [(c.verb, str(c.key)) for c in plan.changes] == [
        (Verb.CONFLICT, "storagepool/default"),
        (Verb.CONFLICT, "network/lab"),
    ]


# --- subnets libvirt has ------------------------------------------------------------------

DEFAULT_NETWORK = """\
<network>
  <name>default</name>
  <forward mode='nat'/>
  <bridge name='virbr0'/>
  <ip address='192.168.122.1' netmask='255.255.255.0'/>
</network>
"""


def _on(subnet: str, name: str = "lab") -> dict[str, Any]:
    return {
        "kind": "Network",
        "metadata": {"name": name},
        "spec": {"mode": "nat", "ipv4": {"address": subnet}},
    }


def test_a_subnet_overlapping_a_libvirt_network_we_do_not_manage_is_a_located_error() -> None:
    hv, rec = fakes.FakeHypervisor(), fakes.FakeRecord()
    hv.define_network("default", DEFAULT_NETWORK)

    plan = _plan(hv, rec, _on("192.168.122.129/25"))

    assert plan.errors == (
        "manifests.yaml:10:1: Network/lab: spec.ipv4.address: subnet 192.168.122.128/25 "
        "overlaps 192.168.122.0/24 of libvirt network 'default', which this installation "
        "does not manage",
    )
    assert _plan(hv, rec, _on("192.168.123.1/24")).errors == ()


def test_a_subnet_overlapping_our_network_no_longer_declared_names_it() -> None:
    hv, rec = _converged(POOL, LAB)

    plan = _plan(hv, rec, POOL, _on("10.20.0.1/16", name="lab2"))

    assert plan.errors == (
        "manifests.yaml:20:1: Network/lab2: spec.ipv4.address: subnet 10.20.0.0/16 overlaps "
        "10.20.0.0/24 of network/lab (in libvirt, no longer in the manifests)",
    )


def test_a_network_is_no_obstacle_to_itself_adopted_or_moved_to_another_subnet() -> None:
    hv, rec = _converged(POOL, LAB)
    hv.define_network("default", DEFAULT_NETWORK)

    assert _plan(hv, rec, POOL, _on("10.20.0.1/16")).errors == ()
    assert _plan(hv, rec, POOL, _on("192.168.122.1/24", name="default"), adopt=True).errors == ()
    moved = [_on("10.30.0.1/24"), _on("10.20.0.1/24", name="lab2")]
    assert _plan(hv, rec, POOL, *moved).errors == ()


# --- pruning ----------------------------------------------------------------------------


def test_without_prune_nothing_is_deleted() -> None:
    hv, rec = _converged(POOL, LAB, SMALL, _vm())

    plan = _plan(hv, rec)

    assert plan.empty


def test_prune_deletes_only_owned_objects_not_desired_vms_first() -> None:
    hv, rec = _converged(POOL, LAB, SMALL, _vm(), _vm("web-2"))
    hv.domains["stranger"] = dataclasses.replace(hv.domains["web-2"], name="stranger", owner=None)
    foreign = observed.Ownership("VirtualMachine", "other", "inst-2", "x")
    hv.domains["other"] = dataclasses.replace(hv.domains["web-2"], name="other", owner=foreign)

    plan = _plan(hv, rec, POOL, LAB, _vm(), prune=True)

    assert [(c.verb, str(c.key)) for c in plan.changes] == [
        (Verb.DELETE, "virtualmachine/web-2"),
        (Verb.DELETE, "template/small"),
    ]


def test_pruning_everything_goes_in_reverse_order_and_pools_wait_for_their_vms() -> None:
    hv, rec = _converged(POOL, LAB, SMALL, _vm())

    plan = _plan(hv, rec, prune=True)

    assert [str(c.key) for c in plan.changes] == [
        "virtualmachine/web-1",
        "template/small",
        "network/lab",
        "storagepool/default",
    ]
    vm_key = fakes.key(kinds.Kind.VIRTUAL_MACHINE, "web-1")
    assert plan.changes[2].depends_on == (vm_key,)
    assert plan.changes[3].depends_on == (vm_key,)
    assert plan.changes[0].uuid == hv.domains["web-1"].uuid


def test_a_protected_resource_is_reported_not_deleted() -> None:
    hv, rec = _converged(
        POOL, LAB, _vm(metadata={"annotations": {kinds.PROTECT_ANNOTATION: "True"}})
    )

    change = _only(_plan(hv, rec, POOL, LAB, prune=True))

    assert (change.verb, change.symbol) == (Verb.PROTECTED, "-")
    assert "infinibay.io/protect" in change.note


def test_prune_keeps_the_network_and_pool_a_protected_vm_still_uses() -> None:
    hv, rec = _converged(
        POOL, LAB, _vm(metadata={"annotations": {kinds.PROTECT_ANNOTATION: "true"}})
    )

    plan = _plan(hv, rec, prune=True)

    by_name = {c.key.name: c for c in plan.changes}
    assert by_name["web-1"].verb is Verb.PROTECTED
    for name in ("default", "lab"):
        assert by_name[name].verb is Verb.PROTECTED
        assert by_name[name].note == "still used by virtualmachine/web-1"


def test_prune_deletes_a_network_only_after_the_vms_leaving_it() -> None:
    hv, rec = _converged(POOL, LAB, _vm())

    plan = _plan(hv, rec, prune=True)

    by_name = {c.key.name: c for c in plan.changes}
    assert by_name["lab"].verb is Verb.DELETE
    assert [str(k) for k in by_name["lab"].depends_on] == ["virtualmachine/web-1"]


def test_deleting_a_vm_with_reclaim_delete_is_data_loss_and_retain_is_not() -> None:
    disks = [
        {"name": "root", "size": "2GiB", "reclaimPolicy": "Delete"},
        {"name": "data", "size": "1GiB"},
    ]
    hv, rec = _converged(POOL, LAB, _vm(disks=disks), _vm("web-2"))

    plan = _plan(hv, rec, POOL, LAB, prune=True)

    by_name = {c.key.name: c for c in plan.changes}
    assert by_name["web-1"].impact is Impact.DATA_LOSS
    assert [(v.volume, v.reclaim.value) for v in by_name["web-1"].retained] == [
        ("web-1.root.qcow2", "Delete"),
        ("web-1.data.qcow2", "Retain"),
    ]
    assert by_name["web-2"].impact is Impact.LIVE


def test_plan_deletions_names_the_resources_to_delete() -> None:
    hv, rec = _converged(POOL, LAB, _vm())

    plan = planner.plan_deletions(
        [fakes.key(kinds.Kind.VIRTUAL_MACHINE, "web-1")],
        rec.records,
        hv.observe(),
        installation=rec.installation,
    )

    assert [(c.verb, str(c.key)) for c in plan.changes] == [(Verb.DELETE, "virtualmachine/web-1")]
    assert [v.volume for v in plan.changes[0].retained] == ["web-1.root.qcow2"]


def _deletion_plan(
    hv: fakes.FakeHypervisor, rec: fakes.FakeRecord, *keys: record.ResourceKey, **kw: Any
) -> actions.Plan:
    return planner.plan_deletions(
        list(keys),
        rec.records,
        hv.observe(),
        installation=rec.installation,
        volumes=rec.volumes(),
        **kw,
    )


def test_a_template_a_remaining_vm_uses_is_never_pruned_and_an_unused_one_is() -> None:
    unused = {**SMALL, "metadata": {"name": "unused"}}
    hv, rec = _converged(POOL, LAB, SMALL, unused, _vm(template="small", disks=[]))

    plan = _plan(hv, rec, POOL, LAB, _vm(template="small", disks=[]), prune=True)

    by_name = {c.key.name: c for c in plan.changes}
    assert (by_name["small"].verb, by_name["small"].note) == (
        Verb.PROTECTED,
        "still used by virtualmachine/web-1",
    )
    assert by_name["unused"].verb is Verb.DELETE


def test_a_template_named_like_a_used_pool_is_pruned_and_so_is_the_converse() -> None:
    # Users are found per kind: a VM on pool "default" does not use template "default",
    # and a VM of template "small" does not use a pool "small".
    namesake = {**SMALL, "metadata": {"name": "default"}}
    pool_small = {"kind": "StoragePool", "metadata": {"name": "small"}, "spec": {"path": "/p/s"}}
    vm = _vm(template="small")
    hv, rec = _converged(POOL, pool_small, LAB, SMALL, namesake, vm)

    plan = _plan(hv, rec, POOL, LAB, SMALL, vm, prune=True)

    by_key = {(c.key.kind, c.key.name): c for c in plan.changes}
    assert by_key[("Template", "default")].verb is Verb.DELETE
    assert by_key[("StoragePool", "small")].verb is Verb.DELETE
    assert ("Template", "small") not in by_key
    assert ("StoragePool", "default") not in by_key


def test_deleting_a_template_with_its_vm_waits_for_the_vm_and_without_it_is_refused() -> None:
    hv, rec = _converged(POOL, LAB, SMALL, _vm(template="small", disks=[]))
    template = fakes.key(kinds.Kind.TEMPLATE, "small")
    vm = fakes.key(kinds.Kind.VIRTUAL_MACHINE, "web-1")

    alone = _only(_deletion_plan(hv, rec, template))
    together = {c.key: c for c in _deletion_plan(hv, rec, template, vm).changes}

    assert (alone.verb, alone.note) == (Verb.PROTECTED, "still used by virtualmachine/web-1")
    assert together[template].verb is Verb.DELETE
    assert together[template].depends_on == (vm,)


def test_reclaim_delete_is_consent_for_deleting_a_vm_with_its_volume() -> None:
    disks = [{"name": "root", "size": "2GiB", "reclaimPolicy": "Delete"}]
    documents = [POOL, LAB, SMALL, _vm(template="small", disks=disks)]
    hv, rec = _converged(*documents)
    keys = [fakes.key(kinds.Kind(d["kind"]), d["metadata"]["name"]) for d in documents]

    plan = _deletion_plan(hv, rec, *keys)

    by_name = {c.key.name: c for c in plan.changes}
    assert by_name["web-1"].impact is Impact.DATA_LOSS  # the plan still says what goes
    assert not by_name["web-1"].needs_data_loss_flag
    assert by_name["web-1"].note == ""
    assert {c.verb for c in plan.changes} == {Verb.DELETE}
    assert plan.refusals(allow_data_loss=False) == []


def test_a_recorded_reclaim_delete_volume_that_is_gone_is_no_data_loss() -> None:
    disks = [{"name": "root", "size": "2GiB", "reclaimPolicy": "Delete"}]
    hv, rec = _converged(POOL, LAB, SMALL, _vm(template="small", disks=disks))
    hv.delete_volume("default", "web-1.root.qcow2")

    change = _only(_deletion_plan(hv, rec, fakes.key(kinds.Kind.VIRTUAL_MACHINE, "web-1")))

    assert change.verb is Verb.DELETE
    assert change.impact is not Impact.DATA_LOSS
    assert [v.exists for v in change.retained] == [False]


def test_deleting_a_name_that_exists_nowhere_plans_nothing_and_says_not_found() -> None:
    hv, rec = _converged(POOL, LAB, _vm())
    missing = fakes.key(kinds.Kind.VIRTUAL_MACHINE, "missing")
    template = fakes.key(kinds.Kind.TEMPLATE, "missing")

    plan = _deletion_plan(hv, rec, missing, template)

    assert plan.changes == ()
    assert plan.not_found == (missing, template)


@pytest.mark.parametrize(
    "owner",
    [None, observed.Ownership("VirtualMachine", "web-1", "another-installation", "x")],
    ids=["unmanaged", "other-installation"],
)
def test_deleting_a_domain_we_do_not_own_is_refused_and_adopt_only_takes_an_unmanaged_one(
    owner: observed.Ownership | None,
) -> None:
    world = observed.World(domains={"web-1": _foreign_domain(owner)})
    key = fakes.key(kinds.Kind.VIRTUAL_MACHINE, "web-1")

    refused = _only(planner.plan_deletions([key], [], world, installation="inst-1"))
    adopted = _only(planner.plan_deletions([key], [], world, installation="inst-1", adopt=True))

    assert refused.verb is Verb.CONFLICT and refused.note.startswith("not owned: ")
    if owner is None:
        assert "--adopt" in refused.note
        assert adopted.verb is Verb.DELETE
    else:
        assert "another installation" in refused.note
        assert adopted.verb is Verb.CONFLICT


def test_deleting_a_pool_outside_the_record_is_refused_as_not_owned() -> None:
    hv, _rec = _converged(POOL, LAB)
    pool = fakes.key(kinds.Kind.STORAGE_POOL, "default")

    change = _only(planner.plan_deletions([pool], [], hv.observe(), installation="inst-1"))

    assert change.verb is Verb.CONFLICT and "not owned" in change.note


# --- templates --------------------------------------------------------------------------


def test_a_template_change_updates_the_template_and_every_vm_using_it() -> None:
    documents = [
        POOL,
        LAB,
        SMALL,
        _vm(template="small", disks=[]),
        _vm("web-2", template="small", disks=[]),
        _vm("web-3"),
    ]
    hv, rec = _converged(*documents)
    bigger = {**SMALL, "spec": {**SMALL["spec"], "cpus": 4}}

    plan = _plan(hv, rec, POOL, LAB, bigger, *documents[3:])

    assert [(c.verb, str(c.key)) for c in plan.changes] == [
        (Verb.UPDATE, "template/small"),
        (Verb.UPDATE, "virtualmachine/web-1"),
        (Verb.UPDATE, "virtualmachine/web-2"),
    ]
    assert _fields(plan.changes[0]) == {"spec.cpus": (2, 4, Impact.RECORD)}
    assert _fields(plan.changes[1]) == {"cpus": (2, 4, Impact.RESTART)}
    assert {str(w.key) for w in plan.spec_writes} == {
        "template/small",
        "virtualmachine/web-1",
        "virtualmachine/web-2",
    }


def test_a_template_change_that_a_vm_overrides_leaves_the_vm_alone() -> None:
    documents = [POOL, LAB, SMALL, _vm(template="small", cpus=2, disks=[])]
    hv, rec = _converged(*documents)
    faster = {**SMALL, "spec": {**SMALL["spec"], "cpus": 8}}

    plan = _plan(hv, rec, POOL, LAB, faster, documents[3])

    assert [str(c.key) for c in plan.changes] == ["template/small"]


def test_a_spec_change_that_libvirt_does_not_see_is_a_record_only_update() -> None:
    hv, rec = _converged(POOL, LAB, _vm())

    plan = _plan(hv, rec, POOL, LAB, _vm(metadata={"labels": {"team": "qa"}}))

    change = _only(plan)
    assert [(f.path, f.impact) for f in change.fields] == [("spec", Impact.RECORD)]
    assert change.impact is Impact.RECORD and not change.drift
    assert [w.labels for w in plan.spec_writes] == [{"team": "qa"}]


def test_a_template_description_change_touches_no_vm() -> None:
    documents = [POOL, LAB, SMALL, _vm(template="small", disks=[])]
    hv, rec = _converged(*documents)
    described = {**SMALL, "spec": {**SMALL["spec"], "description": "now with words"}}

    plan = _plan(hv, rec, POOL, LAB, described, documents[3])

    assert [str(c.key) for c in plan.changes] == ["template/small"]
    assert _fields(plan.changes[0]) == {"spec.description": (None, "now with words", Impact.RECORD)}


# --- MAC addresses and bridges ----------------------------------------------------------


def _macs(plan: actions.Plan, vm: str = "web-1") -> tuple[str, ...]:
    change = next(c for c in plan.changes if c.key.name == vm)
    assert isinstance(change.target, actions.VmTarget)
    return tuple(n.mac for n in change.target.shape.nics)


def test_a_nic_without_a_mac_keeps_the_one_it_has_in_libvirt() -> None:
    hv, rec = _converged(POOL, LAB, _vm())
    hv.domains["web-1"].shape = dataclasses.replace(
        hv.domains["web-1"].shape, nics=(observed.NicShape("lab", "52:54:00:de:ad:01"),)
    )

    plan = _plan(hv, rec, POOL, LAB, _vm(cpus=2))

    assert _macs(plan) == ("52:54:00:de:ad:01",)


def test_a_recreated_vm_gets_the_mac_remembered_in_the_record() -> None:
    hv, rec = _converged(POOL, LAB, _vm())
    remembered = hv.domains["web-1"].shape.nics[0].mac
    assert rec.by_key[fakes.key(kinds.Kind.VIRTUAL_MACHINE, "web-1")].status["macs"] == {
        "lab": remembered
    }
    del hv.domains["web-1"]

    assert _macs(_plan(hv, rec, POOL, LAB, _vm())) == (remembered,)


def test_a_declared_mac_wins_over_the_observed_one() -> None:
    hv, rec = _converged(POOL, LAB, _vm())

    plan = _plan(hv, rec, POOL, LAB, _vm(networks=[{"network": "lab", "mac": "52:54:00:00:00:42"}]))

    assert _macs(plan) == ("52:54:00:00:00:42",)


def test_generated_macs_are_deterministic_qemu_addresses_that_avoid_those_in_use() -> None:
    state = fakes.state_of([POOL, LAB, _vm(), _vm("web-2")])

    first = planner.plan(state, [], observed.World(), installation="inst-1")
    again = planner.plan(state, [], observed.World(), installation="inst-1")
    other = planner.plan(state, [], observed.World(), installation="inst-2")

    assert _macs(first) == _macs(again) and _macs(first) != _macs(other)
    assert all(
        re.fullmatch(r"52:54:00(:[0-9a-f]{2}){3}", m) for m in _macs(first) + _macs(first, "web-2")
    )
    taken = _macs(first)[0]
    assert targets.generated_mac("inst-1", "web-1", "lab", set()) == taken
    assert targets.generated_mac("inst-1", "web-1", "lab", {taken}) != taken
    declared = fakes.state_of(
        [POOL, LAB, _vm("web-2", networks=[{"network": "lab", "mac": taken}]), _vm()]
    )
    assert _macs(planner.plan(declared, [], observed.World(), installation="inst-1")) != (taken,)


def test_two_vms_never_get_the_same_generated_mac() -> None:
    state = fakes.state_of([POOL, LAB, *(_vm(f"vm-{i}") for i in range(30))])

    plan = planner.plan(state, [], observed.World(), installation="inst-1")

    macs = [
        m for c in plan.changes if c.key.kind == "VirtualMachine" for m in _macs(plan, c.key.name)
    ]
    assert len(set(macs)) == len(macs) == 30


@pytest.mark.parametrize("name", ["lab", "a" * 12, "a" * 13, "storage-backplane", "x" * 63])
def test_generated_bridge_names_fit_the_kernels_15_characters(name: str) -> None:
    bridge = targets.bridge_name(name, None)

    assert len(bridge) <= 15 and bridge.startswith("ib-")
    assert bridge == targets.bridge_name(name, None)
    if len(name) <= 12:
        assert bridge == f"ib-{name}"


def test_long_network_names_sharing_a_prefix_get_different_bridges() -> None:
    assert targets.bridge_name("storage-front", None) != targets.bridge_name("storage-back", None)
    assert targets.bridge_name("lab", "br0") == "br0"


# --- the record -------------------------------------------------------------------------


def test_an_unchanged_spec_from_the_same_file_writes_nothing_to_the_record() -> None:
    hv, rec = _converged(POOL, LAB, _vm())

    assert _plan(hv, rec, POOL, LAB, _vm()).spec_writes == ()


def test_the_same_spec_from_another_revision_is_recorded_without_a_change() -> None:
    hv, rec = _converged(POOL)
    state = fakes.state_of([POOL])
    moved = dataclasses.replace(
        state.pools["default"],
        source=dataclasses.replace(state.pools["default"].source, revision="main@sha1:abc"),
    )
    state.pools["default"] = moved

    plan = planner.plan(state, rec.records, hv.observe(), installation=rec.installation)

    assert plan.empty
    assert [w.source_revision for w in plan.spec_writes] == ["main@sha1:abc"]


def test_a_tombstoned_record_is_neither_drift_nor_pruned_again() -> None:
    hv, rec = _converged(POOL, LAB, SMALL)
    rec.tombstone([fakes.key(kinds.Kind.TEMPLATE, "small")])

    assert _plan(hv, rec, POOL, LAB, prune=True).empty
    change = _only(_plan(hv, rec, POOL, LAB, SMALL))
    assert (change.verb, change.drift) == (Verb.CREATE, False)


def test_a_hand_built_record_supplies_the_mac_and_decides_drift() -> None:
    state = fakes.state_of([POOL, LAB, _vm()])
    rec = record.ResourceRecord(
        key=fakes.key(kinds.Kind.VIRTUAL_MACHINE, "web-1"),
        uid="uid-1",
        generation=3,
        spec={},
        spec_hash="whatever",
        source_file="manifests.yaml",
        source_document=0,
        source_revision=None,
        labels={},
        annotations={},
        status={"observedGeneration": 3, "macs": {"lab": "52:54:00:0a:0b:0c"}},
        created_at=fakes.EPOCH,
        updated_at=fakes.EPOCH,
        deleted_at=None,
    )

    plan = planner.plan(state, [rec], observed.World(), installation="inst-1")

    assert _macs(plan) == ("52:54:00:0a:0b:0c",)
    assert plan.changes[-1].drift  # converged before; the domain vanished
    assert [str(w.key) for w in plan.spec_writes][-1] == "virtualmachine/web-1"


# --- libvirt names ----------------------------------------------------------------------


def test_a_vm_annotated_with_a_libvirt_name_is_that_domain_everywhere() -> None:
    named = {"annotations": {"infinibay.io/libvirt-name": "Web.One"}}
    hv, rec = _converged(POOL, LAB, _vm(metadata=named, memory="1GiB", cpus=1))
    assert "Web.One" in hv.domains and "web-1" not in hv.domains
    assert hv.domains["Web.One"].owner is not None
    assert hv.domains["Web.One"].owner.name == "web-1"

    change = _only(_plan(hv, rec, POOL, LAB, _vm(metadata=named, memory="2GiB", cpus=1)))
    assert (change.key.name, change.object_name) == ("web-1", "Web.One")
    assert "memory" in _fields(change)

    gone = _only(_plan(hv, rec, POOL, LAB, prune=True))
    assert (gone.verb, gone.object_name) == (Verb.DELETE, "Web.One")
    _, outcomes = rec.converge(fakes.state_of([POOL, LAB]), hv, prune=True)
    assert all(o.ok for o in outcomes), [o.error for o in outcomes]
    assert "Web.One" not in hv.domains


def test_a_network_annotated_with_a_libvirt_name_is_what_nics_refer_to() -> None:
    lab = {**LAB, "metadata": {"name": "lab", "annotations": {"infinibay.io/libvirt-name": "Lab"}}}
    hv, _ = _converged(POOL, lab, _vm(memory="1GiB", cpus=1))
    assert "Lab" in hv.networks and "lab" not in hv.networks
    nics = hv.domains["web-1"].shape.nics
    assert [n.network for n in nics] == ["Lab"]
