"""Where each VM runs: pure, deterministic and sticky placement over hosts (SPEC §10).

The planner asks one question per pass: given the hosts as they are and the VMs
as declared (with where each runs now), which host does each VM belong on?
The answer depends only on the arguments: no clock, no randomness, no
iteration order of a mapping the caller built. So the same fleet always gets
the same answer, the plan a user reviews is the plan that runs, and a property
test can check the rules below on any fleet.

1. **Sticky first.** A VM that runs on a host stays there while that host
   still satisfies its pin and its selector and is not draining, whatever the
   capacity says (a placed VM is never moved to rebalance) and even when the
   host is unreachable (there is no fencing of a host we cannot see: its VMs
   are reported, never evacuated). Sticky VMs are counted first, so what is
   left of each host is what new placements may take.
2. **Filter.** A host is a candidate for a VM when it is reachable,
   schedulable and not draining; it is the pinned host, if any; its labels
   match the selector; every pool and network the VM uses may exist on it
   (one without ``hosts``/``hostSelector`` may exist anywhere); it has every
   PCI device the VM passes through; and what is left of its capacity
   (``getInfo`` times overcommit, minus what is placed) holds the VM's vCPUs and
   memory.
3. **Score.** ``spread`` (the default) takes the candidate with the most room
   left, as a fraction of its capacity (memory, then vCPUs); ``pack`` the one
   with the least room that still fits, so hosts fill one after another. Ties go
   to the host name, so nothing depends on input order.

VMs that need a host are placed largest first (memory, then vCPUs, then name),
so a big VM is not left without room by many small ones placed before it. A
VM that fits nowhere gets a :class:`Rejection` with one reason per host, which
the planner turns into a located error.

At fleet scale the filters that do not change while VMs are placed (pin,
selector, pools, networks, devices) are computed once per distinct set of
constraints, not once per VM: 10,000 VMs over 100 hosts share a handful.
"""

from __future__ import annotations

import dataclasses
import enum
from collections.abc import Iterable, Mapping, Sequence

__all__ = [
    "Constraints",
    "Host",
    "Placement",
    "Rejection",
    "Request",
    "Strategy",
    "place",
]


class Strategy(enum.Enum):
    SPREAD = "spread"
    PACK = "pack"


@dataclasses.dataclass(frozen=True)
class Host:
    """A hypervisor as placement sees it: labels, state and raw capacity."""

    name: str
    cpus: int
    memory_mib: int
    labels: Mapping[str, str] = dataclasses.field(default_factory=dict)
    schedulable: bool = True
    drain: bool = False
    reachable: bool = True
    cpu_overcommit: float = 1.0
    memory_overcommit: float = 1.0
    devices: frozenset[str] = frozenset()  # PCI addresses, as "0000:01:00.0"

    @property
    def cpu_capacity(self) -> float:
        return self.cpus * self.cpu_overcommit

    @property
    def memory_capacity(self) -> float:
        return self.memory_mib * self.memory_overcommit


@dataclasses.dataclass(frozen=True)
class Constraints:
    """What limits a VM's hosts apart from capacity; equal for many VMs of a fleet."""

    pin: str | None = None
    selector: tuple[tuple[str, str], ...] = ()  # sorted (label, value) pairs
    # Each pool or network the VM uses that is limited to some hosts: its
    # reference (``storagepool/images``) and the hosts it may exist on.
    limited_to: tuple[tuple[str, frozenset[str]], ...] = ()
    devices: frozenset[str] = frozenset()

    @classmethod
    def of(
        cls,
        *,
        pin: str | None = None,
        selector: Mapping[str, str] | None = None,
        limited_to: Mapping[str, Iterable[str]] | None = None,
        devices: Iterable[str] = (),
    ) -> Constraints:
        return cls(
            pin=pin,
            selector=tuple(sorted((selector or {}).items())),
            limited_to=tuple(sorted((ref, frozenset(h)) for ref, h in (limited_to or {}).items())),
            devices=frozenset(devices),
        )

    def refusal(self, host: Host) -> str | None:
        """Why ``host`` can never take a VM with these constraints, or None."""
        if self.pin is not None and host.name != self.pin:
            return f"the VM is pinned to {self.pin}"
        for label, value in self.selector:
            if host.labels.get(label) != value:
                return f"label {label}={value} does not match hostSelector"
        for ref, hosts in self.limited_to:
            if host.name not in hosts:
                return f"{ref} is not on this host"
        missing = sorted(self.devices - host.devices)
        if missing:
            return f"no PCI device {', '.join(missing)}"
        return None


@dataclasses.dataclass(frozen=True)
class Request:
    """One VM to place: its size, its constraints and where it runs now (if anywhere)."""

    name: str
    cpus: int
    memory_mib: int
    constraints: Constraints = Constraints()
    current: str | None = None
    movable: bool = True  # False for a VM with host devices: never moved automatically


@dataclasses.dataclass(frozen=True)
class Rejection:
    """Why a VM fits on no host: one reason per host, in host-name order."""

    vm: str
    reasons: tuple[tuple[str, str], ...]

    def message(self) -> str:
        if not self.reasons:
            return "no host is declared"
        return "fits on no host: " + "; ".join(f"{host}: {why}" for host, why in self.reasons)


@dataclasses.dataclass(frozen=True)
class Placement:
    """The answer: each placed VM's host, the moves among them, and the VMs that fit nowhere."""

    hosts: Mapping[str, str]  # VM -> host
    moves: Mapping[str, tuple[str, str]]  # VM -> (from, to), a subset of ``hosts``
    rejected: Mapping[str, Rejection]
    # VMs left where they are although their host no longer suits them, and why
    # (an unreachable host we cannot move from, a VM with host devices).
    held: Mapping[str, str]


def _host_state(host: Host) -> str | None:
    if not host.reachable:
        return "unreachable"
    if host.drain:
        return "draining"
    if not host.schedulable:
        return "not schedulable"
    return None


def _stays(request: Request, host: Host | None) -> bool:
    """Whether a VM keeps the host it runs on (rule 1)."""
    if host is None:
        return False
    if host.drain and host.reachable:
        return False
    constraints = request.constraints
    if constraints.pin is not None and constraints.pin != host.name:
        return False
    return all(host.labels.get(label) == value for label, value in constraints.selector)


class _Room:
    """What is left of each host's capacity while VMs are placed, by host index.

    Plain lists, not objects per host: the candidate scan below is the one
    loop that runs VMs times hosts times.
    """

    def __init__(self, hosts: Sequence[Host]) -> None:
        self.index = {h.name: i for i, h in enumerate(hosts)}
        self.names = [h.name for h in hosts]
        self.cpu = [h.cpu_capacity for h in hosts]
        self.memory = [h.memory_capacity for h in hosts]
        self.per_cpu = [1.0 / (h.cpu_capacity or 1.0) for h in hosts]
        self.per_memory = [1.0 / (h.memory_capacity or 1.0) for h in hosts]

    def take(self, host: int, request: Request) -> None:
        self.cpu[host] -= request.cpus
        self.memory[host] -= request.memory_mib

    def best(self, candidates: Sequence[int], request: Request, strategy: Strategy) -> int | None:
        """The candidate with the most room left as a fraction (spread) or the least (pack)."""
        cpus, memory_mib = request.cpus, request.memory_mib
        cpu, memory, per_cpu, per_memory = self.cpu, self.memory, self.per_cpu, self.per_memory
        spread = strategy is Strategy.SPREAD
        best: int | None = None
        best_memory = best_cpu = 0.0
        # Candidates come in host-name order, so a strict comparison keeps the
        # first name among equals.
        for i in candidates:
            if memory[i] < memory_mib or cpu[i] < cpus:
                continue
            free_memory, free_cpu = memory[i] * per_memory[i], cpu[i] * per_cpu[i]
            if best is None:
                best, best_memory, best_cpu = i, free_memory, free_cpu
            elif spread:
                if free_memory > best_memory or (
                    free_memory == best_memory and free_cpu > best_cpu
                ):
                    best, best_memory, best_cpu = i, free_memory, free_cpu
            elif free_memory < best_memory or (free_memory == best_memory and free_cpu < best_cpu):
                best, best_memory, best_cpu = i, free_memory, free_cpu
        return best

    def shortfall(self, host: int, request: Request) -> str:
        memory, cpu = self.memory[host], self.cpu[host]
        if request.memory_mib > memory:
            return f"not enough memory (needs {request.memory_mib} MiB, {max(0, int(memory))} free)"
        return f"not enough vCPUs (needs {request.cpus}, {max(0.0, cpu):g} free)"


def place(
    hosts: Iterable[Host],
    requests: Iterable[Request],
    strategy: Strategy = Strategy.SPREAD,
) -> Placement:
    """Place every request on a host (see the module docstring for the rules)."""
    ordered_hosts = sorted(hosts, key=lambda h: h.name)
    by_name = {h.name: h for h in ordered_hosts}
    room = _Room(ordered_hosts)
    placed: dict[str, str] = {}
    moves: dict[str, tuple[str, str]] = {}
    held: dict[str, str] = {}
    waiting: list[Request] = []

    for request in sorted(requests, key=lambda r: r.name):
        current = by_name.get(request.current) if request.current else None
        if current is not None and (_stays(request, current) or not request.movable):
            placed[request.name] = current.name
            room.take(room.index[current.name], request)
            if not _stays(request, current):
                held[request.name] = "it passes host devices through, so it is never moved"
            elif not current.reachable:
                held[request.name] = f"host {current.name} is unreachable"
        else:
            waiting.append(request)

    waiting.sort(key=lambda r: (-r.memory_mib, -r.cpus, r.name))
    static: dict[Constraints, tuple[list[int], list[tuple[str, str]]]] = {}
    rejected: dict[str, Rejection] = {}
    for request in waiting:
        found = static.get(request.constraints)
        if found is None:
            found = static[request.constraints] = _filter(ordered_hosts, request.constraints)
        candidates, refused = found
        best = room.best(candidates, request, strategy)
        if best is None:
            short = [(room.names[i], room.shortfall(i, request)) for i in candidates]
            rejected[request.name] = Rejection(request.name, tuple(sorted([*refused, *short])))
            continue
        target = room.names[best]
        placed[request.name] = target
        room.take(best, request)
        if request.current is not None and request.current != target:
            moves[request.name] = (request.current, target)
    return Placement(hosts=placed, moves=moves, rejected=rejected, held=held)


def _filter(
    hosts: Sequence[Host], constraints: Constraints
) -> tuple[list[int], list[tuple[str, str]]]:
    """The hosts (by index) that may take VMs with these constraints, and why each other may not."""
    candidates: list[int] = []
    refused: list[tuple[str, str]] = []
    for i, host in enumerate(hosts):
        why = _host_state(host) or constraints.refusal(host)
        if why is None:
            candidates.append(i)
        else:
            refused.append((host.name, why))
    return candidates, refused
