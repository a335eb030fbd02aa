"""Planning VirtualMachines: domains, their volumes, NICs and power, owned by metadata.

Besides the field diffs people read, this handler decides the change's
intents (:data:`reconciler.planning.actions.Intent`): which volumes are
created, grown, recreated or adopted, whether the definition is patched,
which NICs are hot-plugged, autostart, restart and power.
"""

from __future__ import annotations

import dataclasses
import posixpath
from collections.abc import Callable, Iterable

from reconciler.models import (
    catalog,
    desired,
    effective,
    fields,
    firewall,
    kinds,
    observed,
    record,
    seeds,
)
from reconciler.planning import actions, compare, context
from reconciler.planning import firewall as fw_shapes
from reconciler.planning import targets as targets_module
from reconciler.planning.handlers.base import Uses

__all__ = ["HANDLER", "recorded_volumes", "restart_pending"]

Impact = actions.Impact
Volumes = Callable[[str, str], observed.ObservedVolume | None]


class VmPlanner:
    what = catalog.libvirt_what(kinds.Kind.VIRTUAL_MACHINE)

    def plan(self, ctx: context.Context) -> None:
        for name, vm in sorted(ctx.state.effective_vms.items()):
            self._plan_one(ctx, ctx.state.vms[name], vm)

    def _plan_one(
        self, ctx: context.Context, loaded: desired.Loaded, vm: effective.EffectiveVM
    ) -> None:
        key, _ = ctx.remember_spec(loaded)
        rec = ctx.live_record(key)
        current = ctx.world.domains.get(ctx.libvirt(key))
        depends = tuple(
            sorted(
                {context.key_of(kinds.Kind.STORAGE_POOL, d.pool) for d in vm.disks}
                | {context.key_of(kinds.Kind.NETWORK, n.network) for n in vm.nics}
            )
        )
        if not _hardware_found(ctx, loaded, vm):
            return
        target = targets_module.vm_target(
            vm,
            current,
            rec,
            ctx.installation,
            ctx.taken_macs,
            ctx.inventory,
            ctx.world.host,
            networks=ctx.network_name,
            virtio_win=_virtio_win(ctx.state.virtio_win),
        )
        target, policy = _with_firewall(ctx, loaded, target)
        # The pools of its ISOs (the virtio-win one too) and of its seeds exist before the
        # domain names them.
        isos = {
            context.key_of(kinds.Kind.STORAGE_POOL, c.pool)
            for c in (*(target.shape.cdroms or ()), *(target.shape.seeds or ()))
        }
        depends = tuple(sorted({*depends, *(k for k in isos if k.name in ctx.state.pools)}))
        if policy is not None:
            depends = tuple(sorted({*depends, context.key_of(kinds.Kind.FIREWALL_POLICY, policy)}))
        owned = current is None or ctx.labelled_ours(current.owner)
        if current is not None:
            foreign = ctx.foreign(current.owner)
            if foreign is not None or not (owned or ctx.adopt):
                ctx.conflict(key, self.what, foreign)
                return
            if not owned and ctx.unrepresentable(key, self.what, current.unmodelled):
                return
        running = current is not None and current.power is not kinds.PowerState.STOPPED
        planned = _volume_changes(ctx, loaded, target, running)
        if isinstance(planned, str):
            ctx.changes.append(actions.Change(key=key, verb=actions.Verb.CONFLICT, note=planned))
            return
        volume_changes, claims, intents = planned
        seeded = _seed_intents(ctx, key, target, current)
        if isinstance(seeded, str):
            ctx.changes.append(actions.Change(key=key, verb=actions.Verb.CONFLICT, note=seeded))
            return
        seed_claims, uploads, superseded = seeded
        claims += seed_claims
        intents += uploads
        ctx.claims += claims
        filter_changes, define, undefine = _filter_changes(ctx, loaded.name, target)
        volume_changes += filter_changes
        intents[:0] = define  # the filter exists before any NIC refers to it
        if current is None:
            intents.append(actions.SetAutostart(target.shape.autostart))
            if target.power is not kinds.PowerState.STOPPED:
                intents.append(actions.Power(kinds.PowerState.STOPPED, target.power))
            ctx.emit(
                key,
                volume_changes + _noted(_seed_changes((), target.shape.seeds, Impact.LIVE), target),
                verb=actions.Verb.CREATE,
                target=target,
                owner=ctx.owner(key),
                depends_on=depends,
                drift=context.converged(rec),
                intents=tuple(intents),
            )
            return
        config, added = _config_changes(current.shape, target.shape, running, ctx.volume)
        config = _noted(config, target)
        changes = config + volume_changes
        if any(c.path != "autostart" for c in config) or not owned:
            intents.append(actions.Patch())
        if running and _password_set(config):
            intents.append(actions.SyncGraphicsPassword())
        if running:
            intents += [actions.Hotplug(nic) for nic in added]
            intents += _refiltered(current.shape, target.shape)
        if current.shape.autostart != target.shape.autostart:
            intents.append(actions.SetAutostart(target.shape.autostart))
        if current.power is not target.power:
            changes.append(
                actions.FieldChange(
                    "powerState", current.power.value, target.power.value, Impact.LIVE
                )
            )
            intents.append(actions.Power(current.power, target.power))
        if (
            running
            and target.power is not kinds.PowerState.STOPPED
            and target.update_policy is kinds.UpdatePolicy.RESTART
            and current.live is not None
            and restart_pending(current.live, target.shape)
        ):
            changes.append(actions.FieldChange("restart", "pending", "reboot", Impact.RESTART))
            intents.append(actions.Restart())
        if not owned:
            changes.append(actions.FieldChange("owner", None, ctx.installation, Impact.LIVE))
        intents += undefine  # once the patched definition refers to it no more
        # Once the patched definition refers to it no more, and the guest (restarted
        # now, or by the next pass after its reboot) does not either.
        holding = current.live.seeds or () if current.live is not None else ()
        restarting = any(isinstance(i, actions.Restart) for i in intents)
        for gone in superseded:
            if not restarting and observed.CdromShape(gone.pool, gone.volume) in holding:
                continue
            intents.append(gone)
            changes.append(
                actions.FieldChange(
                    "firstBoot.superseded", f"{gone.pool}/{gone.volume}", None, Impact.LIVE
                )
            )
        if rec is not None and rec.spec_hash != ctx.hashes[key] and not changes:
            changes.append(
                actions.FieldChange("spec", rec.spec_hash, ctx.hashes[key], Impact.RECORD)
            )
        ctx.emit(
            key,
            changes,
            target=target,
            uuid=current.uuid,
            owner=ctx.owner(key),
            depends_on=depends,
            adopt=not owned,
            note="" if owned else _kept(current.unmodelled),
            intents=tuple(intents),
        )

    def exists(self, ctx: context.Context, name: str) -> bool:
        return ctx.libvirt(context.key_of(kinds.Kind.VIRTUAL_MACHINE, name)) in ctx.world.domains

    def ownership(
        self, ctx: context.Context, key: record.ResourceKey
    ) -> tuple[bool, observed.Ownership | None]:
        found = ctx.world.domains.get(ctx.libvirt(key))
        if found is None:
            return True, None
        return ctx.labelled_ours(found.owner), ctx.foreign(found.owner)

    def used_by(self, name: str, uses: Uses) -> bool:
        return False  # nothing refers to a VM

    def orphans(self, ctx: context.Context) -> Iterable[str]:
        return [
            resource
            for name, domain in ctx.world.domains.items()
            if ctx.labelled_ours(domain.owner)
            and (resource := ctx.resource(kinds.Kind.VIRTUAL_MACHINE, name)) not in ctx.state.vms
        ]


HANDLER = VmPlanner()


def _virtio_win(setting: str | None) -> observed.CdromShape | None:
    pool, _, volume = (setting or "").partition("/")
    return observed.CdromShape(pool, volume) if pool and volume else None


def _where(
    ctx: context.Context, loaded: desired.Loaded, vm: effective.EffectiveVM, field: str
) -> tuple[desired.Loaded, str]:
    """The manifest that sets ``field`` of the VM's spec (the VM, else its template)."""
    assert isinstance(loaded.manifest, kinds.VirtualMachine)
    if field in loaded.manifest.spec.model_fields_set or vm.template is None:
        return loaded, f"VirtualMachine/{loaded.name}"
    template = ctx.state.templates.get(vm.template)
    if template is None:
        return loaded, f"VirtualMachine/{loaded.name}"
    return template, f"Template/{template.name} (of VirtualMachine/{loaded.name})"


def _hardware_found(
    ctx: context.Context, loaded: desired.Loaded, vm: effective.EffectiveVM
) -> bool:
    """Whether the host has the VM's PCI devices, cdrom ISOs and virtio-win ISO.

    Each one missing is a located error, found before anything is done. A pool
    not created yet, or stopped, cannot be looked into: its ISOs are not refused.
    """
    found = True

    def missing(field: str, path: tuple[str | int, ...], message: str) -> None:
        nonlocal found
        found = False
        manifest, name = _where(ctx, loaded, vm, field)
        shown = "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in path)[1:]
        ctx.errors.append(f"{manifest.source.at(('spec', *path))}: {name}: spec.{shown}: {message}")

    def absent(pool: str, volume: str) -> bool:
        observed_pool = ctx.world.pools.get(pool)
        return (
            observed_pool is not None
            and observed_pool.active
            and volume not in observed_pool.volumes
        )

    present = ctx.world.host.pci
    for index, address in enumerate(vm.host_devices or ()):
        if present is not None and address not in present:
            missing(
                "hostDevices",
                ("hostDevices", index, "pci"),
                f"the host has no PCI device {address} (see virsh nodedev-list --cap pci)",
            )
    for index, cdrom in enumerate(vm.cdroms or ()):
        if absent(cdrom.pool, cdrom.image):
            missing(
                "cdroms",
                ("cdroms", index, "image"),
                f"volume {cdrom.pool}/{cdrom.image} does not exist",
            )
    if vm.os is kinds.GuestOs.WINDOWS:
        iso = _virtio_win(ctx.state.virtio_win)
        if iso is None:
            missing(
                "os",
                ("os",),
                "a windows guest gets the virtio-win driver ISO: set INFINIBAY_VIRTIO_WIN "
                "to its POOL/VOLUME",
            )
        elif absent(iso.pool, iso.volume) or (
            iso.pool not in ctx.world.pools and iso.pool not in ctx.state.pools
        ):
            missing(
                "os",
                ("os",),
                f"the virtio-win driver ISO {iso.pool}/{iso.volume} (INFINIBAY_VIRTIO_WIN) "
                "is not there",
            )
    return found


def _with_firewall(
    ctx: context.Context, loaded: desired.Loaded, target: actions.VmTarget
) -> tuple[actions.VmTarget, str | None]:
    """``target`` with the VM's own nwfilter, when it has a department or rules of its own.

    Also the policy its department applies (the filter refers to it), or ``None``.
    """
    assert isinstance(loaded.manifest, kinds.VirtualMachine)
    spec = loaded.manifest.spec
    department = ctx.state.departments.get(spec.department or "")
    dept = department.manifest if department is not None else None
    if spec.firewall is None and not isinstance(dept, kinds.Department):
        return target, None
    policy = dept.spec.firewall if isinstance(dept, kinds.Department) else None
    found = ctx.state.policies.get(policy or "")
    default = (
        found.manifest.spec.defaultAction
        if found is not None and isinstance(found.manifest, kinds.FirewallPolicy)
        else None
    )
    name = firewall.vm_filter(loaded.name)
    shape = fw_shapes.vm_shape(loaded.name, spec.firewall, policy, default)
    nics = tuple(
        dataclasses.replace(nic, filter=_nic_filter(ctx, name, nic)) for nic in target.shape.nics
    )
    return (
        dataclasses.replace(
            target,
            shape=dataclasses.replace(target.shape, nics=nics),
            filter=actions.FilterTarget(name, shape),
        ),
        policy,
    )


def _nic_filter(ctx: context.Context, name: str, nic: observed.NicShape) -> observed.FilterRef:
    """The NIC's ``<filterref>``: the VM's filter, fed its MAC and, from a static host, its IP."""
    parameters = [("MAC", nic.mac)]
    network = ctx.state.networks.get(ctx.resource(kinds.Kind.NETWORK, nic.network))
    if network is not None and isinstance(network.manifest, kinds.Network):
        ipv4 = network.manifest.spec.ipv4
        for host in ipv4.hosts if ipv4 is not None else []:
            if host.mac == nic.mac:
                parameters.append(("IP", str(host.ip)))
    return observed.FilterRef(name, tuple(sorted(parameters)))


def _filter_changes(
    ctx: context.Context, vm: str, target: actions.VmTarget
) -> tuple[list[actions.FieldChange], list[actions.Intent], list[actions.Intent]]:
    """The VM filter's field change, and the intents that define it first or remove it last."""
    name = firewall.vm_filter(vm)
    current = ctx.world.filters.get(name)
    old = fw_shapes.rule_lines(current.shape) if current is not None else None
    if target.filter is None:
        if current is None:
            return [], [], []
        change = actions.FieldChange("firewall", old, None, Impact.LIVE)
        return [change], [], [actions.UndefineFilter(name)]
    new = fw_shapes.rule_lines(target.filter.shape)
    if current is not None and current.shape == target.filter.shape:
        return [], [], []
    return (
        [actions.FieldChange("firewall", old, new, Impact.LIVE)],
        [actions.DefineFilter(target.filter, current.uuid if current is not None else None)],
        [],
    )


def _refiltered(current: observed.VmShape, target: observed.VmShape) -> list[actions.Intent]:
    """NICs (kept, by MAC) whose filter changes: swapped in the running guest too."""
    before = {n.mac: n.filter for n in current.nics if n.modelled}
    return [
        actions.UpdateNicFilter(nic.mac, nic.filter)
        for nic in target.nics
        if nic.mac in before and before[nic.mac] != nic.filter
    ]


def _kept(parts: tuple[observed.Unmodelled, ...]) -> str:
    """What adoption leaves as it is because the manifests cannot represent it."""
    kept = [p.what for p in parts if p.kept]
    return "not modelled, kept as is: " + "; ".join(kept) if kept else ""


def _disk_at(loaded: desired.Loaded, at: int) -> str:
    """``FILE:LINE:COL: VirtualMachine/NAME: spec.disks[AT]``, for a message about that disk.

    Built only when a message needs it: locating the disk walks the document's YAML.
    """
    return (
        f"{loaded.source.at(('spec', 'disks', at))}: VirtualMachine/{loaded.name}: spec.disks[{at}]"
    )


def _check_image(
    ctx: context.Context, volume: actions.VolumeTarget, loaded: desired.Loaded, at: int
) -> None:
    """A new volume's ``image:`` must be a volume of its (active, observed) image pool."""
    if volume.image is None:
        return
    source = volume.image_pool or volume.pool
    images = ctx.world.pools.get(source)
    if images is None or not images.active or volume.image in images.volumes:
        return  # a pool this plan creates is checked when the volume is made
    ctx.errors.append(
        f"{_disk_at(loaded, at)}.image: image {volume.image!r} is not a volume of pool {source!r}; "
        "copy it into the pool's directory first"
    )


def _volume_changes(
    ctx: context.Context, loaded: desired.Loaded, target: actions.VmTarget, running: bool
) -> tuple[list[actions.FieldChange], list[record.VolumeRecord], list[actions.Intent]] | str:
    """The VM's volume changes, inventory rows to claim and intents; or a conflict's note.

    Only a volume the inventory says we created is grown, recreated or reused;
    a volume named with ``volume:`` is used as it is, and one found under the
    generated name that we did not create is a conflict, never taken over.
    """
    assert isinstance(loaded.manifest, kinds.VirtualMachine)
    owner = context.key_of(kinds.Kind.VIRTUAL_MACHINE, loaded.name)
    own = [d.name for d in loaded.manifest.spec.disks]
    changes: list[actions.FieldChange] = []
    claims: list[record.VolumeRecord] = []
    intents: list[actions.Intent] = []
    for index, volume in enumerate(target.volumes):
        pool = ctx.world.pools.get(volume.pool)
        wanted = ctx.state.pools.get(ctx.resource(kinds.Kind.STORAGE_POOL, volume.pool))
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
        file = f"{volume.pool}/{volume.volume}"
        row = ctx.inventory.get(volume.pool, volume.volume)
        if row is not None and row.owner != owner:
            return f"{_disk_at(loaded, at)}: volume {file} is the disk of {row.owner}"
        if volume.named:
            if row is not None:
                continue  # adopted (or ours) before: used as it is
            if current is None:
                return f"{_disk_at(loaded, at)}: volume {file} named by volume: does not exist"
            if not ctx.adopt:
                return (
                    f"{_disk_at(loaded, at)}: volume {file} was not created by this installation; "
                    "pass --adopt to use it as it is"
                )
            claims.append(
                record.VolumeRecord(volume.pool, volume.volume, owner, volume.disk, False)
            )
            changes.append(actions.FieldChange(f"{path}.adopt", None, file, Impact.LIVE))
            intents.append(actions.AdoptVolume(volume))
            continue
        if current is None:
            _check_image(ctx, volume, loaded, at)
            if row is None:
                claims.append(record.VolumeRecord(volume.pool, volume.volume, owner, volume.disk))
            changes.append(
                actions.FieldChange(
                    f"{path}.volume",
                    None,
                    f"{file} ({fields.format_size(volume.size)})",
                    Impact.LIVE,
                )
            )
            intents.append(actions.CreateVolume(volume))
            continue
        if not volume.created:
            return (
                f"{_disk_at(loaded, at)}: volume {file} exists but was not created by this "
                "installation, so it is never taken over, grown or deleted; move it away, or "
                "name it with volume: and pass --adopt to use it as it is"
            )
        grow: actions.Intent | None = None
        if volume.size < current.capacity:
            ctx.errors.append(
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
            grow = actions.GrowVolume(volume, current.capacity, live=running)
        backing = posixpath.basename(current.backing) if current.backing else None
        if backing != volume.image:
            _check_image(ctx, volume, loaded, at)
            changes.append(
                actions.FieldChange(f"{path}.image", backing, volume.image, Impact.DATA_LOSS)
            )
            # Recreated on the new image at its new size: no growing first.
            intents.append(actions.RecreateVolume(volume, stop_first=running))
        elif grow is not None:
            intents.append(grow)
    return changes, claims, intents


def _seen(ctx: context.Context, volume: actions.VolumeTarget) -> actions.VolumeTarget:
    """``volume``, marked missing when its pool was observed without it."""
    pool = ctx.world.pools.get(volume.pool)
    if pool is None or volume.volume in pool.volumes:
        return volume
    return dataclasses.replace(volume, exists=False)


def recorded_volumes(
    ctx: context.Context, key: record.ResourceKey
) -> tuple[actions.VolumeTarget, ...]:
    """The VM's volumes and their reclaim policy, from the record, else from libvirt (Retain).

    Its first-boot seeds go with it: they hold nothing the manifests do not.
    """
    seeded = tuple(
        _seen(
            ctx,
            actions.VolumeTarget(
                disk=row.disk,
                pool=row.pool,
                volume=row.name,
                size=0,
                image=None,
                reclaim=kinds.ReclaimPolicy.DELETE,
                created=True,
                seed=True,
            ),
        )
        for row in ctx.inventory.seeds_of(key.name)
    )
    rec = ctx.live_record(key)
    if rec is not None and "effective" in rec.spec:
        targets = (
            ctx.inventory.target(key.name, effective.EffectiveDisk.from_record(d, vm=key.name))
            for d in rec.spec["effective"]["disks"]
        )
        return tuple(_seen(ctx, target) for target in targets) + seeded
    domain = ctx.world.domains.get(ctx.libvirt(key))
    if domain is None:
        return seeded
    return seeded + tuple(
        actions.VolumeTarget(
            disk=d.name,
            pool=d.pool,
            volume=d.volume,
            size=0,
            image=None,
            reclaim=kinds.ReclaimPolicy.RETAIN,
            created=ctx.inventory.created(key.name, d.pool, d.volume),
        )
        for d in domain.shape.disks
        if d.pool
    )


def _config_changes(
    current: observed.VmShape, target: observed.VmShape, running: bool, volumes: Volumes | None
) -> tuple[list[actions.FieldChange], list[observed.NicShape]]:
    """Every field of the domain that differs, in plan order, and the NICs that are new.

    All but ``autostart`` are in the domain's definition (a :class:`~actions.Patch`).
    """
    cold = Impact.RESTART if running else Impact.LIVE
    changes = compare.compare(
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
    changes += _guest_changes(current, target, cold)
    changes += _seed_changes(current.seeds, target.seeds, cold)
    changes += _password_changes(current, target, cold)
    changes += _disk_changes(current, target, cold, volumes)
    nics, added = _nic_changes(current, target, cold)
    return changes + nics, added


# Guest hardware fields of a shape, by the manifest path the plan names them with.
_GUEST_FIELDS = {
    "cpu_mode": "cpu.mode",
    "tpm": "tpm",
    "guest_agent": "guestAgent",
    "spice_agent": "guestAgent.spice",
    "tablet": "tablet",
    "video": "video",
    "hyperv": "os.hyperv",
    "cdroms": "cdroms",
    "boot": "bootOrder",
    "host_devices": "hostDevices",
}


def _guest_changes(
    current: observed.VmShape, target: observed.VmShape, cold: Impact
) -> list[actions.FieldChange]:
    """The guest hardware the target owns (not ``None``) that differs; all of it at boot."""
    changes = []
    for name, path in _GUEST_FIELDS.items():
        want = getattr(target, name)
        have = getattr(current, name)
        if want is None or have == want:
            continue
        if name == "cpu_mode" and want == "":
            continue  # libvirt's default model: nothing of ours to compare
        if name == "cdroms":
            have = [f"{c.pool}/{c.volume}" for c in have or ()]
            want = [f"{c.pool}/{c.volume}" for c in want]
        changes.append(actions.FieldChange(path, compare.show(have), compare.show(want), cold))
    return changes


def _seed_intents(
    ctx: context.Context,
    key: record.ResourceKey,
    target: actions.VmTarget,
    current: observed.ObservedDomain | None,
) -> tuple[list[record.VolumeRecord], list[actions.Intent], list[actions.DeleteSeed]] | str:
    """Seeds to claim and upload, and superseded ones to delete; or a conflict's note.

    A seed volume is ours by the inventory, like a disk's: a file under a seed's name
    that we did not upload is never used. A superseded seed goes once neither the
    definition nor the running guest refers to it.
    """
    claims: list[record.VolumeRecord] = []
    uploads: list[actions.Intent] = []
    for seed in target.seeds:
        file = f"{seed.pool}/{seed.volume}"
        row = ctx.inventory.get(seed.pool, seed.volume)
        if row is not None and row.owner != key:
            return f"{seed.seed.field}: volume {file} is the seed of {row.owner}"
        found = ctx.volume(seed.pool, seed.volume)
        if found is not None and found.allocation >= 0 and row is None:
            return (
                f"{seed.seed.field}: volume {file} exists but was not created by this "
                "installation, so it is never used as a seed; move it away"
            )
        if row is None:
            claims.append(record.VolumeRecord(seed.pool, seed.volume, key, seed.seed.field))
        if found is None or found.allocation < 0:
            uploads.append(actions.UploadSeed(seed))
    wanted = {(s.pool, s.volume) for s in target.seeds}
    superseded = [
        actions.DeleteSeed(row.pool, row.name)
        for row in ctx.inventory.seeds_of(key.name)
        if (row.pool, row.name) not in wanted and ctx.volume(row.pool, row.name) is not None
    ]
    return claims, uploads, superseded


def _noted(
    changes: list[actions.FieldChange], target: actions.VmTarget
) -> list[actions.FieldChange]:
    """A new cloud-init seed's line says plainly when cloud-init runs again."""
    ids = {s.seed.field: s.seed.instance_id for s in target.seeds if s.seed.instance_id}
    noted = []
    for change in changes:
        iid = ids.get(change.path)
        if iid is not None and change.new is not None:
            change = dataclasses.replace(
                change,
                new=f"{change.new} (instance-id {iid}: cloud-init runs again only when it changes)",
            )
        noted.append(change)
    return noted


def _seed_changes(
    current: tuple[observed.CdromShape, ...] | None,
    target: tuple[observed.CdromShape, ...] | None,
    impact: Impact,
) -> list[actions.FieldChange]:
    """A first-boot seed attached, replaced or detached: the guest reads it at boot."""
    if target is None:
        return []
    have = {seeds.kind_of(c.volume): c for c in current or ()}
    want = {seeds.kind_of(c.volume): c for c in target}
    changes = []
    for kind in sorted(k for k in have.keys() | want.keys() if k is not None):
        old, new = have.get(kind), want.get(kind)
        if old != new:
            changes.append(
                actions.FieldChange(
                    seeds.field_of(kind),
                    f"{old.pool}/{old.volume}" if old else None,
                    f"{new.pool}/{new.volume}" if new else None,
                    impact,
                )
            )
    return changes


_PASSWORD = "graphics.password"


def _password_changes(
    current: observed.VmShape, target: observed.VmShape, cold: Impact
) -> list[actions.FieldChange]:
    """Whether the display has a password; its value is never compared, shown or recorded.

    Setting one is live (the running display takes it in place). Removing one waits
    for a restart: a VNC display started with a password asks for one until then.
    """
    if target.graphics_password is None or current.graphics_password == target.graphics_password:
        return []  # unset in the manifest: whatever password the display has is kept
    old = "set" if current.graphics_password else "none"
    new = kinds.GraphicsPassword.GENERATE.value if target.graphics_password else "none"
    impact = Impact.LIVE if target.graphics_password else cold
    return [actions.FieldChange(_PASSWORD, old, new, impact)]


def _password_set(changes: list[actions.FieldChange]) -> bool:
    """A password is set on the display by this change (the running one takes it live)."""
    return any(c.path == _PASSWORD and c.new != "none" for c in changes)


def _held(disk: observed.DiskShape, volumes: Volumes | None) -> tuple[str, bool]:
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
    current: observed.VmShape, target: observed.VmShape, cold: Impact, volumes: Volumes | None
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
) -> tuple[list[actions.FieldChange], list[observed.NicShape]]:
    """NICs by network, or by MAC on a network several NICs share; and the NICs added.

    A new NIC hot-plugs into a running guest; removing one needs the guest's
    cooperation (ACPI unplug), so it waits for a restart. NICs off any libvirt
    network (bridge, direct) are not modelled and never compared.
    """
    old = [n for n in current.nics if n.modelled]
    new = list(target.nics)
    shared = actions.shared_networks(old, new)
    old_nics = {actions.nic_path(n, shared): n.mac for n in old}
    new_nics = {actions.nic_path(n, shared): n for n in new}
    changes = []
    added = []
    old_filters = {actions.nic_path(n, shared): n.filter for n in old}
    for path in sorted(old_nics.keys() | new_nics.keys()):
        nic = new_nics.get(path)
        mac = nic.mac if nic is not None else None
        if old_nics.get(path) != mac:
            if path not in old_nics and nic is not None:
                added.append(nic)
            impact = Impact.LIVE if path not in old_nics else cold
            changes.append(actions.FieldChange(path, old_nics.get(path), mac, impact))
        elif nic is not None and old_filters.get(path) != nic.filter:
            # libvirt swaps a running NIC's filter in place: live, running or not.
            before, after = old_filters.get(path), nic.filter
            changes.append(
                actions.FieldChange(
                    f"{path}.filter",
                    before.filter if before is not None else None,
                    after.filter if after is not None else None,
                    Impact.LIVE,
                )
            )
    new_macs = {path: nic.mac for path, nic in new_nics.items()}
    if list(old_nics) != list(new_macs) and old_nics == new_macs:
        changes.append(
            actions.FieldChange(
                "networks.order", [n.network for n in old], [n.network for n in new], cold
            )
        )
    return changes, added


def restart_pending(live: observed.VmShape, target: observed.VmShape) -> bool:
    """The running guest differs from the config it would boot with.

    A running host-model guest shows the CPU libvirt expanded it to (``custom``).
    """
    if live.cpu_mode == "custom" and target.cpu_mode == kinds.CpuMode.HOST_MODEL.value:
        live = dataclasses.replace(live, cpu_mode=target.cpu_mode)
    changes, _ = _config_changes(live, target, running=True, volumes=None)
    return any(c.path != "autostart" for c in changes)
