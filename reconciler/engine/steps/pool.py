"""StoragePool steps: define (or move) the pool, start it, set autostart."""

from __future__ import annotations

from reconciler import errors
from reconciler.engine import ports
from reconciler.engine.outcome import Options, Outcome
from reconciler.hypervisor import patch, xml
from reconciler.planning import actions

__all__ = ["PoolSteps"]


class PoolSteps:
    def __init__(self, hv: ports.Hypervisor, options: Options) -> None:
        self.hv = hv
        self.options = options

    def apply(self, change: actions.Change, out: Outcome) -> None:
        name = change.object_name
        target = change.target
        assert isinstance(target, actions.PoolTarget)
        # Defining or starting a pool builds its directory and hands libvirt its files.
        problem = self.options.boundary.pool_problem(target.shape.path, images=target.images)
        if problem is not None:
            raise errors.RefusedError(f"storage pool {name}: {problem}")
        if change.verb is actions.Verb.REPLACE:
            document = patch.patch_pool(self.hv.pool_definition(name), target.shape)
            self.hv.undefine_pool(name)
            out.uuid = self.hv.define_pool(name, document)
        elif change.verb is actions.Verb.CREATE:
            out.uuid = self.hv.define_pool(name, xml.render_pool(name, target.shape))
        self.hv.start_pool(name)
        self.hv.set_pool_autostart(name, target.shape.autostart)
        out.done()

    def undefine(self, change: actions.Change) -> None:
        self.hv.undefine_pool(change.object_name)
