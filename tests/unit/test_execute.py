"""The executor against the fake hypervisor: ordering, failure isolation and safety gates."""

from __future__ import annotations

from typing import Any

import pytest

from reconciler import errors
from reconciler.engine import execute
from reconciler.models import kinds, record
from reconciler.planning import actions
from tests.unit import fakes

VM = kinds.Kind.VIRTUAL_MACHINE
POOL = {
    "kind": "StoragePool",
    "metadata": {"name": "default"},
    "spec": {"path": "/var/lib/infinibay/pools/default"},
}
LAB = {
    "kind": "Network",
    "metadata": {"name": "lab"},
    "spec": {"mode": "nat", "ipv4": {"address": "10.20.0.1/24"}},
}
IMAGES = {"golden.qcow2": 4 << 30}


def _vm(name: str, **spec: Any) -> dict[str, Any]:
    spec.setdefault("disks", [{"name": "root", "size": "2GiB"}])
    spec.setdefault("networks", [{"network": "lab"}])
    return {"kind": "VirtualMachine", "metadata": {"name": name}, "spec": spec}


def _world(*documents: dict[str, Any]) -> tuple[fakes.FakeHypervisor, fakes.FakeRecord]:
    """A fake world converged on ``documents``."""
    hv, rec = fakes.FakeHypervisor(images=IMAGES), fakes.FakeRecord()
    _, outcomes = rec.converge(fakes.state_of(list(documents)), hv)
    assert all(o.ok for o in outcomes)
    hv.calls.clear()
    return hv, rec


def _run(
    hv: fakes.FakeHypervisor,
    plan: actions.Plan,
    options: execute.Options | None = None,
) -> dict[str, execute.Outcome]:
    seen: list[execute.Outcome] = []
    outcomes = execute.execute(
        hv, plan.changes, options or execute.Options(shutdown_timeout=0), seen.append
    )
    assert [o.change.key for o in seen] == [o.change.key for o in outcomes]
    return {o.change.key.name: o for o in outcomes}


def _reasons(outcome: execute.Outcome) -> list[str]:
    return [e.reason for e in outcome.events]


def test_a_failed_pool_fails_only_the_vms_on_it_and_their_neighbours_still_converge() -> None:
    hv, rec = fakes.FakeHypervisor(images=IMAGES), fakes.FakeRecord()
    fast = {
        "kind": "StoragePool",
        "metadata": {"name": "fast"},
        "spec": {"path": "/var/lib/infinibay/pools/fast"},
    }
    state = fakes.state_of(
        [
            POOL,
            fast,
            LAB,
            _vm("web-1", disks=[{"name": "root", "size": "2GiB", "pool": "fast"}]),
            _vm("web-2"),
        ]
    )
    hv.fail[("start_pool", "fast")] = errors.HypervisorError(
        "start", "pool fast", "cannot create directory: Permission denied"
    )

    outcomes = _run(hv, rec.plan(state, hv))

    assert not outcomes["fast"].ok
    assert "Permission denied" in outcomes["fast"].error
    assert _reasons(outcomes["fast"]) == ["ApplyFailed"]
    assert not outcomes["web-1"].ok
    assert outcomes["web-1"].error == "depends on storagepool/fast, which failed"
    assert _reasons(outcomes["web-1"]) == ["DependencyFailed"]
    assert outcomes["web-1"].events[0].type.value == "Warning"
    assert ("define_domain", "web-1") not in hv.calls
    assert outcomes["web-2"].ok and outcomes["default"].ok and outcomes["lab"].ok
    assert hv.domains["web-2"].power is kinds.PowerState.RUNNING


def test_a_vm_waits_for_its_pool_and_network_and_runs_its_own_steps_in_order() -> None:
    hv, rec = fakes.FakeHypervisor(images=IMAGES), fakes.FakeRecord()
    state = fakes.state_of([POOL, LAB, _vm("web-1", autostart=True)])

    outcomes = _run(hv, rec.plan(state, hv), execute.Options(workers=8, shutdown_timeout=0))

    assert all(o.ok for o in outcomes.values())
    order = [call for call in hv.calls]
    assert order.index(("start_pool", "default")) < order.index(
        ("create_volume", "web-1.root.qcow2")
    )
    assert order.index(("start_network", "lab")) < order.index(("start_domain", "web-1"))
    vm_steps = [method for method, name in order if name in ("web-1", "web-1.root.qcow2")]
    assert vm_steps == ["create_volume", "define_domain", "set_domain_autostart", "start_domain"]
    assert outcomes["web-1"].steps == ["created", "started"]
    assert _reasons(outcomes["web-1"]) == ["VolumeCreated", "Created", "Started"]
    assert outcomes["web-1"].uuid == hv.domains["web-1"].uuid


def test_pool_steps_define_then_build_and_start_then_set_autostart() -> None:
    hv, rec = fakes.FakeHypervisor(), fakes.FakeRecord()

    outcomes = _run(hv, rec.plan(fakes.state_of([POOL]), hv))

    assert hv.calls == [
        ("define_pool", "default"),
        ("start_pool", "default"),
        ("set_pool_autostart", "default"),
    ]
    assert outcomes["default"].steps == ["created"]
    assert hv.pools["default"].active and hv.pools["default"].autostart


def test_an_image_change_is_refused_without_allow_data_loss_and_nothing_is_touched() -> None:
    hv, rec = _world(POOL, LAB, _vm("web-1"))
    state = fakes.state_of(
        [POOL, LAB, _vm("web-1", disks=[{"name": "root", "size": "2GiB", "image": "golden.qcow2"}])]
    )
    plan = rec.plan(state, hv)
    assert plan.changes[0].impact is actions.Impact.DATA_LOSS

    outcomes = _run(hv, plan, execute.Options(allow_data_loss=False, shutdown_timeout=0))

    assert not outcomes["web-1"].ok
    assert "would destroy data; pass --allow-data-loss" in outcomes["web-1"].error
    assert _reasons(outcomes["web-1"]) == ["ApplyRefused"]
    assert hv.calls == []
    assert "web-1.root.qcow2" in hv.files["/var/lib/infinibay/pools/default"]


def test_an_image_change_with_allow_data_loss_recreates_the_volume_on_its_backing_image() -> None:
    hv, rec = _world(POOL, LAB, _vm("web-1", powerState="Stopped"))
    disks = [{"name": "root", "size": "2GiB", "image": "golden.qcow2"}]
    state = fakes.state_of([POOL, LAB, _vm("web-1", powerState="Stopped", disks=disks)])

    outcomes = _run(hv, rec.plan(state, hv), execute.Options(allow_data_loss=True))

    assert outcomes["web-1"].ok
    assert _reasons(outcomes["web-1"])[:2] == ["VolumeDeleted", "VolumeCreated"]
    volume = hv.files["/var/lib/infinibay/pools/default"]["web-1.root.qcow2"]
    assert volume.backing == "/var/lib/infinibay/pools/default/golden.qcow2"


def test_a_running_vm_whose_image_changes_is_running_again_after_apply() -> None:
    hv, rec = _world(POOL, LAB, _vm("web-1"))
    disks = [{"name": "root", "size": "2GiB", "image": "golden.qcow2"}]
    state = fakes.state_of([POOL, LAB, _vm("web-1", disks=disks)])

    outcomes = _run(hv, rec.plan(state, hv), execute.Options(allow_data_loss=True))

    assert outcomes["web-1"].ok
    assert hv.domains["web-1"].power is kinds.PowerState.RUNNING


def test_a_conflict_fails_with_a_conflict_event_and_never_touches_the_object() -> None:
    hv, _ = _world(POOL, LAB, _vm("web-1"))
    hv.domains["web-1"].owner = None
    state = fakes.state_of([POOL, LAB, _vm("web-1", cpus=4)])
    plan = fakes.FakeRecord().plan(state, hv)
    conflicts = [c for c in plan.changes if c.verb is actions.Verb.CONFLICT]
    assert [str(c.key) for c in conflicts] == [
        "storagepool/default",
        "virtualmachine/web-1",
    ]  # the pool is owned through a record this fresh installation lacks

    outcomes = _run(hv, plan)

    assert not outcomes["web-1"].ok
    assert _reasons(outcomes["web-1"]) == ["Conflict"]
    assert "--adopt" in outcomes["web-1"].error
    assert [call for call in hv.calls if call[1] == "web-1"] == []
    assert hv.domains["web-1"].shape.cpus == 1


def test_a_drift_correction_is_reported_as_detected_then_corrected() -> None:
    hv, rec = _world(POOL, LAB, _vm("web-1"))
    hv.domains["web-1"].power = kinds.PowerState.STOPPED
    plan = rec.plan(fakes.state_of([POOL, LAB, _vm("web-1")]), hv)
    assert plan.changes[0].drift

    outcomes = _run(hv, plan)

    assert _reasons(outcomes["web-1"]) == ["DriftDetected", "Started", "DriftCorrected"]
    assert outcomes["web-1"].events[0].diff == {
        "changes": [{"field": "powerState", "old": "Stopped", "new": "Running", "impact": "live"}]
    }


def test_stopping_reports_a_forced_power_off_when_the_guest_ignores_acpi() -> None:
    hv, rec = _world(POOL, LAB, _vm("web-1"))

    outcomes = _run(
        hv, rec.plan(fakes.state_of([POOL, LAB, _vm("web-1", powerState="Stopped")]), hv)
    )

    assert outcomes["web-1"].steps == ["stopped"]
    assert outcomes["web-1"].events[-1].message == "virtualmachine/web-1 forced off after 0s"
    assert hv.domains["web-1"].power is kinds.PowerState.STOPPED


@pytest.mark.parametrize(
    ("before", "after", "calls"),
    [
        ("Running", "Paused", ["suspend_domain"]),
        ("Paused", "Running", ["resume_domain"]),
        ("Stopped", "Paused", ["start_domain"]),
        ("Paused", "Stopped", ["stop_domain"]),
    ],
)
def test_power_transitions_use_the_matching_libvirt_operation(
    before: str, after: str, calls: list[str]
) -> None:
    hv, rec = _world(POOL, LAB, _vm("web-1", powerState=before))

    outcomes = _run(hv, rec.plan(fakes.state_of([POOL, LAB, _vm("web-1", powerState=after)]), hv))

    assert outcomes["web-1"].ok
    assert [method for method, _ in hv.calls] == calls
    assert hv.domains["web-1"].power is kinds.PowerState(after)


def test_a_new_nic_is_hot_plugged_into_a_running_guest() -> None:
    dmz = {"kind": "Network", "metadata": {"name": "dmz"}, "spec": {"mode": "isolated"}}
    hv, rec = _world(POOL, LAB, dmz, _vm("web-1"))
    nics = [{"network": "lab"}, {"network": "dmz"}]

    outcomes = _run(hv, rec.plan(fakes.state_of([POOL, LAB, dmz, _vm("web-1", networks=nics)]), hv))

    assert outcomes["web-1"].ok
    assert [method for method, _ in hv.calls] == ["define_domain", "attach_device"]
    live = hv.domains["web-1"].live
    assert live is not None and [n.network for n in live.nics] == ["lab", "dmz"]


def test_a_new_nic_on_a_stopped_vm_is_only_defined() -> None:
    dmz = {"kind": "Network", "metadata": {"name": "dmz"}, "spec": {"mode": "isolated"}}
    hv, rec = _world(POOL, LAB, dmz, _vm("web-1", powerState="Stopped"))
    nics = [{"network": "lab"}, {"network": "dmz"}]
    state = fakes.state_of([POOL, LAB, dmz, _vm("web-1", powerState="Stopped", networks=nics)])

    outcomes = _run(hv, rec.plan(state, hv))

    assert outcomes["web-1"].ok, outcomes["web-1"].error
    assert [method for method, _ in hv.calls] == ["define_domain"]
    assert [n.network for n in hv.domains["web-1"].shape.nics] == ["lab", "dmz"]


def test_an_existing_volume_is_reused_rather_than_failing_the_create() -> None:
    hv, rec = _world(POOL, LAB)
    hv.files["/var/lib/infinibay/pools/default"]["web-1.root.qcow2"] = fakes.FakeVolume(2 << 30)
    # Ours: left by a killed earlier apply, whose claim the inventory kept.
    owner = fakes.key(kinds.Kind.VIRTUAL_MACHINE, "web-1")
    rec.claim_volumes([record.VolumeRecord("default", "web-1.root.qcow2", owner, "root")])
    state = fakes.state_of([POOL, LAB, _vm("web-1")])
    plan = rec.plan(state, hv)
    # The planner saw the volume, so it plans none; force the executor's reuse path.
    change = plan.changes[0]
    assert change.field("disks[root].volume") is None
    assert isinstance(change.target, actions.VmTarget)
    forced = actions.Change(
        key=change.key,
        verb=change.verb,
        fields=(actions.FieldChange("disks[root].volume", None, "default/x", actions.Impact.LIVE),),
        target=change.target,
        owner=change.owner,
        intents=(actions.CreateVolume(change.target.volumes[0]), *change.intents),
    )

    outcomes = _run(hv, actions.Plan(changes=(forced,)))

    assert outcomes["web-1"].ok
    assert _reasons(outcomes["web-1"])[0] == "VolumeReused"


def test_a_file_that_appears_after_the_plan_is_refused_untouched_and_its_claim_given_back() -> None:
    hv, rec = _world(POOL, LAB)
    state = fakes.state_of([POOL, LAB, _vm("web-1")])
    plan = rec.plan(state, hv)
    assert [(v.name, v.created) for v in plan.volume_claims] == [("web-1.root.qcow2", True)]
    stray = fakes.FakeVolume(1 << 20)

    def someone_else(planned: actions.Plan) -> None:  # between the pass's plan and its actions
        assert planned.volume_claims == plan.volume_claims
        hv.files["/var/lib/infinibay/pools/default"]["web-1.root.qcow2"] = stray

    _, applied = rec.converge(state, hv, on_plan=someone_else)
    outcomes = {o.change.key.name: o for o in applied}

    assert not outcomes["web-1"].ok
    assert "was not created by this installation" in outcomes["web-1"].error
    assert hv.files["/var/lib/infinibay/pools/default"]["web-1.root.qcow2"] is stray
    assert stray.capacity == 1 << 20  # not grown
    assert "web-1" not in hv.domains
    assert rec.volumes() == []  # the name is not ours: the next plan says conflict
    assert rec.plan(state, hv).changes[-1].verb is actions.Verb.CONFLICT


def test_a_volume_error_other_than_already_exists_fails_the_vm() -> None:
    hv, rec = _world(POOL, LAB)
    hv.fail[("create_volume", "web-1.root.qcow2")] = errors.HypervisorError(
        "create", "volume default/web-1.root.qcow2", "No space left on device"
    )

    outcomes = _run(hv, rec.plan(fakes.state_of([POOL, LAB, _vm("web-1")]), hv))

    assert not outcomes["web-1"].ok
    assert "No space left on device" in outcomes["web-1"].error
    assert "web-1" not in hv.domains


def test_deleting_a_vm_deletes_reclaim_delete_volumes_and_retains_the_others() -> None:
    disks = [
        {"name": "root", "size": "2GiB", "reclaimPolicy": "Delete"},
        {"name": "data", "size": "1GiB"},
    ]
    hv, rec = _world(POOL, LAB, _vm("web-1", disks=disks))
    plan = rec.plan(fakes.state_of([POOL, LAB]), hv, prune=True)
    assert plan.changes[0].impact is actions.Impact.DATA_LOSS

    assert not plan.changes[0].needs_data_loss_flag  # reclaimPolicy Delete is the consent
    outcomes = _run(hv, plan, execute.Options(allow_data_loss=False))

    assert _reasons(outcomes["web-1"]) == ["VolumeDeleted", "VolumeRetained", "Deleted"]
    assert "web-1" not in hv.domains
    assert set(hv.files["/var/lib/infinibay/pools/default"]) == {"golden.qcow2", "web-1.data.qcow2"}


def test_deleting_what_is_already_gone_succeeds() -> None:
    hv, rec = _world(
        POOL, LAB, _vm("web-1", disks=[{"name": "root", "size": "1GiB", "reclaimPolicy": "Delete"}])
    )
    plan = rec.plan(fakes.state_of([POOL, LAB]), hv, prune=True)
    hv.undefine_domain("web-1")
    hv.delete_volume("default", "web-1.root.qcow2")

    outcomes = _run(hv, plan, execute.Options(allow_data_loss=True))

    assert outcomes["web-1"].ok
    assert outcomes["web-1"].steps == ["deleted"]


def test_deleting_a_running_vm_shuts_it_down_first_and_announces_the_wait() -> None:
    hv, rec = _world(POOL, LAB, _vm("web-1"), _vm("idle", powerState="Stopped"))
    plan = rec.plan(fakes.state_of([POOL, LAB]), hv, prune=True)
    waits: list[tuple[str, bool]] = []

    def on_wait(key: record.ResourceKey, deadline: float | None) -> None:
        waits.append((key.name, deadline is not None))

    outcomes = _run(hv, plan, execute.Options(shutdown_timeout=30, on_wait=on_wait))

    assert outcomes["web-1"].ok and outcomes["idle"].ok
    assert [m for m, name in hv.calls if name == "web-1"] == ["stop_domain", "undefine_domain"]
    assert [m for m, name in hv.calls if name == "idle"] == ["undefine_domain"]
    assert waits == [("web-1", True), ("web-1", False)]


def test_a_protected_deletion_only_warns() -> None:
    hv, rec = _world(POOL, LAB)
    doc = _vm("web-1")
    doc["metadata"]["annotations"] = {kinds.PROTECT_ANNOTATION: "true"}
    rec.converge(fakes.state_of([POOL, LAB, doc]), hv)
    hv.calls.clear()

    outcomes = _run(hv, rec.plan(fakes.state_of([POOL, LAB]), hv, prune=True))

    assert outcomes["web-1"].ok
    assert _reasons(outcomes["web-1"]) == ["DeletionProtected"]
    assert outcomes["web-1"].events[0].type.value == "Warning"
    assert hv.calls == []


def _bare(name: str, *depends: str) -> actions.Change:
    return actions.Change(
        key=fakes.key(kinds.Kind.TEMPLATE, name),
        verb=actions.Verb.CREATE,
        target=actions.TemplateTarget(),
        depends_on=tuple(fakes.key(kinds.Kind.TEMPLATE, d) for d in depends),
    )


def test_a_failure_propagates_along_a_chain_of_dependents_listed_in_order() -> None:
    hv = fakes.FakeHypervisor()
    failing = actions.Change(
        key=fakes.key(kinds.Kind.STORAGE_POOL, "a"), verb=actions.Verb.CONFLICT
    )
    chain = [failing, _bare("b", "a"), _bare("c", "b"), _bare("d")]
    chain[1] = actions.Change(
        key=chain[1].key,
        verb=actions.Verb.CREATE,
        target=actions.TemplateTarget(),
        depends_on=(failing.key,),
    )

    outcomes = _run(hv, actions.Plan(changes=tuple(chain)))

    assert not outcomes["a"].ok
    assert outcomes["b"].error == "depends on storagepool/a, which failed"
    assert outcomes["c"].error == "depends on template/b, which failed"
    assert outcomes["d"].ok


def test_a_failure_propagates_along_a_chain_of_dependents_listed_in_reverse() -> None:
    hv = fakes.FakeHypervisor()
    failing = actions.Change(
        key=fakes.key(kinds.Kind.STORAGE_POOL, "a"), verb=actions.Verb.CONFLICT
    )
    middle = actions.Change(
        key=fakes.key(kinds.Kind.TEMPLATE, "b"),
        verb=actions.Verb.CREATE,
        target=actions.TemplateTarget(),
        depends_on=(failing.key,),
    )

    outcomes = _run(hv, actions.Plan(changes=(_bare("c", "b"), middle, failing)))

    assert outcomes["c"].error == "depends on template/b, which failed"
    assert _reasons(outcomes["c"]) == ["DependencyFailed"]


def test_a_true_dependency_cycle_fails_instead_of_hanging() -> None:
    outcomes = _run(
        fakes.FakeHypervisor(), actions.Plan(changes=(_bare("a", "b"), _bare("b", "a")))
    )

    assert {name: o.error for name, o in outcomes.items()} == {
        "a": "dependency cycle",
        "b": "dependency cycle",
    }
