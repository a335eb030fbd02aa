"""The fenced executor: once a pass's fence fails, nothing more reaches the hypervisor.

The fence here is a stand-in that fails after a given number of checks; the
lease logic behind the real one is proven against real databases in
``tests/integration/test_store_lease.py``, and the whole path against the real
libvirtd in ``tests/integration/test_daemon_fencing.py``.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from typing import Any

import pytest

from reconciler import errors
from reconciler.engine import execute
from reconciler.engine import fence as fencing
from reconciler.hypervisor import adapter
from reconciler.models import kinds, observed
from tests.unit import fakes

POOL = {"kind": "StoragePool", "metadata": {"name": "default"}, "spec": {"path": "/p/default"}}
NET = {
    "kind": "Network",
    "metadata": {"name": "lab"},
    "spec": {"mode": "isolated", "ipv4": {"address": "10.9.0.1/24"}},
}


def _vm(name: str, **spec: Any) -> dict[str, Any]:
    spec.setdefault("cpus", 1)
    spec.setdefault("memory", "64MiB")
    spec.setdefault("disks", [{"name": "root", "size": "1GiB", "pool": "default"}])
    spec.setdefault("networks", [{"network": "lab"}])
    return {"kind": "VirtualMachine", "metadata": {"name": name}, "spec": spec}


class Countdown:
    """A fence that passes ``passes`` checks, then raises Fenced for ever."""

    def __init__(self, passes: int) -> None:
        self.left = passes
        self.checks = 0

    def check(self) -> None:
        self.checks += 1
        if self.left <= 0:
            raise errors.Fenced("this reconciler's leadership (epoch 1) lapsed")
        self.left -= 1


def test_every_public_method_of_the_adapter_is_explicitly_guarded_or_delegated() -> None:
    public = {
        name
        for name, member in inspect.getmembers(adapter.Hypervisor)
        if not name.startswith("_") and (inspect.isfunction(member) or isinstance(member, property))
    }
    missing = sorted(name for name in public if name not in vars(fencing.Guarded))
    assert missing == [], (
        f"add these to engine.fence.Guarded (check the fence if they act): {missing}"
    )


def test_a_failed_fence_stops_every_side_effect_before_it_reaches_libvirt_but_not_reads() -> None:
    hv = fakes.FakeHypervisor()
    guarded = fencing.Guarded(hv, Countdown(0))
    attempts: dict[str, Callable[[], object]] = {
        "define_pool": lambda: guarded.define_pool("p", "<pool/>"),
        "start_pool": lambda: guarded.start_pool("p"),
        "set_pool_autostart": lambda: guarded.set_pool_autostart("p", True),
        "undefine_pool": lambda: guarded.undefine_pool("p"),
        "define_network": lambda: guarded.define_network("n", "<network/>"),
        "start_network": lambda: guarded.start_network("n"),
        "stop_network": lambda: guarded.stop_network("n"),
        "set_network_autostart": lambda: guarded.set_network_autostart("n", True),
        "undefine_network": lambda: guarded.undefine_network("n"),
        "create_volume": lambda: guarded.create_volume("p", "v", 1),
        "grow_volume": lambda: guarded.grow_volume("p", "v", 2),
        "delete_volume": lambda: guarded.delete_volume("p", "v"),
        "define_domain": lambda: guarded.define_domain("d", "<domain/>"),
        "set_domain_autostart": lambda: guarded.set_domain_autostart("d", True),
        "start_domain": lambda: guarded.start_domain("d"),
        "suspend_domain": lambda: guarded.suspend_domain("d"),
        "resume_domain": lambda: guarded.resume_domain("d"),
        "stop_domain": lambda: guarded.stop_domain("d", timeout=1),
        "attach_device": lambda: guarded.attach_device("d", "<interface/>"),
        "undefine_domain": lambda: guarded.undefine_domain("d"),
    }
    for name, attempt in attempts.items():
        with pytest.raises(errors.Fenced):
            attempt()
        assert hv.calls == [], name
    assert guarded.observe().domains == {}  # reads pass through
    assert guarded.guest_addresses(observed.World()) == {}


def test_stop_domain_checks_the_fence_again_before_forcing_the_guest_off() -> None:
    hv, rec = fakes.FakeHypervisor(), fakes.FakeRecord()
    _, outcomes = rec.converge(fakes.state_of([POOL, NET, _vm("web")]), hv)
    assert all(o.ok for o in outcomes)
    fence = Countdown(1)  # the call itself passes; the adapter's own check does not
    with pytest.raises(errors.Fenced):
        fencing.Guarded(hv, fence).stop_domain("web", timeout=30)
    assert fence.checks == 2
    assert hv.domains["web"].power is kinds.PowerState.RUNNING


def test_a_fenced_pass_raises_and_starts_no_further_change() -> None:
    hv, rec = fakes.FakeHypervisor(), fakes.FakeRecord()
    state = fakes.state_of([POOL, NET, *(_vm(f"vm-{i}") for i in range(6))])
    plan = rec.plan(state, hv)
    fence = Countdown(6)  # the pool and network go through, then the lease is gone
    seen: list[execute.Outcome] = []
    with pytest.raises(errors.Fenced):
        execute.execute(
            fencing.Guarded(hv, fence),
            plan.changes,
            execute.Options(workers=2, shutdown_timeout=0),
            seen.append,
        )
    assert not hv.domains  # no VM was defined, nor any volume created
    assert not any(hv.files.values())
    assert all(o.ok for o in seen)  # no change was recorded as failed for it
    assert {o.change.key.kind for o in seen} <= {"StoragePool", "Network"}
