"""One module of libvirt steps per kind, behind one :class:`KindSteps` protocol.

:func:`steps_for` is the engine's only dispatch on a kind: an exhaustive
``match`` that ends in ``assert_never``, so a kind without steps fails ``mypy``.
"""

from __future__ import annotations

import typing

from reconciler.engine import ports
from reconciler.engine.outcome import Options
from reconciler.engine.steps import network, policy, pool, template, vm
from reconciler.engine.steps.base import KindSteps
from reconciler.models import kinds

__all__ = ["KindSteps", "steps_for"]


def steps_for(kind: kinds.Kind, hv: ports.Hypervisor, options: Options) -> KindSteps:
    match kind:
        case kinds.Kind.STORAGE_POOL:
            return pool.PoolSteps(hv, options)
        case kinds.Kind.NETWORK:
            return network.NetworkSteps(hv)
        case kinds.Kind.TEMPLATE:
            return template.TemplateSteps()
        case kinds.Kind.VIRTUAL_MACHINE:
            return vm.VmSteps(hv, options)
        case kinds.Kind.FIREWALL_POLICY:
            return policy.PolicySteps(hv)
        case kinds.Kind.DEPARTMENT | kinds.Kind.HOST:
            return template.TemplateSteps()
        case unreachable:
            typing.assert_never(unreachable)
