"""The audit journal: intents before actions, outcomes kept through a record outage.

A real SQLite record in ``tmp_path`` stands for the record; the fake
hypervisor supplies plans and observations. The end-to-end proofs (a real
PostgreSQL stopped mid-pass, a SIGKILLed apply) are in
``tests/integration/test_audit.py``.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path
from typing import Any

import pytest

from reconciler.engine import journal
from reconciler.models import kinds, record
from reconciler.planning import actions
from reconciler.store import store as store_module
from tests.unit import fakes

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


def _vm(name: str, **spec: Any) -> dict[str, Any]:
    spec.setdefault("disks", [{"name": "root", "size": "2GiB"}])
    spec.setdefault("networks", [{"network": "lab"}])
    return {"kind": "VirtualMachine", "metadata": {"name": name}, "spec": spec}


def _key(name: str) -> record.ResourceKey:
    return record.ResourceKey("VirtualMachine", name)


@pytest.fixture
def store(tmp_path: Path) -> Any:
    with store_module.Store.open(f"sqlite:///{tmp_path / 'state.db'}") as opened:
        yield opened


def _reasons(store: store_module.Store, name: str) -> list[str]:
    return [e.reason for e in store.events(_key(name))]


def test_intents_name_the_action_a_change_is_about_to_take() -> None:
    hv, rec = fakes.FakeHypervisor(), fakes.FakeRecord()
    plan = rec.plan(fakes.state_of([POOL, LAB, _vm("web-1")]), hv)
    assert {journal.intent_reasons(c) for c in plan.changes} == {("Creating", "Created")}
    rec.converge(fakes.state_of([POOL, LAB, _vm("web-1")]), hv)
    stopped = rec.plan(fakes.state_of([POOL, LAB, _vm("web-1", powerState="Stopped")]), hv)
    assert [journal.intent_reasons(c) for c in stopped.changes] == [("Stopping", "Stopped")]
    paused = rec.plan(fakes.state_of([POOL, LAB, _vm("web-1", powerState="Paused")]), hv)
    assert [journal.intent_reasons(c) for c in paused.changes] == [("Pausing", "Paused")]
    gone = rec.plan(fakes.state_of([POOL, LAB]), hv, prune=True)
    assert [journal.intent_reasons(c) for c in gone.changes] == [("Deleting", "Deleted")]


def test_a_killed_pass_leaves_intents_that_the_next_closes_by_observation(
    tmp_path: Path, store: store_module.Store
) -> None:
    path = tmp_path / "journal" / "inst.jsonl"
    hv, rec = fakes.FakeHypervisor(), fakes.FakeRecord()
    state = fakes.state_of([POOL, LAB, _vm("web-1"), _vm("web-2")])
    plan = rec.plan(state, hv)
    run_id = store.start_run(record.Trigger.APPLY, "main@sha1:abc")
    killed = journal.Journal(path)
    killed.begin(list(plan.changes), run_id, "main@sha1:abc")
    # The pass got as far as web-1 (and its pool and network), then was killed.
    rec.converge(fakes.state_of([POOL, LAB, _vm("web-1")]), hv)
    del killed

    following = journal.Journal(path)
    assert sorted(i.key.name for i in following.open_intents) == [
        "default",
        "lab",
        "web-1",
        "web-2",
    ]
    closed = following.close_interrupted(rec.plan(state, hv), hv.observe())
    assert len(closed) == 4 and following.open_intents == []
    assert following.flush(store)

    assert _reasons(store, "web-1") == ["Creating", "Created"]
    created = store.events(_key("web-1"))[-1]
    assert created.message.endswith("(observed after an interrupted pass)")
    assert created.run_id == run_id and created.revision == "main@sha1:abc"
    assert _reasons(store, "web-2") == ["Creating", journal.INTERRUPTED]
    assert store.events(_key("web-2"))[-1].type is record.EventType.WARNING
    assert path.read_text() == ""  # everything in the record: nothing left to keep


def test_a_power_intent_is_closed_by_the_power_observed_not_by_what_is_still_planned(
    tmp_path: Path, store: store_module.Store
) -> None:
    # A fenced pass asked a guest to stop and gave up; the next leader declares it
    # Running again: nothing is planned for it, yet it never stopped.
    path = tmp_path / "journal" / "inst.jsonl"
    hv, rec = fakes.FakeHypervisor(), fakes.FakeRecord()
    running = fakes.state_of([POOL, LAB, _vm("web-1"), _vm("web-2")])
    rec.converge(running, hv)
    stopping = rec.plan(
        fakes.state_of(
            [POOL, LAB, _vm("web-1", powerState="Stopped"), _vm("web-2", powerState="Stopped")]
        ),
        hv,
    )
    run_id = store.start_run(record.Trigger.WATCH, None)
    journal.Journal(path).begin(list(stopping.changes), run_id, None)
    hv.stop_domain("web-2", timeout=0)  # this one did stop before the pass ended

    following = journal.Journal(path)
    following.close_interrupted(rec.plan(running, hv), hv.observe())
    assert following.flush(store)
    assert _reasons(store, "web-1") == ["Stopping", journal.INTERRUPTED]
    assert _reasons(store, "web-2") == ["Stopping", "Stopped"]


def test_outcomes_during_a_record_outage_stay_on_disk_until_a_later_flush(
    tmp_path: Path, store: store_module.Store
) -> None:
    path = tmp_path / "journal" / "inst.jsonl"
    down = store_module.Store.open(f"sqlite:///{tmp_path / 'other.db'}")
    down.close()  # a closed record refuses every write, as one that is unreachable
    during = journal.Journal(path)
    stopped = record.NewEvent(
        _key("web-1"), record.EventType.NORMAL, "Stopped", "virtualmachine/web-1 shut down"
    )
    during.finish(_key("web-1"), [stopped], [_key("web-1")])
    assert during.flush(down) is False
    assert during.flush(down) is False  # not retried at once: each try may cost a timeout
    assert during.queued_events == [stopped]

    later = journal.Journal(path)  # the next pass, maybe another process
    assert later.queued_events == [stopped]
    assert later.flush(store, force=True)
    assert _reasons(store, "web-1") == ["Stopped"]
    assert journal.Journal(path).queued_events == []


def test_the_journal_is_private_whatever_the_umask(tmp_path: Path) -> None:
    path = tmp_path / "state" / "journal" / "inst.jsonl"
    old = os.umask(0)
    try:
        journal.Journal(path).finish(
            _key("web-1"),
            [record.NewEvent(_key("web-1"), record.EventType.NORMAL, "Started", "started")],
        )
    finally:
        os.umask(old)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert stat.S_IMODE(path.parent.stat().st_mode) == 0o700


def test_changes_that_touch_nothing_have_no_intent() -> None:
    change = actions.Change(_key("web-1"), actions.Verb.CONFLICT, note="not ours")
    assert journal.intent_reasons(change) is None


def test_intents_found_only_in_the_record_are_closed_too(
    tmp_path: Path, store: store_module.Store
) -> None:
    """A pass killed on another host: its journal is out of reach, its intents are not."""
    hv, rec = fakes.FakeHypervisor(), fakes.FakeRecord()
    state = fakes.state_of([POOL, LAB, _vm("web-1"), _vm("web-2")])
    plan = rec.plan(state, hv)
    run_id = store.start_run(record.Trigger.GIT, "main@sha1:abc")
    elsewhere = journal.Journal(tmp_path / "other-host.jsonl")
    elsewhere.begin(list(plan.changes), run_id, "main@sha1:abc")
    assert elsewhere.flush(store)  # the intents reached the record, then the host died
    rec.converge(fakes.state_of([POOL, LAB, _vm("web-1")]), hv)
    store.record_events(  # pool and network had ended and been recorded
        [
            record.NewEvent(key, record.EventType.NORMAL, "Created", "created", run_id=run_id)
            for key in (
                record.ResourceKey("StoragePool", "default"),
                record.ResourceKey("Network", "lab"),
            )
        ]
    )
    assert store.abort_unfinished_runs() == [run_id]

    here = journal.Journal(tmp_path / "this-host.jsonl")
    found = here.close_unrecorded(store.events_of_runs([run_id]), rec.plan(state, hv), hv.observe())
    assert sorted(i.key.name for i in found) == ["web-1", "web-2"]
    assert here.flush(store)
    assert _reasons(store, "web-1") == ["Creating", "Created"]
    assert _reasons(store, "web-2") == ["Creating", journal.INTERRUPTED]
    assert here.close_unrecorded(store.events_of_runs([run_id]), plan, hv.observe()) == []


def test_an_entry_the_record_refuses_for_good_never_holds_back_the_others(
    tmp_path: Path, store: store_module.Store
) -> None:
    path = tmp_path / "journal" / "inst.jsonl"
    kept = journal.Journal(path)
    orphan = record.NewEvent(  # of a run this record does not have: refused for good
        _key("web-1"), record.EventType.NORMAL, "Started", "started", run_id=record.RunId(999)
    )
    fine = record.NewEvent(_key("web-2"), record.EventType.NORMAL, "Started", "started")
    kept.finish(_key("web-1"), [orphan])
    kept.finish(_key("web-2"), [fine])
    assert kept.flush(store, force=True)
    assert _reasons(store, "web-2") == ["Started"] and _reasons(store, "web-1") == []
    assert journal.Journal(path).queued_events == []


def test_record_only_changes_announce_no_intent() -> None:
    """Templates and record-only updates touch no libvirt object: no ``Creating`` first."""
    template = record.ResourceKey(kinds.Kind.TEMPLATE.value, "t")
    vm = record.ResourceKey(kinds.Kind.VIRTUAL_MACHINE.value, "vm")
    assert journal.intent_reasons(actions.Change(key=template, verb=actions.Verb.CREATE)) is None
    assert journal.intent_reasons(actions.Change(key=template, verb=actions.Verb.DELETE)) is None
    spec_only = actions.FieldChange("spec", "a", "b", actions.Impact.RECORD)
    change = actions.Change(key=vm, verb=actions.Verb.UPDATE, fields=(spec_only,))
    assert journal.intent_reasons(change) is None
    assert journal.intent_reasons(actions.Change(key=vm, verb=actions.Verb.CREATE)) == (
        "Creating",
        "Created",
    )
