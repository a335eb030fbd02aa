"""Planning StoragePools: owned through the record (libvirt pools carry no metadata)."""

from __future__ import annotations

from collections.abc import Iterable

from reconciler.models import catalog, kinds, observed, record
from reconciler.planning import actions, compare, context, targets
from reconciler.planning.handlers.base import Uses

__all__ = ["HANDLER"]

Impact = actions.Impact


class PoolPlanner:
    what = catalog.libvirt_what(kinds.Kind.STORAGE_POOL)

    def plan(self, ctx: context.Context) -> None:
        for _, loaded in sorted(ctx.state.pools.items()):
            assert isinstance(loaded.manifest, kinds.StoragePool)
            key, _ = ctx.remember_spec(loaded)
            target = targets.pool_shape(loaded.manifest)
            wanted = actions.PoolTarget(target, images=loaded.manifest.spec.images)
            current = ctx.world.pools.get(ctx.libvirt(key))
            rec = ctx.live_record(key)
            if current is None:
                ctx.emit(
                    key, [], verb=actions.Verb.CREATE, target=wanted, drift=context.converged(rec)
                )
                continue
            owned = rec is not None and rec.status.get("uuid") in (None, current.uuid)
            if not owned and not ctx.adopt:
                ctx.conflict(key, self.what)
                continue
            # Moving a pool leaves its volumes behind in the old directory: the VMs on it
            # get new, empty disks, which is data loss from where they stand.
            moved = Impact.DATA_LOSS if current.volumes else Impact.REPLACE
            changes = compare.compare(
                current.shape, target, {"path": moved, "autostart": Impact.LIVE}
            )
            if not current.active:
                changes.append(actions.FieldChange("active", False, True, Impact.LIVE))
            replace = current.shape.path != target.path
            if not owned:
                changes.append(actions.FieldChange("owner", None, ctx.installation, Impact.RECORD))
            ctx.emit(
                key,
                changes,
                verb=actions.Verb.REPLACE if replace else actions.Verb.UPDATE,
                target=wanted,
                uuid=current.uuid,
                adopt=not owned,
            )

    def exists(self, ctx: context.Context, name: str) -> bool:
        return ctx.libvirt(context.key_of(kinds.Kind.STORAGE_POOL, name)) in ctx.world.pools

    def ownership(
        self, ctx: context.Context, key: record.ResourceKey
    ) -> tuple[bool, observed.Ownership | None]:
        pool = ctx.world.pools.get(ctx.libvirt(key))
        rec = ctx.live_record(key)
        ours = pool is None or (rec is not None and rec.status.get("uuid") in (None, pool.uuid))
        return ours, None

    def used_by(self, name: str, uses: Uses) -> bool:
        return name in uses.pools

    def orphans(self, ctx: context.Context) -> Iterable[str]:
        return ()  # a pool is ours only through its record: pruned from the record alone


HANDLER = PoolPlanner()
