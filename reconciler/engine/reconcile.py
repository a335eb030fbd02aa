"""One reconcile pass: observe, plan, execute, record — under the writer lock.

``desired + record + observed -> plan -> execute -> record`` (SPEC §3). The
order of record writes is what makes a killed pass safe: the applied specs are
written *before* libvirt is touched (intent), events as each change ends, and
status last, computed from a fresh observation rather than from what this
pass believes it did — in a ``finally``, so a pass that breaks off mid-way
(the record or libvirt gone) still records status for what it did, unless it
was fenced. A pass killed anywhere leaves at worst a record whose
``observedGeneration`` lags its ``generation``, and objects that the next
pass recognises by name and ownership; its run row, left open, is closed as
``aborted`` by the next pass to take the lock.

Events and tombstones go through the audit journal
(:mod:`reconciler.engine.journal`): each change's intent is written before it
starts, its outcome as it ends, and both reach the record as soon as the
record answers — so actions done while the record is down, or by a pass that
is killed, are recorded by a later pass instead of lost.

A pass acts only while its leases hold (:mod:`reconciler.engine.fence`): the
executor sees libvirt through :class:`~reconciler.engine.fence.Guarded`, and
once the fence fails nothing further starts, the run is closed ``fenced`` if
the record still takes this pass's writes, and :class:`~reconciler.errors.Fenced`
propagates to the caller. Its open intents are closed by a later pass, with
what that pass observes.
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime as dt
import logging
import typing
from collections.abc import Callable, Sequence

from reconciler import errors
from reconciler.engine import decision, execute, journal, move, ports
from reconciler.engine import fence as fencing
from reconciler.engine import hosts as hosts_module
from reconciler.models import desired, kinds, naming, observed, record, selectors
from reconciler.planning import actions, fleet, placement, planner, scope, status

__all__ = ["Load", "Pass", "Reconciler", "Result", "pools_in_play"]

_log = logging.getLogger(__name__)

Load = Callable[[Sequence[record.ResourceRecord]], desired.DesiredState]
"""The desired state, from the record's resources (tombstoned ones included) as a pass reads
them: manifests are loaded against what the record holds (a VM's template, say)."""


@dataclasses.dataclass(frozen=True)
class Pass:
    """What a caller asks of one pass."""

    prune: bool = False
    allow_empty: bool = False
    adopt: bool = False
    dry_run: bool = False
    trigger: record.Trigger = record.Trigger.APPLY
    revision: str | None = None
    options: execute.Options = dataclasses.field(default_factory=execute.Options)
    selector: selectors.Selector | None = None  # only the resources whose labels match
    vms: frozenset[str] | None = None
    """A pass for these VMs alone (a libvirt event's, a new revision's): see :func:`narrow`."""
    revised: bool = False
    """With ``vms``: ``revision`` is new and left every other declared VM as the revision
    before it had it. A pass that holds to ``vms`` stamps their records with ``revision``,
    as a full pass would have, without planning them."""


@dataclasses.dataclass(frozen=True)
class Result:
    plan: actions.Plan
    outcomes: tuple[execute.Outcome, ...] = ()
    run_id: record.RunId | None = None
    interrupted: bool = False  # stopped early (Ctrl-C): changes left unstarted

    @property
    def ok(self) -> bool:
        return all(o.ok for o in self.outcomes) and not self.plan.not_found

    @property
    def failed(self) -> list[execute.Outcome]:
        return [o for o in self.outcomes if not o.ok]


def pools_in_play(
    state: desired.DesiredState, records: Sequence[record.ResourceRecord]
) -> frozenset[str]:
    """The pools whose volumes a pass must see fresh: declared, recorded, or used by a VM.

    Observation rescans only these (see ``Hypervisor.observe``): a rescan stops a
    pool whose directory is gone, and a pool that neither the manifests nor the
    record involve is someone else's, never to be touched.
    """
    return _pool_names(state, records, declared=True)


def pools_of_vms(
    state: desired.DesiredState, records: Sequence[record.ResourceRecord]
) -> frozenset[str]:
    """The pools the VMs of ``state`` and ``records`` keep volumes in, by libvirt name.

    All the volumes a pass for those VMs alone reads: with 5,000 VMs a shared
    pool holds thousands of volumes, and listing them all for one VM's event
    made its pass as costly as the fleet.
    """
    return _pool_names(state, records, declared=False)


def _pool_names(
    state: desired.DesiredState, records: Sequence[record.ResourceRecord], *, declared: bool
) -> frozenset[str]:
    pool = kinds.Kind.STORAGE_POOL.value
    live = [r for r in records if r.deleted_at is None]
    # Pools are rescanned by their libvirt names, which their annotations may give.
    libvirt = {
        r.key.name: naming.libvirt_name(r.key.name, r.annotations)
        for r in live
        if r.key.kind == pool
    }
    for name, loaded in state.pools.items():
        libvirt[name] = naming.libvirt_name(name, loaded.manifest.metadata.annotations)
    names = set(state.pools) if declared else set()
    for vm in state.effective_vms.values():
        for disk in vm.disks:
            names.add(disk.pool)
            if disk.image_source is not None:
                names.add(disk.image_source)
        names.update(c.pool for c in vm.cdroms or ())
        if vm.first_boot is not None and vm.first_boot.pool is not None:
            names.add(vm.first_boot.pool)
    if state.virtio_win is not None and "/" in state.virtio_win:
        names.add(state.virtio_win.split("/", 1)[0])
    for rec in live:
        if rec.key.kind == pool and declared:
            names.add(rec.key.name)
        elif rec.key.kind == kinds.Kind.VIRTUAL_MACHINE.value:
            effective = rec.spec.get("effective", {})
            for disk in effective.get("disks", []):
                names.update(p for p in (disk.get("pool"), disk.get("image_pool")) if p)
            for cdrom in effective.get("cdroms") or []:
                if isinstance(cdrom, dict) and cdrom.get("pool"):
                    names.add(cdrom["pool"])
            first_boot = effective.get("first_boot")
            if isinstance(first_boot, dict) and first_boot.get("pool"):
                names.add(first_boot["pool"])
    return frozenset(libvirt.get(name, name) for name in names)


@dataclasses.dataclass(frozen=True)
class Narrowed:
    """What a pass for a few VMs reads: those VMs, and every other kind whole."""

    vms: frozenset[str]
    state: desired.DesiredState
    records: Sequence[record.ResourceRecord]
    domains: frozenset[str]  # the libvirt names of the VMs, declared or recorded
    templates: frozenset[str] = frozenset()  # those whose every declared VM is in the pass

    def holds(self, plan: actions.Plan) -> bool:
        """Whether ``plan`` acts on these VMs alone; else the pass must be a full one.

        Besides the VMs' own changes and writes, it may change a template all of
        whose VMs are in the pass (a new revision changed it, and them with it),
        and write the provenance of any other resource whose spec it leaves as
        it is (the new revision's name, on a pool the revision did not change).
        """
        hashes = {r.key: r.spec_hash for r in self.records if r.deleted_at is None}
        return all(self._owns(c.key) for c in plan.changes) and all(
            self._owns(w.key) or hashes.get(w.key) == w.spec_hash for w in plan.spec_writes
        )

    def _owns(self, key: record.ResourceKey) -> bool:
        if key.kind == kinds.Kind.VIRTUAL_MACHINE.value:
            return key.name in self.vms
        return key.kind == kinds.Kind.TEMPLATE.value and key.name in self.templates


def narrow(
    state: desired.DesiredState, records: Sequence[record.ResourceRecord], vms: frozenset[str]
) -> Narrowed:
    """The desired state and record of a pass for ``vms`` alone (issue: per-resource passes).

    Every other VM is left out of both, so it is neither observed, planned nor
    written; pools, networks, templates, policies and departments stay whole,
    so that the VMs' references resolve as in a full pass. Such a pass is
    only right where it acts on these VMs alone: :meth:`Narrowed.holds` tells,
    and where it does not (a network the VM needs has gone too, say) the pass
    plans everything instead. Its plan for a VM is the full pass's for that
    VM: the planner plans each VM from its own manifest, record and domain.
    """
    vm = kinds.Kind.VIRTUAL_MACHINE.value
    kept = [r for r in records if r.key.kind != vm or r.key.name in vms]
    names = {
        naming.libvirt_name(r.key.name, r.annotations)
        for r in kept
        if r.key.kind == vm and r.deleted_at is None
    }
    names.update(
        naming.libvirt_name(name, loaded.manifest.metadata.annotations)
        for name, loaded in state.vms.items()
        if name in vms
    )
    narrowed = dataclasses.replace(
        state,
        vms={n: v for n, v in state.vms.items() if n in vms},
        effective_vms={n: v for n, v in state.effective_vms.items() if n in vms},
    )
    outside = {
        loaded.manifest.spec.template
        for name, loaded in state.vms.items()
        if name not in vms and isinstance(loaded.manifest, kinds.VirtualMachine)
    }
    templates = frozenset(state.templates) - outside
    return Narrowed(vms, narrowed, kept, frozenset(names), templates)


class Reconciler:
    """Binds a record and a hypervisor; stateless between passes.

    ``clock`` stamps the status a pass writes (the conditions' transition
    times); the wall clock unless a test pins it.
    """

    def __init__(
        self,
        store: ports.Store,
        hv: ports.Hypervisor,
        *,
        clock: Callable[[], dt.datetime] | None = None,
        hosts: hosts_module.Hosts | None = None,
        strategy: placement.Strategy = placement.Strategy.SPREAD,
        shard: Callable[[], frozenset[str] | None] | None = None,
        holder: str | None = None,
    ) -> None:
        self.store = store
        self.hv = hv
        self.clock = clock
        # The declared hosts' connections (SPEC §10); the caller's, kept across passes.
        self.hosts = hosts if hosts is not None else hosts_module.Hosts(hv)
        self.strategy = strategy
        # A sharded daemon's hosts, as its pass holds them (SPEC §10); None: every host.
        self.shard = shard if shard is not None else lambda: None
        self.holder = holder  # who runs this pass, for the hosts' status (a daemon)

    def plan(
        self, state: desired.DesiredState, *, prune: bool = False, adopt: bool = False
    ) -> actions.Plan:
        records = self.store.resources(include_deleted=True)
        return self._survey(state, records, prune=prune, adopt=adopt).plan

    def preview(
        self,
        load: Load,
        *,
        prune: bool = False,
        adopt: bool = False,
        selector: selectors.Selector | None = None,
        seen: Callable[
            [desired.DesiredState, Sequence[record.ResourceRecord], observed.World], None
        ] = lambda _s, _r, _w: None,
    ) -> actions.Plan:
        """Plan what ``load(records)`` declares, reading the record once; nothing is written.

        Without the writer lock: a plan is a read, and may be stale by the time
        it is read. ``apply`` plans again under the lock.
        """
        records = self.store.resources(include_deleted=True)
        state = load(records)
        return self._survey(
            state, records, prune=prune, adopt=adopt, selector=selector, seen=seen
        ).plan

    def _survey(
        self,
        state: desired.DesiredState,
        records: Sequence[record.ResourceRecord],
        *,
        prune: bool,
        adopt: bool,
        selector: selectors.Selector | None = None,
        seen: Callable[
            [desired.DesiredState, Sequence[record.ResourceRecord], observed.World], None
        ] = lambda _s, _r, _w: None,
    ) -> _Survey:
        """Observe and plan everything ``state`` declares: on one host, or on each declared."""
        if not state.hosts:
            world = self.hv.observe(refresh=pools_in_play(state, records))
            seen(state, records, world)
            plan = self._plan(state, records, world, prune=prune, adopt=adopt, selector=selector)
            return _Survey(plan, world)
        found = self.hosts.observe(state, refresh=pools_in_play(state, records))
        part = fleet.split(state, records, found, self.strategy, self.shard())
        world = fleet.joined(part)
        seen(state, records, world)
        installation = self.store.installation_id()
        volumes = self.store.volumes()
        plans = [
            (
                piece.host,
                planner.plan(
                    piece.state,
                    piece.records,
                    piece.world,
                    installation=installation,
                    volumes=volumes,
                    prune=prune,
                    adopt=adopt,
                ),
            )
            for piece in part.slices
        ]
        for piece, gone, owned in fleet.leftovers(part, records):
            emptied = planner.plan_deletions(
                gone, owned, piece.world, installation=installation, volumes=volumes
            )
            plans.append(
                (
                    piece.host,
                    dataclasses.replace(
                        emptied,
                        changes=tuple(
                            dataclasses.replace(c, local=True)
                            for c in emptied.changes
                            if c.verb is actions.Verb.DELETE
                        ),
                        not_found=(),
                    ),
                )
            )
        plan = fleet.merge(plans, part)
        if plan.errors:
            raise errors.ManifestError(list(plan.errors))
        return _Survey(scope.restrict(plan, state, records, selector), world, part)

    def _plan(
        self,
        state: desired.DesiredState,
        records: Sequence[record.ResourceRecord],
        world: observed.World,
        *,
        prune: bool,
        adopt: bool,
        selector: selectors.Selector | None = None,
    ) -> actions.Plan:
        result = planner.plan(
            state,
            records,
            world,
            installation=self.store.installation_id(),
            volumes=self.store.volumes(),
            prune=prune,
            adopt=adopt,
        )
        if result.errors:
            raise errors.ManifestError(list(result.errors))
        return scope.restrict(result, state, records, selector)

    def apply(
        self,
        load: Load,
        request: Pass,
        on_outcome: Callable[[execute.Outcome], None] = lambda _o: None,
        on_plan: Callable[[actions.Plan], None] = lambda _p: None,
        seen: Callable[
            [desired.DesiredState, Sequence[record.ResourceRecord], observed.World], None
        ] = lambda _s, _r, _w: None,
        on_start: Callable[[list[actions.Change]], None] = lambda _c: None,
    ) -> Result:
        """Converge on what ``load(records)`` declares.

        The record is read once, under the writer lock, and that one reading
        both loads the manifests and plans: no other writer can change the
        record between the two. A caller that has its desired state already
        (the daemon) passes ``lambda _records: state``. ``seen`` is shown what
        the pass read before anything is planned; whatever it raises stops the
        pass with nothing done (a saved plan checks that its world is still the
        same).
        """
        with self.store.writer_lock():
            narrowing = request.vms is not None and request.selector is None
            # A pass for a few VMs reads those of the fleet's records alone; ``load``
            # is given the same reading (the daemon's ignores it), and a pass that
            # widens reads the whole record again.
            records = self.store.resources(
                include_deleted=True, vms=request.vms if narrowing else None
            )
            state = load(records)
            split: fleet.Split | None = None
            if request.prune and len(state) == 0 and not request.allow_empty:
                raise errors.RefusedError(
                    "the desired state is empty and --prune would delete every owned object; "
                    "pass --allow-empty if that is really intended"
                )
            narrowed = self._narrowed(state, records, request)
            carried: list[record.ResourceKey] = []
            if narrowed is not None:
                if request.revised and request.vms is not None:
                    carried = [
                        record.ResourceKey(_VM, n) for n in sorted(set(state.vms) - request.vms)
                    ]
                state, plan, world = narrowed
            else:
                if narrowing:
                    records = self.store.resources(include_deleted=True)
                    state = load(records)
                request = dataclasses.replace(request, vms=None)
                survey = self._survey(
                    state,
                    records,
                    prune=request.prune,
                    adopt=request.adopt,
                    selector=request.selector,
                    seen=seen,
                )
                plan, world, split = survey.plan, survey.world, survey.split
            on_plan(plan)
            if request.dry_run:
                return Result(plan)
            return self._execute(
                state, plan, world, request, on_outcome, on_start, carried, split=split
            )

    def _narrowed(
        self, state: desired.DesiredState, records: Sequence[record.ResourceRecord], request: Pass
    ) -> tuple[desired.DesiredState, actions.Plan, observed.World] | None:
        """The plan of a pass for ``request.vms`` alone, if it acts on nothing else."""
        if request.vms is None or request.selector is not None or state.hosts:
            return None  # a pass over several hosts is a whole one (for now)
        part = narrow(state, records, request.vms)
        world = self._observe_narrowed(part)
        plan = self._plan(part.state, part.records, world, prune=request.prune, adopt=request.adopt)
        if not part.holds(plan):
            _log.debug("a pass for %s acts on more: planning everything", sorted(request.vms))
            return None
        return part.state, plan, world

    def _observe_narrowed(self, part: Narrowed) -> observed.World:
        """What a pass for ``part.vms`` reads: their domains and the volumes of their pools."""
        used = pools_of_vms(part.state, part.records)
        return self.hv.observe(
            refresh=pools_in_play(part.state, part.records) & used,
            domains=part.domains,
            volumes=used,
        )

    def delete(
        self,
        keys: list[record.ResourceKey],
        request: Pass,
        on_outcome: Callable[[execute.Outcome], None] = lambda _o: None,
        on_start: Callable[[list[actions.Change]], None] = lambda _c: None,
        on_plan: Callable[[actions.Plan], None] = lambda _p: None,
    ) -> Result:
        """Delete ``keys``, the whole deletion planned (and shown ``on_plan``) first."""
        with self.store.writer_lock():
            records = self.store.resources(include_deleted=True)
            world = self.hv.observe(refresh=pools_in_play(desired.DesiredState(), records))
            plan = planner.plan_deletions(
                keys,
                records,
                world,
                installation=self.store.installation_id(),
                volumes=self.store.volumes(),
                adopt=request.adopt,
                allow_data_loss=request.options.allow_data_loss,
            )
            if request.dry_run or plan.empty:  # nothing at all to do: no run, no event
                return Result(plan)
            on_plan(plan)
            return self._execute(desired.DesiredState(), plan, world, request, on_outcome, on_start)

    def _execute(
        self,
        state: desired.DesiredState,
        plan: actions.Plan,
        world: observed.World,
        request: Pass,
        on_outcome: Callable[[execute.Outcome], None],
        on_start: Callable[[list[actions.Change]], None] = lambda _c: None,
        carried: Sequence[record.ResourceKey] = (),
        *,
        split: fleet.Split | None = None,
    ) -> Result:
        """Carry out ``plan``; ``carried``: the records to stamp with ``request.revision``.

        Over several hosts (``split``), each host's changes run against its own
        connection, host after host; a host that fails fails only its changes.
        """
        aborted = self.store.abort_unfinished_runs()  # left by a pass that died under the lock
        audit = journal.Journal.of(self.store.installation_id())
        audit.close_interrupted(plan, world)  # intents of a pass that was killed
        audit.flush(self.store, force=True)  # and what a record outage kept from the record
        # A pass killed on another host (a daemon's leader) left its intents in the record only.
        audit.close_unrecorded(self.store.events_of_runs(aborted), plan, world)
        audit.flush(self.store, force=True)
        narrowed_to = None
        if request.vms is not None:
            narrowed_to = [record.ResourceKey(_VM, name) for name in sorted(request.vms)]
        run_id = self.store.start_run(request.trigger, request.revision, narrowed_to)
        fence = self.store.fence()
        final = "failed"
        outcomes: list[execute.Outcome] = []
        interrupted = True  # until the plan ran to its end
        try:
            self.store.apply_specs(
                [dataclasses.replace(w, run_id=run_id) for w in plan.spec_writes]
            )
            if carried:
                self.store.stamp_revision(carried, request.revision)
            self.store.claim_volumes(plan.volume_claims)

            def starting(changes: list[actions.Change]) -> None:
                audit.begin(changes, run_id, request.revision)
                audit.flush(self.store)
                on_start(changes)

            def finished(outcome: execute.Outcome) -> None:
                deleted = (
                    outcome.ok
                    and outcome.change.verb is actions.Verb.DELETE
                    and not outcome.change.local
                )
                audit.finish(
                    outcome.change.key,
                    [
                        dataclasses.replace(e, run_id=run_id, revision=request.revision)
                        for e in outcome.events
                    ],
                    [outcome.change.key] if deleted else [],
                )
                audit.flush(self.store)
                # Through an outage a row outlives its volume; all it does is keep the
                # name reserved for the VM that had it.
                with contextlib.suppress(errors.StoreError):
                    self.store.release_volumes(outcome.released)
                outcomes.append(outcome)
                on_outcome(outcome)

            groups = self._by_host(state, plan, split)
            if any(c.move_from for c in plan.changes):
                self._run_moving(state, groups, request.options, fence, finished, starting)
            else:
                for hv, changes in groups:
                    execute.execute(
                        fencing.Guarded(hv, fence), changes, request.options, finished, starting
                    )
            audit.flush(self.store, force=True)
            interrupted = False
        except errors.Fenced:
            final = "fenced"
            raise
        finally:
            # Status for what this pass did, also when it broke off mid-way; never by a
            # pass that lost its lease, and never masking the error that broke it off.
            status_error: errors.InfinibayError | None = None
            if final != "fenced":
                try:
                    self._write_status(state, outcomes, request.vms, split=split)
                except errors.Fenced as exc:
                    final, status_error = "fenced", exc
                except errors.InfinibayError as exc:
                    status_error = exc
                if not interrupted and status_error is None:
                    final = "succeeded" if all(o.ok for o in outcomes) else "failed"
                    if request.options.interrupt.is_set() and len(outcomes) < len(plan.changes):
                        final = "interrupted"  # Ctrl-C: the rest never started
                if interrupted and status_error is not None:
                    _log.warning("status not written: %s", status_error, extra={"run_id": run_id})
                    status_error = None
            counts = plan.counts()
            counts["failed"] = sum(1 for o in outcomes if not o.ok)
            self._finish_run(run_id, counts, final)
            if status_error is not None:
                raise status_error
        return Result(plan, tuple(outcomes), run_id, interrupted=final == "interrupted")

    def _by_host(
        self, state: desired.DesiredState, plan: actions.Plan, split: fleet.Split | None
    ) -> list[tuple[ports.Hypervisor, list[actions.Change]]]:
        """The plan's changes grouped by the connection they run on, in plan order."""
        if split is None:
            return [(self.hv, list(plan.changes))]
        uris = self.hosts.of(state)
        groups: dict[str, list[actions.Change]] = {}
        first = split.slices[0].host if split.slices else ""
        for change in plan.changes:
            groups.setdefault(change.host or first, []).append(change)
        result = []
        for host, changes in groups.items():
            try:
                hv: ports.Hypervisor = self.hosts.hypervisor(uris[host]) if host else self.hv
            except errors.HypervisorError as exc:
                note = f"host {host} unreachable: {exc}"
                hv = self.hv
                changes = [
                    dataclasses.replace(c, verb=actions.Verb.UNKNOWN, note=note) for c in changes
                ]
            result.append((hv, changes))
        return result

    def _run_moving(
        self,
        state: desired.DesiredState,
        groups: list[tuple[ports.Hypervisor, list[actions.Change]]],
        options: execute.Options,
        fence: ports.Fence,
        finished: Callable[[execute.Outcome], None],
        starting: Callable[[list[actions.Change]], None],
    ) -> None:
        """Carry out a plan with cold moves (:mod:`reconciler.engine.move`), in three rounds.

        First every host's pools, networks and policies, so that a moved VM's pools
        exist on its target; then the moves' copies, host to host; then everything
        else. A move whose copy failed is not created on the target; one whose
        create succeeded is removed from its source.
        """
        uris = self.hosts.of(state)

        def first(change: actions.Change) -> bool:
            return change.key.kind != _VM and change.verb is not actions.Verb.DELETE

        for hv, changes in groups:
            execute.execute(
                fencing.Guarded(hv, fence),
                [c for c in changes if first(c)],
                options,
                finished,
                starting,
            )
        moved: set[record.ResourceKey] = set()  # the moves done to their end, source released
        probes = move.Probes()
        copied: dict[
            record.ResourceKey, tuple[ports.Hypervisor, execute.Outcome, frozenset[str]]
        ] = {}
        for _hv, changes in groups:
            for change in changes:
                if not change.move_from or options.interrupt.is_set():
                    continue
                if change.move_live:
                    if self._migrate(change, uris, fence, probes, finished, starting):
                        moved.add(change.key)
                    continue
                outcome = execute.Outcome(change)
                try:
                    source = self.hosts.hypervisor(uris[change.move_from])
                    target = self.hosts.hypervisor(uris[change.host])
                    shared = move.copy(
                        fencing.Guarded(source, fence),
                        fencing.Guarded(target, fence),
                        change,
                        options,
                        outcome,
                        probes,
                    )
                except errors.Fenced:
                    raise
                except errors.InfinibayError as exc:
                    _move_failed(outcome, exc, "not moved")
                    starting([change])
                    finished(outcome)
                    continue
                copied[change.key] = (source, outcome, shared)

        def done(outcome: execute.Outcome) -> None:
            found = copied.get(outcome.change.key)
            if found is not None:
                source, copy_outcome, shared = found
                outcome.events[:0] = copy_outcome.events
                if outcome.ok:
                    try:
                        move.release(
                            fencing.Guarded(source, fence), outcome.change, outcome, shared
                        )
                        moved.add(outcome.change.key)
                    except errors.HypervisorError as exc:
                        outcome.event(
                            "MoveIncomplete",
                            f"created on {outcome.change.host}, but not removed from "
                            f"{outcome.change.move_from}: {exc}",
                            warning=True,
                        )
            finished(outcome)

        for hv, changes in groups:
            rest = [
                c
                for c in changes
                if not first(c) and not c.local and (not c.move_from or c.key in copied)
            ]
            execute.execute(fencing.Guarded(hv, fence), rest, options, done, starting)
        # A drained host's pools and networks, once it is empty: not while a VM whose
        # move failed still has its volumes there.
        stuck = {
            c.move_from
            for _hv, changes in groups
            for c in changes
            if c.move_from and c.key not in moved
        }
        for hv, changes in groups:
            local = [c for c in changes if c.local and c.host not in stuck]
            execute.execute(fencing.Guarded(hv, fence), local, options, finished, starting)

    def _migrate(
        self,
        change: actions.Change,
        uris: dict[str, str],
        fence: ports.Fence,
        probes: move.Probes,
        finished: Callable[[execute.Outcome], None],
        starting: Callable[[list[actions.Change]], None],
    ) -> bool:
        """A live move: the whole change, for the domain is defined and running on the target."""
        outcome = execute.Outcome(change)
        starting([change])
        try:
            move.migrate(
                fencing.Guarded(self.hosts.hypervisor(uris[change.move_from]), fence),
                fencing.Guarded(self.hosts.hypervisor(uris[change.host]), fence),
                change,
                uris[change.host],
                outcome,
                probes,
            )
        except errors.Fenced:
            raise
        except errors.InfinibayError as exc:
            _move_failed(outcome, exc, "not migrated")
        finished(outcome)
        return outcome.ok

    def _finish_run(self, run_id: record.RunId, counts: dict[str, int], final: str) -> None:
        try:
            self.store.finish_run(run_id, counts, final)
        except errors.Fenced:
            if final != "fenced":
                raise
            # Taken over already: the new holder closes this run as aborted.

    def _write_status(
        self,
        state: desired.DesiredState,
        outcomes: list[execute.Outcome],
        vms: frozenset[str] | None = None,
        *,
        split: fleet.Split | None = None,
    ) -> None:
        """Write every resource's status; of ``vms`` alone after a pass for those VMs."""
        if split is not None or state.hosts:
            self._write_fleet_status(state, outcomes)
            return
        records = self.store.resources(vms=vms)
        if vms is not None:
            part = narrow(state, records, vms)
            state, records = part.state, list(part.records)
            world = self._observe_narrowed(part)
        else:
            world = self.hv.observe(refresh=pools_in_play(state, records))
        after = planner.plan(
            state,
            records,
            world,
            installation=self.store.installation_id(),
            volumes=self.store.volumes(),
        )
        failures = {o.change.key: o.error for o in outcomes if not o.ok}
        verdicts = {o.change.key: v for o in outcomes if (v := _verdict(o)) is not None}
        try:
            found = self.hv.guest_addresses(world)
        except errors.HypervisorError as exc:
            # Addresses are reported, never acted on: a status without them beats none.
            _log.warning("guest addresses not read: %s", exc)
            found = {}
        held = scope.suspended_keys(state, records)  # a suspended resource's status stays
        self.store.write_status(
            [
                write
                for write in status.compute(
                    state,
                    records,
                    world,
                    after,
                    failures,
                    addresses=found,
                    verdicts=verdicts,
                    now=self.clock() if self.clock is not None else None,
                )
                if write.key not in held
                and (vms is None or (write.key.kind == _VM and write.key.name in vms))
            ]
        )

    def _write_fleet_status(
        self, state: desired.DesiredState, outcomes: list[execute.Outcome]
    ) -> None:
        """Status over several hosts: each host's resources from its own fresh observation."""
        records = self.store.resources()
        found = self.hosts.observe(state, refresh=pools_in_play(state, records))
        part = fleet.split(state, records, found, self.strategy, self.shard())
        installation = self.store.installation_id()
        volumes = self.store.volumes()
        failures = {o.change.key: o.error for o in outcomes if not o.ok}
        verdicts = {o.change.key: v for o in outcomes if (v := _verdict(o)) is not None}
        now = self.clock() if self.clock is not None else None
        held = scope.suspended_keys(state, records)
        writes: dict[record.ResourceKey, record.StatusWrite] = {}
        for piece in part.slices:
            after = planner.plan(
                piece.state, piece.records, piece.world, installation=installation, volumes=volumes
            )
            try:
                hv = self.hosts.hypervisor(self.hosts.of(state)[piece.host])
                addresses = hv.guest_addresses(piece.world)
            except errors.HypervisorError as exc:
                _log.warning("guest addresses on %s not read: %s", piece.host, exc)
                addresses = {}
            for write in status.compute(
                piece.state,
                piece.records,
                piece.world,
                after,
                failures,
                addresses=addresses,
                verdicts=verdicts,
                now=now,
            ):
                if write.key.kind == _HOST_KIND and not part.acts_on(write.key.name):
                    continue  # another sharded daemon's host: it reports it
                if write.key.kind == _VM:
                    write = record.StatusWrite(write.key, {**write.status, "host": piece.host})
                elif write.key in writes:
                    continue  # a pool or network on several hosts: the first host's status
                writes[write.key] = write
        # Where each pool and network is now: a host new to one creates it, not drift.
        annotations = {r.key: r.annotations for r in records}
        for key, write in list(writes.items()):
            if key.kind not in (_POOL_KIND, _NETWORK_KIND):
                continue
            libvirt = naming.libvirt_name(key.name, annotations.get(key, {}))
            objects = {
                h.name: found_object
                for h in found
                if h.world is not None
                and part.acts_on(h.name)
                and (
                    found_object := (
                        h.world.pools if key.kind == _POOL_KIND else h.world.networks
                    ).get(libvirt)
                )
                is not None
            }
            # An unreachable host's object keeps the UUID the record had for it, and so
            # does another sharded daemon's host.
            before = next((r.status for r in records if r.key == key), {})
            kept = before.get("uuids")
            unseen = {h.name for h in found if h.world is None or not part.acts_on(h.name)}
            elsewhere = [
                h for h in before.get("hosts", []) if isinstance(h, str) and not part.acts_on(h)
            ]
            uuids = {
                **{
                    h: u for h, u in (kept if isinstance(kept, dict) else {}).items() if h in unseen
                },
                **{host: o.uuid for host, o in sorted(objects.items())},
            }
            writes[key] = record.StatusWrite(
                key, {**write.status, "hosts": sorted({*objects, *elsewhere}), "uuids": uuids}
            )
        stamp = (now or dt.datetime.now(dt.UTC)).isoformat(timespec="seconds")
        for write in [
            *fleet.stranded_status(part, records, stamp),
            *fleet.host_status(part, state, holder=self.holder),
        ]:
            writes[write.key] = write
        self.store.write_status([w for w in writes.values() if w.key not in held])


@dataclasses.dataclass(frozen=True)
class _Survey:
    """What a pass saw and planned; ``split`` over several hosts, ``None`` on one."""

    plan: actions.Plan
    world: observed.World
    split: fleet.Split | None = None


_VM = kinds.Kind.VIRTUAL_MACHINE.value
_POOL_KIND = kinds.Kind.STORAGE_POOL.value
_NETWORK_KIND = kinds.Kind.NETWORK.value
_HOST_KIND = kinds.Kind.HOST.value


def _move_failed(outcome: execute.Outcome, exc: errors.InfinibayError, what: str) -> None:
    outcome.ok, outcome.error, outcome.failure = False, str(exc), exc
    outcome.event("MoveFailed", f"{what}: {exc}", warning=True)


def _verdict(outcome: execute.Outcome) -> status.Verdict | None:
    """The decision about ``outcome`` as the status conditions carry it."""
    match decision.decide(outcome):
        case decision.Done():
            return None
        case decision.Terminal(reason, message):
            return status.Verdict(True, reason, message)
        case (
            decision.Transient(reason, message)
            | decision.Waiting(reason, message)
            | decision.Requeue(_, reason, message)
        ):
            return status.Verdict(False, reason, message)
        case unexpected:
            typing.assert_never(unexpected)
