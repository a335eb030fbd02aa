"""Network steps: render on create, patch the owned fields otherwise, restart when needed."""

from __future__ import annotations

from reconciler.engine import ports
from reconciler.engine.outcome import Outcome
from reconciler.hypervisor import patch, xml
from reconciler.planning import actions

__all__ = ["NetworkSteps"]


class NetworkSteps:
    def __init__(self, hv: ports.Hypervisor) -> None:
        self.hv = hv

    def apply(self, change: actions.Change, out: Outcome) -> None:
        name = change.object_name
        target = change.target
        assert isinstance(target, actions.NetworkTarget)
        assert change.owner is not None
        if change.verb is actions.Verb.CREATE:
            document = xml.render_network(name, target.shape, owner=change.owner, uuid=change.uuid)
            out.uuid = self.hv.define_network(name, document)
        elif change.intends(actions.Patch):
            current = self.hv.network_definition(name)
            document = patch.patch_network(current, target.shape, owner=change.owner, name=name)
            out.uuid = self.hv.define_network(name, document)
        if change.intends(actions.Restart):
            self.hv.stop_network(name)
        self.hv.start_network(name)
        self.hv.set_network_autostart(name, target.shape.autostart)
        out.done()

    def undefine(self, change: actions.Change) -> None:
        self.hv.undefine_network(change.object_name)
