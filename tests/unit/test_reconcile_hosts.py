"""Passes over several hosts, on fake hypervisors: sharding, moves over shared storage, live moves.

Two in-memory hypervisors stand for two hosts. Storage the hosts share is the
same ``files`` of both fakes (one directory both see); a migration reaches a
fake through ``peers``.
"""

from __future__ import annotations

from typing import Any

from reconciler.engine import execute, hosts, reconcile
from reconciler.models import kinds, observed
from tests.unit import fakes

POOL_PATH = "/p/shared"


def _host(name: str, uri: str) -> dict[str, Any]:
    return {"kind": "Host", "metadata": {"name": name}, "spec": {"uri": uri}}


def _pool(*, shared: bool) -> dict[str, Any]:
    return {
        "kind": "StoragePool",
        "metadata": {"name": "pool"},
        "spec": {"path": POOL_PATH, "shared": shared},
    }


def _vm(name: str, host: str, power: str = "Stopped") -> dict[str, Any]:
    return {
        "kind": "VirtualMachine",
        "metadata": {"name": name},
        "spec": {
            "cpus": 1,
            "memory": "64MiB",
            "powerState": power,
            "graphics": {"type": "none"},
            "disks": [{"name": "root", "size": "16MiB", "pool": "pool"}],
            "host": host,
        },
    }


def _fleet(*, share: bool) -> tuple[fakes.FakeHypervisor, fakes.FakeHypervisor]:
    a, b = fakes.FakeHypervisor(), fakes.FakeHypervisor()
    a.uri, b.uri = "test:///a", "test:///b"
    for hv in (a, b):
        hv.host = observed.Host(cpus=8, memory_mib=16384)
    if share:
        b.files = a.files  # one directory both hosts see
    a.peers, b.peers = {b.uri: b}, {a.uri: a}
    return a, b


def _reconciler(
    rec: fakes.FakeRecord,
    a: fakes.FakeHypervisor,
    b: fakes.FakeHypervisor,
    shard: frozenset[str] | None = None,
) -> reconcile.Reconciler:
    fleet = hosts.Hosts(a, connect={b.uri: b}.__getitem__)
    return reconcile.Reconciler(rec, a, clock=lambda: fakes.EPOCH, hosts=fleet, shard=lambda: shard)


def _apply(reconciler: reconcile.Reconciler, documents: list[dict[str, Any]]) -> reconcile.Result:
    state = fakes.state_of(documents)
    return reconciler.apply(
        lambda _records: state, reconcile.Pass(options=execute.Options(shutdown_timeout=0))
    )


def _volumes(hv: fakes.FakeHypervisor) -> set[str]:
    return set(hv.files.get(POOL_PATH, {}))


def test_a_sharded_pass_acts_on_its_own_hosts_alone_and_reports_only_them() -> None:
    a, b = _fleet(share=False)
    rec = fakes.FakeRecord()
    docs = [_host("hv-a", a.uri), _host("hv-b", b.uri), _pool(shared=False)]
    docs += [_vm("on-a", "hv-a"), _vm("on-b", "hv-b")]

    result = _apply(_reconciler(rec, a, b, shard=frozenset({"hv-a"})), docs)

    assert result.ok
    assert set(a.domains) == {"on-a"} and not b.domains
    assert {c.host for c in result.plan.changes} == {"hv-a", ""}  # record-only kinds: no host
    status = {r.key.name: r.status for r in rec.resources()}
    assert status["hv-a"]["reachable"] is True
    assert "reachable" not in status.get("hv-b", {})  # the other daemon's to report
    assert "on-b" not in status or "host" not in status["on-b"]


def test_a_move_over_storage_the_hosts_share_copies_nothing_and_keeps_the_volume() -> None:
    a, b = _fleet(share=True)
    rec = fakes.FakeRecord()
    base = [_host("hv-a", a.uri), _host("hv-b", b.uri), _pool(shared=False)]
    assert _apply(_reconciler(rec, a, b), [*base, _vm("vm", "hv-a")]).ok
    kept = _volumes(a)
    assert kept

    moved = _apply(_reconciler(rec, a, b), [*base, _vm("vm", "hv-b")])

    assert moved.ok, [o.error for o in moved.failed]
    assert set(b.domains) == {"vm"} and not a.domains
    assert _volumes(b) == kept  # not deleted from under the moved VM
    reasons = [e.reason for o in moved.outcomes for e in o.events]
    assert "VolumeShared" in reasons and "VolumeCopied" not in reasons
    assert ("write_volume", next(iter(kept))) not in b.calls


def test_a_running_vm_on_a_pool_declared_shared_is_migrated_live() -> None:
    a, b = _fleet(share=True)
    rec = fakes.FakeRecord()
    base = [_host("hv-a", a.uri), _host("hv-b", b.uri), _pool(shared=True)]
    assert _apply(_reconciler(rec, a, b), [*base, _vm("vm", "hv-a", "Running")]).ok

    moved = _apply(_reconciler(rec, a, b), [*base, _vm("vm", "hv-b", "Running")])

    (change,) = [c for c in moved.plan.changes if c.key.kind == kinds.Kind.VIRTUAL_MACHINE.value]
    assert change.move_live and change.move_from == "hv-a" and change.host == "hv-b"
    assert moved.ok, [o.error for o in moved.failed]
    assert ("migrate_domain", "vm") in a.calls and ("stop_domain", "vm") not in a.calls
    assert b.domains["vm"].power is kinds.PowerState.RUNNING and not a.domains
    status = {r.key.name: r.status for r in rec.resources()}
    assert status["vm"]["host"] == "hv-b"


def test_a_pool_declared_shared_that_is_not_fails_the_live_move_and_keeps_the_vm() -> None:
    a, b = _fleet(share=False)
    rec = fakes.FakeRecord()
    base = [_host("hv-a", a.uri), _host("hv-b", b.uri), _pool(shared=True)]
    assert _apply(_reconciler(rec, a, b), [*base, _vm("vm", "hv-a", "Running")]).ok

    moved = _apply(_reconciler(rec, a, b), [*base, _vm("vm", "hv-b", "Running")])

    assert not moved.ok
    (failed,) = moved.failed
    assert "declared shared" in failed.error
    assert a.domains["vm"].power is kinds.PowerState.RUNNING and "vm" not in b.domains
    assert _volumes(a)  # untouched
