"""Plain values read from and written to the record (the SQL store).

The store (:mod:`reconciler.store`) returns and accepts only these frozen
dataclasses, never ORM objects, so the planner and engine stay free of
SQLAlchemy and sessions never leak out of the store module.

A recorded spec is parsed back into its manifest by :func:`manifest` (or
:func:`spec_as`, for a kind known in advance), which turns a validation error
into :class:`reconciler.errors.RecordCorrupt` naming the resource and the
field: a record that no longer parses (edited by hand, or written by a version
that knew other fields) is the record's fault, and says so in one line.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import enum
from typing import Any, NewType, TypeVar

import pydantic

from reconciler import errors
from reconciler.models import kinds

__all__ = [
    "EventRecord",
    "EventType",
    "NewEvent",
    "ResourceKey",
    "ResourceRecord",
    "RevisionRecord",
    "RunId",
    "RunRecord",
    "SpecWrite",
    "StatusWrite",
    "TokenRecord",
    "Trigger",
    "VolumeRecord",
    "corrupt_at",
    "manifest",
    "spec_as",
]

RunId = NewType("RunId", int)
_M = TypeVar("_M", bound=pydantic.BaseModel)
Uid = NewType("Uid", str)


@dataclasses.dataclass(frozen=True, order=True)
class ResourceKey:
    kind: str  # a kinds.Kind value, e.g. "VirtualMachine"
    name: str

    def __str__(self) -> str:
        return f"{self.kind.lower()}/{self.name}"


class EventType(enum.StrEnum):
    NORMAL = "Normal"
    WARNING = "Warning"


class Trigger(enum.StrEnum):
    APPLY = "apply"
    DELETE = "delete"
    WATCH = "watch"
    GIT = "git"
    RESYNC = "resync"
    LIBVIRT_EVENT = "libvirt-event"


@dataclasses.dataclass(frozen=True)
class ResourceRecord:
    key: ResourceKey
    uid: str
    generation: int
    spec: dict[str, Any]  # the applied manifest spec, JSON-shaped (sizes as strings)
    spec_hash: str
    source_file: str | None
    source_document: int | None
    source_revision: str | None
    labels: dict[str, str]
    annotations: dict[str, str]
    status: dict[str, Any]  # phase, conditions, observedGeneration, uuid, macs, ...
    created_at: dt.datetime
    updated_at: dt.datetime
    deleted_at: dt.datetime | None


@dataclasses.dataclass(frozen=True, order=True)
class VolumeRecord:
    """One row of the volume inventory: a volume of ``pool`` that a VM's disk uses.

    A volume has no metadata in libvirt, so the record is the only proof that
    this installation made it. A row is written *before* the volume is created
    (intent): a volume a killed pass left behind is still recognised as ours.
    ``created`` is false for an existing volume adopted with ``volume:`` and
    ``--adopt``, which is used as it is and never grown or deleted.
    """

    pool: str
    name: str
    owner: ResourceKey
    disk: str
    created: bool = True


@dataclasses.dataclass(frozen=True)
class SpecWrite:
    """The spec applied for one resource; the store bumps generation when the hash changes."""

    key: ResourceKey
    spec: dict[str, Any]
    spec_hash: str
    labels: dict[str, str]
    annotations: dict[str, str]
    source_file: str | None
    source_document: int | None
    source_revision: str | None
    run_id: RunId | None = None

    def applied(self) -> dict[str, Any]:
        """The resource's fields this write sets, by name (record fields and columns alike)."""
        return {
            "spec": self.spec,
            "spec_hash": self.spec_hash,
            "labels": self.labels,
            "annotations": self.annotations,
            "source_file": self.source_file,
            "source_document": self.source_document,
            "source_revision": self.source_revision,
        }


@dataclasses.dataclass(frozen=True)
class StatusWrite:
    key: ResourceKey
    status: dict[str, Any]


@dataclasses.dataclass(frozen=True)
class NewEvent:
    key: ResourceKey
    type: EventType
    reason: str  # CamelCase: Created, Updated, Started, DriftDetected, ...
    message: str
    diff: dict[str, Any] | None = None
    revision: str | None = None
    run_id: RunId | None = None
    actor: str | None = None  # None: the store's actor (who opened it)


@dataclasses.dataclass(frozen=True)
class TokenRecord:
    """An API token as the record keeps it: never its secret, only whom it lets in."""

    name: str
    role: str  # admin, viewer or user (:class:`reconciler.models.access.Role`)
    owner: str | None
    created_at: dt.datetime
    expires_at: dt.datetime | None
    last_used_at: dt.datetime | None


@dataclasses.dataclass(frozen=True)
class EventRecord:
    id: int
    key: ResourceKey
    uid: str | None
    type: EventType
    reason: str
    message: str
    diff: dict[str, Any] | None
    revision: str | None
    run_id: int | None
    count: int
    first_seen: dt.datetime
    last_seen: dt.datetime
    actor: str | None = None


@dataclasses.dataclass(frozen=True)
class RevisionRecord:
    key: ResourceKey
    generation: int
    spec: dict[str, Any]
    spec_hash: str
    source_revision: str | None
    source_file: str | None
    applied_at: dt.datetime
    run_id: int | None
    actor: str | None = None


@dataclasses.dataclass(frozen=True)
class RunRecord:
    id: RunId
    trigger: Trigger
    revision: str | None
    started_at: dt.datetime
    finished_at: dt.datetime | None
    counts: dict[str, int]
    # "succeeded" | "failed" | "interrupted" (Ctrl-C) | "aborted" (died) | None while running
    result: str | None
    # The resources a narrowed pass was for ("virtualmachine/x"); None: a full pass.
    scope: tuple[str, ...] | None = None
    # A sharded daemon's pass (SPEC §10): the daemon, and the hosts it held (host -> epoch).
    holder: str | None = None
    hosts: dict[str, int] | None = None


def corrupt_at(what: str, exc: pydantic.ValidationError) -> errors.RecordCorrupt:
    """One line for a validation error of ``what`` read from the record: the first field."""
    problems = exc.errors()
    first = problems[0]
    where = ".".join(str(part) for part in first["loc"]) or "the top level"
    more = f" (and {len(problems) - 1} more)" if len(problems) > 1 else ""
    return errors.RecordCorrupt(f"{what} in the record is corrupt at {where}: {first['msg']}{more}")


def spec_as(rec: ResourceRecord, model: type[_M]) -> _M:
    """``rec``'s recorded spec parsed as ``model``; :class:`RecordCorrupt` if it is not one."""
    document = {k: v for k, v in rec.spec.items() if k != "effective"}
    try:
        return model.model_validate(document)
    except pydantic.ValidationError as exc:
        raise corrupt_at(f"the spec of {rec.key}", exc) from exc


def manifest(rec: ResourceRecord) -> kinds.Manifest:
    """The manifest ``rec``'s spec was recorded from; :class:`RecordCorrupt` if it is none."""
    try:
        kind = kinds.Kind(rec.key.kind)
    except ValueError as exc:
        raise errors.RecordCorrupt(
            f"resource {rec.key.name!r} in the record has kind {rec.key.kind!r}, "
            f"which is none of {', '.join(kinds.Kind)}"
        ) from exc
    return spec_as(rec, kinds.KINDS[kind])
