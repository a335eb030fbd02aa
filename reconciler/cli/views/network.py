"""How a Network is shown: mode, bridge, address, active; libvirt's network when ours."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from reconciler.cli import output
from reconciler.cli.views import base, pool
from reconciler.models import record
from reconciler.planning import targets

__all__ = ["NetworkView"]


class NetworkView:
    observes = True

    def columns(self, *, wide: bool) -> list[str]:
        headers = ["NAME", "PHASE", "MODE", "BRIDGE", "ADDRESS", "ACTIVE", "AGE"]
        return [*headers, "UUID", "DRIFT", *base.WIDE_COMMON] if wide else headers

    def row(self, rec: record.ResourceRecord, ctx: base.Context, *, wide: bool) -> list[str]:
        spec = base.manifest_spec(rec)
        net = ctx.live.network(rec)
        bridge = net.shape.bridge if net is not None else None
        ipv4 = spec.get("ipv4") or {}
        row = [
            rec.key.name,
            base.phase(rec),
            base.text(spec.get("mode")),
            bridge or targets.bridge_name(rec.key.name, spec.get("bridge")),
            base.text(ipv4.get("address")),
            base.text(pool.active(rec, ctx.live, net)),
            output.age(rec.created_at, ctx.now),
        ]
        if wide:
            row += [base.text(pool.libvirt_uuid(rec, net)), base.text(ctx.live.drift(rec.key))]
            row += base.common_wide(rec)
        return row

    def status(
        self,
        rec: record.ResourceRecord,
        everything: Sequence[record.ResourceRecord],
        live: base.Live,
    ) -> dict[str, Any]:
        net = live.network(rec)
        return {"active": pool.active(rec, live, net), "uuid": pool.libvirt_uuid(rec, net)}

    def drift(self, rec: record.ResourceRecord, live: base.Live) -> bool | None:
        return live.drift(rec.key)

    def sections(self, rec: record.ResourceRecord) -> list[str]:
        return []

    def describe(self, rec: record.ResourceRecord, ctx: base.Context) -> list[str]:
        net = ctx.live.network(rec)
        return [
            base.field("Active", pool.active(rec, ctx.live, net), 2),
            base.field("UUID", pool.libvirt_uuid(rec, net), 2),
        ]
