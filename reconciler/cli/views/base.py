"""What every kind's view shares: the libvirt observation, the context, cells and fields.

:class:`KindView` is the protocol each kind's module implements
(:mod:`~reconciler.cli.views.pool`, ``network``, ``template``, ``vm``);
:func:`reconciler.cli.views.view` picks one with an exhaustive ``match``.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
from collections.abc import Mapping, Sequence
from typing import Any, Protocol

from reconciler.cli import output
from reconciler.models import fields, naming, observed, record

__all__ = [
    "LABEL_WIDTH",
    "WIDE_COMMON",
    "Context",
    "KindView",
    "Live",
    "common_wide",
    "compact",
    "effective_spec",
    "field",
    "manifest_spec",
    "pairs",
    "phase",
    "size",
    "text",
    "yaml_lines",
]

WIDE_COMMON = ("GENERATION", "OBSERVED", "SOURCE", "REVISION")
LABEL_WIDTH = 22


def _libvirt(rec: record.ResourceRecord) -> str:
    return naming.libvirt_name(rec.key.name, rec.annotations)


@dataclasses.dataclass(frozen=True)
class Live:
    """One observation of libvirt; ``world`` is ``None`` when libvirt could not be read."""

    installation: str
    world: observed.World | None = None
    addresses: Mapping[str, tuple[str, ...]] = dataclasses.field(default_factory=dict)
    drifted: frozenset[record.ResourceKey] = frozenset()

    def domain(self, rec: record.ResourceRecord) -> observed.ObservedDomain | None:
        """The domain of ``rec``, under its libvirt name, when it is ours."""
        found = self.world.domains.get(_libvirt(rec)) if self.world is not None else None
        return found if found is not None and self._ours(found.owner) else None

    def network(self, rec: record.ResourceRecord) -> observed.ObservedNetwork | None:
        found = self.world.networks.get(_libvirt(rec)) if self.world is not None else None
        return found if found is not None and self._ours(found.owner) else None

    def pool(self, rec: record.ResourceRecord) -> observed.ObservedPool | None:
        return self.world.pools.get(_libvirt(rec)) if self.world is not None else None

    def drift(self, key: record.ResourceKey) -> bool | None:
        return key in self.drifted if self.world is not None else None

    def _ours(self, owner: observed.Ownership | None) -> bool:
        return owner is not None and owner.installation == self.installation


@dataclasses.dataclass(frozen=True)
class Context:
    """What a view reads besides the resource: the whole record, libvirt, the time."""

    everything: Sequence[record.ResourceRecord]
    live: Live
    now: dt.datetime


class KindView(Protocol):
    """How one kind is shown by ``get`` (table, ``-o json``) and ``describe``."""

    observes: bool
    """Whether showing this kind needs a libvirt observation (a template has no object)."""

    def columns(self, *, wide: bool) -> list[str]:
        """The table's headers."""
        ...

    def row(self, rec: record.ResourceRecord, ctx: Context, *, wide: bool) -> list[str]:
        """One table row, a cell per column."""
        ...

    def status(
        self, rec: record.ResourceRecord, everything: Sequence[record.ResourceRecord], live: Live
    ) -> dict[str, Any]:
        """What the documents' ``status`` adds to the record's, drift aside."""
        ...

    def drift(self, rec: record.ResourceRecord, live: Live) -> bool | None:
        """Whether libvirt drifted from the record; ``None`` when not observed."""
        ...

    def sections(self, rec: record.ResourceRecord) -> list[str]:
        """``describe`` lines between the spec and the status (the effective spec)."""
        ...

    def describe(self, rec: record.ResourceRecord, ctx: Context) -> list[str]:
        """``describe`` status lines after the phase, drift aside."""
        ...


def manifest_spec(rec: record.ResourceRecord) -> dict[str, Any]:
    spec = rec.spec.get("spec")
    return dict(spec) if isinstance(spec, dict) else {}


def effective_spec(rec: record.ResourceRecord) -> dict[str, Any]:
    effective = rec.spec.get("effective")
    return dict(effective) if isinstance(effective, dict) else {}


def text(value: Any) -> str:
    """A cell or field: ``-`` when unset, ``yes``/``no``, lists comma-joined, escaped."""
    if value is None or value == "" or value == []:
        return output.NONE
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, list):
        return output.escape(",".join(str(v) for v in value))
    return output.escape(str(value))


def size(value: Any) -> str:
    if isinstance(value, int) and not isinstance(value, bool):
        return fields.format_size(value)
    return text(value)


def phase(rec: record.ResourceRecord) -> str:
    return text(rec.status.get("phase"))


def common_wide(rec: record.ResourceRecord) -> list[str]:
    """The cells of :data:`WIDE_COMMON`."""
    return [
        str(rec.generation),
        text(rec.status.get("observedGeneration")),
        text(rec.source_file),
        text(rec.source_revision),
    ]


def field(label: str, value: Any, indent: int = 0) -> str:
    """A ``describe`` line: the label padded to a column, then the value."""
    pad = " " * indent
    return f"{pad}{label + ':':<{LABEL_WIDTH - indent}}{text(value)}".rstrip()


def pairs(values: Mapping[str, str]) -> str:
    return output.escape(",".join(f"{k}={v}" for k, v in sorted(values.items()))) or "<none>"


def yaml_lines(document: Any) -> list[str]:
    """``document`` as indented YAML; PyYAML escapes C0 controls, this the bidi ones too."""
    shown = output.to_yaml(document).rstrip("\n")
    return ["  " + output.escape(line) for line in shown.split("\n")]


def compact(value: Any) -> Any:
    """``value`` without unset fields (``None``, empty lists and maps), for reading."""
    if isinstance(value, dict):
        kept = {k: compact(v) for k, v in value.items()}
        return {k: v for k, v in kept.items() if v is not None and v != [] and v != {}}
    if isinstance(value, list):
        return [compact(v) for v in value]
    return value
