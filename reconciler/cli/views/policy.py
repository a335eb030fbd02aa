"""How a FirewallPolicy is shown: its default action, rules and who uses it."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from reconciler.cli import output
from reconciler.cli.views import base
from reconciler.models import kinds, record

__all__ = ["PolicyView", "users"]


def users(policy: str, records: Sequence[record.ResourceRecord]) -> list[str]:
    """Departments and policies of the record that name ``policy``, as ``kind/name``."""
    found = []
    for r in records:
        if r.deleted_at is not None:
            continue
        spec = base.manifest_spec(r)
        if r.key.kind == kinds.Kind.DEPARTMENT and spec.get("firewall") == policy:
            found.append(f"department/{r.key.name}")
        elif r.key.kind == kinds.Kind.FIREWALL_POLICY and policy in (spec.get("extends") or []):
            found.append(f"firewallpolicy/{r.key.name}")
    return sorted(found)


class PolicyView:
    observes = False

    def columns(self, *, wide: bool) -> list[str]:
        headers = ["NAME", "DEFAULT", "PRESETS", "RULES", "EXTENDS", "USED-BY", "AGE"]
        return [*headers, "PHASE", *base.WIDE_COMMON] if wide else headers

    def row(self, rec: record.ResourceRecord, ctx: base.Context, *, wide: bool) -> list[str]:
        spec = base.manifest_spec(rec)
        row = [
            rec.key.name,
            base.text(spec.get("defaultAction", "Drop")),
            ",".join(spec.get("presets") or []) or "-",
            str(len(spec.get("rules") or [])),
            ",".join(spec.get("extends") or []) or "-",
            ",".join(users(rec.key.name, ctx.everything)) or "-",
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
        return {"usedBy": users(rec.key.name, everything)}

    def drift(self, rec: record.ResourceRecord, live: base.Live) -> bool | None:
        return None  # the nwfilter is not observed by get

    def sections(self, rec: record.ResourceRecord) -> list[str]:
        return []

    def describe(self, rec: record.ResourceRecord, ctx: base.Context) -> list[str]:
        spec = base.manifest_spec(rec)
        lines = [
            base.field("Default Action", base.text(spec.get("defaultAction", "Drop")), 2),
            base.field("Presets", ", ".join(spec.get("presets") or []) or "-", 2),
            base.field("Extends", ", ".join(spec.get("extends") or []) or "-", 2),
            base.field("Used By", ", ".join(users(rec.key.name, ctx.everything)) or "-", 2),
            "  Rules:",
        ]
        for rule in spec.get("rules") or []:
            lines.append(
                "    {name}: {priority} {action} {direction} {protocol}{ports}{cidr}".format(
                    name=rule.get("name"),
                    priority=rule.get("priority", 500),
                    action=rule.get("action"),
                    direction=rule.get("direction"),
                    protocol=rule.get("protocol", "all"),
                    ports=f"/{rule['ports']}" if rule.get("ports") else "",
                    cidr=f" from {rule['cidr']}" if rule.get("cidr") else "",
                )
            )
        return lines
