"""The desired state as last applied, rebuilt from the record.

Used where no manifests are at hand: ``get`` and ``describe`` show drift by
planning the recorded specs against a fresh observation, and a daemon whose
source is broken keeps the last good revision in force with it.
"""

from __future__ import annotations

from collections.abc import Sequence

from reconciler.models import desired, effective, kinds, observed, record
from reconciler.planning import planner

__all__ = ["desired_from_record", "drifted"]


def desired_from_record(records: Sequence[record.ResourceRecord]) -> desired.DesiredState:
    state = desired.DesiredState()
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
    templates = {
        name: loaded.manifest
        for name, loaded in state.templates.items()
        if isinstance(loaded.manifest, kinds.Template)
    }
    for name, loaded in state.vms.items():
        assert isinstance(loaded.manifest, kinds.VirtualMachine)
        try:
            vm = effective.resolve(loaded.manifest, templates)
        except effective.MissingTemplate:
            # As before: a VM whose template left the record is merged over nothing.
            vm = effective.merge(loaded.manifest, None)
        state.effective_vms[name] = vm
    return state


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
