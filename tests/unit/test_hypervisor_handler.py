"""The hypervisor's dispatch from kind to handler: one module per kind with a libvirt object."""

from __future__ import annotations

from reconciler.hypervisor import domains, handler, networks, nwfilters, pools
from reconciler.models import kinds


def test_each_kind_with_a_libvirt_object_is_handled_by_its_module() -> None:
    assert handler.handler(kinds.Kind.VIRTUAL_MACHINE) is domains
    assert handler.handler(kinds.Kind.NETWORK) is networks
    assert handler.handler(kinds.Kind.STORAGE_POOL) is pools
    assert handler.handler(kinds.Kind.FIREWALL_POLICY) is nwfilters


def test_a_template_has_no_libvirt_handler() -> None:
    assert handler.handler(kinds.Kind.TEMPLATE) is None


def test_a_department_has_no_libvirt_handler() -> None:
    assert handler.handler(kinds.Kind.DEPARTMENT) is None
