"""The planner: ``plan(desired, records, world) -> Plan``, pure and deterministic.

For each resource it compares the desired *shape* with the observed one (see
:mod:`reconciler.models.observed`) and emits at most one :class:`Change` with
field diffs and their impacts. A difference is *drift* when the record says the
resource had converged on this very spec (same hash, observed generation equal
to generation): the spec did not move, so the world did. Ownership decides
what may be touched: domains and networks carry our installation id in their
metadata; pools, templates and volumes are owned through the record.
``--adopt`` takes over unmanaged objects only: one carrying another
installation's id is a conflict whatever the flags (SPEC §2).

Creates and updates are ordered pools, networks, templates, VMs; deletions
come after, in reverse. Dependencies (a VM on its pools and networks) are
explicit on each change so the executor can fail exactly the dependents.
"""

from __future__ import annotations

import enum
import posixpath
import typing
from collections.abc import Callable, Iterable, Sequence
from typing import Any

from reconciler.models import desired, effective, fields, kinds, observed, record
from reconciler.planning import actions, diff, targets

__all__ = ["plan", "plan_deletions"]

Impact = actions.Impact
_Volumes = Callable[[str, str], observed.ObservedVolume | None]
_KIND_ORDER = [
    kinds.Kind.STORAGE_POOL,
    kinds.Kind.NETWORK,
    kinds.Kind.TEMPLATE,
    kinds.Kind.VIRTUAL_MACHINE,
]


_LIBVIRT_WHAT = {
    kinds.Kind.VIRTUAL_MACHINE: "domain",
    kinds.Kind.NETWORK: "network",
    kinds.Kind.STORAGE_POOL: "storage pool",
    kinds.Kind.TEMPLATE: "template",
}


def _key(kind: kinds.Kind, name: str) -> record.ResourceKey:
    return record.ResourceKey(kind.value, name)


def converged(rec: record.ResourceRecord | None) -> bool:
    """The record says this resource was reconciled on its current generation."""
    return (
        rec is not None
        and rec.deleted_at is None
        and rec.status.get("observedGeneration") == rec.generation
    )


class _Planner:
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
        self.inventory = targets.Inventory(volumes)
        self.claims: list[record.VolumeRecord] = []
        self.taken_macs = {n.mac for d in world.domains.values() for n in d.shape.nics} | {
            n.mac for vm in state.effective_vms.values() for n in vm.nics if n.mac
        }

    # --- bookkeeping --------------------------------------------------------

    def _live_record(self, key: record.ResourceKey) -> record.ResourceRecord | None:
        rec = self.records.get(key)
        return rec if rec is not None and rec.deleted_at is None else None

    def _remember_spec(self, loaded: desired.Loaded) -> tuple[record.ResourceKey, str]:
        key = _key(loaded.kind, loaded.name)
        vm = (
            self.state.effective_vms.get(loaded.name)
            if loaded.kind is kinds.Kind.VIRTUAL_MACHINE
            else None
        )
        document = targets.spec_document(loaded, vm)
        digest = targets.spec_hash(document)
        self.hashes[key] = digest
        rec = self._live_record(key)
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

    def _drift(self, key: record.ResourceKey) -> bool:
        rec = self._live_record(key)
        return converged(rec) and rec is not None and rec.spec_hash == self.hashes.get(key)

    def _emit(
        self, key: record.ResourceKey, change_fields: list[actions.FieldChange], **kw: Any
    ) -> None:
        if change_fields or kw.get("verb") not in (None, actions.Verb.UPDATE):
            verb = kw.pop("verb", actions.Verb.UPDATE)
            drift = (verb is actions.Verb.UPDATE and self._drift(key)) or kw.pop("drift", False)
            self.changes.append(
                actions.Change(key=key, verb=verb, fields=tuple(change_fields), drift=drift, **kw)
            )
        else:
            self.in_sync.append(key)

    def _owner(self, key: record.ResourceKey) -> observed.Ownership:
        return observed.Ownership(
            kind=key.kind, name=key.name, installation=self.installation, spec_hash=self.hashes[key]
        )

    def _conflict(
        self, key: record.ResourceKey, what: str, owner: observed.Ownership | None = None
    ) -> None:
        if owner is not None:
            note = (
                f"the libvirt {what} named {key.name!r} belongs to another installation "
                f"({owner.installation}) and is never modified, not even with --adopt; "
                "rename the manifest"
            )
        else:
            note = (
                f"a libvirt {what} named {key.name!r} exists that this installation does not "
                "own; rename the manifest or pass --adopt to take it over"
            )
        self.changes.append(actions.Change(key=key, verb=actions.Verb.CONFLICT, note=note))

    def _unrepresentable(
        self, key: record.ResourceKey, what: str, parts: tuple[observed.Unmodelled, ...]
    ) -> bool:
        """Refuse to adopt an object the schema cannot represent (one line); True if refused."""
        refused = [p.what for p in parts if not p.kept]
        if not refused:
            return False
        note = (
            f"the libvirt {what} named {key.name!r} cannot be adopted: the manifests cannot "
            f"represent its {'; '.join(refused)}; it is left untouched"
        )
        self.changes.append(actions.Change(key=key, verb=actions.Verb.CONFLICT, note=note))
        return True

    def _foreign(self, owner: observed.Ownership | None) -> observed.Ownership | None:
        """The ownership of an object another installation manages: never ours to adopt."""
        return owner if owner is not None and owner.installation != self.installation else None

    # --- pools ----------------------------------------------------------------

    def pools(self) -> None:
        for name, loaded in sorted(self.state.pools.items()):
            assert isinstance(loaded.manifest, kinds.StoragePool)
            key, _ = self._remember_spec(loaded)
            target = targets.pool_shape(loaded.manifest)
            current = self.world.pools.get(name)
            rec = self._live_record(key)
            if current is None:
                self._emit(
                    key,
                    [],
                    verb=actions.Verb.CREATE,
                    target=actions.PoolTarget(target, images=loaded.manifest.spec.images),
                    drift=converged(rec),
                )
                continue
            owned = rec is not None and rec.status.get("uuid") in (None, current.uuid)
            if not owned and not self.adopt:
                self._conflict(key, "storage pool")
                continue
            # Moving a pool leaves its volumes behind in the old directory: the VMs on it
            # get new, empty disks, which is data loss from where they stand.
            moved = Impact.DATA_LOSS if current.volumes else Impact.REPLACE
            changes = _compare(current.shape, target, {"path": moved, "autostart": Impact.LIVE})
            if not current.active:
                changes.append(actions.FieldChange("active", False, True, Impact.LIVE))
            replace = current.shape.path != target.path
            if not owned:
                changes.append(actions.FieldChange("owner", None, self.installation, Impact.RECORD))
            self._emit(
                key,
                changes,
                verb=actions.Verb.REPLACE if replace else actions.Verb.UPDATE,
                target=actions.PoolTarget(target, images=loaded.manifest.spec.images),
                uuid=current.uuid,
                adopt=not owned,
            )

    # --- networks -------------------------------------------------------------

    def networks(self) -> None:
        for name, loaded in sorted(self.state.networks.items()):
            assert isinstance(loaded.manifest, kinds.Network)
            key, _ = self._remember_spec(loaded)
            target = targets.network_shape(loaded.manifest)
            current = self.world.networks.get(name)
            if current is None:
                self._emit(
                    key,
                    [],
                    verb=actions.Verb.CREATE,
                    target=actions.NetworkTarget(target),
                    owner=self._owner(key),
                    drift=converged(self._live_record(key)),
                )
                continue
            owned = current.owner is not None and current.owner.installation == self.installation
            if (foreign := self._foreign(current.owner)) is not None or not (owned or self.adopt):
                self._conflict(key, "network", foreign)
                continue
            if not owned and self._unrepresentable(key, "network", current.unmodelled):
                continue
            impacts = {
                f: Impact.RESTART
                for f in ("mode", "bridge", "address", "dhcp", "hosts", "domain", "mtu")
            }
            impacts["autostart"] = Impact.LIVE
            changes = _compare(current.shape, target, impacts)
            if not current.active:
                changes.append(actions.FieldChange("active", False, True, Impact.LIVE))
            if not owned:
                changes.append(actions.FieldChange("owner", None, self.installation, Impact.LIVE))
            note = ""
            if any(c.impact is Impact.RESTART for c in changes):
                note = "the network is restarted: guests on it lose connectivity until reattached"
            self._emit(
                key,
                changes,
                target=actions.NetworkTarget(target),
                uuid=current.uuid,
                owner=self._owner(key),
                adopt=not owned,
                note=note,
            )

    # --- templates ------------------------------------------------------------

    def templates(self) -> None:
        for _name, loaded in sorted(self.state.templates.items()):
            key, digest = self._remember_spec(loaded)
            rec = self._live_record(key)
            if rec is None:
                self._emit(key, [], verb=actions.Verb.CREATE, target=actions.TemplateTarget())
            elif rec.spec_hash != digest:
                new = loaded.manifest.model_dump(mode="json")
                self._emit(key, _dict_diff(rec.spec, new), target=actions.TemplateTarget())
            else:
                self.in_sync.append(key)

    # --- virtual machines -----------------------------------------------------

    def vms(self) -> None:
        for name, vm in sorted(self.state.effective_vms.items()):
            loaded = self.state.vms[name]
            key, _ = self._remember_spec(loaded)
            rec = self._live_record(key)
            current = self.world.domains.get(name)
            depends = tuple(
                sorted(
                    {_key(kinds.Kind.STORAGE_POOL, d.pool) for d in vm.disks}
                    | {_key(kinds.Kind.NETWORK, n.network) for n in vm.nics}
                )
            )
            target = targets.vm_target(
                vm, current, rec, self.installation, self.taken_macs, self.inventory
            )
            if current is not None:
                owned = (
                    current.owner is not None and current.owner.installation == self.installation
                )
                foreign = self._foreign(current.owner)
                if foreign is not None or not (owned or self.adopt):
                    self._conflict(key, "domain", foreign)
                    continue
                if not owned and self._unrepresentable(key, "domain", current.unmodelled):
                    continue
            volume_changes, claims, clash = self._volume_changes(loaded, target)
            if clash:
                self.changes.append(actions.Change(key=key, verb=actions.Verb.CONFLICT, note=clash))
                continue
            self.claims += claims
            if current is None:
                self._emit(
                    key,
                    volume_changes,
                    verb=actions.Verb.CREATE,
                    target=target,
                    owner=self._owner(key),
                    depends_on=depends,
                    drift=converged(rec),
                )
                continue
            running = current.power is not kinds.PowerState.STOPPED
            changes = (
                _vm_changes(current.shape, target.shape, running, self._volume) + volume_changes
            )
            if current.power is not target.power:
                changes.append(
                    actions.FieldChange(
                        "powerState", current.power.value, target.power.value, Impact.LIVE
                    )
                )
            if (
                running
                and target.power is not kinds.PowerState.STOPPED
                and target.update_policy is kinds.UpdatePolicy.RESTART
                and current.live is not None
                and _restart_pending(current.live, target.shape)
            ):
                changes.append(actions.FieldChange("restart", "pending", "reboot", Impact.RESTART))
            if not owned:
                changes.append(actions.FieldChange("owner", None, self.installation, Impact.LIVE))
            if rec is not None and rec.spec_hash != self.hashes[key] and not changes:
                changes.append(
                    actions.FieldChange("spec", rec.spec_hash, self.hashes[key], Impact.RECORD)
                )
            self._emit(
                key,
                changes,
                target=target,
                uuid=current.uuid,
                owner=self._owner(key),
                depends_on=depends,
                adopt=not owned,
                note="" if owned else _kept(current.unmodelled),
            )

    def _volume(self, pool: str, volume: str) -> observed.ObservedVolume | None:
        """The observed volume; one of allocation -1 when its pool cannot be read."""
        found = self.world.pools.get(pool)
        if found is None or not found.active:
            return observed.ObservedVolume(pool, volume, "", 0, None, allocation=-1)
        return found.volumes.get(volume)

    def _volume_changes(
        self, loaded: desired.Loaded, target: actions.VmTarget
    ) -> tuple[list[actions.FieldChange], list[record.VolumeRecord], str]:
        """The VM's volume changes, the inventory rows to claim, and a conflict ("" if none).

        Only a volume the inventory says we created is grown, recreated or reused;
        a volume named with ``volume:`` is used as it is, and one found under the
        generated name that we did not create is a conflict, never taken over.
        """
        assert isinstance(loaded.manifest, kinds.VirtualMachine)
        owner = _key(kinds.Kind.VIRTUAL_MACHINE, loaded.name)
        own = [d.name for d in loaded.manifest.spec.disks]
        changes: list[actions.FieldChange] = []
        claims: list[record.VolumeRecord] = []
        for index, volume in enumerate(target.volumes):
            pool = self.world.pools.get(volume.pool)
            wanted = self.state.pools.get(volume.pool)
            moving = (
                pool is not None
                and wanted is not None
                and isinstance(wanted.manifest, kinds.StoragePool)
                and wanted.manifest.spec.path != pool.shape.path
            )
            # A pool being moved holds none of its volumes at the new path yet.
            current = pool.volumes.get(volume.volume) if pool is not None and not moving else None
            path = f"disks[{volume.disk}]"
            at = own.index(volume.disk) if volume.disk in own else index
            where = (
                f"{loaded.source.at(('spec', 'disks', at))}: VirtualMachine/{loaded.name}: "
                f"spec.disks[{at}]"
            )
            file = f"{volume.pool}/{volume.volume}"
            row = self.inventory.get(volume.pool, volume.volume)
            if row is not None and row.owner != owner:
                return [], [], f"{where}: volume {file} is the disk of {row.owner}"
            if volume.named:
                if row is not None:
                    continue  # adopted (or ours) before: used as it is
                if current is None:
                    return [], [], f"{where}: volume {file} named by volume: does not exist"
                if not self.adopt:
                    return (
                        [],
                        [],
                        f"{where}: volume {file} was not created by this installation; "
                        "pass --adopt to use it as it is",
                    )
                claims.append(
                    record.VolumeRecord(volume.pool, volume.volume, owner, volume.disk, False)
                )
                changes.append(actions.FieldChange(f"{path}.adopt", None, file, Impact.LIVE))
                continue
            if current is None:
                if row is None:
                    claims.append(
                        record.VolumeRecord(volume.pool, volume.volume, owner, volume.disk)
                    )
                changes.append(
                    actions.FieldChange(
                        f"{path}.volume",
                        None,
                        f"{file} ({fields.format_size(volume.size)})",
                        Impact.LIVE,
                    )
                )
                continue
            if not volume.created:
                return (
                    [],
                    [],
                    f"{where}: volume {file} exists but was not created by this installation, "
                    "so it is never taken over, grown or deleted; move it away, or name it "
                    "with volume: and pass --adopt to use it as it is",
                )
            if volume.size < current.capacity:
                self.errors.append(
                    f"{loaded.source.at(('spec', 'disks', at, 'size'))}: "
                    f"VirtualMachine/{loaded.name}: spec.disks[{at}].size: "
                    f"shrinking disk {volume.disk!r} from "
                    f"{fields.format_size(current.capacity)} to "
                    f"{fields.format_size(volume.size)} would lose data; disks can only grow"
                )
            elif volume.size > current.capacity:
                changes.append(
                    actions.FieldChange(
                        f"{path}.size",
                        fields.format_size(current.capacity),
                        fields.format_size(volume.size),
                        Impact.LIVE,
                    )
                )
            backing = posixpath.basename(current.backing) if current.backing else None
            if backing != volume.image:
                changes.append(
                    actions.FieldChange(f"{path}.image", backing, volume.image, Impact.DATA_LOSS)
                )
        return changes, claims, ""

    # --- deletions ------------------------------------------------------------

    def deletions(
        self, keys: Iterable[record.ResourceKey], *, allow_data_loss: bool = True
    ) -> None:
        """Delete ``keys``, VMs first; never what we do not own or what a remaining VM uses.

        Every refusal is decided here, before anything runs, so that what a refused
        VM uses (its template, pools, networks) is refused with it as still in use.
        A VM whose deletion would destroy volumes stays when ``allow_data_loss`` is
        false; the executor refuses its change with the same reason.
        """
        ordered = sorted(keys, key=lambda k: (-_KIND_ORDER.index(kinds.Kind(k.kind)), k.name))
        conflicts = {k: note for k in ordered if (note := self._not_ours(k))}
        retained = {
            k: _recorded_volumes(
                self._live_record(k), self.world.domains.get(k.name), self.inventory, k.name
            )
            for k in ordered
            if k.kind == kinds.Kind.VIRTUAL_MACHINE.value
        }
        losing = {
            k
            for k, volumes in retained.items()
            if not allow_data_loss and any(v.deletes for v in volumes)
        }
        staying_vms = {k for k in ordered if self._protected(k)} | conflicts.keys() | losing
        leaving = {k.name for k in ordered if k.kind == kinds.Kind.VIRTUAL_MACHINE.value} - {
            k.name for k in staying_vms if k.kind == kinds.Kind.VIRTUAL_MACHINE.value
        }
        for key in ordered:
            if key in conflicts:
                self.changes.append(
                    actions.Change(key=key, verb=actions.Verb.CONFLICT, note=conflicts[key])
                )
                continue
            kind = kinds.Kind(key.kind)
            uuid = None
            staying: set[str] = set()
            first: set[str] = set()  # VM changes that must let go of it before it goes
            if kind is kinds.Kind.VIRTUAL_MACHINE:
                domain = self.world.domains.get(key.name)
                uuid = domain.uuid if domain is not None else None
            else:
                will, now = self._users(kind, key.name)
                first = {n for n in now if n in leaving or n in self.state.vms}
                staying = will | (now - first)
            verb, note = actions.Verb.PROTECTED, ""
            if self._protected(key):
                note = "protected by annotation infinibay.io/protect"
            elif staying:
                note = "still used by " + ", ".join(f"virtualmachine/{n}" for n in sorted(staying))
            else:
                verb = actions.Verb.DELETE
                if key in losing:
                    note = "reclaimPolicy Delete would delete its volumes; pass --allow-data-loss"
            self.changes.append(
                actions.Change(
                    key=key,
                    verb=verb,
                    retained=retained.get(key, ()),
                    uuid=uuid,
                    depends_on=tuple(sorted(_key(kinds.Kind.VIRTUAL_MACHINE, n) for n in first)),
                    note=note,
                )
            )

    def exists(self, key: record.ResourceKey) -> bool:
        """Whether ``key`` names anything at all: a live record or a libvirt object."""
        if self._live_record(key) is not None:
            return True
        match kinds.Kind(key.kind):
            case kinds.Kind.VIRTUAL_MACHINE:
                return key.name in self.world.domains
            case kinds.Kind.NETWORK:
                return key.name in self.world.networks
            case kinds.Kind.STORAGE_POOL:
                return key.name in self.world.pools
            case kinds.Kind.TEMPLATE:
                return False  # a template exists only in the record
            case unreachable:
                typing.assert_never(unreachable)

    def _owner_of(self, key: record.ResourceKey) -> tuple[bool, observed.Ownership | None]:
        """Whether the libvirt object of ``key`` (if any) is ours, and its foreign owner."""
        match kinds.Kind(key.kind):
            case kinds.Kind.VIRTUAL_MACHINE | kinds.Kind.NETWORK as kind:
                found: observed.ObservedDomain | observed.ObservedNetwork | None = (
                    self.world.domains.get(key.name)
                    if kind is kinds.Kind.VIRTUAL_MACHINE
                    else self.world.networks.get(key.name)
                )
                if found is None:
                    return True, None
                owner = found.owner
                ours = owner is not None and owner.installation == self.installation
                return ours, self._foreign(owner)
            case kinds.Kind.STORAGE_POOL:
                pool = self.world.pools.get(key.name)
                rec = self._live_record(key)
                ours = pool is None or (
                    rec is not None and rec.status.get("uuid") in (None, pool.uuid)
                )
                return ours, None
            case kinds.Kind.TEMPLATE:
                return True, None  # owned through the record alone
            case unreachable:
                typing.assert_never(unreachable)

    def _not_ours(self, key: record.ResourceKey) -> str:
        """Why deleting ``key`` is refused for ownership, or "" when it may go."""
        ours, foreign = self._owner_of(key)
        what = _LIBVIRT_WHAT[kinds.Kind(key.kind)]
        if foreign is not None:
            return (
                f"not owned: the libvirt {what} {key.name!r} belongs to another installation "
                f"({foreign.installation}) and is never deleted, not even with --adopt"
            )
        if not ours and not self.adopt:
            return (
                f"not owned: the libvirt {what} {key.name!r} was not made by this installation; "
                "pass --adopt to delete it anyway"
            )
        return ""

    def _protected(self, key: record.ResourceKey) -> bool:
        rec = self._live_record(key)
        return (
            rec is not None and rec.annotations.get(kinds.PROTECT_ANNOTATION, "").lower() == "true"
        )

    def _users(self, kind: kinds.Kind, name: str) -> tuple[set[str], set[str]]:
        """VMs that will use a network, pool or template (desired), and others using it now.

        "Now" is libvirt's domains and the record's live VMs; a template leaves no
        trace in libvirt, so for a template only the record says who uses it now.
        """

        def uses(template: str | None, networks: Iterable[str], pools: Iterable[str]) -> bool:
            match kind:
                case kinds.Kind.NETWORK:
                    return name in networks
                case kinds.Kind.STORAGE_POOL:
                    return name in pools
                case kinds.Kind.TEMPLATE:
                    return template == name
                case kinds.Kind.VIRTUAL_MACHINE:
                    return False
                case unreachable:
                    typing.assert_never(unreachable)

        will = {
            vm.name
            for vm in self.state.effective_vms.values()
            if uses(vm.template, (n.network for n in vm.nics), (d.pool for d in vm.disks))
        }
        now = {
            d.name
            for d in self.world.domains.values()
            if uses(None, (n.network for n in d.shape.nics), (x.pool for x in d.shape.disks))
        }
        for key, rec in self.records.items():
            spec = rec.spec.get("effective", {})
            if (
                key.kind == kinds.Kind.VIRTUAL_MACHINE.value
                and rec.deleted_at is None
                and uses(
                    spec.get("template"),
                    (n["network"] for n in spec.get("nics", [])),
                    (d["pool"] for d in spec.get("disks", [])),
                )
            ):
                now.add(key.name)
        return will, now - will

    def prunable(self) -> list[record.ResourceKey]:
        """Owned objects and records that are no longer desired."""
        keys: set[record.ResourceKey] = set()
        for name, domain in self.world.domains.items():
            if (
                domain.owner is not None
                and domain.owner.installation == self.installation
                and name not in self.state.vms
            ):
                keys.add(_key(kinds.Kind.VIRTUAL_MACHINE, name))
        for name, network in self.world.networks.items():
            if (
                network.owner is not None
                and network.owner.installation == self.installation
                and name not in self.state.networks
            ):
                keys.add(_key(kinds.Kind.NETWORK, name))
        for key, rec in self.records.items():
            if rec.deleted_at is None and key.name not in self.state.by_kind(kinds.Kind(key.kind)):
                keys.add(key)
        return sorted(keys)


def _kept(parts: tuple[observed.Unmodelled, ...]) -> str:
    """What adoption leaves as it is because the manifests cannot represent it."""
    kept = [p.what for p in parts if p.kept]
    return "not modelled, kept as is: " + "; ".join(kept) if kept else ""


def _recorded_volumes(
    rec: record.ResourceRecord | None,
    domain: observed.ObservedDomain | None,
    inventory: targets.Inventory,
    name: str,
) -> tuple[actions.VolumeTarget, ...]:
    """The VM's volumes and their reclaim policy, from the record, else from libvirt (Retain)."""
    if rec is not None and "effective" in rec.spec:
        return tuple(
            inventory.target(name, effective.EffectiveDisk.from_record(d))
            for d in rec.spec["effective"]["disks"]
        )
    if domain is None:
        return ()
    return tuple(
        actions.VolumeTarget(
            disk=d.name,
            pool=d.pool,
            volume=d.volume,
            size=0,
            image=None,
            reclaim=kinds.ReclaimPolicy.RETAIN,
            created=inventory.created(name, d.pool, d.volume),
        )
        for d in domain.shape.disks
        if d.pool
    )


def _show(value: Any) -> Any:
    if isinstance(value, enum.Enum):
        return value.value
    if isinstance(value, tuple):
        return [_show(v) for v in value]
    if hasattr(value, "__dataclass_fields__"):
        return {k: _show(getattr(value, k)) for k in value.__dataclass_fields__}
    return value


def _compare(current: Any, target: Any, impacts: dict[str, Impact]) -> list[actions.FieldChange]:
    return [
        actions.FieldChange(
            name, _show(getattr(current, name)), _show(getattr(target, name)), impact
        )
        for name, impact in impacts.items()
        if getattr(current, name) != getattr(target, name)
    ]


def _vm_changes(
    current: observed.VmShape,
    target: observed.VmShape,
    running: bool,
    volumes: _Volumes | None = None,
) -> list[actions.FieldChange]:
    cold = Impact.RESTART if running else Impact.LIVE
    changes = _compare(
        current,
        target,
        {
            "cpus": cold,
            "firmware": cold,
            "machine": cold,
            "graphics_type": cold,
            "graphics_listen": cold,
            "autostart": Impact.LIVE,
        },
    )
    changes = [
        actions.FieldChange(c.path.replace("graphics_", "graphics."), c.old, c.new, c.impact)
        for c in changes
    ]
    if current.memory != target.memory:
        changes.append(
            actions.FieldChange(
                "memory",
                fields.format_size(current.memory),
                fields.format_size(target.memory),
                cold,
            )
        )
    changes += _disk_changes(current, target, cold, volumes)
    changes += _nic_changes(current, target, cold)
    return changes


def _held(disk: observed.DiskShape, volumes: _Volumes | None) -> tuple[str, bool]:
    """How the plan names a disk's volume, and whether it holds data the guest would lose.

    A volume that cannot be seen (its pool is stopped or unknown) is taken to hold data.
    """
    name = f"{disk.pool}/{disk.volume}"
    if volumes is None:
        return name, True
    found = volumes(disk.pool, disk.volume)
    if found is None:
        return f"{name} (not found)", False
    if found.allocation < 0:
        return f"{name} (allocation unknown)", True
    return f"{name} ({found.allocation} bytes allocated)", found.allocation > 0


def _disk_changes(
    current: observed.VmShape, target: observed.VmShape, cold: Impact, volumes: _Volumes | None
) -> list[actions.FieldChange]:
    """Disks matched by pool and volume; a disk that leaves or changes volume loses its data.

    Detaching a disk, or pointing it at another volume, takes the data on the old
    volume away from the guest (it boots the new, empty one): ``data-loss``, with
    the volume and its allocation named, whatever the guest's power state.
    """
    old = [d for d in current.disks if d.modelled]
    new = list(target.disks)
    old_volumes = {(d.pool, d.volume) for d in old}
    new_volumes = {(d.pool, d.volume) for d in new}
    gone = {d.name: d for d in old if (d.pool, d.volume) not in new_volumes}
    came = {d.name: d for d in new if (d.pool, d.volume) not in old_volumes}
    changes = []
    for name in sorted(gone.keys() | came.keys()):
        before, after = gone.get(name), came.get(name)
        impact = cold
        shown = None
        if before is not None:
            shown, holds = _held(before, volumes)
            impact = Impact.DATA_LOSS if holds else cold
        changes.append(
            actions.FieldChange(
                f"disks[{name}]", shown, f"{after.pool}/{after.volume}" if after else None, impact
            )
        )
    old_order = [(d.pool, d.volume) for d in old]
    new_order = [(d.pool, d.volume) for d in new]
    if old_order != new_order and old_volumes == new_volumes:
        changes.append(
            actions.FieldChange("disks.order", [d.name for d in old], [d.name for d in new], cold)
        )
    return changes


def _nic_changes(
    current: observed.VmShape, target: observed.VmShape, cold: Impact
) -> list[actions.FieldChange]:
    """NICs by network, or by MAC on a network several NICs share.

    A new NIC hot-plugs into a running guest; removing one needs the guest's
    cooperation (ACPI unplug), so it waits for a restart. NICs off any libvirt
    network (bridge, direct) are not modelled and never compared.
    """
    old = [n for n in current.nics if n.modelled]
    new = list(target.nics)
    shared = actions.shared_networks(old, new)
    old_nics = {actions.nic_path(n, shared): n.mac for n in old}
    new_nics = {actions.nic_path(n, shared): n.mac for n in new}
    changes = []
    for path in sorted(old_nics.keys() | new_nics.keys()):
        if old_nics.get(path) != new_nics.get(path):
            impact = Impact.LIVE if path not in old_nics else cold
            changes.append(
                actions.FieldChange(path, old_nics.get(path), new_nics.get(path), impact)
            )
    if list(old_nics) != list(new_nics) and old_nics == new_nics:
        changes.append(
            actions.FieldChange(
                "networks.order", [n.network for n in old], [n.network for n in new], cold
            )
        )
    return changes


def _restart_pending(live: observed.VmShape, target: observed.VmShape) -> bool:
    """The running guest differs from the config it would boot with."""
    return bool(_vm_changes(live, target, running=True)) and any(
        c.path != "autostart" for c in _vm_changes(live, target, running=True)
    )


def _dict_diff(old: Any, new: Any) -> list[actions.FieldChange]:
    """Record-only field changes between two specs, down through dicts only.

    A list is one field (a template's list changes as a whole), a missing key
    reads as ``None``, and values compare with ``==``: ``1`` and ``1.0`` are the
    same size. :func:`diff.document_diff` finds the paths; this folds them up.
    """
    heads: list[diff.Path] = []
    for found in diff.document_diff(old, new):
        cut = next((i for i, part in enumerate(found.path) if isinstance(part, int)), None)
        head = found.path[:cut]
        if head not in heads:
            heads.append(head)
    out: list[actions.FieldChange] = []
    for head in heads:
        before, after = _get(old, head), _get(new, head)
        if before != after:
            out.append(actions.FieldChange(diff.render_path(head), before, after, Impact.RECORD))
    return out


def _get(document: Any, path: diff.Path) -> Any:
    for key in path:
        document = document.get(key) if isinstance(document, dict) else None
    return document


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
    planner = _Planner(state, records, world, installation, adopt, volumes)
    planner.pools()
    planner.networks()
    planner.templates()
    planner.vms()
    if prune:
        planner.deletions(planner.prunable())
    return actions.Plan(
        changes=tuple(planner.changes),
        in_sync=tuple(planner.in_sync),
        spec_writes=tuple(planner.spec_writes),
        errors=tuple(planner.errors),
        volume_claims=tuple(planner.claims),
    )


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
    planner = _Planner(desired.DesiredState(), records, world, installation, adopt, volumes)
    present = [k for k in keys if planner.exists(k)]
    planner.deletions(present, allow_data_loss=allow_data_loss)
    return actions.Plan(
        changes=tuple(planner.changes),
        not_found=tuple(k for k in keys if k not in present),
    )
