"""Planner scaling: time the pure ``planner.plan`` on synthetic states, no libvirt, no SQL.

A state of ``size`` resources is one storage pool, one NAT network, one
template and ``size - 3`` VirtualMachines built on the template (a 16 MiB disk
in the pool, a NIC on the network, stopped). Two plans are timed:

* **create**: an empty world and an empty record, so every resource is created;
* **no-op**: a world and a record that already match, built from the create
  plan's own targets and spec writes, so the plan must come out empty (which is
  checked: a non-empty no-op plan is a planner bug, not a timing).

The documents go through the pydantic models and ``effective.merge`` as the
loader would, but not through YAML: the loader is not what is measured here.
"""

from __future__ import annotations

import datetime as dt
import time
from collections.abc import Sequence
from typing import Any

from reconciler.models import desired, effective, kinds, observed, record
from reconciler.planning import actions, planner

__all__ = ["build", "converged", "measure"]

API = "infinibay.io/v1alpha1"
INSTALLATION = "00000000-0000-4000-8000-0000000bench"


def _doc(kind: str, name: str, spec: dict[str, Any]) -> dict[str, Any]:
    return {"apiVersion": API, "kind": kind, "metadata": {"name": name}, "spec": spec}


def _loaded(manifest: Any, index: int) -> desired.Loaded:
    return desired.Loaded(manifest, desired.Source(f"bench/{index:06d}.yaml", 1, 1, 0))


def build(size: int) -> desired.DesiredState:
    """A desired state of ``size`` resources (at least 4)."""
    pool = kinds.StoragePool.model_validate(
        _doc("StoragePool", "bench-pool", {"path": "/var/lib/infinibay/pools/bench"})
    )
    network = kinds.Network.model_validate(
        _doc(
            "Network",
            "bench-net",
            {
                "mode": "nat",
                "ipv4": {
                    "address": "10.30.0.1/16",
                    "dhcp": {"start": "10.30.0.2", "end": "10.30.255.254"},
                },
            },
        )
    )
    template = kinds.Template.model_validate(
        _doc(
            "Template",
            "bench-tpl",
            {
                "cpus": 1,
                "memory": "64MiB",
                "disks": [{"name": "root", "size": "16MiB", "pool": "bench-pool"}],
                "networks": [{"network": "bench-net"}],
            },
        )
    )
    state = desired.DesiredState(
        pools={"bench-pool": _loaded(pool, 0)},
        networks={"bench-net": _loaded(network, 1)},
        templates={"bench-tpl": _loaded(template, 2)},
    )
    for index in range(3, max(size, 4)):
        name = f"vm-{index:06d}"
        vm = kinds.VirtualMachine.model_validate(
            _doc("VirtualMachine", name, {"template": "bench-tpl", "powerState": "Stopped"})
        )
        state.vms[name] = _loaded(vm, index)
        state.effective_vms[name] = effective.merge(vm, template)
    return state


def converged(
    plan: actions.Plan,
) -> tuple[list[record.ResourceRecord], observed.World]:
    """The record and the world after ``plan`` (a create plan) has been applied."""
    now = dt.datetime.now(dt.UTC)
    world = observed.World()
    for index, change in enumerate(plan.changes):
        uuid = f"00000000-0000-4000-8000-{index:012d}"
        name, target = change.key.name, change.target
        if isinstance(target, actions.PoolTarget):
            world.pools[name] = observed.ObservedPool(name, uuid, target.shape, True, {})
        elif isinstance(target, actions.NetworkTarget):
            world.networks[name] = observed.ObservedNetwork(
                name, uuid, change.owner, target.shape, True
            )
        elif isinstance(target, actions.VmTarget):
            world.domains[name] = observed.ObservedDomain(
                name, uuid, change.owner, target.shape, None, target.power, None
            )
            for volume in target.volumes:
                world.pools[volume.pool].volumes[volume.volume] = observed.ObservedVolume(
                    volume.pool, volume.volume, f"/pools/{volume.volume}", volume.size, None
                )
    records = [
        record.ResourceRecord(
            key=write.key,
            uid=f"uid-{index}",
            generation=1,
            spec=write.spec,
            spec_hash=write.spec_hash,
            source_file=write.source_file,
            source_document=write.source_document,
            source_revision=write.source_revision,
            labels=write.labels,
            annotations=write.annotations,
            status={"observedGeneration": 1},
            created_at=now,
            updated_at=now,
            deleted_at=None,
        )
        for index, write in enumerate(plan.spec_writes)
    ]
    return records, world


def _timed(
    state: desired.DesiredState,
    records: list[record.ResourceRecord],
    world: observed.World,
    volumes: Sequence[record.VolumeRecord] = (),
) -> tuple[float, actions.Plan]:
    start = time.perf_counter()
    result = planner.plan(state, records, world, installation=INSTALLATION, volumes=volumes)
    return time.perf_counter() - start, result


def measure(size: int, repeat: int) -> dict[str, list[float]]:
    """Seconds per create plan and per no-op plan of ``size`` resources, ``repeat`` times each."""
    state = build(size)
    timings: dict[str, list[float]] = {"create": [], "noop": []}
    for _ in range(repeat):
        elapsed, created = _timed(state, [], observed.World())
        timings["create"].append(elapsed)
    records, world = converged(created)
    for _ in range(repeat):
        elapsed, again = _timed(state, records, world, created.volume_claims)
        if not again.empty or again.spec_writes:
            raise AssertionError(f"the no-op plan of {size} resources is not empty: {again}")
        timings["noop"].append(elapsed)
    return timings
