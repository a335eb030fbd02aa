"""Planning the kinds that exist only in the record: Template, Department and Host.

Neither has a libvirt object of its own (a department's network and firewall
policy are resources of their own kinds), so a change is the record's alone:
created, updated by the diff of its spec, or in sync.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

from reconciler.models import catalog, kinds, observed, record
from reconciler.planning import actions, compare, context
from reconciler.planning.handlers.base import Uses

__all__ = ["DEPARTMENT", "HANDLER", "HOST", "RecordOnlyPlanner"]


class RecordOnlyPlanner:
    def __init__(self, kind: kinds.Kind, uses: Callable[[str, Uses], bool]) -> None:
        self.kind = kind
        self.what = catalog.libvirt_what(kind)
        self._uses = uses

    def plan(self, ctx: context.Context) -> None:
        for _name, loaded in sorted(ctx.state.by_kind(self.kind).items()):
            key, digest = ctx.remember_spec(loaded)
            rec = ctx.live_record(key)
            if rec is None:
                ctx.emit(key, [], verb=actions.Verb.CREATE, target=actions.TemplateTarget())
            elif rec.spec_hash != digest:
                new = loaded.manifest.model_dump(mode="json")
                ctx.emit(key, compare.record_diff(rec.spec, new), target=actions.TemplateTarget())
            else:
                ctx.in_sync.append(key)

    def exists(self, ctx: context.Context, name: str) -> bool:
        return False  # it exists only in the record

    def ownership(
        self, ctx: context.Context, key: record.ResourceKey
    ) -> tuple[bool, observed.Ownership | None]:
        return True, None  # owned through the record alone

    def used_by(self, name: str, uses: Uses) -> bool:
        return self._uses(name, uses)

    def orphans(self, ctx: context.Context) -> Iterable[str]:
        return ()


HANDLER = RecordOnlyPlanner(kinds.Kind.TEMPLATE, lambda name, uses: uses.template == name)
DEPARTMENT = RecordOnlyPlanner(kinds.Kind.DEPARTMENT, lambda name, uses: uses.department == name)
# A host is a libvirt connection: the record keeps its spec, and a VM pinned to it
# names it, but no libvirt object is made for it (placement reads it, SPEC §10).
HOST = RecordOnlyPlanner(kinds.Kind.HOST, lambda name, uses: False)
