"""Placement at fleet scale: time the pure ``placement.place`` over simulated hosts.

``hosts`` hosts in four racks, each 128 CPUs (overcommit 4) and 1 TiB; ``vms``
VMs of 2 vCPUs and 4 GiB, every second one with a ``hostSelector`` on one
rack, none placed yet. Both strategies are timed; every VM must be placed
(a rejection here is a placement bug, not a timing).
"""

from __future__ import annotations

import time

from reconciler.planning import placement

__all__ = ["fleet", "measure"]

GIB = 1024


def fleet(vms: int, hosts: int) -> tuple[list[placement.Host], list[placement.Request]]:
    machines = [
        placement.Host(
            f"hv-{i:04d}", 128, 1024 * GIB, labels={"rack": f"r{i % 4}"}, cpu_overcommit=4.0
        )
        for i in range(hosts)
    ]
    constraints = [placement.Constraints(), placement.Constraints.of(selector={"rack": "r1"})]
    requests = [
        placement.Request(f"vm-{i:06d}", 2, 4 * GIB, constraints[i % 2]) for i in range(vms)
    ]
    return machines, requests


def measure(vms: int, hosts: int, repeat: int) -> dict[str, list[float]]:
    machines, requests = fleet(vms, hosts)
    timings: dict[str, list[float]] = {}
    for strategy in placement.Strategy:
        for _ in range(repeat):
            started = time.perf_counter()
            result = placement.place(machines, requests, strategy)
            timings.setdefault(strategy.value, []).append(time.perf_counter() - started)
            if result.rejected:
                first = next(iter(result.rejected.values()))
                raise AssertionError(f"{len(result.rejected)} VMs not placed: {first.message()}")
    return timings
