"""Runs: one row per reconcile pass, opened and closed under the writer lock."""

from __future__ import annotations

from collections.abc import Sequence

from sqlalchemy import select, update
from sqlalchemy.engine import CursorResult

from reconciler import errors
from reconciler.models import record
from reconciler.store import _base, schema

__all__ = ["Runs"]


def _run(row: schema.Run) -> record.RunRecord:
    return record.RunRecord(
        id=record.RunId(row.id),
        trigger=_base.member(record.Trigger, row.trigger, f"run {row.id}", "trigger"),
        revision=row.revision,
        started_at=row.started_at,
        finished_at=row.finished_at,
        counts=row.counts,
        result=row.result,
        scope=tuple(row.scope) if row.scope is not None else None,
        holder=row.holder,
        hosts=dict(row.hosts) if row.hosts is not None else None,
    )


class Runs(_base.Base):
    """The runs table."""

    def start_run(
        self,
        trigger: record.Trigger,
        revision: str | None,
        scope: Sequence[record.ResourceKey] | None = None,
    ) -> record.RunId:
        """Open a run (one reconcile pass); finish it with :meth:`finish_run`.

        ``scope`` names the resources of a pass narrowed to them; ``None``: a full pass.
        """
        with self._session("starting a run", write=True) as session:
            run_id = session.execute(
                self._insert(schema.Run)
                .values(
                    trigger=trigger.value,
                    revision=revision,
                    started_at=_base.now(),
                    counts={},
                    epoch=self._fence_epoch(),
                    scope=None if scope is None else sorted(str(k) for k in scope),
                    holder=self.shard_member(),
                    hosts=self._fenced_hosts(),
                )
                .returning(schema.Run.id)
            ).scalar_one()
        return record.RunId(run_id)

    def finish_run(self, run_id: record.RunId, counts: dict[str, int], result: str) -> None:
        """Close a run with its counts and result.

        ``succeeded``, ``failed``, ``interrupted`` (Ctrl-C) or ``fenced``.
        """
        with self._session(f"finishing run {run_id}", write=True) as session:
            done = session.execute(
                update(schema.Run)
                .where(schema.Run.id == run_id)
                .values(finished_at=_base.now(), counts=dict(counts), result=result)
                .execution_options(synchronize_session=False)
            )
            assert isinstance(done, CursorResult)
            if done.rowcount != 1:
                raise errors.StoreError(f"run {run_id} is not in the record {self.url}")

    def abort_unfinished_runs(self) -> list[record.RunId]:
        """Close every run still open as ``aborted``; returns their ids, oldest first.

        Only for the writer lock's holder: runs are opened and closed under the
        lock, so one still open when the lock is taken belongs to a reconciler
        that died (killed, or the host lost) in the middle of its pass.
        """
        with self._session("closing aborted runs", write=True) as session:
            ids = list(
                session.scalars(
                    select(schema.Run.id)
                    .where(schema.Run.finished_at.is_(None))
                    .order_by(schema.Run.id)
                )
            )
            if ids:
                session.execute(
                    update(schema.Run)
                    .where(schema.Run.id.in_(ids))
                    .values(finished_at=_base.now(), result="aborted")
                    .execution_options(synchronize_session=False)
                )
        return [record.RunId(i) for i in ids]

    def runs(self, limit: int = 20) -> list[record.RunRecord]:
        """The newest ``limit`` runs, newest first."""
        stmt = select(schema.Run).order_by(schema.Run.id.desc()).limit(limit)
        with self._session("reading runs") as session:
            return [_run(row) for row in session.scalars(stmt)]

    def last_run(self) -> record.RunRecord | None:
        """The newest run, finished or not."""
        runs = self.runs(limit=1)
        return runs[0] if runs else None
