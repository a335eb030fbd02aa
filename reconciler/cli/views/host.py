"""How a Host is shown: its URI, whether the last pass reached it, capacity and allocation.

Everything but the URI comes from the host's status, which each pass that
observes the fleet writes (:mod:`reconciler.planning.fleet`): a host is a
connection, not a libvirt object, so there is nothing to overlay live.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from reconciler.cli import output
from reconciler.cli.views import base
from reconciler.models import fields, record

__all__ = ["HostView"]


def _reachable(status: dict[str, Any]) -> str:
    value = status.get("reachable")
    return "-" if value is None else ("yes" if value else "no")


def _capacity(status: dict[str, Any]) -> str:
    """``4 cpus, 8GiB``: what placement may use (getInfo times overcommit)."""
    capacity = status.get("capacity") or {}
    if not capacity:
        return "-"
    memory = fields.format_size(int(capacity.get("memoryMiB", 0)) << 20)
    return f"{capacity.get('cpus', 0):g} cpus, {memory}"


def _allocated(status: dict[str, Any]) -> str:
    allocated = status.get("allocated") or {}
    if not allocated:
        return "-"
    memory = fields.format_size(int(allocated.get("memoryMiB", 0)) << 20)
    return f"{allocated.get('cpus', 0)} cpus, {memory}"


class HostView:
    observes = False

    def columns(self, *, wide: bool) -> list[str]:
        headers = ["NAME", "URI", "REACHABLE", "CAPACITY", "ALLOCATED", "VMS", "HOLDER", "AGE"]
        return [*headers, "PHASE", *base.WIDE_COMMON] if wide else headers

    def row(self, rec: record.ResourceRecord, ctx: base.Context, *, wide: bool) -> list[str]:
        spec, status = base.manifest_spec(rec), rec.status or {}
        flags = [f for f, on in (("cordoned", not spec.get("schedulable", True)),) if on]
        if spec.get("drain"):
            flags.append("draining")
        row = [
            rec.key.name,
            base.text(spec.get("uri")) + (f" ({', '.join(flags)})" if flags else ""),
            _reachable(status),
            _capacity(status),
            _allocated(status),
            str(len(status.get("vms") or [])),
            base.text(status.get("holder")),
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
        return {}

    def drift(self, rec: record.ResourceRecord, live: base.Live) -> bool | None:
        return False  # nothing of its own in libvirt to drift

    def sections(self, rec: record.ResourceRecord) -> list[str]:
        return []

    def describe(self, rec: record.ResourceRecord, ctx: base.Context) -> list[str]:
        spec, status = base.manifest_spec(rec), rec.status or {}
        return [
            base.field("URI", base.text(spec.get("uri")), 2),
            base.field("Schedulable", "yes" if spec.get("schedulable", True) else "no", 2),
            base.field("Drain", "yes" if spec.get("drain") else "no", 2),
            base.field("Reachable", _reachable(status), 2),
            base.field("Capacity", _capacity(status), 2),
            base.field("Allocated", _allocated(status), 2),
            base.field("Holder", base.text(status.get("holder")), 2),
            base.field("VMs", ", ".join(status.get("vms") or []) or "-", 2),
        ]
