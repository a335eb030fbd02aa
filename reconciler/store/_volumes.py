"""The volume inventory: every volume this installation made or adopted.

A volume has no metadata in libvirt, so its row here is the only proof that it
is ours (see :class:`reconciler.models.record.VolumeRecord`).
"""

from __future__ import annotations

from collections.abc import Sequence

from sqlalchemy import delete, select

from reconciler.models import record
from reconciler.store import _base, schema

__all__ = ["Volumes"]


class Volumes(_base.Base):
    """The volumes table."""

    def volumes(self) -> list[record.VolumeRecord]:
        """Every volume this installation made or adopted, ordered by pool and name."""
        stmt = select(schema.Volume).order_by(schema.Volume.pool, schema.Volume.name)
        with self._session("listing volumes") as session:
            return [
                record.VolumeRecord(
                    pool=row.pool,
                    name=row.name,
                    owner=record.ResourceKey(row.owner_kind, row.owner_name),
                    disk=row.disk,
                    created=row.created,
                )
                for row in session.scalars(stmt)
            ]

    def claim_volumes(self, volumes: Sequence[record.VolumeRecord]) -> None:
        """Add volumes to the inventory before they are created; a known one is kept as is."""
        if not volumes:
            return
        now = _base.now()
        rows = [
            {
                "pool": v.pool,
                "name": v.name,
                "owner_kind": v.owner.kind,
                "owner_name": v.owner.name,
                "disk": v.disk,
                "created": v.created,
                "recorded_at": now,
            }
            for v in volumes
        ]
        with self._session("recording volumes", write=True) as session:
            stmt = self._insert(schema.Volume).values(rows)
            session.execute(stmt.on_conflict_do_nothing(index_elements=["pool", "name"]))

    def release_volumes(self, volumes: Sequence[record.VolumeRecord]) -> None:
        """Drop volumes from the inventory (deleted, or never ours); only their owner's rows."""
        if not volumes:
            return
        with self._session("forgetting volumes", write=True) as session:
            for v in volumes:
                session.execute(
                    delete(schema.Volume).where(
                        schema.Volume.pool == v.pool,
                        schema.Volume.name == v.name,
                        schema.Volume.owner_kind == v.owner.kind,
                        schema.Volume.owner_name == v.owner.name,
                    )
                )
