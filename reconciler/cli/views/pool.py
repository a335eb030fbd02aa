"""How a StoragePool is shown: path, active, autostart; libvirt's pool when observed."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from reconciler.cli import output
from reconciler.cli.views import base
from reconciler.models import observed, record

__all__ = ["PoolView", "active", "libvirt_uuid"]


def active(
    rec: record.ResourceRecord,
    live: base.Live,
    obj: observed.ObservedNetwork | observed.ObservedPool | None,
) -> bool | None:
    """Whether the libvirt object ``obj`` of ``rec`` is active; from the record if unobserved."""
    if obj is not None:
        return obj.active
    if live.world is not None:
        return False  # observed, and not there: nothing is active
    value = rec.status.get("active")
    return value if isinstance(value, bool) else None


def libvirt_uuid(
    rec: record.ResourceRecord, obj: observed.ObservedNetwork | observed.ObservedPool | None
) -> str | None:
    return obj.uuid if obj is not None else rec.status.get("uuid")


class PoolView:
    observes = True

    def columns(self, *, wide: bool) -> list[str]:
        headers = ["NAME", "PHASE", "PATH", "ACTIVE", "AUTOSTART", "AGE"]
        return [*headers, "UUID", "DRIFT", *base.WIDE_COMMON] if wide else headers

    def row(self, rec: record.ResourceRecord, ctx: base.Context, *, wide: bool) -> list[str]:
        spec = base.manifest_spec(rec)
        pool = ctx.live.pool(rec)
        autostart = pool.shape.autostart if pool is not None else spec.get("autostart")
        row = [
            rec.key.name,
            base.phase(rec),
            base.text(spec.get("path")),
            base.text(active(rec, ctx.live, pool)),
            base.text(autostart),
            output.age(rec.created_at, ctx.now),
        ]
        if wide:
            row += [base.text(libvirt_uuid(rec, pool)), base.text(ctx.live.drift(rec.key))]
            row += base.common_wide(rec)
        return row

    def status(
        self,
        rec: record.ResourceRecord,
        everything: Sequence[record.ResourceRecord],
        live: base.Live,
    ) -> dict[str, Any]:
        pool = live.pool(rec)
        return {"active": active(rec, live, pool), "uuid": libvirt_uuid(rec, pool)}

    def drift(self, rec: record.ResourceRecord, live: base.Live) -> bool | None:
        return live.drift(rec.key)

    def sections(self, rec: record.ResourceRecord) -> list[str]:
        return []

    def describe(self, rec: record.ResourceRecord, ctx: base.Context) -> list[str]:
        pool = ctx.live.pool(rec)
        return [
            base.field("Active", active(rec, ctx.live, pool), 2),
            base.field("UUID", libvirt_uuid(rec, pool), 2),
        ]
