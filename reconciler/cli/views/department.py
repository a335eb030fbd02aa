"""How a Department is shown: its network, firewall policy, VMs and quota use."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from reconciler.cli import output
from reconciler.cli.views import base
from reconciler.models import fields, kinds, record

__all__ = ["DepartmentView", "members"]


def members(
    department: str, records: Sequence[record.ResourceRecord]
) -> list[record.ResourceRecord]:
    """The record's live VMs whose manifest names ``department``, by name."""
    return sorted(
        (
            r
            for r in records
            if r.key.kind == kinds.Kind.VIRTUAL_MACHINE
            and r.deleted_at is None
            and base.manifest_spec(r).get("department") == department
        ),
        key=lambda r: r.key.name,
    )


def _quota(spec: dict[str, Any], vms: list[record.ResourceRecord]) -> str:
    """``2/20 vms, 4/64 cpus, 2GiB/128GiB`` for what the quota limits; ``-`` without one."""
    quota = spec.get("quota") or {}
    if not any(quota.get(k) is not None for k in ("vms", "cpus", "memory")):
        return "-"
    effective = [r.spec.get("effective", {}) for r in vms]
    parts = []
    if quota.get("vms") is not None:
        parts.append(f"{len(vms)}/{quota['vms']} vms")
    if quota.get("cpus") is not None:
        parts.append(f"{sum(int(e.get('cpus', 0)) for e in effective)}/{quota['cpus']} cpus")
    if quota.get("memory") is not None:
        used = sum(int(e.get("memory", 0)) for e in effective)
        parts.append(f"{fields.format_size(used)}/{base.size(quota['memory'])}")
    return ", ".join(parts)


class DepartmentView:
    observes = False

    def columns(self, *, wide: bool) -> list[str]:
        headers = ["NAME", "NETWORK", "FIREWALL", "VMS", "QUOTA", "AGE"]
        return [*headers, "PHASE", *base.WIDE_COMMON] if wide else headers

    def row(self, rec: record.ResourceRecord, ctx: base.Context, *, wide: bool) -> list[str]:
        spec = base.manifest_spec(rec)
        vms = members(rec.key.name, ctx.everything)
        row = [
            rec.key.name,
            base.text(spec.get("network")),
            base.text(spec.get("firewall")),
            str(len(vms)),
            _quota(spec, vms),
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
        return {"vms": [r.key.name for r in members(rec.key.name, everything)]}

    def drift(self, rec: record.ResourceRecord, live: base.Live) -> bool | None:
        return False  # nothing of its own in libvirt to drift

    def sections(self, rec: record.ResourceRecord) -> list[str]:
        return []

    def describe(self, rec: record.ResourceRecord, ctx: base.Context) -> list[str]:
        spec = base.manifest_spec(rec)
        vms = members(rec.key.name, ctx.everything)
        return [
            base.field("Network", base.text(spec.get("network")), 2),
            base.field("Firewall", base.text(spec.get("firewall")), 2),
            base.field("Quota", _quota(spec, vms), 2),
            base.field("VMs", ", ".join(r.key.name for r in vms), 2),
        ]
