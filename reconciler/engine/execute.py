"""The executor: carry out a plan's changes against libvirt, concurrently and safely.

Per-object serial, across-objects parallel: each :class:`~actions.Change` runs
as one task of ordered steps on a worker thread; a change starts only when the
changes it depends on (pools and networks of a VM, VMs of a network being
deleted) have succeeded. A failure fails that change and, with
``DependencyFailed``, exactly its dependents — never its neighbours.

Creation renders an object from its shape; every later change patches what
libvirt has (:mod:`reconciler.hypervisor.patch`): the current definition is read,
only the owned fields are edited, and the result is defined, so devices and
settings the manifests do not model survive updates and adoption.

Workers only talk to libvirt and return a :class:`Outcome` with the events they
produced; the caller's thread does all record writes, so the store is never
used concurrently. Every step is idempotent by name (a volume that exists is
reused, a domain is defined over itself, starting a running domain is a no-op),
which is what makes a killed apply safe to run again.
"""

from __future__ import annotations

import concurrent.futures as cf
import dataclasses
from collections.abc import Callable, Iterable

from reconciler import errors, settings
from reconciler.engine import ports
from reconciler.hypervisor import patch, xml
from reconciler.models import fields, kinds, record
from reconciler.planning import actions

__all__ = ["Options", "Outcome", "execute"]

Impact = actions.Impact
Verb = actions.Verb


@dataclasses.dataclass(frozen=True)
class Options:
    # Starting or forcing off a guest is mostly waiting on QEMU: on 2 cores, 8 at once
    # start and stop 20 guests about a third faster than 4 did.
    workers: int = 8
    shutdown_timeout: float = 60.0
    allow_data_loss: bool = False
    # A deletion asked for by name (``infinibay delete``) that is protected or still in
    # use is a failure; the same deletion found by a prune is the expected outcome.
    refusal_fails: bool = False
    # Read when the plan runs, not when it was validated: a symlink on a pool's path
    # can be swapped in between (SPEC §13).
    boundary: settings.Boundary = dataclasses.field(default_factory=settings.Boundary.from_environ)


@dataclasses.dataclass
class Outcome:
    change: actions.Change
    ok: bool = True
    steps: list[str] = dataclasses.field(default_factory=list)
    events: list[record.NewEvent] = dataclasses.field(default_factory=list)
    error: str = ""
    # The typed error a failed change ended with; what it means is decided from it
    # alone (reconciler.engine.decision.decide).
    failure: errors.InfinibayError | None = None
    uuid: str | None = None
    # Inventory rows to drop once this outcome is recorded: volumes deleted, or a
    # claimed name that turned out to be someone else's volume.
    released: list[record.VolumeRecord] = dataclasses.field(default_factory=list)

    def event(
        self, reason: str, message: str, *, warning: bool = False, diff: bool = False
    ) -> None:
        self.events.append(
            record.NewEvent(
                key=self.change.key,
                type=record.EventType.WARNING if warning else record.EventType.NORMAL,
                reason=reason,
                message=message,
                diff={"changes": [f.as_json() for f in self.change.fields]} if diff else None,
            )
        )

    def step(self, word: str, reason: str, message: str) -> None:
        self.steps.append(word)
        self.event(reason, message)


_NOT_CONFIG = ("powerState", "restart", "autostart", "spec")


def _config_changed(change: actions.Change) -> bool:
    """Whether the domain's persistent XML must be rewritten (volume fields are not XML)."""
    return any(
        f.path not in _NOT_CONFIG and not (f.path.startswith("disks[") and "]." in f.path)
        for f in change.fields
    )


def _describe(change: actions.Change) -> str:
    parts = [f"{f.path}: {f.old} -> {f.new}" for f in change.fields]
    return "; ".join(parts) if parts else change.verb.value


class _Steps:
    """The libvirt steps of each kind of change; one instance per plan."""

    def __init__(self, hv: ports.Hypervisor, options: Options) -> None:
        self.hv = hv
        self.options = options

    def run(self, change: actions.Change) -> Outcome:
        outcome = Outcome(change)
        try:
            if change.verb is Verb.CONFLICT:
                raise errors.ConflictError(change.note)
            if change.impact is Impact.DATA_LOSS and not self.options.allow_data_loss:
                raise errors.DataLossRefused(
                    f"{_describe(change)} would destroy data; pass --allow-data-loss to proceed"
                )
            if change.drift:
                outcome.event(
                    "DriftDetected",
                    f"out-of-band change: {_describe(change)}",
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
            elif isinstance(change.target, actions.PoolTarget):
                self._pool(change, change.target, outcome)
            elif isinstance(change.target, actions.NetworkTarget):
                self._network(change, change.target, outcome)
            elif isinstance(change.target, actions.VmTarget):
                self._vm(change, change.target, outcome)
            else:
                word = "created" if change.verb is Verb.CREATE else "updated"
                outcome.step(word, word.capitalize(), f"{change.key} {word}")
            if change.drift:
                outcome.event("DriftCorrected", f"corrected: {_describe(change)}", diff=True)
            if change.adopt:
                outcome.event("Adopted", f"{change.key} adopted by this installation")
        except errors.Fenced:
            raise  # not this change's failure: the whole pass stops (engine.fence)
        except errors.InfinibayError as exc:
            outcome.ok = False
            outcome.error = str(exc)
            outcome.failure = exc
            reason = "ApplyRefused" if isinstance(exc, errors.RefusedError) else "ApplyFailed"
            if change.verb is Verb.CONFLICT:
                reason = "Conflict"
            outcome.event(reason, str(exc), warning=True)
        return outcome

    # --- pools and networks ---------------------------------------------------

    def _pool(self, change: actions.Change, target: actions.PoolTarget, out: Outcome) -> None:
        name = change.key.name
        # Defining or starting a pool builds its directory and hands libvirt its files.
        problem = self.options.boundary.pool_problem(target.shape.path, images=target.images)
        if problem is not None:
            raise errors.RefusedError(f"storage pool {name}: {problem}")
        if change.verb is Verb.REPLACE:
            document = patch.patch_pool(self.hv.pool_definition(name), target.shape)
            self.hv.undefine_pool(name)
            out.uuid = self.hv.define_pool(name, document)
        elif change.verb is Verb.CREATE:
            out.uuid = self.hv.define_pool(name, xml.render_pool(name, target.shape))
        self.hv.start_pool(name)
        self.hv.set_pool_autostart(name, target.shape.autostart)
        self._done(change, out)

    def _network(self, change: actions.Change, target: actions.NetworkTarget, out: Outcome) -> None:
        name = change.key.name
        assert change.owner is not None
        restart = any(f.impact is Impact.RESTART for f in change.fields)
        if change.verb is Verb.CREATE:
            document = xml.render_network(name, target.shape, owner=change.owner, uuid=change.uuid)
            out.uuid = self.hv.define_network(name, document)
        elif restart or change.adopt:
            current = self.hv.network_definition(name)
            document = patch.patch_network(current, target.shape, owner=change.owner)
            out.uuid = self.hv.define_network(name, document)
        if restart:
            self.hv.stop_network(name)
        self.hv.start_network(name)
        self.hv.set_network_autostart(name, target.shape.autostart)
        self._done(change, out)

    def _done(self, change: actions.Change, out: Outcome) -> None:
        if change.verb is Verb.CREATE:
            out.step("created", "Created", f"{change.key} created")
        else:
            word = "replaced" if change.verb is Verb.REPLACE else "updated"
            out.steps.append(word)
            out.event(word.capitalize(), f"{change.key} {word}: {_describe(change)}", diff=True)

    # --- virtual machines -----------------------------------------------------

    def _vm(self, change: actions.Change, target: actions.VmTarget, out: Outcome) -> None:
        name = change.key.name
        assert change.owner is not None
        stopped = self._volumes(change, target, out)
        if change.verb is Verb.CREATE:
            document = xml.render_domain(
                name,
                target.shape,
                domain_type=self.hv.domain_type,
                owner=change.owner,
                uuid=change.uuid,
            )
            out.uuid = self.hv.define_domain(name, document)
        elif _config_changed(change):
            document = patch.patch_domain(
                self.hv.domain_definition(name),
                target.shape,
                owner=change.owner,
                pools=self.hv.pool_directories(),
            )
            out.uuid = self.hv.define_domain(name, document)
        if change.verb is Verb.CREATE or change.field("autostart") is not None:
            self.hv.set_domain_autostart(name, target.shape.autostart)
        self._hotplug(change, target)
        if change.verb is Verb.CREATE:
            out.step("created", "Created", f"{change.key} defined")
        elif any(not f.path.startswith(("powerState", "restart")) for f in change.fields):
            out.steps.append("updated")
            out.event("Updated", f"{change.key} updated: {_describe(change)}", diff=True)
        self._power(change, target, out, stopped=stopped)

    def _hotplug(self, change: actions.Change, target: actions.VmTarget) -> None:
        """Plug NICs planned as live into the running guest (the config has them already)."""
        if change.verb is Verb.CREATE or self._current_power(change) is kinds.PowerState.STOPPED:
            return
        for nic in target.shape.nics:
            # The plan names a NIC by network, or by network and MAC where NICs share one.
            planned = change.field(actions.nic_path(nic, ())) or change.field(
                actions.nic_path(nic, {nic.network})
            )
            if planned is not None and planned.old is None and planned.impact is Impact.LIVE:
                self.hv.attach_device(change.key.name, xml.render_interface(nic))

    def _volumes(self, change: actions.Change, target: actions.VmTarget, out: Outcome) -> bool:
        """Create, grow or recreate the VM's volumes; True when the VM was shut down for it."""
        stopped = False
        running = (
            change.verb is not Verb.CREATE
            and self._current_power(change) is not kinds.PowerState.STOPPED
        )
        for volume in target.volumes:
            path = f"disks[{volume.disk}]"
            if change.field(f"{path}.image") is not None:
                if running:
                    self.hv.stop_domain(change.key.name, timeout=self.options.shutdown_timeout)
                    running, stopped = False, True
                self.hv.delete_volume(volume.pool, volume.volume)
                out.event(
                    "VolumeDeleted",
                    f"volume {volume.pool}/{volume.volume} deleted to change its image",
                    warning=True,
                )
                self._create_volume(change, volume, out)
            elif change.field(f"{path}.volume") is not None:
                self._create_volume(change, volume, out)
            elif change.field(f"{path}.adopt") is not None:
                out.event(
                    "VolumeAdopted",
                    f"volume {volume.pool}/{volume.volume} adopted: used as it is, "
                    "never grown or deleted",
                )
            elif (grow := change.field(f"{path}.size")) is not None:
                self.hv.grow_volume(
                    volume.pool,
                    volume.volume,
                    volume.size,
                    domain=change.key.name if running else None,
                )
                out.event(
                    "VolumeResized",
                    f"volume {volume.pool}/{volume.volume} grown {grow.old} -> {grow.new}",
                )
        return stopped

    def _create_volume(
        self, change: actions.Change, volume: actions.VolumeTarget, out: Outcome
    ) -> None:
        try:
            self.hv.create_volume(
                volume.pool,
                volume.volume,
                volume.size,
                backing=volume.image,
                backing_pool=volume.image_pool,
            )
        except errors.ExistsError:
            if not volume.created:
                # Someone else's file, out of sight when planned (a stopped pool, or made
                # since): never taken over. The name claimed for it is given back.
                out.released.append(
                    record.VolumeRecord(volume.pool, volume.volume, change.key, volume.disk)
                )
                raise errors.RefusedError(
                    f"volume {volume.pool}/{volume.volume} exists but was not created by this "
                    "installation, so it is never taken over; move it away, or name it with "
                    "volume: and pass --adopt to use it as it is"
                ) from None
            # Ours (the inventory says so): retained, one a killed earlier apply created, or
            # one that was out of sight in a stopped pool. Reuse it, grown if smaller.
            existing = self.hv.volume(volume.pool, volume.volume)
            if existing.capacity < volume.size:
                self.hv.grow_volume(volume.pool, volume.volume, volume.size)
            out.event(
                "VolumeReused",
                f"volume {volume.pool}/{volume.volume} exists and is reused "
                f"({fields.format_size(max(existing.capacity, volume.size))})",
            )
            return
        out.event(
            "VolumeCreated",
            f"volume {volume.pool}/{volume.volume} created ({fields.format_size(volume.size)})",
        )

    @staticmethod
    def _current_power(change: actions.Change) -> kinds.PowerState:
        power = change.field("powerState")
        if power is not None:
            return kinds.PowerState(power.old)
        if change.verb is Verb.CREATE or not isinstance(change.target, actions.VmTarget):
            return kinds.PowerState.STOPPED
        return change.target.power  # no powerState change planned: the VM is as declared

    def _power(
        self, change: actions.Change, target: actions.VmTarget, out: Outcome, *, stopped: bool
    ) -> None:
        name = change.key.name
        if stopped:  # shut down to recreate a volume: back to the declared power state
            if target.power is kinds.PowerState.STOPPED:
                out.step("stopped", "Stopped", f"{change.key} shut down")
            else:
                self.hv.start_domain(name, paused=target.power is kinds.PowerState.PAUSED)
                out.step("restarted", "Restarted", f"{change.key} restarted on its new volume")
            return
        current = self._current_power(change)
        if change.verb is Verb.CREATE:
            current = kinds.PowerState.STOPPED
        elif change.field("powerState") is None and change.field("restart") is None:
            return
        want = target.power
        if change.field("restart") is not None and current is not kinds.PowerState.STOPPED:
            self.hv.stop_domain(name, timeout=self.options.shutdown_timeout)
            self.hv.start_domain(name, paused=want is kinds.PowerState.PAUSED)
            out.step(
                "restarted", "Restarted", f"{change.key} restarted to apply its new configuration"
            )
            return
        if current is want:
            return
        if want is kinds.PowerState.STOPPED:
            graceful = self.hv.stop_domain(name, timeout=self.options.shutdown_timeout)
            how = (
                "shut down" if graceful else f"forced off after {self.options.shutdown_timeout:g}s"
            )
            out.step("stopped", "Stopped", f"{change.key} {how}")
        elif want is kinds.PowerState.PAUSED:
            if current is kinds.PowerState.STOPPED:
                self.hv.start_domain(name, paused=True)
            else:
                self.hv.suspend_domain(name)
            out.step("paused", "Paused", f"{change.key} paused")
        elif current is kinds.PowerState.PAUSED:
            self.hv.resume_domain(name)
            out.step("resumed", "Resumed", f"{change.key} resumed")
        else:
            self.hv.start_domain(name)
            out.step("started", "Started", f"{change.key} started")

    # --- deletion -------------------------------------------------------------

    def _delete(self, change: actions.Change, out: Outcome) -> None:
        name = change.key.name
        kind = kinds.Kind(change.key.kind)
        try:
            if kind is kinds.Kind.VIRTUAL_MACHINE:
                self.hv.undefine_domain(name)
            elif kind is kinds.Kind.NETWORK:
                self.hv.undefine_network(name)
            elif kind is kinds.Kind.STORAGE_POOL:
                self.hv.undefine_pool(name)
        except errors.NotFoundError:
            pass  # already gone: deletion is idempotent
        for volume in change.retained:
            mine = record.VolumeRecord(volume.pool, volume.volume, change.key, volume.disk)
            if volume.deletes:
                out.released.append(mine)
                try:
                    self.hv.delete_volume(volume.pool, volume.volume)
                except errors.NotFoundError:
                    continue
                out.event(
                    "VolumeDeleted",
                    f"volume {volume.pool}/{volume.volume} deleted (reclaimPolicy Delete)",
                )
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
    thread, so the workers never write the record or the journal.
    """
    pending = list(changes)
    planned = {c.key for c in pending}
    done: dict[record.ResourceKey, Outcome] = {}
    steps = _Steps(hv, options)
    with cf.ThreadPoolExecutor(max_workers=max(1, options.workers)) as pool:
        running: dict[cf.Future[Outcome], actions.Change] = {}
        while pending or running:
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
            if ready:
                on_start(ready)
                running.update({pool.submit(steps.run, change): change for change in ready})
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
