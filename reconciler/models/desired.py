"""The desired state: every manifest of a run with the place it came from.

The loader (:mod:`reconciler.manifests`) produces a :class:`DesiredState`; the
planner reads it. Keeping the source next to each manifest lets every later
message (a plan line, an event, a history row) say which file and commit asked
for the change.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator

from reconciler.models import effective, kinds

__all__ = ["DesiredState", "Loaded", "Source"]


@dataclasses.dataclass(frozen=True)
class Source:
    """Where a document came from: ``file`` is ``-`` for stdin."""

    file: str
    line: int
    column: int
    document: int
    revision: str | None = None

    def __str__(self) -> str:
        return f"{self.file}:{self.line}:{self.column}"


@dataclasses.dataclass(frozen=True)
class Loaded:
    manifest: kinds.StoragePool | kinds.Network | kinds.Template | kinds.VirtualMachine
    source: Source

    @property
    def kind(self) -> kinds.Kind:
        return kinds.Kind(self.manifest.kind)

    @property
    def name(self) -> str:
        return self.manifest.metadata.name


@dataclasses.dataclass(frozen=True)
class DesiredState:
    """Validated manifests, indexed by kind and name; VMs already merged over templates."""

    pools: dict[str, Loaded] = dataclasses.field(default_factory=dict)
    networks: dict[str, Loaded] = dataclasses.field(default_factory=dict)
    templates: dict[str, Loaded] = dataclasses.field(default_factory=dict)
    vms: dict[str, Loaded] = dataclasses.field(default_factory=dict)
    effective_vms: dict[str, effective.EffectiveVM] = dataclasses.field(default_factory=dict)

    def by_kind(self, kind: kinds.Kind) -> dict[str, Loaded]:
        return {
            kinds.Kind.STORAGE_POOL: self.pools,
            kinds.Kind.NETWORK: self.networks,
            kinds.Kind.TEMPLATE: self.templates,
            kinds.Kind.VIRTUAL_MACHINE: self.vms,
        }[kind]

    def __iter__(self) -> Iterator[Loaded]:
        for table in (self.pools, self.networks, self.templates, self.vms):
            yield from table.values()

    def __len__(self) -> int:
        return len(self.pools) + len(self.networks) + len(self.templates) + len(self.vms)
