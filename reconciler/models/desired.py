"""The desired state: every manifest of a run with the place it came from.

The loader (:mod:`reconciler.manifests`) produces a :class:`DesiredState`; the
planner reads it. Keeping the source next to each manifest lets every later
message (a plan line, an event, a history row) say which file and commit asked
for the change.
"""

from __future__ import annotations

import dataclasses
import typing
from collections.abc import Callable, Iterator

from reconciler.models import effective, kinds

__all__ = ["DesiredState", "Loaded", "Source"]


Locator = Callable[[tuple[str | int, ...]], tuple[int, int]]


@dataclasses.dataclass(frozen=True)
class Source:
    """Where a document came from: ``file`` is ``-`` for stdin.

    ``locator`` maps a field path (``("spec", "disks", 0, "size")``) to its line
    and column, so a check made after loading (a disk shrink, found against
    the live volume) still points at the YAML node that asked for it.
    """

    file: str
    line: int
    column: int
    document: int
    revision: str | None = None
    locator: Locator | None = dataclasses.field(default=None, compare=False, repr=False)

    def __str__(self) -> str:
        return f"{self.file}:{self.line}:{self.column}"

    def at(self, path: tuple[str | int, ...]) -> str:
        """``FILE:LINE:COL`` of the field at ``path``, or of the document when unknown."""
        if self.locator is None:
            return str(self)
        line, column = self.locator(path)
        return f"{self.file}:{line}:{column}"


@dataclasses.dataclass(frozen=True)
class Loaded:
    manifest: kinds.AnyManifest
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
    policies: dict[str, Loaded] = dataclasses.field(default_factory=dict)
    departments: dict[str, Loaded] = dataclasses.field(default_factory=dict)
    hosts: dict[str, Loaded] = dataclasses.field(default_factory=dict)
    effective_vms: dict[str, effective.EffectiveVM] = dataclasses.field(default_factory=dict)
    # Located one-line notes for the user (not errors): fields ignored on reading.
    notices: list[str] = dataclasses.field(default_factory=list, compare=False)
    # The operator's virtio-win ISO (POOL/VOLUME, INFINIBAY_VIRTIO_WIN): a cdrom of every
    # ``os: windows`` VM. Not a manifest's to choose, so it is not in the spec hash.
    virtio_win: str | None = None

    def by_kind(self, kind: kinds.Kind) -> dict[str, Loaded]:
        match kind:
            case kinds.Kind.STORAGE_POOL:
                return self.pools
            case kinds.Kind.NETWORK:
                return self.networks
            case kinds.Kind.TEMPLATE:
                return self.templates
            case kinds.Kind.VIRTUAL_MACHINE:
                return self.vms
            case kinds.Kind.FIREWALL_POLICY:
                return self.policies
            case kinds.Kind.DEPARTMENT:
                return self.departments
            case kinds.Kind.HOST:
                return self.hosts
            case unreachable:
                typing.assert_never(unreachable)

    def __iter__(self) -> Iterator[Loaded]:
        for kind in kinds.Kind:
            yield from self.by_kind(kind).values()

    def __len__(self) -> int:
        return sum(len(self.by_kind(kind)) for kind in kinds.Kind)
