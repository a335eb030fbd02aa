"""How a Template is shown: sizes and the VMs that use it; it has no libvirt object."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from reconciler.cli import output
from reconciler.cli.views import base
from reconciler.models import kinds, record

__all__ = ["TemplateView", "used_by"]


def used_by(template: str, records: Sequence[record.ResourceRecord]) -> list[str]:
    """The VMs of the record whose manifest names ``template``, sorted."""
    return sorted(
        r.key.name
        for r in records
        if r.key.kind == kinds.Kind.VIRTUAL_MACHINE
        and base.manifest_spec(r).get("template") == template
    )


class TemplateView:
    observes = False

    def columns(self, *, wide: bool) -> list[str]:
        headers = ["NAME", "CPUS", "MEMORY", "DISKS", "USED-BY", "AGE"]
        return [*headers, "PHASE", *base.WIDE_COMMON] if wide else headers

    def row(self, rec: record.ResourceRecord, ctx: base.Context, *, wide: bool) -> list[str]:
        spec = base.manifest_spec(rec)
        row = [
            rec.key.name,
            base.text(spec.get("cpus")),
            base.size(spec.get("memory")),
            str(len(spec.get("disks") or [])),
            str(len(used_by(rec.key.name, ctx.everything))),
            output.age(rec.created_at, ctx.now),
        ]
        if wide:
            row += [base.phase(rec), *base.common_wide(rec)]
        return row

    def status(
        self,
        rec: record.ResourceRecord,
        everything: Sequence[record.ResourceRecord],
        live: base.Live,
    ) -> dict[str, Any]:
        return {"usedBy": used_by(rec.key.name, everything)}

    def drift(self, rec: record.ResourceRecord, live: base.Live) -> bool | None:
        return False  # nothing in libvirt to drift

    def sections(self, rec: record.ResourceRecord) -> list[str]:
        return []

    def describe(self, rec: record.ResourceRecord, ctx: base.Context) -> list[str]:
        return [base.field("Used By", ", ".join(used_by(rec.key.name, ctx.everything)), 2)]
