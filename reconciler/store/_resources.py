"""Resources: their applied specs, generations, status, tombstones.

See the design notes of :mod:`reconciler.store.store` on batched statements
and generation semantics (:meth:`Resources.apply_specs`).
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Collection, Sequence
from typing import Any

from sqlalchemy import Row, delete, or_, select, update

from reconciler import errors
from reconciler.models import kinds, record
from reconciler.store import _base, schema

__all__ = ["Resources"]

_log = logging.getLogger(__name__)


def _resource(row: schema.Resource | Row[Any]) -> record.ResourceRecord:
    return record.ResourceRecord(
        key=record.ResourceKey(row.kind, row.name),
        uid=row.uid,
        generation=row.generation,
        spec=row.spec,
        spec_hash=row.spec_hash,
        source_file=row.source_file,
        source_document=row.source_document,
        source_revision=row.source_revision,
        labels=row.labels,
        annotations=row.annotations,
        status=row.status,
        created_at=row.created_at,
        updated_at=row.updated_at,
        deleted_at=row.deleted_at,
    )


class Resources(_base.Base):
    """The resources table: what was applied, and the status written for it."""

    def resources(
        self,
        kind: str | None = None,
        *,
        include_deleted: bool = False,
        vms: Collection[str] | None = None,
    ) -> list[record.ResourceRecord]:
        """Every resource (of ``kind``), ordered by kind and name; tombstoned ones on request.

        ``vms`` keeps, of the VMs, only those named (a pass for a few VMs reads
        every other kind, and those VMs, not the whole fleet).
        """
        # Plain rows, not ORM objects: every pass lists every resource, and the
        # identity map and attribute instrumentation would be thrown away at once.
        table = schema.Resource.__table__
        stmt = select(table).order_by(table.c.kind, table.c.name)
        if kind is not None:
            stmt = stmt.where(table.c.kind == kind)
        if vms is not None:
            vm = kinds.Kind.VIRTUAL_MACHINE.value
            stmt = stmt.where(or_(table.c.kind != vm, table.c.name.in_(sorted(vms))))
        if not include_deleted:
            stmt = stmt.where(table.c.deleted_at.is_(None))
        with self._session("listing resources") as session:
            return [_resource(row) for row in session.execute(stmt)]

    def get(
        self, key: record.ResourceKey, *, include_deleted: bool = False
    ) -> record.ResourceRecord | None:
        """One resource, or ``None`` if it is not in the record (or tombstoned)."""
        stmt = select(schema.Resource).where(
            schema.Resource.kind == key.kind, schema.Resource.name == key.name
        )
        if not include_deleted:
            stmt = stmt.where(schema.Resource.deleted_at.is_(None))
        with self._session(f"reading {key}") as session:
            row = session.scalars(stmt).one_or_none()
            return _resource(row) if row else None

    def apply_specs(self, writes: Sequence[record.SpecWrite]) -> list[record.ResourceRecord]:
        """Record applied specs; returns the resulting records in the order of ``writes``."""
        keys = [write.key for write in writes]
        if len(set(keys)) != len(keys):
            twice = sorted({str(key) for key in keys if keys.count(key) > 1})
            raise errors.StoreError(f"the same resource was applied twice in one batch: {twice}")
        if not writes:
            return []
        now = _base.now()
        with self._session("recording applied specs", write=True) as session:
            existing: dict[record.ResourceKey, Any] = {}
            for chunk in _base.chunks(keys):
                rows = session.execute(
                    select(schema.Resource.__table__).where(_base.has_key(schema.Resource, chunk))
                )
                existing.update({record.ResourceKey(row.kind, row.name): row for row in rows})

            created: list[dict[str, Any]] = []
            updated: list[dict[str, Any]] = []
            revisions: list[tuple[record.ResourceKey, int | None, int, record.SpecWrite]] = []
            for write in writes:
                applied = write.applied()
                row = existing.get(write.key)
                if row is None:
                    created.append(
                        applied
                        | {
                            "kind": write.key.kind,
                            "name": write.key.name,
                            "uid": str(uuid.uuid4()),
                            "generation": 1,
                            "status": {},
                            "created_at": now,
                            "updated_at": now,
                            "deleted_at": None,
                        }
                    )
                    revisions.append((write.key, None, 1, write))
                    continue
                bump = row.spec_hash != write.spec_hash or row.deleted_at is not None
                if not bump and all(row._mapping[name] == value for name, value in applied.items()):
                    continue
                generation = row.generation + 1 if bump else row.generation
                updated.append(
                    applied
                    | {
                        "id": row.id,
                        "generation": generation,
                        "updated_at": now,
                        "deleted_at": None,
                    }
                )
                if bump:
                    revisions.append((write.key, row.id, generation, write))

            ids = {key: row.id for key, row in existing.items()}
            if created:
                inserted = session.execute(
                    self._insert(schema.Resource).returning(
                        schema.Resource.id, schema.Resource.kind, schema.Resource.name
                    ),
                    created,
                )
                ids.update({record.ResourceKey(r.kind, r.name): r.id for r in inserted})
            if updated:
                session.execute(update(schema.Resource), updated)
            if revisions:
                session.execute(
                    self._insert(schema.Revision),
                    [
                        {
                            "resource_id": ids[key] if resource_id is None else resource_id,
                            "kind": key.kind,
                            "name": key.name,
                            "generation": generation,
                            "spec": write.spec,
                            "spec_hash": write.spec_hash,
                            "source_revision": write.source_revision,
                            "source_file": write.source_file,
                            "applied_at": now,
                            "run_id": write.run_id,
                            "actor": self.actor,
                        }
                        for key, resource_id, generation, write in revisions
                    ],
                )
            result: dict[record.ResourceKey, record.ResourceRecord] = {}
            for chunk in _base.chunks(keys):
                stmt = select(schema.Resource).where(_base.has_key(schema.Resource, chunk))
                fresh = session.scalars(stmt.execution_options(populate_existing=True))
                result.update({res.key: res for res in map(_resource, fresh)})
        return [result[key] for key in keys]

    def vm_nics(self) -> list[tuple[str, Any, Any]]:
        """``(name, status.macs, spec.effective.nics)`` of every live VM, by name.

        What the loader checks new MACs against, read by JSON path in the
        database: decoding every VM's whole spec and status cost a daemon at
        5,000 VMs 0.6 s on each new revision.
        """
        res = schema.Resource
        stmt = (
            select(res.name, res.status["macs"], res.spec[("effective", "nics")])
            .where(res.kind == kinds.Kind.VIRTUAL_MACHINE.value, res.deleted_at.is_(None))
            .order_by(res.name)
        )
        with self._session("listing the VMs' NICs") as session:
            return [(row[0], row[1], row[2]) for row in session.execute(stmt)]

    def stamp_revision(self, keys: Sequence[record.ResourceKey], revision: str | None) -> None:
        """Name ``revision`` as the source revision of ``keys``, whose specs it left as they were.

        A pass for the documents a new revision changed plans those alone; the
        records of the resources it carried unchanged are brought to it here,
        in one statement per chunk, with neither a new generation nor history
        (as a pass that planned them would have done). Tombstones stay as they are.
        """
        if not keys:
            return
        res = schema.Resource
        with self._session("recording the source revision", write=True) as session:
            for chunk in _base.chunks(_base.unique(keys)):
                session.execute(
                    update(res)
                    .where(
                        _base.has_key(res, chunk),
                        res.deleted_at.is_(None),
                        res.source_revision.is_distinct_from(revision),
                    )
                    .values(source_revision=revision)
                )

    def write_status(self, writes: Sequence[record.StatusWrite]) -> None:
        """Replace the status of each resource; unknown resources are logged and skipped."""
        if not writes:
            return
        with self._session("writing status", write=True) as session:
            ids: dict[record.ResourceKey, int] = {}
            for chunk in _base.chunks(_base.unique(write.key for write in writes)):
                rows = session.execute(
                    select(schema.Resource.kind, schema.Resource.name, schema.Resource.id).where(
                        _base.has_key(schema.Resource, chunk)
                    )
                )
                ids.update({record.ResourceKey(row.kind, row.name): row.id for row in rows})
            missing = sorted({str(write.key) for write in writes if write.key not in ids})
            if missing:
                _log.warning("status not written for resources not in the record: %s", missing)
            params = [
                {"id": ids[write.key], "status": write.status}
                for write in writes
                if write.key in ids
            ]
            if params:
                session.execute(update(schema.Resource), params)

    def set_annotation(
        self, key: record.ResourceKey, name: str, value: str | None
    ) -> record.ResourceRecord | None:
        """Set (or with ``None`` remove) one annotation of a live resource, generation kept.

        The record's annotations are otherwise the applied manifest's; this is how
        ``infinibay suspend`` marks a resource for every later pass. ``None`` when
        the resource is not in the record.
        """
        with self._session(f"annotating {key}", write=True) as session:
            row = session.scalars(
                select(schema.Resource).where(
                    schema.Resource.kind == key.kind,
                    schema.Resource.name == key.name,
                    schema.Resource.deleted_at.is_(None),
                )
            ).one_or_none()
            if row is None:
                return None
            annotations = dict(row.annotations)
            if value is None:
                annotations.pop(name, None)
            else:
                annotations[name] = value
            row.annotations = annotations
            row.updated_at = _base.now()
            session.flush()
            return _resource(row)

    def tombstone(self, keys: Sequence[record.ResourceKey]) -> None:
        """Mark resources deleted; their history and events stay. Idempotent."""
        if not keys:
            return
        now = _base.now()
        with self._session("marking resources deleted", write=True) as session:
            for chunk in _base.chunks(_base.unique(keys)):
                session.execute(
                    update(schema.Resource)
                    .where(
                        _base.has_key(schema.Resource, chunk), schema.Resource.deleted_at.is_(None)
                    )
                    .values(deleted_at=now, updated_at=now)
                    .execution_options(synchronize_session=False)
                )

    def forget(self, keys: Sequence[record.ResourceKey]) -> None:
        """Remove resources and their revisions from the record for good; events stay."""
        if not keys:
            return
        with self._session("forgetting resources", write=True) as session:
            for chunk in _base.chunks(_base.unique(keys)):
                session.execute(
                    delete(schema.Resource)
                    .where(_base.has_key(schema.Resource, chunk))
                    .execution_options(synchronize_session=False)
                )
