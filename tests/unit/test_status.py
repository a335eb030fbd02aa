"""Status is derived from a fresh observation and plan: phase, conditions, observed facts."""

from __future__ import annotations

import dataclasses
import datetime as dt
from typing import Any

from reconciler.models import kinds, record
from reconciler.planning import planner, status
from tests.unit import fakes

POOL = {"kind": "StoragePool", "metadata": {"name": "default"}, "spec": {"path": "/pools/default"}}
LAB = {
    "kind": "Network",
    "metadata": {"name": "lab"},
    "spec": {"mode": "nat", "ipv4": {"address": "10.20.0.1/24"}},
}
VM: dict[str, Any] = {
    "kind": "VirtualMachine",
    "metadata": {"name": "web-1"},
    "spec": {"disks": [{"name": "root", "size": "1GiB"}], "networks": [{"network": "lab"}]},
}
LATER = dt.datetime(2024, 6, 1, 12, 0, tzinfo=dt.UTC)
WEB_1 = fakes.key(kinds.Kind.VIRTUAL_MACHINE, "web-1")


def _converged() -> tuple[fakes.FakeHypervisor, fakes.FakeRecord]:
    hv, rec = fakes.FakeHypervisor(), fakes.FakeRecord()
    rec.converge(fakes.state_of([POOL, LAB, VM]), hv)
    return hv, rec


def _compute(
    hv: fakes.FakeHypervisor,
    rec: fakes.FakeRecord,
    failures: dict[record.ResourceKey, str] | None = None,
    documents: list[dict[str, Any]] | None = None,
) -> dict[str, dict[str, Any]]:
    state = fakes.state_of(documents or [POOL, LAB, VM])
    world = hv.observe()
    after = planner.plan(
        state, rec.live(), world, installation=rec.installation, volumes=rec.volumes()
    )
    writes = status.compute(
        state,
        rec.live(),
        world,
        after,
        failures or {},
        addresses=hv.guest_addresses(world),
        now=LATER,
    )
    return {w.key.name: w.status for w in writes}


def _conditions(state: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {c["type"]: c for c in state["conditions"]}


def test_a_resource_with_nothing_left_to_do_is_ready_at_its_generation() -> None:
    hv, rec = _converged()

    statuses = _compute(hv, rec)

    vm = statuses["web-1"]
    domain = hv.domains["web-1"]
    assert vm["phase"] == "Ready"
    assert vm["observedGeneration"] == rec.by_key[WEB_1].generation == 1
    assert vm["lastReconciled"] == "2024-06-01T12:00:00+00:00"
    assert (vm["uuid"], vm["power"], vm["graphicsPort"]) == (domain.uuid, "Running", domain.port)
    assert vm["macs"] == {"lab": domain.shape.nics[0].mac}
    assert vm["ips"] == list(hv.guest_addresses(hv.observe())[domain.shape.nics[0].mac])
    conditions = _conditions(vm)
    assert {k: (c["status"], c["reason"]) for k, c in conditions.items()} == {
        "Ready": ("True", "Converged"),
        "Drifted": ("False", "InSync"),
        "RestartRequired": ("False", "UpToDate"),
    }
    assert statuses["lab"]["uuid"] == hv.networks["lab"].uuid and statuses["lab"]["active"]
    assert statuses["default"]["uuid"] == hv.pools["default"].uuid


def test_a_failure_makes_the_phase_failed_with_its_message_and_keeps_the_old_generation() -> None:
    hv, rec = _converged()
    rec.apply_specs(
        rec.plan(
            fakes.state_of([POOL, LAB, {**VM, "spec": {**VM["spec"], "cpus": 2}}]), hv
        ).spec_writes
    )
    documents = [POOL, LAB, {**VM, "spec": {**VM["spec"], "cpus": 2}}]

    statuses = _compute(hv, rec, {WEB_1: "define domain web-1 failed: boom"}, documents)

    vm = statuses["web-1"]
    assert vm["phase"] == "Failed"
    assert rec.by_key[WEB_1].generation == 2 and vm["observedGeneration"] == 1
    ready = _conditions(vm)["Ready"]
    assert (ready["status"], ready["reason"], ready["message"]) == (
        "False",
        "ApplyFailed",
        "define domain web-1 failed: boom",
    )


def test_a_change_still_planned_without_a_failure_is_pending_and_says_what_differs() -> None:
    hv, rec = _converged()
    hv.domains["web-1"].autostart = True

    vm = _compute(hv, rec)["web-1"]

    assert vm["phase"] == "Pending"
    assert _conditions(vm)["Ready"]["message"] == "autostart: True -> False"


def test_a_conflict_is_its_own_phase_with_the_planners_explanation() -> None:
    hv, rec = _converged()
    hv.domains["web-1"].owner = None

    vm = _compute(hv, rec, {WEB_1: "a libvirt domain named 'web-1' exists ..."})["web-1"]

    assert vm["phase"] == "Conflict"
    assert "--adopt" in _conditions(vm)["Ready"]["message"]


def test_drift_left_after_the_pass_sets_the_drifted_condition() -> None:
    hv, rec = _converged()
    hv.domains["web-1"].power = kinds.PowerState.STOPPED
    hv.domains["web-1"].live = None

    drifted = _conditions(_compute(hv, rec, {WEB_1: "start domain web-1 failed"})["web-1"])

    assert drifted["Drifted"]["status"] == "True"
    assert "powerState" in drifted["Drifted"]["message"]


def test_restart_required_when_the_running_guest_differs_from_its_persistent_config() -> None:
    hv, rec = _converged()
    domain = hv.domains["web-1"]
    domain.shape = dataclasses.replace(domain.shape, cpus=4)
    documents = [POOL, LAB, {**VM, "spec": {**VM["spec"], "cpus": 4}}]
    rec.apply_specs(rec.plan(fakes.state_of(documents), hv).spec_writes)

    vm = _compute(hv, rec, documents=documents)["web-1"]

    assert vm["phase"] == "Ready"  # OnRestart: the config is in place, the reboot is the user's
    restart = _conditions(vm)["RestartRequired"]
    assert (restart["status"], restart["reason"]) == ("True", "ConfigPending")
    assert "updatePolicy: Restart" in restart["message"]
    assert status.restart_required(hv.observe().domains["web-1"])


def test_a_stopped_or_autostart_only_difference_needs_no_restart() -> None:
    hv, _ = _converged()
    observed_domain = hv.observe().domains["web-1"]
    assert observed_domain.live is not None
    flipped = dataclasses.replace(
        observed_domain.live, autostart=not observed_domain.live.autostart
    )

    assert not status.restart_required(observed_domain)
    assert not status.restart_required(dataclasses.replace(observed_domain, live=flipped))
    assert not status.restart_required(dataclasses.replace(observed_domain, live=None))
    assert not status.restart_required(None)


def test_last_transition_time_is_kept_while_a_condition_does_not_flip() -> None:
    hv, rec = _converged()
    first = rec.by_key[WEB_1].status
    since = _conditions(first)["Ready"]["lastTransitionTime"]
    assert since == fakes.EPOCH.isoformat(timespec="seconds")

    steady = _compute(hv, rec)["web-1"]
    assert _conditions(steady)["Ready"]["lastTransitionTime"] == since
    assert steady["lastReconciled"] != since

    hv.domains["web-1"].autostart = True
    flipped = _compute(hv, rec)["web-1"]
    assert _conditions(flipped)["Ready"]["lastTransitionTime"] == LATER.isoformat(
        timespec="seconds"
    )


def test_condition_keeps_the_time_only_for_the_same_type_and_status() -> None:
    previous = [
        {"type": "Ready", "status": "True", "lastTransitionTime": "t0"},
        {"type": "Drifted", "status": "False", "lastTransitionTime": "t1"},
    ]

    assert status.condition(previous, "Ready", True, "r", "m", "now")["lastTransitionTime"] == "t0"
    assert (
        status.condition(previous, "Ready", False, "r", "m", "now")["lastTransitionTime"] == "now"
    )
    assert (
        status.condition(previous, "Stalled", True, "r", "m", "now")["lastTransitionTime"] == "now"
    )


def test_only_desired_resources_in_the_record_get_a_status() -> None:
    hv, rec = _converged()
    rec.tombstone([fakes.key(kinds.Kind.STORAGE_POOL, "default")])

    statuses = _compute(hv, rec)

    assert set(statuses) == {"lab", "web-1"}
