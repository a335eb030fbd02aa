"""The executor: carry out a plan's changes against libvirt, concurrently and safely.

Per-object serial, across-objects parallel: each :class:`~actions.Change` runs
as one task of ordered steps on a worker thread; a change starts only when the
changes it depends on (pools and networks of a VM, VMs of a network being
deleted) have succeeded. A failure fails that change and, with
``DependencyFailed``, exactly its dependents — never its neighbours.

What a change does in libvirt is its kind's steps (:mod:`reconciler.engine.steps`),
read from the change's typed intents. Creation renders an object from its
shape; every later change patches what libvirt has
(:mod:`reconciler.hypervisor.patch`), so devices and settings the manifests do
not model survive updates and adoption.

Workers only talk to libvirt and return a :class:`Outcome` with the events they
produced; the caller's thread does all record writes, so the store is never
used concurrently. Every step is idempotent by name (a volume that exists is
reused, a domain is defined over itself, starting a running domain is a no-op),
which is what makes a killed apply safe to run again.
"""

from __future__ import annotations

import concurrent.futures as cf
import contextlib
from collections.abc import Callable, Iterable

from reconciler import errors
from reconciler.engine import decision, ports, steps
from reconciler.engine.outcome import Options, Outcome, describe
from reconciler.models import kinds, record
from reconciler.planning import actions

__all__ = ["Options", "Outcome", "execute"]

Impact = actions.Impact
Verb = actions.Verb


class _Steps:
    """Runs one change: the refusals and events every kind shares, then the kind's steps."""

    def __init__(self, hv: ports.Hypervisor, options: Options) -> None:
        self.options = options
        self.kinds = {kind: steps.steps_for(kind, hv, options) for kind in kinds.Kind}
        self.hv = hv

    def run(self, change: actions.Change) -> Outcome:
        outcome = Outcome(change)
        try:
            if change.verb is Verb.CONFLICT:
                raise errors.ConflictError(change.note)
            if change.verb is Verb.UNKNOWN:
                raise errors.RefusedError(change.note)
            if change.needs_data_loss_flag and not self.options.allow_data_loss:
                raise errors.DataLossRefused(
                    f"{describe(change)} would destroy data; pass --allow-data-loss to proceed"
                )
            if change.drift:
                outcome.event(
                    "DriftDetected",
                    f"out-of-band change: {describe(change)}",
                    warning=True,
                    diff=True,
                )
            if change.verb is Verb.PROTECTED:
                outcome.event("DeletionProtected", change.note, warning=True)
                outcome.steps.append("protected")
                if self.options.refusal_fails:
                    outcome.ok, outcome.error = False, f"not deleted: {change.note}"
            elif change.verb is Verb.DELETE:
                self._delete(change, outcome)
            else:
                self.kinds[kinds.Kind(change.key.kind)].apply(change, outcome)
            if change.drift:
                outcome.event("DriftCorrected", f"corrected: {describe(change)}", diff=True)
            if change.adopt:
                outcome.event("Adopted", f"{change.key} adopted by this installation")
        except errors.Fenced:
            raise  # not this change's failure: the whole pass stops (engine.fence)
        except errors.InfinibayError as exc:
            outcome.ok = False
            outcome.error = str(exc)
            outcome.failure = exc
            outcome.event(decision.event_reason(exc), str(exc), warning=True)
        return outcome

    def _delete(self, change: actions.Change, out: Outcome) -> None:
        """Undefine the object, then keep or delete its volumes by their reclaim policy."""
        with contextlib.suppress(errors.NotFoundError):  # already gone: deletion is idempotent
            self.kinds[kinds.Kind(change.key.kind)].undefine(change)
        for volume in change.retained:
            mine = record.VolumeRecord(volume.pool, volume.volume, change.key, volume.disk)
            if volume.deletes:
                out.released.append(mine)
                try:
                    self.hv.delete_volume(volume.pool, volume.volume)
                except errors.NotFoundError:
                    continue
                why = "its first-boot seed" if volume.seed else "reclaimPolicy Delete"
                out.event("VolumeDeleted", f"volume {volume.pool}/{volume.volume} deleted ({why})")
            elif not volume.created:
                out.released.append(mine)  # an adopted volume stays, and is no longer ours
                out.event(
                    "VolumeRetained",
                    f"volume {volume.pool}/{volume.volume} retained "
                    "(not created by this installation)",
                )
            else:
                out.event(
                    "VolumeRetained",
                    f"volume {volume.pool}/{volume.volume} retained (reclaimPolicy Retain)",
                )
        out.step("deleted", "Deleted", f"{change.key} deleted")


def execute(
    hv: ports.Hypervisor,
    changes: Iterable[actions.Change],
    options: Options,
    on_outcome: Callable[[Outcome], None],
    on_start: Callable[[list[actions.Change]], None] = lambda _c: None,
) -> list[Outcome]:
    """Run ``changes`` respecting dependencies, on this thread's terms.

    ``on_start`` is called with the changes about to start, before any of
    them reaches a worker, and ``on_outcome`` as each ends; both on this
    thread, so the workers never write the record or the journal. Once
    ``options.interrupt`` is set nothing more starts; what is running finishes
    and is reported as usual.
    """
    pending = list(changes)
    planned = {c.key for c in pending}
    done: dict[record.ResourceKey, Outcome] = {}
    steps = _Steps(hv, options)
    workers = max(1, options.workers)
    with cf.ThreadPoolExecutor(max_workers=workers) as pool:
        running: dict[cf.Future[Outcome], actions.Change] = {}
        queued: list[actions.Change] = []  # ready, waiting for a free worker
        while pending or running or queued:
            if options.interrupt.is_set():
                pending.clear()  # never started: nothing to record, the next pass plans them
                queued.clear()
                if not running:
                    break
            progressed = True
            ready: list[actions.Change] = []
            while progressed:  # a DependencyFailed settles at once and may unblock others
                progressed = False
                for change in list(pending):
                    deps = [d for d in change.depends_on if d in planned and d != change.key]
                    if any(d not in done for d in deps):
                        continue
                    pending.remove(change)
                    progressed = True
                    failed = [d for d in deps if not done[d].ok]
                    if failed:
                        outcome = Outcome(
                            change, ok=False, error=f"depends on {failed[0]}, which failed"
                        )
                        outcome.event("DependencyFailed", outcome.error, warning=True)
                        done[change.key] = outcome
                        on_outcome(outcome)
                        continue
                    ready.append(change)
            queued += ready
            free = workers - len(running)
            if queued and free > 0:  # started only when a worker takes it: none waits queued
                batch, queued = queued[:free], queued[free:]
                on_start(batch)
                running.update({pool.submit(steps.run, change): change for change in batch})
            if not running:
                for change in pending:  # what is left waits on itself: fail it, never spin
                    outcome = Outcome(change, ok=False, error="dependency cycle")
                    outcome.event("DependencyFailed", outcome.error, warning=True)
                    done[change.key] = outcome
                    on_outcome(outcome)
                pending.clear()
                continue
            finished, _ = cf.wait(running, return_when=cf.FIRST_COMPLETED)
            for future in finished:
                change = running.pop(future)
                outcome = future.result()
                done[change.key] = outcome
                on_outcome(outcome)
    return list(done.values())
