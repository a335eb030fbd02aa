"""Planning over several hosts: where each VM belongs, and each host's share of a pass.

With ``Host`` manifests (SPEC §10) a pass observes every host, then
:func:`split` decides, purely, where each VM runs (:mod:`placement`) and
cuts the desired state and the record into one :class:`Slice` per reachable
host: the VMs placed there, the pools and networks they use (or that are
limited to that host), and every record-only kind. Each slice is planned by
the one-host planner against that host's world, exactly as a pass on one host
would be, and :func:`merge` joins the plans, each change carrying its host.

What the split keeps apart:

* A VM's record goes to the slice of the host it is on (observed there, else
  the host its status names), so a pass on one host never plans another
  host's VM, and pruning deletes it where it is.
* A pool or network record goes to a slice where the resource is desired, or,
  when it is no longer declared at all, to every slice, so that pruning
  removes it from each host that has it. A declared pool a host does not need
  is left out of that host's slice altogether: neither created nor deleted.
* A VM on an unreachable host is *stranded*: not planned, not re-placed
  (there is no fencing of a host we cannot see), reported as unknown with the
  condition ``HostUnreachable``.
* A sharded daemon (``mine``: the hosts whose lease it holds) plans and reports
  its own hosts alone; every daemon places the same way, from the same record
  and the same observation of every host. A move between two hosts that not
  one daemon holds both of waits, the VM staying where it is.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from typing import Any

from reconciler.models import desired, kinds, naming, observed, record
from reconciler.planning import actions, placement
from reconciler.planning import status as status_module

__all__ = [
    "HostState",
    "Slice",
    "Split",
    "host_status",
    "joined",
    "leftovers",
    "merge",
    "split",
    "stranded_status",
]

_VM = kinds.Kind.VIRTUAL_MACHINE.value
_POOL = kinds.Kind.STORAGE_POOL.value
_NETWORK = kinds.Kind.NETWORK.value
# Kinds with no libvirt object: planned once, whatever the number of hosts.
_RECORD_ONLY = frozenset(
    k.value for k in (kinds.Kind.TEMPLATE, kinds.Kind.DEPARTMENT, kinds.Kind.HOST)
)


@dataclasses.dataclass(frozen=True)
class HostState:
    """A declared host as one pass found it: its world, or why it could not be reached."""

    name: str
    manifest: kinds.Host
    world: observed.World | None
    error: str = ""

    @property
    def reachable(self) -> bool:
        return self.world is not None


@dataclasses.dataclass(frozen=True)
class Slice:
    """One reachable host's share of a pass: plan ``state`` against ``records`` and ``world``."""

    host: str
    state: desired.DesiredState
    records: list[record.ResourceRecord]
    world: observed.World


@dataclasses.dataclass(frozen=True)
class Split:
    slices: tuple[Slice, ...]
    placed: Mapping[str, str]  # VM -> host, for every VM planned
    stranded: Mapping[str, str]  # VM -> its unreachable host
    moves: Mapping[str, tuple[str, str]]  # VM -> (from, to): a cold move this pass makes
    errors: tuple[str, ...]  # located: VMs that fit nowhere
    hosts: tuple[HostState, ...]
    # The hosts the last pass found each pool and network on (their status ``hosts``).
    present: Mapping[record.ResourceKey, frozenset[str]] = dataclasses.field(default_factory=dict)
    mine: frozenset[str] | None = None  # a sharded daemon's hosts; None: every host
    live: frozenset[str] = frozenset()  # the moves that migrate a running VM (shared storage)

    def acts_on(self, host: str) -> bool:
        """Whether this pass plans, acts on and reports ``host``."""
        return self.mine is None or host in self.mine

    def emptied(self, host: str) -> bool:
        """Whether ``host`` drains and will have none of the VMs once this pass ends."""
        state = next((h for h in self.hosts if h.name == host), None)
        return (
            state is not None
            and state.manifest.spec.drain
            and host not in self.placed.values()
            and host not in self.stranded.values()
        )


def _current(
    state: desired.DesiredState,
    records: Sequence[record.ResourceRecord],
    hosts: Sequence[HostState],
) -> dict[str, str]:
    """Where each VM (declared or recorded) is now: observed there, else its status says."""
    names: dict[str, str] = {}  # VM -> libvirt name
    recorded_host: dict[str, str] = {}
    for rec in records:
        if rec.key.kind == _VM and rec.deleted_at is None:
            names[rec.key.name] = naming.libvirt_name(rec.key.name, rec.annotations)
            if isinstance(rec.status.get("host"), str):
                recorded_host[rec.key.name] = rec.status["host"]
    for name, loaded in state.vms.items():
        names[name] = naming.libvirt_name(name, loaded.manifest.metadata.annotations)
    declared = {h.name for h in hosts}
    where: dict[str, str] = {}
    for vm, libvirt in names.items():
        found = [h.name for h in hosts if h.world is not None and libvirt in h.world.domains]
        if recorded_host.get(vm) in found:
            where[vm] = recorded_host[vm]  # a move cut off half-way: the record's host wins
        elif found:
            where[vm] = found[0]
        elif recorded_host.get(vm) in declared:
            where[vm] = recorded_host[vm]  # gone from a reachable host, or not seen at all
    return where


def _limits(loaded: desired.Loaded | None, hosts: Sequence[HostState]) -> frozenset[str] | None:
    """The hosts a pool or network may exist on; ``None``: any host."""
    if loaded is None:
        return None
    spec = loaded.manifest.spec
    listed: list[str] = list(getattr(spec, "hosts", []) or [])
    selector: dict[str, str] = dict(getattr(spec, "hostSelector", {}) or {})
    if not listed and not selector:
        return None
    return frozenset(
        h.name
        for h in hosts
        if (not listed or h.name in listed)
        and all(h.manifest.metadata.labels.get(k) == v for k, v in selector.items())
    )


def _uses(vm: Any) -> tuple[set[str], set[str]]:
    """The pools and networks (by resource name) an effective VM needs on its host."""
    pools: set[str] = set()
    for disk in vm.disks:
        pools.add(disk.pool)
        if disk.image_source is not None:
            pools.add(disk.image_source)
    pools.update(c.pool for c in vm.cdroms or ())
    if vm.first_boot is not None and vm.first_boot.pool is not None:
        pools.add(vm.first_boot.pool)
    return pools, {n.network for n in vm.nics}


def split(
    state: desired.DesiredState,
    records: Sequence[record.ResourceRecord],
    hosts: Sequence[HostState],
    strategy: placement.Strategy = placement.Strategy.SPREAD,
    mine: frozenset[str] | None = None,
) -> Split:
    """Place every VM and cut the pass into one slice per reachable host (module doc)."""
    by_name = {h.name: h for h in hosts}
    current = _current(state, records, hosts)
    pool_limits = {n: _limits(loaded, hosts) for n, loaded in state.pools.items()}
    network_limits = {n: _limits(loaded, hosts) for n, loaded in state.networks.items()}
    requests = []
    uses: dict[str, tuple[set[str], set[str]]] = {}
    for name, vm in state.effective_vms.items():
        spec = state.vms[name].manifest.spec
        assert isinstance(spec, kinds.VirtualMachineSpec)
        pools, networks = uses[name] = _uses(vm)
        limited = {f"storagepool/{p}": h for p in pools if (h := pool_limits.get(p)) is not None}
        limited |= {f"network/{n}": h for n in networks if (h := network_limits.get(n)) is not None}
        requests.append(
            placement.Request(
                name=name,
                cpus=vm.cpus,
                memory_mib=vm.memory >> 20,
                constraints=placement.Constraints.of(
                    pin=spec.host,
                    selector=spec.hostSelector,
                    limited_to=limited,
                    devices=vm.host_devices or (),
                ),
                current=current.get(name),
                movable=not vm.host_devices,
            )
        )
    answer = placement.place([_placement_host(h) for h in hosts], requests, strategy)
    # A VM moves only from a host this pass reaches: it is stopped and copied from there.
    placed = dict(answer.hosts)
    moves: dict[str, tuple[str, str]] = {}
    for moved, (source, target) in answer.moves.items():
        held = mine is None or (source in mine and target in mine)
        if source in by_name and by_name[source].reachable and held:
            moves[moved] = (source, target)
        else:
            placed[moved] = source
    live = frozenset(
        vm
        for vm, (source, _target) in moves.items()
        if _migratable(state, vm, uses[vm][0], by_name[source])
    )
    stranded = {
        vm: host
        for vm, host in {**current, **placed}.items()
        if host in by_name and not by_name[host].reachable and (mine is None or host in mine)
    }
    errors = tuple(
        f"{state.vms[vm].source.at(('spec',))}: VirtualMachine/{vm}: {why.message()}"
        for vm, why in sorted(answer.rejected.items())
    )
    slices: list[Slice] = []
    for host in sorted(hosts, key=lambda h: h.name):
        if host.world is None or (mine is not None and host.name not in mine):
            continue
        slices.append(
            _slice(
                state,
                records,
                host,
                placed,
                current,
                uses,
                pool_limits,
                network_limits,
                first=not slices,
            )
        )
    return Split(
        slices=tuple(slices),
        placed={vm: h for vm, h in placed.items() if vm not in stranded},
        stranded=stranded,
        moves=moves,
        errors=errors,
        hosts=tuple(hosts),
        present={
            r.key: frozenset(r.status["hosts"])
            for r in records
            if r.key.kind in (_POOL, _NETWORK)
            and r.deleted_at is None
            and isinstance(r.status.get("hosts"), list)
        },
        mine=mine,
        live=live,
    )


def _migratable(state: desired.DesiredState, vm: str, pools: set[str], source: HostState) -> bool:
    """Whether ``vm`` moves live: running on ``source``, declared Running, every pool shared."""
    loaded = state.vms[vm]
    spec = loaded.manifest.spec
    assert isinstance(spec, kinds.VirtualMachineSpec)
    if spec.powerState is not kinds.PowerState.RUNNING or source.world is None:
        return False
    domain = source.world.domains.get(naming.libvirt_name(vm, loaded.manifest.metadata.annotations))
    if domain is None or domain.power is not kinds.PowerState.RUNNING:
        return False
    declared = [state.pools.get(p) for p in pools]
    return bool(declared) and all(
        p is not None
        and isinstance(p.manifest.spec, kinds.StoragePoolSpec)
        and p.manifest.spec.shared
        for p in declared
    )


def _placement_host(host: HostState) -> placement.Host:
    spec = host.manifest.spec
    found = host.world.host if host.world is not None else observed.Host()
    return placement.Host(
        name=host.name,
        cpus=found.cpus,
        memory_mib=found.memory_mib,
        labels=dict(host.manifest.metadata.labels),
        schedulable=spec.schedulable,
        drain=spec.drain,
        reachable=host.reachable,
        cpu_overcommit=spec.overcommit.cpu,
        memory_overcommit=spec.overcommit.memory,
        devices=found.pci or frozenset(),
    )


def _slice(
    state: desired.DesiredState,
    records: Sequence[record.ResourceRecord],
    host: HostState,
    placed: Mapping[str, str],
    current: Mapping[str, str],
    uses: Mapping[str, tuple[set[str], set[str]]],
    pool_limits: Mapping[str, frozenset[str] | None],
    network_limits: Mapping[str, frozenset[str] | None],
    *,
    first: bool,
) -> Slice:
    assert host.world is not None
    vms = {vm for vm, h in placed.items() if h == host.name}
    pools = {p for vm in vms for p in uses[vm][0]}
    networks = {n for vm in vms for n in uses[vm][1]}
    # Limited to some hosts, this one among them: it exists here whether or not a VM uses it.
    pools |= {p for p, limit in pool_limits.items() if limit is not None and host.name in limit}
    networks |= {
        n for n, limit in network_limits.items() if limit is not None and host.name in limit
    }
    part = dataclasses.replace(
        state,
        vms={n: v for n, v in state.vms.items() if n in vms},
        effective_vms={n: v for n, v in state.effective_vms.items() if n in vms},
        pools={n: v for n, v in state.pools.items() if n in pools},
        networks={n: v for n, v in state.networks.items() if n in networks},
    )
    kept = []
    for rec in records:
        kind, name = rec.key.kind, rec.key.name
        if kind == _VM:
            here = placed.get(name, current.get(name))
            if here is None and name not in state.vms:
                here = host.name if first else None  # a record of no host: one pass tidies it
            if here == host.name:
                kept.append(rec)
        elif kind == _POOL:
            if name in pools or name not in state.pools:
                kept.append(_on_host(rec, host.name))
        elif kind == _NETWORK:
            if name in networks or name not in state.networks:
                kept.append(rec)
        else:
            kept.append(rec)
    return Slice(host.name, part, kept, host.world)


def joined(split_: Split) -> observed.World:
    """One world of every reachable host's (the first host's object where names meet).

    What a whole-pass check reads (a saved plan's digest, the journal's closing
    of a killed pass's intents); planning itself reads each host's own world.
    """
    world = observed.World()
    for piece in reversed(split_.slices):
        world.domains.update(piece.world.domains)
        world.networks.update(piece.world.networks)
        world.pools.update(piece.world.pools)
        world.filters.update(piece.world.filters)
    if split_.slices:
        world = dataclasses.replace(world, host=split_.slices[0].world.host)
    return world


def _on_host(rec: record.ResourceRecord, host: str) -> record.ResourceRecord:
    """A pool's record as one host's pass reads it: with the UUID of that host's pool.

    A pool is owned through the record (its UUID in the status); on several
    hosts each has its own, kept in ``status.uuids`` by host.
    """
    uuids = rec.status.get("uuids")
    if not isinstance(uuids, dict):
        return rec
    return dataclasses.replace(rec, status={**rec.status, "uuid": uuids.get(host)})


def merge(plans: Sequence[tuple[str, actions.Plan]], split_: Split) -> actions.Plan:
    """One plan of the per-host plans, each change naming its host (record-only kinds once)."""
    changes: list[actions.Change] = []
    seen: set[record.ResourceKey] = set()
    writes: dict[record.ResourceKey, record.SpecWrite] = {}
    errors: list[str] = list(split_.errors)
    in_sync: dict[record.ResourceKey, None] = {}
    not_found: dict[record.ResourceKey, None] = {}
    claims: dict[tuple[str, str], record.VolumeRecord] = {}
    suspended: dict[record.ResourceKey, None] = {}
    names: dict[record.ResourceKey, str] = {}
    for host, plan in plans:
        for change in plan.changes:
            if change.key.kind in _RECORD_ONLY:
                if change.key in seen:
                    continue
                seen.add(change.key)
                changes.append(change)
            elif change.key.kind == _VM and change.key.name in split_.moves:
                source = split_.moves[change.key.name][0]
                changes.append(_moving(change, host, source, live=change.key.name in split_.live))
            else:
                # A pool or network new to a host is created there, not drift corrected.
                known = split_.present.get(change.key)
                fresh = change.verb is actions.Verb.CREATE and known is not None
                drift = change.drift and not (fresh and host not in (known or ()))
                changes.append(dataclasses.replace(change, host=host, drift=drift))
        for write in plan.spec_writes:
            writes.setdefault(write.key, write)
        errors += [e for e in plan.errors if e not in errors]
        in_sync.update(dict.fromkeys(plan.in_sync))
        not_found.update(dict.fromkeys(plan.not_found))
        claims.update({(c.pool, c.name): c for c in plan.volume_claims})
        suspended.update(dict.fromkeys(plan.suspended))
        names.update(plan.libvirt_names)
    for vm, host in sorted(split_.stranded.items()):
        key = record.ResourceKey(_VM, vm)
        changes.append(
            actions.Change(
                key=key, verb=actions.Verb.UNKNOWN, host=host, note=f"host {host} unreachable"
            )
        )
    # Changed in some slice, in sync in another (a pool on two hosts): not in sync.
    changed = {c.key for c in changes}
    return actions.Plan(
        changes=tuple(changes),  # host by host as the slices came, record-only kinds once
        in_sync=tuple(k for k in in_sync if k not in changed),
        spec_writes=tuple(writes.values()),
        errors=tuple(errors),
        not_found=tuple(k for k in not_found if k not in changed and k not in in_sync),
        volume_claims=tuple(claims.values()),
        suspended=tuple(suspended),
        libvirt_names=names,
    )


def leftovers(
    split_: Split, records: Sequence[record.ResourceRecord]
) -> list[tuple[Slice, list[record.ResourceKey], list[record.ResourceRecord]]]:
    """Per drained host: the pools and networks of ours it has but no VM there needs any more.

    Each is deleted on that host alone (``Change.local``); the resource stays
    wherever else it is needed. The slice comes back with the world as it will
    be once the pass has moved the VMs away, so that their domains do not keep
    the pools and networks they leave "in use".
    """
    by_key = {r.key: r for r in records if r.deleted_at is None}
    found = []
    for piece in split_.slices:
        if not split_.emptied(piece.host):
            continue
        leaving = {
            naming.libvirt_name(vm, by_key[key].annotations if key in by_key else {})
            for vm, (source, _target) in split_.moves.items()
            if source == piece.host and (key := record.ResourceKey(_VM, vm))
        }
        after = dataclasses.replace(
            piece.world,
            domains={n: d for n, d in piece.world.domains.items() if n not in leaving},
        )
        piece = dataclasses.replace(piece, world=after)
        gone: list[record.ResourceKey] = []
        for key, rec in by_key.items():
            libvirt = naming.libvirt_name(key.name, rec.annotations)
            if key.kind == _POOL and key.name not in piece.state.pools:
                if libvirt in piece.world.pools:
                    gone.append(key)
            elif key.kind == _NETWORK and key.name not in piece.state.networks:
                network = piece.world.networks.get(libvirt)
                if network is not None and network.owner is not None:
                    gone.append(key)
        if gone:
            found.append((piece, gone, [by_key[k] for k in gone]))
    return found


def _moving(change: actions.Change, host: str, source: str, *, live: bool) -> actions.Change:
    """The target host's create of a VM, as the move from ``source`` it is (live or cold)."""
    impact = actions.Impact.LIVE if live else actions.Impact.RESTART
    moved = actions.FieldChange("host", source, host, impact)
    return dataclasses.replace(
        change,
        host=host,
        move_from=source,
        move_live=live,
        fields=(moved, *change.fields),
        drift=False,
    )


def host_status(
    split_: Split, state: desired.DesiredState, *, holder: str | None = None
) -> list[record.StatusWrite]:
    """Each declared host's status: reachable, capacity, what is placed on it, by whom."""
    writes = []
    for host in split_.hosts:
        if not split_.acts_on(host.name):
            continue  # another daemon's: it reports it
        spec = host.manifest.spec
        vms = sorted(vm for vm, h in {**split_.placed, **split_.stranded}.items() if h == host.name)
        sized = [state.effective_vms[vm] for vm in vms if vm in state.effective_vms]
        status: dict[str, Any] = {
            "phase": "Ready" if host.reachable else "Unreachable",
            "reachable": host.reachable,
            "vms": vms,
            "allocated": {
                "cpus": sum(vm.cpus for vm in sized),
                "memoryMiB": sum(vm.memory >> 20 for vm in sized),
            },
        }
        if host.reachable and host.world is not None:
            found = host.world.host
            status["capacity"] = {
                "cpus": round(found.cpus * spec.overcommit.cpu, 2),
                "memoryMiB": int(found.memory_mib * spec.overcommit.memory),
            }
        if not host.reachable:
            status["message"] = host.error
        if holder is not None:
            status["holder"] = holder
        writes.append(
            record.StatusWrite(record.ResourceKey(kinds.Kind.HOST.value, host.name), status)
        )
    return writes


def stranded_status(
    split_: Split, records: Sequence[record.ResourceRecord], stamp: str
) -> list[record.StatusWrite]:
    """The status of each VM on an unreachable host: unknown, condition ``HostUnreachable``."""
    by_key = {r.key: r for r in records if r.deleted_at is None}
    writes = []
    for vm, host in sorted(split_.stranded.items()):
        key = record.ResourceKey(_VM, vm)
        rec = by_key.get(key)
        if rec is None:
            continue
        message = f"host {host} is unreachable; the VM is neither observed nor moved"
        status = dict(rec.status)
        previous = list(status.get("conditions", []))
        others = [c for c in previous if c.get("type") != "HostUnreachable"]
        unreachable = status_module.condition(
            previous, "HostUnreachable", True, "HostUnreachable", message, stamp
        )
        status.update(phase="Unknown", host=host, conditions=[*others, unreachable])
        writes.append(record.StatusWrite(key, status))
    return writes
