"""What every kind's planning handler shares during one plan: inputs and bookkeeping.

A :class:`Context` holds the desired state, the record, the observed world and
the flags of one plan, and collects what the handlers decide: changes, the
resources in sync, spec writes for the record, located errors and volume
claims. It is also where ownership is judged the same way for every kind:
conflicts with another installation, adoption, objects the schema cannot
represent, drift of a converged resource.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

from reconciler.models import desired, kinds, naming, observed, record
from reconciler.planning import actions, targets

__all__ = ["Context", "converged", "key_of"]


def key_of(kind: kinds.Kind, name: str) -> record.ResourceKey:
    return record.ResourceKey(kind.value, name)


def libvirt_names(
    state: desired.DesiredState,
    records: Iterable[record.ResourceRecord],
    world: observed.World,
    installation: str,
) -> dict[record.ResourceKey, str]:
    """The libvirt name of every resource whose object is not named like it.

    Decided by :func:`reconciler.models.naming.libvirt_name` from the manifest's
    annotations; for a resource no manifest declares any more, from the
    record's; failing both, an object of ours whose ownership metadata names the
    resource. Every other resource's libvirt object bears its own name.
    """
    names: dict[record.ResourceKey, str] = {}
    owned = ((kinds.Kind.VIRTUAL_MACHINE, world.domains), (kinds.Kind.NETWORK, world.networks))
    for kind, objects in owned:
        for name, found in objects.items():
            owner = found.owner
            if owner is not None and owner.installation == installation and owner.name != name:
                names[key_of(kind, owner.name)] = name
    for rec in records:
        if rec.deleted_at is None:
            names[rec.key] = naming.libvirt_name(rec.key.name, rec.annotations)
    for kind in kinds.Kind:
        for name, loaded in state.by_kind(kind).items():
            annotations = loaded.manifest.metadata.annotations
            names[key_of(kind, name)] = naming.libvirt_name(name, annotations)
    return {key: name for key, name in names.items() if name != key.name}


def converged(rec: record.ResourceRecord | None) -> bool:
    """The record says this resource was reconciled on its current generation."""
    return (
        rec is not None
        and rec.deleted_at is None
        and rec.status.get("observedGeneration") == rec.generation
    )


class Context:
    def __init__(
        self,
        state: desired.DesiredState,
        records: Sequence[record.ResourceRecord],
        world: observed.World,
        installation: str,
        adopt: bool,
        volumes: Iterable[record.VolumeRecord] = (),
    ) -> None:
        self.state = state
        self.records = {r.key: r for r in records}
        self.world = world
        self.installation = installation
        self.adopt = adopt
        self.changes: list[actions.Change] = []
        self.in_sync: list[record.ResourceKey] = []
        self.spec_writes: list[record.SpecWrite] = []
        self.errors: list[str] = []
        self.hashes: dict[record.ResourceKey, str] = {}
        self.libvirt_names = libvirt_names(state, records, world, installation)
        self.resource_names = {(k.kind, n): k.name for k, n in self.libvirt_names.items()}
        self.inventory = targets.Inventory(volumes, pools=self.pool_name)
        self.claims: list[record.VolumeRecord] = []
        self.taken_macs = {n.mac for d in world.domains.values() for n in d.shape.nics} | {
            n.mac for vm in state.effective_vms.values() for n in vm.nics if n.mac
        }

    def libvirt(self, key: record.ResourceKey) -> str:
        """The name of the libvirt object of ``key`` (see :func:`libvirt_names`)."""
        return self.libvirt_names.get(key, key.name)

    def resource(self, kind: kinds.Kind, libvirt: str) -> str:
        """The resource whose libvirt object of ``kind`` is named ``libvirt``."""
        return self.resource_names.get((kind.value, libvirt), libvirt)

    def pool_name(self, pool: str) -> str:
        """The libvirt name of the StoragePool ``pool``: what disks and volumes refer to."""
        return self.libvirt(key_of(kinds.Kind.STORAGE_POOL, pool))

    def network_name(self, network: str) -> str:
        """The libvirt name of the Network ``network``: what NICs refer to."""
        return self.libvirt(key_of(kinds.Kind.NETWORK, network))

    def live_record(self, key: record.ResourceKey) -> record.ResourceRecord | None:
        rec = self.records.get(key)
        return rec if rec is not None and rec.deleted_at is None else None

    def remember_spec(self, loaded: desired.Loaded) -> tuple[record.ResourceKey, str]:
        """Hash the desired spec of ``loaded`` and queue its record write when it moved."""
        key = key_of(loaded.kind, loaded.name)
        vm = (
            self.state.effective_vms.get(loaded.name)
            if loaded.kind is kinds.Kind.VIRTUAL_MACHINE
            else None
        )
        document = targets.spec_document(loaded, vm)
        digest = targets.spec_hash(document)
        self.hashes[key] = digest
        rec = self.live_record(key)
        source = loaded.source
        if (
            rec is None
            or rec.spec_hash != digest
            or rec.source_file != source.file
            or rec.source_revision != source.revision
        ):
            self.spec_writes.append(
                record.SpecWrite(
                    key=key,
                    spec=document,
                    spec_hash=digest,
                    labels=dict(loaded.manifest.metadata.labels),
                    annotations=dict(loaded.manifest.metadata.annotations),
                    source_file=source.file,
                    source_document=source.document,
                    source_revision=source.revision,
                )
            )
        return key, digest

    def drift(self, key: record.ResourceKey) -> bool:
        rec = self.live_record(key)
        return converged(rec) and rec is not None and rec.spec_hash == self.hashes.get(key)

    def emit(
        self, key: record.ResourceKey, change_fields: list[actions.FieldChange], **kw: Any
    ) -> None:
        """Plan a change of ``key``; an update without field changes is in sync instead."""
        if change_fields or kw.get("verb") not in (None, actions.Verb.UPDATE):
            verb = kw.pop("verb", actions.Verb.UPDATE)
            drift = (verb is actions.Verb.UPDATE and self.drift(key)) or kw.pop("drift", False)
            kw.setdefault("libvirt_name", self.libvirt_names.get(key, ""))
            self.changes.append(
                actions.Change(key=key, verb=verb, fields=tuple(change_fields), drift=drift, **kw)
            )
        else:
            self.in_sync.append(key)

    def owner(self, key: record.ResourceKey) -> observed.Ownership:
        return observed.Ownership(
            kind=key.kind, name=key.name, installation=self.installation, spec_hash=self.hashes[key]
        )

    def conflict(
        self, key: record.ResourceKey, what: str, owner: observed.Ownership | None = None
    ) -> None:
        if owner is not None:
            note = (
                f"the libvirt {what} named {self.libvirt(key)!r} belongs to another installation "
                f"({owner.installation}) and is never modified, not even with --adopt; "
                "rename the manifest"
            )
        else:
            note = (
                f"a libvirt {what} named {self.libvirt(key)!r} exists that this installation "
                "does not own; rename the manifest or pass --adopt to take it over"
            )
        self.changes.append(actions.Change(key=key, verb=actions.Verb.CONFLICT, note=note))

    def unrepresentable(
        self, key: record.ResourceKey, what: str, parts: tuple[observed.Unmodelled, ...]
    ) -> bool:
        """Refuse to adopt an object the schema cannot represent (one line); True if refused."""
        refused = [p.what for p in parts if not p.kept]
        if not refused:
            return False
        note = (
            f"the libvirt {what} named {self.libvirt(key)!r} cannot be adopted: the manifests "
            f"cannot represent its {'; '.join(refused)}; it is left untouched"
        )
        self.changes.append(actions.Change(key=key, verb=actions.Verb.CONFLICT, note=note))
        return True

    def foreign(self, owner: observed.Ownership | None) -> observed.Ownership | None:
        """The ownership of an object another installation manages: never ours to adopt."""
        return owner if owner is not None and owner.installation != self.installation else None

    def labelled_ours(self, owner: observed.Ownership | None) -> bool:
        """The object carries this installation's ownership metadata."""
        return owner is not None and owner.installation == self.installation

    def volume(self, pool: str, volume: str) -> observed.ObservedVolume | None:
        """The observed volume; one of allocation -1 when its pool cannot be read."""
        found = self.world.pools.get(pool)
        if found is None or not found.active:
            return observed.ObservedVolume(pool, volume, "", 0, None, allocation=-1)
        return found.volumes.get(volume)

    def protected(self, key: record.ResourceKey) -> bool:
        rec = self.live_record(key)
        return (
            rec is not None and rec.annotations.get(kinds.PROTECT_ANNOTATION, "").lower() == "true"
        )

    def plan(self, *, not_found: tuple[record.ResourceKey, ...] = ()) -> actions.Plan:
        return actions.Plan(
            changes=tuple(self.changes),
            in_sync=tuple(self.in_sync),
            spec_writes=tuple(self.spec_writes),
            errors=tuple(self.errors),
            volume_claims=tuple(self.claims),
            not_found=not_found,
            libvirt_names=self.libvirt_names,
        )
