"""A pass for a few VMs (a libvirt event's) plans for them exactly what a full pass would.

The daemon answers a lifecycle event about VM x with a pass for x alone
(:func:`reconciler.engine.reconcile.narrow`): only x's domain is observed and
only x is planned and written. Property-tested over the planner's strategies:
after a converged world is disturbed out of band, the narrowed plan's changes
and record writes are the full plan's for those VMs, and where the full plan
acts on anything else the narrowed pass widens to the full plan.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

from hypothesis import event, given
from hypothesis import strategies as st

from reconciler.engine import execute, reconcile
from reconciler.models import kinds
from reconciler.planning import actions
from tests.unit import fakes
from tests.unit.test_planner_properties import (
    IMAGES,
    PROPERTY,
    VMS,
    desired_documents,
    disturbances,
)

_VM = kinds.Kind.VIRTUAL_MACHINE.value


def _dry(vms: frozenset[str] | None) -> reconcile.Pass:
    options = execute.Options(allow_data_loss=True, shutdown_timeout=0)
    return reconcile.Pass(dry_run=True, allow_empty=True, options=options, vms=vms)


def _of(plan: actions.Plan, vms: frozenset[str]) -> tuple[list[Any], list[Any]]:
    mine = [c.as_json() for c in plan.changes if c.key.kind == _VM and c.key.name in vms]
    writes = [w for w in plan.spec_writes if w.key.kind == _VM and w.key.name in vms]
    return mine, [dataclasses.replace(w, run_id=None) for w in writes]


@st.composite
def domain_disturbances(draw: st.DrawFn, hv: fakes.FakeHypervisor) -> list[str]:
    """What a lifecycle event reports: a domain stopped, started, paused, changed, undefined."""
    done = []
    for name in sorted(hv.domains):
        domain = hv.domains[name]
        what = draw(st.sampled_from(["none", "stop", "start", "pause", "cpus", "undefine"]))
        if what == "stop":
            domain.power, domain.live, domain.port = kinds.PowerState.STOPPED, None, None
        elif what in ("start", "pause"):
            domain.power = kinds.PowerState.RUNNING if what == "start" else kinds.PowerState.PAUSED
            domain.live = domain.shape
        elif what == "cpus":
            domain.shape = dataclasses.replace(domain.shape, cpus=domain.shape.cpus % 8 + 1)
        elif what == "undefine":
            del hv.domains[name]
        done.append(f"{what} domain {name}")
    return done


def _check(
    data: st.DataObject,
    documents: list[dict[str, Any]],
    disturb: Callable[[fakes.FakeHypervisor], st.SearchStrategy[list[str]]],
) -> None:
    hv, rec = fakes.FakeHypervisor(images=IMAGES), fakes.FakeRecord()
    state = fakes.state_of(documents)
    rec.converge(state, hv)
    data.draw(disturb(hv), label="out of band")
    vms = frozenset(data.draw(st.lists(st.sampled_from(VMS), unique=True), label="event for"))
    engine = fakes.reconciler(rec, hv)

    full = engine.apply(lambda _r: state, _dry(None)).plan
    hv.observed_domains.clear()
    narrowed = engine.apply(lambda _r: state, _dry(vms)).plan

    assert _of(narrowed, vms) == _of(full, vms)
    if any(c.key.kind != _VM or c.key.name not in vms for c in narrowed.changes):
        assert [c.as_json() for c in narrowed.changes] == [c.as_json() for c in full.changes]
        assert hv.observed_domains[-1] is None  # widened: every domain read
        event("widened to a full pass")
    else:
        assert hv.observed_domains[0] == frozenset(vms & set(state.vms))
        event("narrowed" if _of(full, vms)[0] else "narrowed, nothing to do")


@PROPERTY
@given(data=st.data(), documents=desired_documents())
def test_a_pass_for_some_vms_plans_for_them_what_a_full_pass_would(
    data: st.DataObject, documents: list[dict[str, Any]]
) -> None:
    _check(data, documents, domain_disturbances)


@PROPERTY
@given(data=st.data(), documents=desired_documents())
def test_a_pass_for_some_vms_widens_when_more_than_they_drifted(
    data: st.DataObject, documents: list[dict[str, Any]]
) -> None:
    _check(data, documents, disturbances)


def test_a_destroyed_vm_is_healed_by_a_pass_that_reads_its_domain_alone() -> None:
    pool = {"kind": "StoragePool", "metadata": {"name": "p"}, "spec": {"path": "/p"}}
    vms = [
        {
            "kind": "VirtualMachine",
            "metadata": {"name": name},
            "spec": {"cpus": 1, "memory": "64MiB", "powerState": "Running"},
        }
        for name in ("a", "b", "c")
    ]
    hv, rec = fakes.FakeHypervisor(), fakes.FakeRecord()
    state = fakes.state_of([pool, *vms])
    rec.converge(state, hv)
    for name in ("a", "b"):  # both stopped out of band; the event is about "a"
        hv.domains[name].power, hv.domains[name].live = kinds.PowerState.STOPPED, None
    hv.observed_domains.clear()
    before = {k: r.status for k, r in rec.by_key.items()}

    options = execute.Options(shutdown_timeout=0)
    result = fakes.reconciler(rec, hv).apply(
        lambda _r: state, reconcile.Pass(options=options, vms=frozenset({"a"}))
    )

    assert result.ok and [str(o.change.key) for o in result.outcomes] == ["virtualmachine/a"]
    assert result.run_id is not None and rec.runs[result.run_id].scope == ("virtualmachine/a",)
    assert all(r.scope is None for r in rec.runs.values() if r.id != result.run_id)
    assert hv.domains["a"].power is kinds.PowerState.RUNNING
    assert hv.domains["b"].power is kinds.PowerState.STOPPED  # the next pass's business
    assert hv.observed_domains == [frozenset({"a"}), frozenset({"a"})]  # plan, then status
    changed = {str(k) for k, r in rec.by_key.items() if r.status != before[k]}
    assert changed <= {"virtualmachine/a"}


@PROPERTY
@given(data=st.data(), documents=desired_documents(), steps=st.integers(1, 3))
def test_events_handled_one_vm_at_a_time_converge_the_world_a_full_pass_would(
    data: st.DataObject, documents: list[dict[str, Any]], steps: int
) -> None:
    """Any sequence of out-of-band changes, each VM's answered by its own pass, converges."""
    hv, rec = fakes.FakeHypervisor(images=IMAGES), fakes.FakeRecord()
    state = fakes.state_of(documents)
    rec.converge(state, hv)
    engine = fakes.reconciler(rec, hv)
    options = execute.Options(allow_data_loss=True, shutdown_timeout=0)
    for step in range(steps):
        done = data.draw(domain_disturbances(hv), label=f"out of band, step {step}")
        touched = sorted({line.split()[-1] for line in done if not line.startswith("none")})
        for vm in touched:  # one libvirt event, one pass, per VM
            result = engine.apply(
                lambda _r: state, reconcile.Pass(options=options, vms=frozenset({vm}))
            )
            assert result.ok, [(str(o.change.key), o.error) for o in result.failed]
    full = engine.apply(lambda _r: state, _dry(None)).plan
    assert [c.as_json() for c in full.changes if c.verb is not actions.Verb.PROTECTED] == []
