"""Fencing the executor: a pass whose lease is gone touches libvirt no more.

Several daemons may share a record; exactly one leads, and within one
leadership one pass writes at a time (:mod:`reconciler.store._locks`). A
lease can lapse under a pass that is still running — the process was frozen,
the record's server restarted, the pass sat waiting out a guest's ACPI
shutdown — and by then another reconciler may lead. The record refuses such a
pass's writes by itself (they are conditional on the epochs); libvirt knows
nothing of epochs, so the pass must refuse itself before each side effect.

:class:`Guarded` is the executor's view of the hypervisor: reads pass
through; every method with a side effect first calls :meth:`Fence.check`,
which raises :class:`~reconciler.errors.Fenced` once the lease lapsed locally
or was lost. ``stop_domain`` also hands the check to the adapter, which calls
it while it waits for the guest and right before it forces the guest off:
that wait can outlast the lease, and the forced destroy of a VM that a new
leader has meanwhile declared ``Running`` is exactly the split brain this
prevents. The check is local (monotonic time since the last renewal, no I/O),
so it costs nothing per action and needs no reachable record.

The executor lets :class:`~reconciler.errors.Fenced` end the whole pass
rather than fail one change: nothing further starts, and the run is
recorded ``fenced`` if the record still lets this pass write at all.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Iterable, Iterator

from reconciler.engine import ports
from reconciler.engine.ports import Fence
from reconciler.models import console, observed, seeds

__all__ = ["Fence", "Guarded"]


class Guarded:
    """A :class:`~reconciler.engine.ports.Hypervisor`, checking ``fence`` before each side effect.

    It owns no connection: every method delegates to ``inner``, so each
    public method of the adapter is listed here explicitly, and a unit test
    fails when one is not.
    """

    def __init__(self, inner: ports.Hypervisor, fence: Fence) -> None:
        self._inner = inner
        self._fence = fence
        self.uri = inner.uri
        self.domain_type = inner.domain_type

    def close(self) -> None:
        """Nothing to close: the inner hypervisor belongs to the caller."""

    @property
    def down_since(self) -> float | None:
        return self._inner.down_since

    def ensure_alive(self) -> None:
        self._inner.ensure_alive()  # reconnecting touches no object

    # --- reads ----------------------------------------------------------------------

    def observe(
        self,
        *,
        refresh: Collection[str] = (),
        domains: Collection[str] | None = None,
        volumes: Collection[str] | None = None,
    ) -> observed.World:
        return self._inner.observe(refresh=refresh, domains=domains, volumes=volumes)

    def guest_addresses(self, world: observed.World) -> dict[str, tuple[str, ...]]:
        return self._inner.guest_addresses(world)

    def volume(self, pool: str, name: str) -> observed.ObservedVolume:
        return self._inner.volume(pool, name)

    def domain_definition(self, name: str) -> str:
        return self._inner.domain_definition(name)

    def network_definition(self, name: str) -> str:
        return self._inner.network_definition(name)

    def pool_definition(self, name: str) -> str:
        return self._inner.pool_definition(name)

    def pool_directories(self) -> dict[str, str]:
        return self._inner.pool_directories()

    def filter_definition(self, name: str) -> str:
        return self._inner.filter_definition(name)

    # --- domains --------------------------------------------------------------------

    def define_domain(self, name: str, document: str) -> str:
        self._fence.check()
        return self._inner.define_domain(name, document)

    def set_domain_autostart(self, name: str, autostart: bool) -> None:
        self._fence.check()
        self._inner.set_domain_autostart(name, autostart)

    def start_domain(self, name: str, *, paused: bool = False) -> None:
        self._fence.check()
        self._inner.start_domain(name, paused=paused)

    def suspend_domain(self, name: str) -> None:
        self._fence.check()
        self._inner.suspend_domain(name)

    def resume_domain(self, name: str) -> None:
        self._fence.check()
        self._inner.resume_domain(name)

    def stop_domain(
        self, name: str, *, timeout: float, guard: Callable[[], None] | None = None
    ) -> bool:
        def check() -> None:
            self._fence.check()
            if guard is not None:
                guard()

        check()
        return self._inner.stop_domain(name, timeout=timeout, guard=check)

    def attach_device(self, name: str, document: str) -> None:
        self._fence.check()
        self._inner.attach_device(name, document)

    def update_interface_filter(
        self, domain: str, mac: str, filter: observed.FilterRef | None
    ) -> None:
        self._fence.check()
        self._inner.update_interface_filter(domain, mac, filter)

    def sync_graphics_password(self, name: str) -> None:
        self._fence.check()
        self._inner.sync_graphics_password(name)

    def rotate_graphics_password(self, name: str) -> None:
        self._fence.check()
        self._inner.rotate_graphics_password(name)

    def console(self, name: str) -> console.Console:
        return self._inner.console(name)

    def undefine_domain(self, name: str, *, keep_tpm: bool = False) -> None:
        self._fence.check()
        self._inner.undefine_domain(name, keep_tpm=keep_tpm)

    def migrate_domain(self, name: str, target_uri: str) -> None:
        self._fence.check()
        self._inner.migrate_domain(name, target_uri)

    # --- volumes --------------------------------------------------------------------

    def create_volume(
        self,
        pool: str,
        name: str,
        capacity: int,
        *,
        backing: str | None = None,
        backing_pool: str | None = None,
    ) -> observed.ObservedVolume:
        self._fence.check()
        return self._inner.create_volume(
            pool, name, capacity, backing=backing, backing_pool=backing_pool
        )

    def grow_volume(
        self, pool: str, name: str, capacity: int, *, domain: str | None = None
    ) -> None:
        self._fence.check()
        self._inner.grow_volume(pool, name, capacity, domain=domain)

    def delete_volume(self, pool: str, name: str) -> None:
        self._fence.check()
        self._inner.delete_volume(pool, name)

    def upload_seed(self, pool: str, name: str, seed: seeds.Seed) -> None:
        self._fence.check()
        self._inner.upload_seed(pool, name, seed)

    def read_volume(self, pool: str, name: str) -> Iterator[bytes]:
        return self._inner.read_volume(pool, name)  # a read: no side effect to fence

    def write_volume(
        self, pool: str, name: str, capacity: int, volume_format: str, chunks: Iterable[bytes]
    ) -> None:
        self._fence.check()
        self._inner.write_volume(pool, name, capacity, volume_format, chunks)

    def volume_format(self, pool: str, name: str) -> str:
        return self._inner.volume_format(pool, name)

    # --- networks -------------------------------------------------------------------

    def define_network(self, name: str, document: str) -> str:
        self._fence.check()
        return self._inner.define_network(name, document)

    def start_network(self, name: str) -> None:
        self._fence.check()
        self._inner.start_network(name)

    def stop_network(self, name: str) -> None:
        self._fence.check()
        self._inner.stop_network(name)

    def set_network_autostart(self, name: str, autostart: bool) -> None:
        self._fence.check()
        self._inner.set_network_autostart(name, autostart)

    def undefine_network(self, name: str) -> None:
        self._fence.check()
        self._inner.undefine_network(name)

    # --- pools ----------------------------------------------------------------------

    def define_pool(self, name: str, document: str) -> str:
        self._fence.check()
        return self._inner.define_pool(name, document)

    def start_pool(self, name: str) -> None:
        self._fence.check()
        self._inner.start_pool(name)

    def set_pool_autostart(self, name: str, autostart: bool) -> None:
        self._fence.check()
        self._inner.set_pool_autostart(name, autostart)

    def undefine_pool(self, name: str) -> None:
        self._fence.check()
        self._inner.undefine_pool(name)

    # --- nwfilters ------------------------------------------------------------------

    def define_filter(self, name: str, document: str) -> str:
        self._fence.check()
        return self._inner.define_filter(name, document)

    def undefine_filter(self, name: str) -> None:
        self._fence.check()
        self._inner.undefine_filter(name)
