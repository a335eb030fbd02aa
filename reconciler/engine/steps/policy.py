"""FirewallPolicy steps: define its nwfilter (libvirt re-instantiates it on running guests)."""

from __future__ import annotations

from reconciler.engine import ports
from reconciler.engine.outcome import Outcome
from reconciler.hypervisor import nwfilters
from reconciler.models import firewall
from reconciler.planning import actions

__all__ = ["PolicySteps"]


class PolicySteps:
    def __init__(self, hv: ports.Hypervisor) -> None:
        self.hv = hv

    def apply(self, change: actions.Change, out: Outcome) -> None:
        target = change.target
        assert isinstance(target, actions.FilterTarget)
        document = nwfilters.render(target.name, target.shape, uuid=change.uuid)
        out.uuid = self.hv.define_filter(target.name, document)
        out.done()

    def undefine(self, change: actions.Change) -> None:
        self.hv.undefine_filter(firewall.policy_filter(change.key.name))
