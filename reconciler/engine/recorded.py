"""The desired state as last applied, rebuilt from the record.

Used where no manifests are at hand: ``get`` and ``describe`` show drift by
planning the recorded specs against a fresh observation, and a daemon whose
source is broken keeps the last good revision in force with it.
"""

from __future__ import annotations

from collections.abc import Sequence

from reconciler import settings
from reconciler.models import desired, effective, kinds, observed, record
from reconciler.planning import fleet, placement, planner

__all__ = ["desired_from_record", "drifted", "drifted_on_hosts", "effective_vms"]


def desired_from_record(records: Sequence[record.ResourceRecord]) -> desired.DesiredState:
    state = desired.DesiredState(virtio_win=settings.Boundary.from_environ().virtio_win)
    for rec in records:
        if rec.deleted_at is not None:
            continue
        manifest = record.manifest(rec)
        source = desired.Source(
            file=rec.source_file or "<record>",
            line=1,
            column=1,
            document=rec.source_document or 0,
            revision=rec.source_revision,
        )
        state.by_kind(kinds.Kind(rec.key.kind))[rec.key.name] = desired.Loaded(manifest, source)
    state.effective_vms.update(effective_vms(state))
    return state


def effective_vms(state: desired.DesiredState) -> dict[str, effective.EffectiveVM]:
    """Each VM of ``state`` merged over its template in ``state``
    (:func:`reconciler.models.effective.resolve`).

    A VM whose template is not in ``state`` (it left the record) is merged over
    nothing, as the record's desired state always did; the loader refuses such a VM.
    """
    templates = {
        name: loaded.manifest
        for name, loaded in state.templates.items()
        if isinstance(loaded.manifest, kinds.Template)
    }
    departments = {
        name: loaded.manifest
        for name, loaded in state.departments.items()
        if isinstance(loaded.manifest, kinds.Department)
    }
    merged = {}
    for name, loaded in state.vms.items():
        assert isinstance(loaded.manifest, kinds.VirtualMachine)
        try:
            merged[name] = effective.resolve(loaded.manifest, templates, departments=departments)
        except effective.MissingTemplate:
            merged[name] = effective.merge(loaded.manifest, None)
    return merged


def drifted(
    records: Sequence[record.ResourceRecord],
    world: observed.World,
    installation: str,
    volumes: Sequence[record.VolumeRecord],
) -> frozenset[record.ResourceKey]:
    """Resources whose observed libvirt state no longer matches their last applied spec."""
    plan = planner.plan(
        desired_from_record(records), records, world, installation=installation, volumes=volumes
    )
    return frozenset(c.key for c in plan.changes if c.drift)


def drifted_on_hosts(
    records: Sequence[record.ResourceRecord],
    found: Sequence[fleet.HostState],
    installation: str,
    volumes: Sequence[record.VolumeRecord],
    strategy: placement.Strategy = placement.Strategy.SPREAD,
) -> tuple[observed.World, frozenset[record.ResourceKey]]:
    """:func:`drifted` over several hosts: each host's resources against its own world."""
    part = fleet.split(desired_from_record(records), records, found, strategy)
    keys: set[record.ResourceKey] = set()
    for piece in part.slices:
        plan = planner.plan(
            piece.state, piece.records, piece.world, installation=installation, volumes=volumes
        )
        keys.update(c.key for c in plan.changes if c.drift)
    return fleet.joined(part), frozenset(keys)
