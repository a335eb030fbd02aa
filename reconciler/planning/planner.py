"""The planner: ``plan(desired, records, world) -> Plan``, pure and deterministic.

For each resource it compares the desired *shape* with the observed one (see
:mod:`reconciler.models.observed`) and emits at most one :class:`Change` with
field diffs, their impacts, and the typed intents the executor carries out.
Each kind is planned by its handler (:mod:`reconciler.planning.handlers`); the
bookkeeping they share is :class:`~reconciler.planning.context.Context`. A
difference is *drift* when the record says the resource had converged on this
very spec (same hash, observed generation equal to generation): the spec did
not move, so the world did. Ownership decides what may be touched: domains and
networks carry our installation id in their metadata; pools, templates and
volumes are owned through the record. ``--adopt`` takes over unmanaged objects
only: one carrying another installation's id is a conflict whatever the flags
(SPEC §2).

Creates and updates are ordered pools, networks, templates, VMs; deletions
come after, in reverse. Dependencies (a VM on its pools and networks) are
explicit on each change so the executor can fail exactly the dependents.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

from reconciler.models import catalog, desired, kinds, observed, record
from reconciler.planning import actions, context, handlers
from reconciler.planning.handlers import vm as vm_handler

__all__ = ["converged", "plan", "plan_deletions"]

converged = context.converged


class _Deletions:
    """Deleting resources: VMs first; never what we do not own or what a remaining VM uses."""

    def __init__(self, ctx: context.Context) -> None:
        self.ctx = ctx
        self._specs: dict[kinds.Kind, dict[str, dict[str, Any]]] = {}

    def not_ours(self, key: record.ResourceKey) -> str:
        """Why deleting ``key`` is refused for ownership, or "" when it may go."""
        handler = handlers.handler(kinds.Kind(key.kind))
        ours, foreign = handler.ownership(self.ctx, key)
        if foreign is not None:
            return (
                f"not owned: the libvirt {handler.what} {self.ctx.libvirt(key)!r} belongs to "
                f"another installation ({foreign.installation}) and is never deleted, not even "
                "with --adopt"
            )
        if not ours and not self.ctx.adopt:
            return (
                f"not owned: the libvirt {handler.what} {self.ctx.libvirt(key)!r} was not made by "
                "this installation; pass --adopt to delete it anyway"
            )
        return ""

    def users(self, kind: kinds.Kind, name: str) -> tuple[set[str], set[str]]:
        """VMs that will use ``kind/name`` (desired), and others using it now.

        "Now" is libvirt's domains and the record's live VMs; a template leaves no
        trace in libvirt, so for a template only the record says who uses it now.
        """
        uses = handlers.handler(kind).used_by
        ctx = self.ctx
        will = {
            vm.name
            for vm in ctx.state.effective_vms.values()
            if uses(
                name,
                handlers.Uses.of(
                    vm.template,
                    (n.network for n in vm.nics),
                    (d.pool for d in vm.disks),
                    vm.department,
                    self.policies_of(vm.department),
                ),
            )
        }
        network, pool = kinds.Kind.NETWORK, kinds.Kind.STORAGE_POOL
        now = {
            ctx.resource(kinds.Kind.VIRTUAL_MACHINE, d.name)
            for d in ctx.world.domains.values()
            if uses(
                name,
                handlers.Uses.of(
                    None,
                    (ctx.resource(network, n.network) for n in d.shape.nics),
                    (ctx.resource(pool, x.pool) for x in d.shape.disks),
                ),
            )
        }
        for key, rec in ctx.records.items():
            spec = rec.spec.get("effective", {})
            if (
                key.kind == kinds.Kind.VIRTUAL_MACHINE.value
                and rec.deleted_at is None
                and uses(
                    name,
                    handlers.Uses.of(
                        spec.get("template"),
                        (n["network"] for n in spec.get("nics", [])),
                        (d["pool"] for d in spec.get("disks", [])),
                        spec.get("department"),
                        self.policies_of(spec.get("department")),
                    ),
                )
            ):
                now.add(key.name)
        return will, now - will

    def policies_of(self, department: str | None) -> set[str]:
        """The policy ``department`` applies and every policy it extends, transitively."""
        specs = self.specs(kinds.Kind.DEPARTMENT)
        found: set[str] = set()
        todo = [specs.get(department or "", {}).get("firewall")]
        policies = self.specs(kinds.Kind.FIREWALL_POLICY)
        while todo:
            name = todo.pop()
            if name and name not in found:
                found.add(name)
                todo += policies.get(name, {}).get("extends", [])
        return found

    def specs(self, kind: kinds.Kind) -> dict[str, dict[str, Any]]:
        """The ``spec`` of every resource of ``kind``: the record's, then the manifests'.

        Read once per plan: users and referrers ask for every key and every VM.
        """
        cached = self._specs.get(kind)
        if cached is not None:
            return cached
        found = {
            key.name: rec.spec.get("spec", {})
            for key, rec in self.ctx.records.items()
            if key.kind == kind.value and rec.deleted_at is None
        }
        for name, loaded in self.ctx.state.by_kind(kind).items():
            found[name] = loaded.manifest.model_dump(mode="json")["spec"]
        self._specs[kind] = found
        return found

    def referrers(self, key: record.ResourceKey, leaving: set[record.ResourceKey]) -> set[str]:
        """Departments and policies (not deleted with it) that name ``key``, as kind/name."""
        found: set[str] = set()
        for kind, field in (
            (kinds.Kind.DEPARTMENT, "network"),
            (kinds.Kind.DEPARTMENT, "firewall"),
            (kinds.Kind.FIREWALL_POLICY, "extends"),
        ):
            target = kinds.Kind.NETWORK if field == "network" else kinds.Kind.FIREWALL_POLICY
            if key.kind != target.value:
                continue
            for name, spec in self.specs(kind).items():
                named = spec.get(field)
                names = named if isinstance(named, list) else [named]
                if key.name in names and context.key_of(kind, name) not in leaving:
                    found.add(f"{catalog.short(kind)}/{name}")
        return found

    def plan(self, keys: Iterable[record.ResourceKey], *, allow_data_loss: bool) -> None:
        """Plan the deletion of ``keys``, every refusal decided here, before anything runs.

        What a refused VM uses (its template, pools, networks) is refused with it as
        still in use. A VM's volumes go with it when its disks declare
        ``reclaimPolicy: Delete`` (that is the consent, ``allow_data_loss`` is not
        needed); a deletion never destroys any other data. A VM that runs (or is
        paused) is shut down first (a :class:`~actions.Power` intent to Stopped).
        """
        del allow_data_loss  # a deletion destroys only what reclaimPolicy Delete consented to
        ctx = self.ctx
        vm_kind = kinds.Kind.VIRTUAL_MACHINE.value
        ordered = sorted(keys, key=lambda k: (-handlers.ORDER.index(kinds.Kind(k.kind)), k.name))
        conflicts = {k: note for k in ordered if (note := self.not_ours(k))}
        retained = {k: vm_handler.recorded_volumes(ctx, k) for k in ordered if k.kind == vm_kind}
        staying_vms = {k for k in ordered if ctx.protected(k)} | conflicts.keys()
        leaving = {k.name for k in ordered if k.kind == vm_kind} - {
            k.name for k in staying_vms if k.kind == vm_kind
        }
        for key in ordered:
            if key in conflicts:
                ctx.changes.append(
                    actions.Change(
                        key=key,
                        verb=actions.Verb.CONFLICT,
                        note=conflicts[key],
                        libvirt_name=ctx.libvirt_names.get(key, ""),
                    )
                )
                continue
            domain = ctx.world.domains.get(ctx.libvirt(key)) if key.kind == vm_kind else None
            will, now = self.users(kinds.Kind(key.kind), key.name)
            first = {n for n in now if n in leaving or n in ctx.state.vms}  # must let go first
            staying = {f"virtualmachine/{n}" for n in will | (now - first)}
            staying |= self.referrers(key, set(ordered) - staying_vms)
            verb, note = actions.Verb.PROTECTED, ""
            if ctx.protected(key):
                note = "protected by annotation infinibay.io/protect"
            elif staying:
                note = "still used by " + ", ".join(sorted(staying))
            else:
                verb = actions.Verb.DELETE
            # A guest that runs is shut down first, gracefully (ACPI) as apply stops one:
            # what it writes to a volume that stays is flushed, not cut off.
            intents: tuple[actions.Intent, ...] = ()
            stopped = kinds.PowerState.STOPPED
            if verb is actions.Verb.DELETE and domain is not None and domain.power is not stopped:
                intents = (actions.Power(domain.power, stopped),)
            ctx.changes.append(
                actions.Change(
                    key=key,
                    verb=verb,
                    retained=retained.get(key, ()),
                    intents=intents,
                    uuid=domain.uuid if domain is not None else None,
                    depends_on=tuple(
                        sorted(context.key_of(kinds.Kind.VIRTUAL_MACHINE, n) for n in first)
                    ),
                    note=note,
                    libvirt_name=ctx.libvirt_names.get(key, ""),
                )
            )

    def exists(self, key: record.ResourceKey) -> bool:
        """Whether ``key`` names anything at all: a live record or a libvirt object."""
        if self.ctx.live_record(key) is not None:
            return True
        return handlers.handler(kinds.Kind(key.kind)).exists(self.ctx, key.name)

    def prunable(self) -> list[record.ResourceKey]:
        """Owned objects and records that are no longer desired."""
        ctx = self.ctx
        keys = {
            context.key_of(kind, name)
            for kind in handlers.ORDER
            for name in handlers.handler(kind).orphans(ctx)
        }
        for key, rec in ctx.records.items():
            if rec.deleted_at is None and key.name not in ctx.state.by_kind(kinds.Kind(key.kind)):
                keys.add(key)
        return sorted(keys)


def plan(
    state: desired.DesiredState,
    records: Sequence[record.ResourceRecord],
    world: observed.World,
    *,
    installation: str,
    volumes: Sequence[record.VolumeRecord] = (),
    prune: bool = False,
    adopt: bool = False,
) -> actions.Plan:
    """Compute the plan that makes ``world`` and the record match ``state``.

    ``volumes`` is the record's volume inventory: a volume missing from it is
    not ours, so leaving it out never loses data, it only reports conflicts.
    """
    ctx = context.Context(state, records, world, installation, adopt, volumes)
    for kind in handlers.ORDER:
        handlers.handler(kind).plan(ctx)
    if prune:
        deletions = _Deletions(ctx)
        deletions.plan(deletions.prunable(), allow_data_loss=True)
    return ctx.plan()


def plan_deletions(
    keys: Sequence[record.ResourceKey],
    records: Sequence[record.ResourceRecord],
    world: observed.World,
    *,
    installation: str,
    volumes: Sequence[record.VolumeRecord] = (),
    adopt: bool = False,
    allow_data_loss: bool = False,
) -> actions.Plan:
    """Plan the deletion of named resources (``infinibay delete``), all of it before any runs.

    A name that exists nowhere (neither in the record nor in libvirt) is listed
    in ``not_found`` and planned no change at all.
    """
    ctx = context.Context(desired.DesiredState(), records, world, installation, adopt, volumes)
    deletions = _Deletions(ctx)
    present = [k for k in keys if deletions.exists(k)]
    deletions.plan(present, allow_data_loss=allow_data_loss)
    return ctx.plan(not_found=tuple(k for k in keys if k not in present))
