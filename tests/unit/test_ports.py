"""The engine's ports fit the adapters the CLI and the daemon pass, and the unit tests' fakes.

The typed assignments below are the proof: mypy (which checks ``tests/``)
refuses them as soon as a port and what stands behind it drift apart, in a
method's name, parameters or result. The test itself also fails at run time
when a member of a port is missing from one of them.
"""

from __future__ import annotations

import inspect

import pytest

from reconciler.engine import fence, ports
from reconciler.hypervisor import adapter
from reconciler.store import store
from tests.unit import fakes

STORES: list[type[ports.Store]] = [store.Store, fakes.FakeRecord]
HYPERVISORS: list[type[ports.Hypervisor]] = [adapter.Hypervisor, fakes.FakeHypervisor]


def _members(port: type) -> list[str]:
    return sorted(name for name in vars(port) if not name.startswith("_"))


def test_the_fakes_are_taken_wherever_the_engine_wants_its_ports() -> None:
    rec: ports.Store = fakes.FakeRecord()
    hv: ports.Hypervisor = fakes.FakeHypervisor()
    guarded: ports.Hypervisor = fence.Guarded(hv, rec.fence())
    with rec.writer_lock():
        assert rec.resources(include_deleted=True) == []
    assert guarded.observe().domains == {}


@pytest.mark.parametrize("implementation", STORES, ids=lambda c: c.__module__)
def test_every_member_of_the_store_port_is_implemented(implementation: type) -> None:
    members = _members(ports.Store)
    assert "writer_lock" in members and "fence" in members
    assert [m for m in members if not callable(getattr(implementation, m, None))] == []


@pytest.mark.parametrize("implementation", [*HYPERVISORS, fence.Guarded], ids=lambda c: c.__name__)
def test_every_method_of_the_hypervisor_port_is_implemented(implementation: type) -> None:
    port = vars(ports.Hypervisor)
    methods = [m for m in _members(ports.Hypervisor) if inspect.isfunction(port[m])]
    assert "define_domain" in methods and "observe" in methods
    assert [m for m in methods if not callable(getattr(implementation, m, None))] == []


def test_the_attributes_of_the_hypervisor_port_are_read_through_the_fence() -> None:
    port = vars(ports.Hypervisor)
    attributes = [m for m in _members(ports.Hypervisor) if isinstance(port[m], property)]
    assert attributes == ["domain_type", "down_since", "uri"]
    hv = fakes.FakeHypervisor()
    guarded = fence.Guarded(hv, fakes.Unfenced())
    assert {a: getattr(guarded, a) for a in attributes} == {a: getattr(hv, a) for a in attributes}
