"""Moving a VM between hosts, through the libvirt API alone (SPEC §10).

A running VM whose pools are all declared ``shared`` moves live
(:func:`migrate`); every other move is cold.

A move is the target host's create of the VM (its change carries ``move_from``)
with two steps around it, each on the connections the pass already holds:

1. :func:`copy` — before the create: shut the guest down on the source
   (gracefully, forced after the shutdown timeout), then copy each of its
   volumes with libvirt's storage streams, downloaded from the source pool and
   uploaded into the same pool on the target, and verify the copy: the bytes
   read back from the target have the size and SHA-256 of the source's.
2. the create itself defines the domain on the target from the manifests (its
   MACs kept from the record), over the copied volumes, and starts it if it is
   declared Running;
3. :func:`release` — only once the create succeeded: the source domain is
   undefined and the copied volumes deleted there, so nothing is left behind.

A move that fails before the create leaves the source as it was (stopped, if it
had been running: the next pass starts it again there or moves it again); one
that fails in the create leaves the source's domain and volumes in place. A
volume the target already has from a move cut off half-way is replaced.

Storage the two hosts share (one NFS export, a cluster file system, or a
directory both see) is found out, never assumed: before copying, a small probe
volume is made in each pool on the source and looked for on the target
(:func:`shared_pools`). A shared pool's volumes are neither copied (that would
replace a volume with itself) nor deleted from the source afterwards (that would
delete the moved VM's disk): the move only stops, defines and starts.
"""

from __future__ import annotations

import contextlib
import hashlib
import secrets
from collections.abc import Iterable, Iterator

from reconciler import errors
from reconciler.engine import ports
from reconciler.engine.outcome import Options, Outcome
from reconciler.planning import actions

__all__ = ["Probes", "copy", "migrate", "release", "shared_pools"]


PROBE_PREFIX = "infinibay-move-probe-"
PROBE_BYTES = 1 << 20


def shared_pools(
    source: ports.Hypervisor, target: ports.Hypervisor, pools: Iterable[str]
) -> frozenset[str]:
    """The pools whose storage ``target`` sees as ``source``'s own (a probe seen on both)."""
    shared: set[str] = set()
    for pool in sorted(set(pools)):
        probe = PROBE_PREFIX + secrets.token_hex(6)
        try:
            source.create_volume(pool, probe, PROBE_BYTES)
        except errors.NotFoundError:
            continue  # no such pool on the source: nothing there to share
        try:
            there = target.observe(refresh={pool}, domains=(), volumes={pool}).pools.get(pool)
            if there is not None and probe in there.volumes:
                shared.add(pool)
        finally:
            with contextlib.suppress(errors.HypervisorError):
                source.delete_volume(pool, probe)
            with contextlib.suppress(errors.HypervisorError):  # the target forgets the probe
                target.observe(refresh={pool}, domains=(), volumes={pool})
    return frozenset(shared)


class Probes:
    """What one pass has found out about the storage of each pair of hosts, pool by pool.

    A drain moves many VMs over the same few pools: each pool of each pair of
    hosts is probed once per pass, not once per VM.
    """

    def __init__(self) -> None:
        self._found: dict[tuple[str, str, str], bool] = {}  # (source, target, pool) -> shared

    def shared(
        self,
        source: ports.Hypervisor,
        target: ports.Hypervisor,
        change: actions.Change,
        pools: Iterable[str],
    ) -> frozenset[str]:
        """The pools of ``pools`` that ``change``'s two hosts share."""
        wanted = set(pools)
        unknown = {p for p in wanted if (change.move_from, change.host, p) not in self._found}
        found = shared_pools(source, target, unknown)
        for pool in unknown:
            self._found[change.move_from, change.host, pool] = pool in found
        return frozenset(p for p in wanted if self._found[change.move_from, change.host, p])


def _seeds(change: actions.Change) -> list[tuple[str, str]]:
    target = change.target
    if not isinstance(target, actions.VmTarget):
        return []
    return [(seed.pool, seed.volume) for seed in target.shape.seeds or ()]


def _volumes(change: actions.Change) -> list[actions.VolumeTarget]:
    target = change.target
    if not isinstance(target, actions.VmTarget):
        return []
    return [v for v in target.volumes if v.image_pool is None or v.image_pool != v.pool]


class _Digest:
    """Chunks passed through, counted and hashed on the way."""

    def __init__(self, chunks: Iterable[bytes]) -> None:
        self._chunks = chunks
        self.size = 0
        self.sha256 = hashlib.sha256()

    def __iter__(self) -> Iterator[bytes]:
        for chunk in self._chunks:
            self.size += len(chunk)
            self.sha256.update(chunk)
            yield chunk


def _digest(chunks: Iterable[bytes]) -> tuple[int, str]:
    seen = _Digest(chunks)
    for _ in seen:
        pass
    return seen.size, seen.sha256.hexdigest()


def copy(
    source: ports.Hypervisor,
    target: ports.Hypervisor,
    change: actions.Change,
    options: Options,
    outcome: Outcome,
    probes: Probes,
) -> frozenset[str]:
    """Stop the VM on the source and copy its volumes to the target, verified.

    Returns the pools the two hosts share: their volumes were not copied, and
    :func:`release` must not delete them.
    """
    name = change.object_name
    origin = change.move_from
    try:
        graceful = source.stop_domain(name, timeout=options.shutdown_timeout)
    except errors.NotFoundError:
        graceful = True  # not defined there any more: nothing to stop
    outcome.step(
        "stopped",
        "Stopping",
        f"stopped on {origin} for the move to {change.host}"
        + ("" if graceful else " (forced after the shutdown timeout)"),
    )
    pools = {v.pool for v in _volumes(change)} | {pool for pool, _ in _seeds(change)}
    shared = probes.shared(source, target, change, pools)
    found = target.observe(domains=(), volumes={v.pool for v in _volumes(change)})
    for volume in _volumes(change):
        pool, file = volume.pool, volume.volume
        if pool in shared:
            outcome.step(
                "shared",
                "VolumeShared",
                f"volume {pool}/{file} is on storage {origin} and {change.host} share: not copied",
            )
            continue
        try:
            capacity = source.volume(pool, file).capacity
        except errors.NotFoundError:
            continue  # never made on the source: the create makes it on the target
        there = found.pools.get(pool)
        if there is not None and file in there.volumes:
            target.delete_volume(pool, file)  # a copy cut off half-way: start again
        sent = _Digest(source.read_volume(pool, file))
        target.write_volume(pool, file, capacity, source.volume_format(pool, file), sent)
        size, digest = _digest(target.read_volume(pool, file))
        if (size, digest) != (sent.size, sent.sha256.hexdigest()):
            target.delete_volume(pool, file)
            raise errors.HypervisorError(
                "verify the copy of",
                f"volume {pool}/{file}",
                f"{size} bytes, sha256 {digest[:12]} on {change.host}; "
                f"{sent.size} bytes, sha256 {sent.sha256.hexdigest()[:12]} on {origin}",
            )
        outcome.step(
            "copied",
            "VolumeCopied",
            f"volume {pool}/{file} copied from {origin} to {change.host} "
            f"({size} bytes, sha256 {digest[:12]} verified)",
        )
    return shared


def migrate(
    source: ports.Hypervisor,
    target: ports.Hypervisor,
    change: actions.Change,
    target_uri: str,
    outcome: Outcome,
    probes: Probes,
) -> None:
    """Move the running VM live: its pools are declared shared, so check that, then migrate.

    Nothing is copied or deleted: the target runs the guest over the very
    volumes the source did. A pool declared shared that the target does not
    see as the source's own fails the move before anything happens.
    """
    name = change.object_name
    pools = {v.pool for v in _volumes(change)} | {pool for pool, _ in _seeds(change)}
    unshared = sorted(pools - probes.shared(source, target, change, pools))
    if unshared:
        raise errors.HypervisorError(
            "migrate",
            f"domain {name}",
            f"pool {', '.join(unshared)} is declared shared, but {change.host} does not see "
            f"the volumes {change.move_from} has there",
        )
    source.migrate_domain(name, target_uri)
    outcome.event(
        "Migrated",
        f"moved live from {change.move_from} to {change.host} (migrated; storage shared)",
    )


def release(
    source: ports.Hypervisor,
    change: actions.Change,
    outcome: Outcome,
    shared: frozenset[str] = frozenset(),
) -> None:
    """Remove the moved VM's domain, and its volumes outside ``shared`` pools, from the source."""
    name = change.object_name
    with contextlib.suppress(errors.NotFoundError):
        source.undefine_domain(name)
    owned = [(v.pool, v.volume) for v in _volumes(change)] + _seeds(change)
    for pool, file in owned:
        if pool in shared:
            continue  # the target's own volume now
        try:
            source.delete_volume(pool, file)
        except errors.NotFoundError:
            continue
    how = "storage shared, nothing copied" if shared else "copied, verified"
    outcome.event("Moved", f"moved from {change.move_from} to {change.host} (cold: stopped, {how})")
