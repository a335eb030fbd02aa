"""Planning Templates: they exist only in the record, never in libvirt."""

from __future__ import annotations

from collections.abc import Iterable

from reconciler.models import catalog, kinds, observed, record
from reconciler.planning import actions, compare, context
from reconciler.planning.handlers.base import Uses

__all__ = ["HANDLER"]


class TemplatePlanner:
    what = catalog.libvirt_what(kinds.Kind.TEMPLATE)

    def plan(self, ctx: context.Context) -> None:
        for _name, loaded in sorted(ctx.state.templates.items()):
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
        return False  # a template exists only in the record

    def ownership(
        self, ctx: context.Context, key: record.ResourceKey
    ) -> tuple[bool, observed.Ownership | None]:
        return True, None  # owned through the record alone

    def used_by(self, name: str, uses: Uses) -> bool:
        return uses.template == name

    def orphans(self, ctx: context.Context) -> Iterable[str]:
        return ()


HANDLER = TemplatePlanner()
