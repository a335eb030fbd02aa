"""Narrowing a plan to a selector and holding back suspended resources (planning.scope)."""

from __future__ import annotations

import dataclasses
from typing import Any

from reconciler.models import record, selectors
from reconciler.planning import actions, scope
from tests.unit import fakes

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


def _vm(name: str, cpus: int = 1, **metadata: Any) -> dict[str, Any]:
    return {
        "kind": "VirtualMachine",
        "metadata": {"name": name, **metadata},
        "spec": {
            "cpus": cpus,
            "memory": "64MiB",
            "powerState": "Stopped",
            "disks": [{"name": "root", "size": "16MiB", "pool": "default"}],
            "networks": [{"network": "lab"}],
        },
    }


def _keys(plan: actions.Plan) -> list[str]:
    return [str(c.key) for c in plan.changes]


def test_a_selector_keeps_only_the_changes_of_matching_resources() -> None:
    docs = [POOL, LAB, _vm("web", labels={"app": "web"}), _vm("db", labels={"app": "db"})]
    state = fakes.state_of(docs)
    rec, hv = fakes.FakeRecord(), fakes.FakeHypervisor()
    plan = rec.plan(state, hv)
    narrowed = scope.restrict(plan, state, rec.records, selectors.parse("app=web"))
    assert _keys(narrowed) == ["virtualmachine/web"]
    assert [w.key.name for w in narrowed.spec_writes] == ["web"]
    assert {v.owner.name for v in narrowed.volume_claims} == {"web"}
    assert scope.restrict(plan, state, rec.records) is plan  # nothing to narrow


def test_a_suspended_resource_is_neither_changed_nor_pruned_and_is_listed() -> None:
    rec, hv = fakes.FakeRecord(), fakes.FakeHypervisor()
    rec.converge(fakes.state_of([POOL, LAB, _vm("web"), _vm("db")]), hv)
    held = {"annotations": {"infinibay.io/reconcile": "disabled"}}
    state = fakes.state_of([POOL, LAB, _vm("web", cpus=2, **held)])
    plan = rec.plan(state, hv, prune=True)
    assert set(_keys(plan)) == {"virtualmachine/web", "virtualmachine/db"}
    narrowed = scope.restrict(plan, state, rec.records)
    assert _keys(narrowed) == ["virtualmachine/db"]  # db's prune goes on
    assert narrowed.suspended == (record.ResourceKey("VirtualMachine", "web"),)
    assert narrowed.empty is False


def test_a_suspension_in_the_record_holds_even_when_the_manifest_has_none() -> None:
    rec, hv = fakes.FakeRecord(), fakes.FakeHypervisor()
    rec.converge(fakes.state_of([POOL, LAB, _vm("web")]), hv)
    key = record.ResourceKey("VirtualMachine", "web")
    records = [
        r if r.key != key else _annotated(r, {"infinibay.io/reconcile": "Disabled"})
        for r in rec.records
    ]
    state = fakes.state_of([POOL, LAB, _vm("web", cpus=2)])
    narrowed = scope.restrict(rec.plan(state, hv), state, records)
    assert narrowed.empty and narrowed.suspended == (key,)
    assert scope.suspended_keys(state, records) == {key}


def _annotated(rec: record.ResourceRecord, annotations: dict[str, str]) -> record.ResourceRecord:
    return dataclasses.replace(rec, annotations=annotations)
