"""What ``get``, ``describe``, ``events`` and ``history`` show, built from values only.

The commands in :mod:`reconciler.cli.inspect` read the record and observe
libvirt once; everything they print is built here from those values and a
``now``, without I/O, so columns and documents are decided in one place.

Each kind has a module implementing :class:`~reconciler.cli.views.base.KindView`
(:mod:`~reconciler.cli.views.pool`, :mod:`~reconciler.cli.views.network`,
:mod:`~reconciler.cli.views.template`, :mod:`~reconciler.cli.views.vm`), and
:func:`view` picks it with an exhaustive ``match``: a kind without a view fails
``mypy`` instead of being shown as another kind's table.

The record is the base of every view; :class:`Live` overlays what one libvirt
observation saw (power, DHCP addresses, graphics port, active flags, drift).
A libvirt object is overlaid only when this installation owns it (pools are
owned through the record and match by name): a same-named domain of a
neighbour is not "our VM running". Without an observation the view falls back
to what the record's status remembers from the last pass, and drift is unknown
(``-`` in tables, ``null`` in documents), never a guessed ``no``.

The ``-o json`` shapes are documented in :mod:`reconciler.cli.inspect`; one
resource is :func:`reconciler.models.documents.resource`, which the daemon's
HTTP API serves too.
"""

from __future__ import annotations

import datetime as dt
import typing
from collections.abc import Mapping, Sequence
from typing import Any

from reconciler.cli import output
from reconciler.cli.views import base, department, host, network, policy, pool, template, vm
from reconciler.cli.views.base import Context, KindView, Live
from reconciler.cli.views.events import EVENT_HEADERS, event_json, event_row
from reconciler.cli.views.history import history_json, history_lines
from reconciler.cli.views.vm import VmFacts, vm_facts
from reconciler.models import documents, kinds, record

__all__ = [
    "EVENT_HEADERS",
    "Context",
    "KindView",
    "Live",
    "VmFacts",
    "describe_text",
    "event_json",
    "event_row",
    "history_json",
    "history_lines",
    "item",
    "list_document",
    "table_rows",
    "view",
    "vm_facts",
]


def view(kind: kinds.Kind) -> KindView:
    """The view of ``kind``."""
    match kind:
        case kinds.Kind.STORAGE_POOL:
            return pool.PoolView()
        case kinds.Kind.NETWORK:
            return network.NetworkView()
        case kinds.Kind.TEMPLATE:
            return template.TemplateView()
        case kinds.Kind.VIRTUAL_MACHINE:
            return vm.VmView()
        case kinds.Kind.FIREWALL_POLICY:
            return policy.PolicyView()
        case kinds.Kind.DEPARTMENT:
            return department.DepartmentView()
        case kinds.Kind.HOST:
            return host.HostView()
        case unreachable:
            typing.assert_never(unreachable)


def _view_of(rec: record.ResourceRecord) -> KindView:
    return view(kinds.Kind(rec.key.kind))


def table_rows(
    kind: kinds.Kind,
    records: Sequence[record.ResourceRecord],
    everything: Sequence[record.ResourceRecord],
    live: Live,
    now: dt.datetime,
    *,
    wide: bool = False,
) -> tuple[list[str], list[list[str]]]:
    """Headers and rows for ``get KIND``; ``everything`` is the whole record (for USED-BY)."""
    shown = view(kind)
    ctx = Context(everything, live, now)
    return shown.columns(wide=wide), [shown.row(rec, ctx, wide=wide) for rec in records]


# --- documents ---------------------------------------------------------------------


def _status(
    rec: record.ResourceRecord, everything: Sequence[record.ResourceRecord], live: Live
) -> dict[str, Any]:
    shown = _view_of(rec)
    status = dict(rec.status)
    status.update(shown.status(rec, everything, live))
    status["drift"] = shown.drift(rec, live)
    return status


def item(
    rec: record.ResourceRecord, everything: Sequence[record.ResourceRecord], live: Live
) -> dict[str, Any]:
    """One resource as a ``-o json`` / ``-o yaml`` document."""
    return documents.resource(rec, _status(rec, everything, live), source=False)


def list_document(
    records: Sequence[record.ResourceRecord],
    everything: Sequence[record.ResourceRecord],
    live: Live,
) -> dict[str, Any]:
    return {
        "apiVersion": kinds.API_VERSION,
        "kind": "List",
        "items": [item(rec, everything, live) for rec in records],
    }


# --- describe ----------------------------------------------------------------------


def _indented(text: str, indent: int = 2) -> list[str]:
    return [" " * indent + line for line in text.splitlines()]


def _condition_age(condition: Mapping[str, Any], now: dt.datetime) -> str:
    moment = output.parse_time(str(condition.get("lastTransitionTime") or ""))
    return output.age(moment, now) if moment is not None else output.NONE


def _source(rec: record.ResourceRecord) -> str:
    if rec.source_file is None:
        return "<none>"
    document = f" (document {rec.source_document})" if rec.source_document is not None else ""
    revision = f", revision {rec.source_revision}" if rec.source_revision else ""
    return f"{rec.source_file}{document}{revision}"


def describe_text(
    rec: record.ResourceRecord,
    everything: Sequence[record.ResourceRecord],
    live: Live,
    events: Sequence[record.EventRecord],
    now: dt.datetime,
    *,
    terminal: bool = False,
) -> str:
    shown = _view_of(rec)
    ctx = Context(everything, live, now)
    status = rec.status
    created = f"{documents.timestamp(rec.created_at)} ({output.age(rec.created_at, now)} ago)"
    lines = [
        base.field("Name", rec.key.name),
        base.field("Kind", rec.key.kind),
        base.field("UID", rec.uid),
        base.field("Generation", rec.generation),
        base.field("Observed Generation", status.get("observedGeneration")),
        base.field("Created", created),
        base.field("Source", _source(rec)),
        base.field("Labels", base.pairs(rec.labels)),
        base.field("Annotations", base.pairs(rec.annotations)),
        "Spec:",
        *base.yaml_lines(base.compact(base.manifest_spec(rec))),
        *shown.sections(rec),
        "Status:",
        base.field("Phase", status.get("phase"), 2),
        *shown.describe(rec, ctx),
        base.field("Drift", shown.drift(rec, live), 2),
    ]
    if live.world is None and shown.observes:
        lines.append(base.field("Observed", "no (libvirt could not be read; from the record)", 2))

    conditions = [c for c in status.get("conditions") or [] if isinstance(c, dict)]
    lines.append("Conditions:" if conditions else "Conditions:  <none>")
    if conditions:
        rows = [
            [
                base.text(c.get("type")),
                base.text(c.get("status")),
                base.text(c.get("reason")),
                base.text(c.get("message")),
                _condition_age(c, now),
            ]
            for c in conditions
        ]
        headers = ["TYPE", "STATUS", "REASON", "MESSAGE", "AGE"]
        lines += _indented(output.table(headers, rows, terminal=terminal))
    lines.append("Events:" if events else "Events:  <none>")
    if events:
        rows = [
            [
                output.age(e.last_seen, now),
                e.type.value,
                e.reason,
                str(e.count),
                e.message,
            ]
            for e in events
        ]
        headers = ["LAST SEEN", "TYPE", "REASON", "COUNT", "MESSAGE"]
        lines += _indented(output.table(headers, rows, terminal=terminal))
    return "\n".join(lines)
