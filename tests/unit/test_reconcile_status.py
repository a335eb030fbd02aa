"""Status is written in a ``finally``: a pass that breaks off still records what it did.

The real :class:`~reconciler.engine.reconcile.Reconciler` over a real (in-memory
SQLite) record and the in-memory fake hypervisor.
"""

from __future__ import annotations

import pytest

from reconciler.engine import execute, reconcile
from reconciler.models import kinds
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
    "spec": {"mode": "isolated", "bridge": "ibfake1"},
}


class Broken(Exception):
    """Something unexpected after the first change ended (a bug in a caller's callback)."""


def test_a_pass_that_breaks_off_still_writes_status_for_what_it_did() -> None:
    store = store_module.Store.open("sqlite://")
    hv = fakes.FakeHypervisor()
    done: list[str] = []

    def after(outcome: execute.Outcome) -> None:
        done.append(outcome.change.key.name)
        raise Broken

    try:
        with pytest.raises(Broken):  # the original error, not masked by the status write
            reconcile.Reconciler(store, hv).apply(
                lambda _records: fakes.state_of([POOL, LAB]),
                reconcile.Pass(options=execute.Options(workers=1, shutdown_timeout=0)),
                on_outcome=after,
            )
        (first,) = done
        kind = kinds.Kind.STORAGE_POOL if first == "default" else kinds.Kind.NETWORK
        rec = store.get(fakes.key(kind, first))
        assert rec is not None
        assert rec.status["phase"] == "Ready"
        assert rec.status["observedGeneration"] == rec.generation == 1
        run = store.last_run()
        assert run is not None and run.result == "failed"
    finally:
        store.close()
