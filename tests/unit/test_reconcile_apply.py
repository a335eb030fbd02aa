"""A pass loads its manifests and plans from one reading of the record, under the writer lock.

The real :class:`~reconciler.engine.reconcile.Reconciler` over the in-memory
record, which notes each reading and whether the lock was held for it.
"""

from __future__ import annotations

import contextlib
from collections.abc import Collection, Iterator, Sequence

import pytest

from reconciler import errors
from reconciler.engine import execute, reconcile
from reconciler.models import desired, kinds, record
from tests.unit import fakes

POOL = {"kind": "StoragePool", "metadata": {"name": "default"}, "spec": {"path": "/p/default"}}
LAB = {"kind": "Network", "metadata": {"name": "lab"}, "spec": {"mode": "isolated"}}


class Watched(fakes.FakeRecord):
    """The in-memory record, noting for each reading of its resources if the lock was held."""

    def __init__(self) -> None:
        super().__init__()
        self.readings: list[bool] = []
        self.locked = False

    def resources(
        self, *, include_deleted: bool = False, vms: Collection[str] | None = None
    ) -> list[record.ResourceRecord]:
        self.readings.append(self.locked)
        return super().resources(include_deleted=include_deleted, vms=vms)

    @contextlib.contextmanager
    def writer_lock(self, timeout: float | None = None) -> Iterator[None]:
        with super().writer_lock(timeout):
            self.locked = True
            try:
                yield
            finally:
                self.locked = False


def _pass(*, prune: bool = False, dry_run: bool = False) -> reconcile.Pass:
    return reconcile.Pass(prune=prune, dry_run=dry_run, options=execute.Options(shutdown_timeout=0))


def test_the_manifests_are_loaded_from_the_reading_the_plan_is_made_from() -> None:
    rec, hv = Watched(), fakes.FakeHypervisor()
    rec.converge(fakes.state_of([POOL, LAB]), hv)
    rec.converge(fakes.state_of([POOL]), hv, prune=True)  # the network: tombstoned
    rec.readings.clear()
    loaded: list[tuple[bool, list[record.ResourceRecord]]] = []

    def load(records: Sequence[record.ResourceRecord]) -> desired.DesiredState:
        loaded.append((rec.locked, list(records)))
        return fakes.state_of([POOL, LAB])

    result = reconcile.Reconciler(rec, hv).apply(load, _pass(dry_run=True))

    assert rec.readings == [True]  # once, and under the lock
    assert loaded == [(True, rec.resources(include_deleted=True))]
    assert {str(r.key) for r in loaded[0][1] if r.deleted_at is not None} == {"network/lab"}
    assert [str(c.key) for c in result.plan.changes] == ["network/lab"]


def test_a_pass_reads_the_record_only_under_the_lock_and_once_more_for_status() -> None:
    rec, hv = Watched(), fakes.FakeHypervisor()

    result = reconcile.Reconciler(rec, hv).apply(
        lambda _records: fakes.state_of([POOL, LAB]), _pass()
    )

    assert result.ok and len(result.outcomes) == 2
    assert rec.readings == [True, True]  # the plan's, and the fresh one status is computed from
    assert rec.by_key[fakes.key(kinds.Kind.NETWORK, "lab")].status["phase"] == "Ready"


def test_an_empty_desired_state_is_still_refused_before_a_prune_touches_anything() -> None:
    rec, hv = Watched(), fakes.FakeHypervisor()
    rec.converge(fakes.state_of([POOL, LAB]), hv)
    hv.calls.clear()

    with pytest.raises(errors.RefusedError, match="--allow-empty"):
        reconcile.Reconciler(rec, hv).apply(
            lambda _records: desired.DesiredState(), _pass(prune=True)
        )

    assert hv.calls == [] and set(hv.networks) == {"lab"}
    assert rec.runs and all(r.result == "succeeded" for r in rec.runs.values())
