"""Planning and carrying out departments and firewall policies, over the fakes."""

from __future__ import annotations

from typing import Any

from reconciler.models import kinds
from reconciler.planning import actions
from tests.unit import fakes

Verb = actions.Verb
LAB = {
    "kind": "Network",
    "metadata": {"name": "lab"},
    "spec": {"mode": "nat", "ipv4": {"address": "10.20.0.1/24"}},
}


def _policy(
    name: str = "eng", port: int = 8080, default: str = "Drop", **spec: Any
) -> dict[str, Any]:
    rule = {
        "name": "web",
        "action": "Accept",
        "direction": "In",
        "protocol": "tcp",
        "ports": str(port),
    }
    return {
        "kind": "FirewallPolicy",
        "metadata": {"name": name},
        "spec": {"defaultAction": default, "presets": ["block-ssh"], "rules": [rule], **spec},
    }


def _department(name: str = "eng", policy: str = "eng") -> dict[str, Any]:
    return {
        "kind": "Department",
        "metadata": {"name": name},
        "spec": {"network": "lab", "firewall": policy},
    }


def _vm(name: str = "web-1", department: str = "eng", **spec: Any) -> dict[str, Any]:
    return {
        "kind": "VirtualMachine",
        "metadata": {"name": name},
        "spec": {"disks": [], "department": department, **spec},
    }


def _converged(*docs: dict[str, Any]) -> tuple[fakes.FakeHypervisor, fakes.FakeRecord]:
    hv, rec = fakes.FakeHypervisor(), fakes.FakeRecord()
    _, outcomes = rec.converge(fakes.state_of(list(docs)), hv)
    assert all(o.ok for o in outcomes), [o.error for o in outcomes]
    assert rec.plan(fakes.state_of(list(docs)), hv).empty
    return hv, rec


def test_a_department_vm_gets_its_network_a_filter_and_a_filterref_on_every_nic() -> None:
    hv, _rec = _converged(LAB, _policy(), _department(), _vm())
    assert set(hv.filters) == {"ib-policy-eng", "ib-vm-web-1"}
    (nic,) = hv.domains["web-1"].shape.nics
    assert nic.network == "lab"
    assert nic.filter is not None and nic.filter.filter == "ib-vm-web-1"
    assert dict(nic.filter.parameters) == {"MAC": nic.mac}
    refs = [r.filter for r in hv.filters["ib-vm-web-1"].shape.references]
    assert refs == ["clean-traffic", "ib-policy-eng"]


def test_a_policy_change_is_live_names_every_vm_it_reaches_and_touches_only_the_policy() -> None:
    docs = [
        LAB,
        _policy(),
        _department(),
        _vm("a"),
        _vm("b"),
        _vm("c", department="ops"),
        _department("ops", "ops"),
        _policy("ops"),
    ]
    hv, rec = _converged(*docs)
    docs[1] = _policy(port=8081)

    plan = rec.plan(fakes.state_of(docs), hv)

    (change,) = plan.changes
    assert change.key == fakes.key(kinds.Kind.FIREWALL_POLICY, "eng")
    assert change.impact is actions.Impact.LIVE
    assert change.note == "reaches virtualmachine/a, virtualmachine/b"
    rec.converge(fakes.state_of(docs), hv)
    assert any(
        "dstportstart" in r.attributes[0] and ("dstportstart", "8081") in r.attributes
        for r in hv.filters["ib-policy-eng"].shape.rules
    )
    assert rec.plan(fakes.state_of(docs), hv).empty


def test_moving_a_vm_to_another_department_redefines_only_its_filter() -> None:
    docs = [
        LAB,
        _policy(),
        _department(),
        _policy("open", default="Accept"),
        _department("open", "open"),
        _vm(),
    ]
    hv, rec = _converged(*docs)
    document = hv.domains["web-1"].document
    docs[-1] = _vm(department="open")

    (change,) = rec.plan(fakes.state_of(docs), hv).changes

    assert [f.path for f in change.fields] == ["firewall"]
    assert change.impact is actions.Impact.LIVE
    assert not change.intends(actions.Patch)
    rec.converge(fakes.state_of(docs), hv)
    refs = [r.filter for r in hv.filters["ib-vm-web-1"].shape.references]
    assert refs == ["clean-traffic", "ib-policy-open"]
    assert hv.domains["web-1"].document == document  # the domain itself is untouched


def test_pruning_a_vm_removes_its_filter_and_a_used_policy_is_never_pruned() -> None:
    docs = [LAB, _policy(), _department(), _vm()]
    hv, rec = _converged(*docs)

    plan, _outcomes = rec.converge(fakes.state_of([LAB, _department()]), hv, prune=True)

    by_name = {c.key.name: c for c in plan.changes}
    assert by_name["web-1"].verb is Verb.DELETE
    assert (by_name["eng"].verb, by_name["eng"].note) == (
        Verb.PROTECTED,
        "still used by department/eng",
    )
    assert "ib-vm-web-1" not in hv.filters and "ib-policy-eng" in hv.filters
