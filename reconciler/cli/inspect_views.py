"""What ``get``, ``describe``, ``events`` and ``history`` show, built from values only.

The commands in :mod:`reconciler.cli.inspect` read the record and observe
libvirt once; everything they print is built here from those values and a
``now``, without I/O, so columns and documents are decided in one place.

The record is the base of every view; :class:`Live` overlays what one libvirt
observation saw (power, DHCP addresses, graphics port, active flags, drift).
A libvirt object is overlaid only when this installation owns it (pools are
owned through the record and match by name): a same-named domain of a
neighbour is not "our VM running". Without an observation the view falls back
to what the record's status remembers from the last pass, and drift is unknown
(``-`` in tables, ``null`` in documents), never a guessed ``no``.

The ``-o json`` shapes are documented in :mod:`reconciler.cli.inspect`.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
from collections.abc import Mapping, Sequence
from typing import Any

from reconciler.cli import output
from reconciler.models import documents, fields, kinds, observed, record
from reconciler.planning import actions, targets

__all__ = [
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
    "vm_facts",
]

EVENT_HEADERS = ("LAST SEEN", "TYPE", "REASON", "OBJECT", "COUNT", "MESSAGE")
_KIND = kinds.Kind


@dataclasses.dataclass(frozen=True)
class Live:
    """One observation of libvirt; ``world`` is ``None`` when libvirt could not be read."""

    installation: str
    world: observed.World | None = None
    leases: Mapping[str, str] = dataclasses.field(default_factory=dict)
    drifted: frozenset[record.ResourceKey] = frozenset()

    def domain(self, name: str) -> observed.ObservedDomain | None:
        found = self.world.domains.get(name) if self.world is not None else None
        return found if found is not None and self._ours(found.owner) else None

    def network(self, name: str) -> observed.ObservedNetwork | None:
        found = self.world.networks.get(name) if self.world is not None else None
        return found if found is not None and self._ours(found.owner) else None

    def pool(self, name: str) -> observed.ObservedPool | None:
        return self.world.pools.get(name) if self.world is not None else None

    def drift(self, key: record.ResourceKey) -> bool | None:
        return key in self.drifted if self.world is not None else None

    def _ours(self, owner: observed.Ownership | None) -> bool:
        return owner is not None and owner.installation == self.installation


@dataclasses.dataclass(frozen=True)
class VmFacts:
    """A VM as the record and the live domain describe it together."""

    power: str | None
    ips: list[str]
    graphics_type: str | None
    graphics_port: int | None
    uuid: str | None
    macs: dict[str, str]
    drift: bool | None

    @property
    def graphics(self) -> str | None:
        if self.graphics_port is None or self.graphics_type in (None, "none"):
            return None
        return f"{self.graphics_type}:{self.graphics_port}"


def _manifest_spec(rec: record.ResourceRecord) -> dict[str, Any]:
    spec = rec.spec.get("spec")
    return dict(spec) if isinstance(spec, dict) else {}


def _effective(rec: record.ResourceRecord) -> dict[str, Any]:
    effective = rec.spec.get("effective")
    return dict(effective) if isinstance(effective, dict) else {}


def vm_facts(rec: record.ResourceRecord, live: Live) -> VmFacts:
    status = rec.status
    domain = live.domain(rec.key.name)
    macs = {str(k): str(v) for k, v in (status.get("macs") or {}).items()}
    if domain is not None:
        macs.update(actions.nic_macs(domain.shape.nics))
    if live.world is not None:
        found = {live.leases.get(mac.lower()) for mac in macs.values()}
        ips = sorted(ip for ip in found if ip is not None)
    else:
        ips = [str(ip) for ip in status.get("ips") or []]
    if domain is not None:
        return VmFacts(
            power=domain.power.value,
            ips=ips,
            graphics_type=domain.shape.graphics_type.value,
            graphics_port=domain.graphics_port,
            uuid=domain.uuid,
            macs=macs,
            drift=live.drift(rec.key),
        )
    graphics_type = _effective(rec).get("graphics_type")
    return VmFacts(
        power=status.get("power"),
        ips=ips,
        graphics_type=str(graphics_type) if graphics_type is not None else None,
        # Without a domain nothing listens; the record's port is history, not a fact.
        graphics_port=status.get("graphicsPort") if live.world is None else None,
        uuid=status.get("uuid"),
        macs=macs,
        drift=live.drift(rec.key),
    )


def _active(rec: record.ResourceRecord, live: Live) -> bool | None:
    obj: observed.ObservedNetwork | observed.ObservedPool | None
    obj = live.network(rec.key.name) if rec.key.kind == _KIND.NETWORK else live.pool(rec.key.name)
    if obj is not None:
        return obj.active
    if live.world is not None:
        return False  # observed, and not there: nothing is active
    active = rec.status.get("active")
    return active if isinstance(active, bool) else None


def _libvirt_uuid(rec: record.ResourceRecord, live: Live) -> str | None:
    obj: observed.ObservedNetwork | observed.ObservedPool | None
    obj = live.network(rec.key.name) if rec.key.kind == _KIND.NETWORK else live.pool(rec.key.name)
    return obj.uuid if obj is not None else rec.status.get("uuid")


def _drift(key: record.ResourceKey, live: Live) -> bool | None:
    """Templates have no libvirt object, so they cannot drift; the rest need an observation."""
    return False if key.kind == _KIND.TEMPLATE else live.drift(key)


def _used_by(template: str, records: Sequence[record.ResourceRecord]) -> list[str]:
    return sorted(
        r.key.name
        for r in records
        if r.key.kind == _KIND.VIRTUAL_MACHINE and _manifest_spec(r).get("template") == template
    )


# --- cells -------------------------------------------------------------------------


def _text(value: Any) -> str:
    if value is None or value == "" or value == []:
        return output.NONE
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, list):
        return output.escape(",".join(str(v) for v in value))
    return output.escape(str(value))


def _size(value: Any) -> str:
    if isinstance(value, int) and not isinstance(value, bool):
        return fields.format_size(value)
    return _text(value)


def _phase(rec: record.ResourceRecord) -> str:
    return _text(rec.status.get("phase"))


def _common_wide(rec: record.ResourceRecord) -> list[str]:
    return [
        str(rec.generation),
        _text(rec.status.get("observedGeneration")),
        _text(rec.source_file),
        _text(rec.source_revision),
    ]


_WIDE_COMMON = ("GENERATION", "OBSERVED", "SOURCE", "REVISION")


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
    if kind is _KIND.VIRTUAL_MACHINE:
        headers = ["NAME", "PHASE", "POWER", "CPUS", "MEMORY", "IP", "GRAPHICS", "AGE", "DRIFT"]
        if wide:
            headers += ["TEMPLATE", "UUID", *_WIDE_COMMON]
        rows = []
        for rec in records:
            facts = vm_facts(rec, live)
            effective = _effective(rec)
            spec = _manifest_spec(rec)
            row = [
                rec.key.name,
                _phase(rec),
                _text(facts.power),
                _text(effective.get("cpus", spec.get("cpus"))),
                _size(effective.get("memory", spec.get("memory"))),
                _text(facts.ips),
                _text(facts.graphics),
                output.age(rec.created_at, now),
                _text(facts.drift),
            ]
            if wide:
                row += [_text(spec.get("template")), _text(facts.uuid), *_common_wide(rec)]
            rows.append(row)
        return headers, rows
    if kind is _KIND.STORAGE_POOL:
        headers = ["NAME", "PHASE", "PATH", "ACTIVE", "AUTOSTART", "AGE"]
        if wide:
            headers += ["UUID", "DRIFT", *_WIDE_COMMON]
        rows = []
        for rec in records:
            spec = _manifest_spec(rec)
            pool = live.pool(rec.key.name)
            autostart = pool.shape.autostart if pool is not None else spec.get("autostart")
            row = [
                rec.key.name,
                _phase(rec),
                _text(spec.get("path")),
                _text(_active(rec, live)),
                _text(autostart),
                output.age(rec.created_at, now),
            ]
            if wide:
                row += [_text(_libvirt_uuid(rec, live)), _text(live.drift(rec.key))]
                row += _common_wide(rec)
            rows.append(row)
        return headers, rows
    if kind is _KIND.NETWORK:
        headers = ["NAME", "PHASE", "MODE", "BRIDGE", "ADDRESS", "ACTIVE", "AGE"]
        if wide:
            headers += ["UUID", "DRIFT", *_WIDE_COMMON]
        rows = []
        for rec in records:
            spec = _manifest_spec(rec)
            net = live.network(rec.key.name)
            bridge = net.shape.bridge if net is not None else None
            ipv4 = spec.get("ipv4") or {}
            row = [
                rec.key.name,
                _phase(rec),
                _text(spec.get("mode")),
                bridge or targets.bridge_name(rec.key.name, spec.get("bridge")),
                _text(ipv4.get("address")),
                _text(_active(rec, live)),
                output.age(rec.created_at, now),
            ]
            if wide:
                row += [_text(_libvirt_uuid(rec, live)), _text(live.drift(rec.key))]
                row += _common_wide(rec)
            rows.append(row)
        return headers, rows
    headers = ["NAME", "CPUS", "MEMORY", "DISKS", "USED-BY", "AGE"]
    if wide:
        headers += ["PHASE", *_WIDE_COMMON]
    rows = []
    for rec in records:
        spec = _manifest_spec(rec)
        row = [
            rec.key.name,
            _text(spec.get("cpus")),
            _size(spec.get("memory")),
            str(len(spec.get("disks") or [])),
            str(len(_used_by(rec.key.name, everything))),
            output.age(rec.created_at, now),
        ]
        if wide:
            row += [_phase(rec), *_common_wide(rec)]
        rows.append(row)
    return headers, rows


# --- documents ---------------------------------------------------------------------


def _status(
    rec: record.ResourceRecord, everything: Sequence[record.ResourceRecord], live: Live
) -> dict[str, Any]:
    status = dict(rec.status)
    if rec.key.kind == _KIND.VIRTUAL_MACHINE:
        facts = vm_facts(rec, live)
        status.update(
            power=facts.power,
            ips=facts.ips,
            graphicsPort=facts.graphics_port,
            uuid=facts.uuid,
            macs=facts.macs,
        )
    elif rec.key.kind in (_KIND.NETWORK, _KIND.STORAGE_POOL):
        status.update(active=_active(rec, live), uuid=_libvirt_uuid(rec, live))
    else:
        status["usedBy"] = _used_by(rec.key.name, everything)
    status["drift"] = _drift(rec.key, live)
    return status


def item(
    rec: record.ResourceRecord, everything: Sequence[record.ResourceRecord], live: Live
) -> dict[str, Any]:
    """One resource as a ``-o json`` / ``-o yaml`` document."""
    return {
        "apiVersion": kinds.API_VERSION,
        "kind": rec.key.kind,
        "metadata": documents.metadata(rec),
        "spec": _manifest_spec(rec),
        "status": _status(rec, everything, live),
    }


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

_LABEL_WIDTH = 22


def _field(label: str, value: Any, indent: int = 0) -> str:
    pad = " " * indent
    return f"{pad}{label + ':':<{_LABEL_WIDTH - indent}}{_text(value)}".rstrip()


def _pairs(values: Mapping[str, str]) -> str:
    return output.escape(",".join(f"{k}={v}" for k, v in sorted(values.items()))) or "<none>"


def _indented(text: str, indent: int = 2) -> list[str]:
    return [" " * indent + line for line in text.splitlines()]


def _yaml_lines(document: Any) -> list[str]:
    """``document`` as indented YAML; PyYAML escapes C0 controls, this the bidi ones too."""
    text = output.to_yaml(document).rstrip("\n")
    return ["  " + output.escape(line) for line in text.split("\n")]


def _compact(value: Any) -> Any:
    """``value`` without unset fields (``None``, empty lists and maps), for reading."""
    if isinstance(value, dict):
        kept = {k: _compact(v) for k, v in value.items()}
        return {k: v for k, v in kept.items() if v is not None and v != [] and v != {}}
    if isinstance(value, list):
        return [_compact(v) for v in value]
    return value


def _readable_effective(effective: Mapping[str, Any]) -> dict[str, Any]:
    """The effective spec with byte counts as sizes (``memory: 64MiB``)."""
    shown: dict[str, Any] = _compact(dict(effective))
    if isinstance(shown.get("memory"), int):
        shown["memory"] = fields.format_size(shown["memory"])
    disks = []
    for disk in shown.get("disks") or []:
        disk = dict(disk)
        if isinstance(disk.get("size"), int):
            disk["size"] = fields.format_size(disk["size"])
        disks.append(disk)
    if "disks" in shown:
        shown["disks"] = disks
    return shown


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
    status = rec.status
    created = f"{documents.timestamp(rec.created_at)} ({output.age(rec.created_at, now)} ago)"
    lines = [
        _field("Name", rec.key.name),
        _field("Kind", rec.key.kind),
        _field("UID", rec.uid),
        _field("Generation", rec.generation),
        _field("Observed Generation", status.get("observedGeneration")),
        _field("Created", created),
        _field("Source", _source(rec)),
        _field("Labels", _pairs(rec.labels)),
        _field("Annotations", _pairs(rec.annotations)),
        "Spec:",
        *_yaml_lines(_compact(_manifest_spec(rec))),
    ]
    effective = _effective(rec)
    if rec.key.kind == _KIND.VIRTUAL_MACHINE and effective:
        lines += ["Effective Spec:", *_yaml_lines(_readable_effective(effective))]
    lines += ["Status:", _field("Phase", status.get("phase"), 2)]
    if rec.key.kind == _KIND.VIRTUAL_MACHINE:
        facts = vm_facts(rec, live)
        lines += [
            _field("Power", facts.power, 2),
            _field("IPs", ", ".join(facts.ips), 2),
            _field("Graphics", facts.graphics, 2),
            _field("UUID", facts.uuid, 2),
            _field("MACs", _pairs(facts.macs), 2),
        ]
    elif rec.key.kind in (_KIND.NETWORK, _KIND.STORAGE_POOL):
        lines += [
            _field("Active", _active(rec, live), 2),
            _field("UUID", _libvirt_uuid(rec, live), 2),
        ]
    else:
        lines.append(_field("Used By", ", ".join(_used_by(rec.key.name, everything)), 2))
    lines.append(_field("Drift", _drift(rec.key, live), 2))
    if live.world is None and rec.key.kind != _KIND.TEMPLATE:
        lines.append(_field("Observed", "no (libvirt could not be read; from the record)", 2))

    conditions = [c for c in status.get("conditions") or [] if isinstance(c, dict)]
    lines.append("Conditions:" if conditions else "Conditions:  <none>")
    if conditions:
        rows = [
            [
                _text(c.get("type")),
                _text(c.get("status")),
                _text(c.get("reason")),
                _text(c.get("message")),
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


# --- events ------------------------------------------------------------------------


def event_row(event: record.EventRecord, now: dt.datetime) -> list[str]:
    return [
        output.age(event.last_seen, now),
        event.type.value,
        event.reason,
        str(event.key),
        str(event.count),
        event.message,
    ]


def event_json(event: record.EventRecord) -> dict[str, Any]:
    """One line of ``infinibay events -o json``."""
    return documents.event(event)


# --- history -----------------------------------------------------------------------


def _changes(revisions: Sequence[record.RevisionRecord]) -> list[list[output.FieldDiff]]:
    """Each revision's field diff against the one before; the first has none."""
    return [
        output.diff_documents(before.spec, after.spec) if before is not None else []
        for before, after in zip([None, *revisions[:-1]], revisions, strict=True)
    ]


def history_lines(revisions: Sequence[record.RevisionRecord], now: dt.datetime) -> list[str]:
    lines: list[str] = []
    for rev, diffs in zip(revisions, _changes(revisions), strict=True):
        if lines:
            lines.append("")
        applied = documents.timestamp(rev.applied_at)
        lines += [
            f"Generation {rev.generation}",
            _field("Applied", f"{applied} ({output.age(rev.applied_at, now)} ago)", 2),
            _field("Revision", rev.source_revision, 2),
            _field("Source", rev.source_file, 2),
            _field("Spec Hash", rev.spec_hash, 2),
        ]
        if rev.run_id is not None:
            lines.append(_field("Run", rev.run_id, 2))
        if rev is revisions[0]:
            lines.append("  Changes:            created")
        elif not diffs:
            lines.append("  Changes:            none (re-applied)")
        else:
            lines.append("  Changes:")
            lines += [f"    {output.diff_line(d)}" for d in diffs]
    return lines


def history_json(
    key: record.ResourceKey,
    revisions: Sequence[record.RevisionRecord],
    deleted_at: dt.datetime | None = None,
) -> dict[str, Any]:
    return {
        "apiVersion": kinds.API_VERSION,
        "kind": "History",
        "object": {"kind": key.kind, "name": key.name},
        "deletedAt": documents.timestamp(deleted_at) if deleted_at is not None else None,
        "revisions": [
            {
                "generation": rev.generation,
                "appliedAt": documents.timestamp(rev.applied_at),
                "revision": rev.source_revision,
                "file": rev.source_file,
                "specHash": rev.spec_hash,
                "run": rev.run_id,
                "spec": rev.spec,
                "changes": [d.as_json() for d in diffs],
            }
            for rev, diffs in zip(revisions, _changes(revisions), strict=True)
        ],
    }
