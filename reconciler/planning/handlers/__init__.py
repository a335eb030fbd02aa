"""One planning handler per kind, behind one :class:`KindPlanner` protocol.

:func:`handler` is the only dispatch on a kind in the planning layer: an
exhaustive ``match`` that ends in ``assert_never``, so a kind added to
:class:`reconciler.models.kinds.Kind` without a handler here fails ``mypy``.
"""

from __future__ import annotations

import typing

from reconciler.models import kinds
from reconciler.planning.handlers import network, policy, pool, template, vm
from reconciler.planning.handlers.base import KindPlanner, Uses

__all__ = ["ORDER", "KindPlanner", "Uses", "handler"]

# Creates and updates run in this order; deletions in reverse.
ORDER = (
    kinds.Kind.HOST,
    kinds.Kind.STORAGE_POOL,
    kinds.Kind.NETWORK,
    kinds.Kind.FIREWALL_POLICY,
    kinds.Kind.DEPARTMENT,
    kinds.Kind.TEMPLATE,
    kinds.Kind.VIRTUAL_MACHINE,
)


def handler(kind: kinds.Kind) -> KindPlanner:
    match kind:
        case kinds.Kind.STORAGE_POOL:
            return pool.HANDLER
        case kinds.Kind.NETWORK:
            return network.HANDLER
        case kinds.Kind.TEMPLATE:
            return template.HANDLER
        case kinds.Kind.VIRTUAL_MACHINE:
            return vm.HANDLER
        case kinds.Kind.FIREWALL_POLICY:
            return policy.HANDLER
        case kinds.Kind.DEPARTMENT:
            return template.DEPARTMENT
        case kinds.Kind.HOST:
            return template.HOST
        case unreachable:
            typing.assert_never(unreachable)
