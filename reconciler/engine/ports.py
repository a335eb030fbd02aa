"""What the engine needs of the record and of libvirt: the two ports it is typed against.

The engine never imports the adapters (:mod:`reconciler.store` and
:mod:`reconciler.hypervisor.adapter`; import-linter refuses it): it is
handed objects that satisfy :class:`Store` and :class:`Hypervisor`. The CLI
and the daemon pass the real adapters, the unit tests in-memory fakes, and
mypy checks that both fit (``tests/unit/test_ports.py``). Each protocol
lists exactly what the engine calls, with the adapter's signatures.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Collection, Iterable, Iterator, Sequence
from typing import Protocol

from reconciler.models import console, observed, record, seeds

__all__ = ["Fence", "Hypervisor", "Store"]


class Fence(Protocol):
    """What a pass's actions are conditional on (the store's :meth:`Store.fence`)."""

    def check(self) -> None:
        """Return while the pass may act; raise :class:`~reconciler.errors.Fenced` otherwise."""


class Store(Protocol):
    """The record, as one reconcile pass reads and writes it."""

    def installation_id(self) -> str: ...

    def resources(
        self, *, include_deleted: bool = False, vms: Collection[str] | None = None
    ) -> list[record.ResourceRecord]: ...

    def apply_specs(self, writes: Sequence[record.SpecWrite]) -> list[record.ResourceRecord]: ...

    def write_status(self, writes: Sequence[record.StatusWrite]) -> None: ...

    def stamp_revision(self, keys: Sequence[record.ResourceKey], revision: str | None) -> None: ...

    def tombstone(self, keys: Sequence[record.ResourceKey]) -> None: ...

    def volumes(self) -> Sequence[record.VolumeRecord]: ...

    def claim_volumes(self, volumes: Sequence[record.VolumeRecord]) -> None: ...

    def release_volumes(self, volumes: Sequence[record.VolumeRecord]) -> None: ...

    def record_events(self, events: Sequence[record.NewEvent]) -> None: ...

    def events_of_runs(self, run_ids: Sequence[record.RunId]) -> Sequence[record.EventRecord]: ...

    def start_run(
        self,
        trigger: record.Trigger,
        revision: str | None,
        scope: Sequence[record.ResourceKey] | None = None,
    ) -> record.RunId: ...

    def finish_run(self, run_id: record.RunId, counts: dict[str, int], result: str) -> None: ...

    def abort_unfinished_runs(self) -> Sequence[record.RunId]: ...

    def writer_lock(
        self, timeout: float | None = None
    ) -> contextlib.AbstractContextManager[None]: ...

    def fence(self) -> Fence: ...


class Hypervisor(Protocol):
    """A libvirt connection, as the executor and the fence see it."""

    @property
    def uri(self) -> str: ...

    @property
    def domain_type(self) -> str: ...

    @property
    def down_since(self) -> float | None: ...

    def ensure_alive(self) -> None: ...

    # --- reads ----------------------------------------------------------------------

    def observe(
        self,
        *,
        refresh: Collection[str] = (),
        domains: Collection[str] | None = None,
        volumes: Collection[str] | None = None,
    ) -> observed.World: ...

    def guest_addresses(self, world: observed.World) -> dict[str, tuple[str, ...]]: ...

    def volume(self, pool: str, name: str) -> observed.ObservedVolume: ...

    def domain_definition(self, name: str) -> str: ...

    def network_definition(self, name: str) -> str: ...

    def pool_definition(self, name: str) -> str: ...

    def pool_directories(self) -> dict[str, str]: ...

    def filter_definition(self, name: str) -> str: ...

    # --- domains --------------------------------------------------------------------

    def define_domain(self, name: str, document: str) -> str: ...

    def set_domain_autostart(self, name: str, autostart: bool) -> None: ...

    def start_domain(self, name: str, *, paused: bool = False) -> None: ...

    def suspend_domain(self, name: str) -> None: ...

    def resume_domain(self, name: str) -> None: ...

    def stop_domain(
        self, name: str, *, timeout: float, guard: Callable[[], None] | None = None
    ) -> bool: ...

    def attach_device(self, name: str, document: str) -> None: ...

    def update_interface_filter(
        self, domain: str, mac: str, filter: observed.FilterRef | None
    ) -> None: ...

    def sync_graphics_password(self, name: str) -> None: ...

    def rotate_graphics_password(self, name: str) -> None: ...

    def console(self, name: str) -> console.Console: ...

    def undefine_domain(self, name: str, *, keep_tpm: bool = False) -> None: ...

    def migrate_domain(self, name: str, target_uri: str) -> None: ...

    # --- volumes --------------------------------------------------------------------

    def create_volume(
        self,
        pool: str,
        name: str,
        capacity: int,
        *,
        backing: str | None = None,
        backing_pool: str | None = None,
    ) -> observed.ObservedVolume: ...

    def grow_volume(
        self, pool: str, name: str, capacity: int, *, domain: str | None = None
    ) -> None: ...

    def delete_volume(self, pool: str, name: str) -> None: ...

    def upload_seed(self, pool: str, name: str, seed: seeds.Seed) -> None: ...

    def read_volume(self, pool: str, name: str) -> Iterator[bytes]: ...

    def write_volume(
        self, pool: str, name: str, capacity: int, volume_format: str, chunks: Iterable[bytes]
    ) -> None: ...

    def volume_format(self, pool: str, name: str) -> str: ...

    # --- networks -------------------------------------------------------------------

    def define_network(self, name: str, document: str) -> str: ...

    def start_network(self, name: str) -> None: ...

    def stop_network(self, name: str) -> None: ...

    def set_network_autostart(self, name: str, autostart: bool) -> None: ...

    def undefine_network(self, name: str) -> None: ...

    # --- pools ----------------------------------------------------------------------

    def define_pool(self, name: str, document: str) -> str: ...

    def start_pool(self, name: str) -> None: ...

    def set_pool_autostart(self, name: str, autostart: bool) -> None: ...

    def undefine_pool(self, name: str) -> None: ...

    # --- nwfilters ------------------------------------------------------------------

    def define_filter(self, name: str, document: str) -> str: ...

    def undefine_filter(self, name: str) -> None: ...
