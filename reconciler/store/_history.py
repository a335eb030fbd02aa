"""Events and history: what happened to each resource, and every generation applied.

Repeats of (kind, name, reason, message) fold into one event row whose
``count`` grows and ``last_seen`` moves (see :mod:`reconciler.store.store`).
History is the ``revisions`` table that :meth:`Resources.apply_specs` appends to.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import hashlib
import json
from collections.abc import Sequence
from typing import Any

from sqlalchemy import delete, select
from sqlalchemy.engine import CursorResult

from reconciler import settings
from reconciler.models import record
from reconciler.store import _base, schema

__all__ = ["History"]


def _fold_key(event: record.NewEvent) -> str:
    parts = [event.key.kind, event.key.name, event.reason, event.message]
    return hashlib.sha256(json.dumps(parts).encode()).hexdigest()


def _event(row: schema.Event) -> record.EventRecord:
    return record.EventRecord(
        id=row.id,
        key=record.ResourceKey(row.kind, row.name),
        uid=row.uid,
        type=_base.member(
            record.EventType,
            row.type,
            f"event {row.id} of {record.ResourceKey(row.kind, row.name)}",
            "type",
        ),
        reason=row.reason,
        message=row.message,
        diff=row.diff,
        revision=row.revision,
        run_id=row.run_id,
        count=row.count,
        first_seen=row.first_seen,
        last_seen=row.last_seen,
        actor=row.actor,
    )


def _revision(row: schema.Revision) -> record.RevisionRecord:
    return record.RevisionRecord(
        key=record.ResourceKey(row.kind, row.name),
        generation=row.generation,
        spec=row.spec,
        spec_hash=row.spec_hash,
        source_revision=row.source_revision,
        source_file=row.source_file,
        applied_at=row.applied_at,
        run_id=row.run_id,
        actor=row.actor,
    )


class History(_base.Base):
    """The events and revisions tables."""

    def record_events(self, events: Sequence[record.NewEvent]) -> None:
        """Append events, folding repeats of (kind, name, reason, message) into one row."""
        if not events:
            return
        now = _base.now()
        epoch = self._fence_epoch()
        folded: dict[str, dict[str, Any]] = {}
        for event in events:
            # A message may quote a driver's or git's error: no secret reaches the record.
            event = dataclasses.replace(event, message=settings.redact(event.message))
            fold_key = _fold_key(event)
            latest = {
                "type": event.type.value,
                "diff": event.diff,
                "revision": event.revision,
                "run_id": event.run_id,
                "epoch": epoch,
                "actor": event.actor or self.actor,
            }
            if fold_key in folded:
                folded[fold_key]["count"] += 1
                folded[fold_key].update(latest)
                continue
            folded[fold_key] = latest | {
                "fold_key": fold_key,
                "kind": event.key.kind,
                "name": event.key.name,
                "reason": event.reason,
                "message": event.message,
                "count": 1,
                "first_seen": now,
                "last_seen": now,
            }
        with self._session("recording events", write=True) as session:
            uids: dict[record.ResourceKey, str] = {}
            for chunk in _base.chunks(_base.unique(event.key for event in events)):
                rows = session.execute(
                    select(schema.Resource.kind, schema.Resource.name, schema.Resource.uid).where(
                        _base.has_key(schema.Resource, chunk)
                    )
                )
                uids.update({record.ResourceKey(row.kind, row.name): row.uid for row in rows})
            for values in folded.values():
                values["uid"] = uids.get(record.ResourceKey(values["kind"], values["name"]))
            stmt = self._insert(schema.Event)
            table = schema.Event.__table__.c
            stmt_upsert = stmt.on_conflict_do_update(
                index_elements=[table.fold_key],
                set_={
                    "count": table.count + stmt.excluded.count,
                    "last_seen": stmt.excluded.last_seen,
                    "uid": stmt.excluded.uid,
                    "type": stmt.excluded.type,
                    "diff": stmt.excluded.diff,
                    "revision": stmt.excluded.revision,
                    "run_id": stmt.excluded.run_id,
                    "epoch": stmt.excluded.epoch,
                    "actor": stmt.excluded.actor,
                },
            )
            session.execute(stmt_upsert, list(folded.values()))

    def events(
        self,
        key: record.ResourceKey | None = None,
        *,
        since: dt.datetime | None = None,
        limit: int | None = None,
        after_id: int | None = None,
        keys: Sequence[record.ResourceKey] | None = None,
    ) -> list[record.EventRecord]:
        """Events ordered by ``last_seen`` (oldest first).

        ``since`` keeps events last seen at or after it; ``after_id`` keeps rows
        created after that id (a repeat folds into its old row, so a follower
        that must see repeats polls with ``since`` instead); ``limit`` keeps the
        newest ``limit`` of what matches; ``keys`` keeps the events of those
        resources only (at most :data:`~reconciler.store._base.KEYS_PER_QUERY`).
        """
        stmt = select(schema.Event)
        if keys is not None:
            if len(keys) > _base.KEYS_PER_QUERY:
                raise ValueError(f"at most {_base.KEYS_PER_QUERY} keys per events() call")
            stmt = stmt.where(_base.has_key(schema.Event, keys))
        if key is not None:
            stmt = stmt.where(schema.Event.kind == key.kind, schema.Event.name == key.name)
        if since is not None:
            stmt = stmt.where(schema.Event.last_seen >= since)
        if after_id is not None:
            stmt = stmt.where(schema.Event.id > after_id)
        newest_first = (schema.Event.last_seen.desc(), schema.Event.id.desc())
        oldest_first = (schema.Event.last_seen, schema.Event.id)
        if limit is None:
            stmt = stmt.order_by(*oldest_first)
        else:
            stmt = stmt.order_by(*newest_first).limit(limit)
        with self._session("reading events") as session:
            rows = [_event(row) for row in session.scalars(stmt)]
        return rows if limit is None else rows[::-1]

    def events_of_runs(self, run_ids: Sequence[record.RunId]) -> list[record.EventRecord]:
        """The events whose latest occurrence was written by one of ``run_ids``, oldest first."""
        if not run_ids:
            return []
        stmt = (
            select(schema.Event)
            .where(schema.Event.run_id.in_(list(run_ids)))
            .order_by(schema.Event.last_seen, schema.Event.id)
        )
        with self._session("reading the events of aborted runs") as session:
            return [_event(row) for row in session.scalars(stmt)]

    def prune_events(self, older_than: dt.timedelta) -> int:
        """Delete events last seen more than ``older_than`` ago; returns how many."""
        cutoff = _base.now() - older_than
        with self._session("pruning events", write=True) as session:
            result = session.execute(
                delete(schema.Event)
                .where(schema.Event.last_seen < cutoff)
                .execution_options(synchronize_session=False)
            )
            assert isinstance(result, CursorResult)
            return int(result.rowcount)

    def history(self, key: record.ResourceKey) -> list[record.RevisionRecord]:
        """Every applied generation of ``key``, oldest first."""
        stmt = (
            select(schema.Revision)
            .where(schema.Revision.kind == key.kind, schema.Revision.name == key.name)
            .order_by(schema.Revision.generation)
        )
        with self._session(f"reading the history of {key}") as session:
            return [_revision(row) for row in session.scalars(stmt)]
