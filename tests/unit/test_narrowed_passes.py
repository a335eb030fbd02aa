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

from reconciler.daemon import loop
from reconciler.engine import execute, reconcile
from reconciler.models import desired, kinds
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
    hv.observed_volumes.clear()
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
    assert hv.observed_volumes == [frozenset(), frozenset()]  # diskless: no pool's volumes
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


def _at(state: desired.DesiredState, revision: str) -> desired.DesiredState:
    """``state`` as the loader gives it for ``revision``: every document's source names it."""
    for kind in kinds.Kind:
        items = state.by_kind(kind)
        for name, item in items.items():
            source = dataclasses.replace(item.source, revision=revision)
            items[name] = dataclasses.replace(item, source=source)
    return state


@st.composite
def edits(draw: st.DrawFn, documents: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """A next revision of ``documents``: VMs edited, dropped or added, templates edited."""
    edited: list[dict[str, Any]] = []
    for document in documents:
        what = draw(st.sampled_from(["keep", "keep", "edit", "drop"]))
        if document["kind"] == "VirtualMachine" and what == "drop":
            continue
        if document["kind"] in ("VirtualMachine", "Template") and what == "edit":
            spec = {**document["spec"], "cpus": draw(st.integers(1, 4))}
            if document["kind"] == "VirtualMachine":
                spec["powerState"] = draw(st.sampled_from(["Running", "Stopped"]))
            document = {**document, "spec": spec}
        edited.append(document)
    declared = {d["metadata"]["name"] for d in documents}
    free = [v for v in VMS if v not in declared]
    for name in draw(st.lists(st.sampled_from(free), unique=True)) if free else []:
        spec = {
            "cpus": 1,
            "memory": "64MiB",
            "powerState": draw(st.sampled_from(["Running", "Stopped"])),
        }
        edited.append({"kind": "VirtualMachine", "metadata": {"name": name}, "spec": spec})
    return edited


def _world(hv: fakes.FakeHypervisor, rec: fakes.FakeRecord) -> tuple[Any, Any]:
    domains = {
        n: (d.shape, d.autostart, d.power, d.live, d.owner) for n, d in sorted(hv.domains.items())
    }
    records = {
        str(k): (r.spec_hash, r.source_revision, r.deleted_at is None, r.generation)
        for k, r in sorted(rec.by_key.items(), key=lambda kv: str(kv[0]))
    }
    return domains, records


@PROPERTY
@given(data=st.data(), documents=desired_documents())
def test_a_revision_planned_for_the_vms_it_changed_ends_where_a_full_pass_does(
    data: st.DataObject, documents: list[dict[str, Any]]
) -> None:
    """Edits handled per resource: the daemon's pass for a new revision plans the VMs
    it changed (:func:`reconciler.daemon.loop.changed_vms`) and stamps those it
    carried, and leaves libvirt and the record as a full pass of that revision does."""
    later = data.draw(edits(documents), label="next revision")
    worlds = []
    for narrowed in (False, True):
        hv, rec = fakes.FakeHypervisor(images=IMAGES), fakes.FakeRecord()
        old = _at(fakes.state_of(documents), "r1")
        fakes.reconciler(rec, hv).apply(
            _constant(old), reconcile.Pass(allow_empty=True, revision="r1", options=_options())
        )
        new = _at(fakes.state_of(later), "r2")
        vms = loop.changed_vms(old, new) if narrowed else None
        hv.observed_domains.clear()
        result = fakes.reconciler(rec, hv).apply(
            _constant(new),
            reconcile.Pass(
                allow_empty=True, revision="r2", options=_options(), vms=vms, revised=True
            ),
        )
        assert result.ok, [(str(o.change.key), o.error) for o in result.failed]
        if narrowed:
            event("a full pass" if vms is None else f"narrowed to {len(vms)} of {len(new.vms)}")
            if vms is not None and hv.observed_domains and hv.observed_domains[0] is not None:
                assert hv.observed_domains[0] <= vms
        worlds.append(_world(hv, rec))
    assert worlds[0] == worlds[1]


def _constant(state: desired.DesiredState) -> Callable[[Any], desired.DesiredState]:
    return lambda _records: state


def _options() -> execute.Options:
    return execute.Options(allow_data_loss=True, shutdown_timeout=0)
