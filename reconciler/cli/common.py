"""What every command shares: kind aliases, opening the record and libvirt, output helpers."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import click

from reconciler import errors, settings
from reconciler.engine import hosts, ports, reconcile
from reconciler.hypervisor import adapter
from reconciler.models import access, catalog, kinds
from reconciler.store import store as store_module

__all__ = [
    "hypervisor",
    "open_store",
    "parse_kind",
    "parse_ref",
    "reconciler",
    "settings_of",
]


def parse_kind(text: str) -> kinds.Kind:
    """:func:`reconciler.models.catalog.parse_kind`, as a usage error of the command."""
    try:
        return catalog.parse_kind(text)
    except errors.UsageError as exc:
        raise click.BadParameter(str(exc)) from exc


def parse_ref(text: str) -> tuple[kinds.Kind, str]:
    """``vm/web-1`` -> (VirtualMachine, "web-1"), as a usage error of the command."""
    try:
        return catalog.parse_ref(text)
    except errors.UsageError as exc:
        raise click.BadParameter(str(exc)) from exc


def settings_of(ctx: click.Context) -> settings.Settings:
    obj = ctx.find_root().obj
    assert isinstance(obj, settings.Settings)
    return obj


@contextlib.contextmanager
def open_store(
    ctx: click.Context, *, read_only: bool = False, or_empty: bool = False
) -> Iterator[store_module.Store]:
    """The record; a read-only command never creates it (nor its directory).

    ``read_only``: no record is ``error: no record at PATH``. ``or_empty``
    (``plan``): no record is an empty one, in memory, and a note says so; the
    plan then shows everything the first apply would create.
    """
    config = settings_of(ctx)
    url = config.database_url
    if read_only or or_empty:
        where = store_module.missing_record(url)
        if where is not None and not or_empty:
            raise errors.NotFound(f"no record at {where} (run apply first, or pass --db)")
        if where is not None:
            click.echo(f"note: no record at {where} yet; planning against an empty one", err=True)
            url = "sqlite://"
    with store_module.Store.open(
        url, lock_timeout=config.lock_timeout, actor=access.cli_actor()
    ) as store:
        yield store


@contextlib.contextmanager
def hypervisor(ctx: click.Context) -> Iterator[adapter.Hypervisor]:
    config = settings_of(ctx)
    try:
        hv = adapter.Hypervisor(config.libvirt_uri)
    except errors.HypervisorError as exc:
        raise errors.HypervisorError(
            "connect to",
            config.libvirt_uri,
            f"{exc.detail} (is libvirtd running? set -c/--connect)",
        ) from exc
    try:
        yield hv
    finally:
        hv.close()


def reconciler(
    ctx: click.Context, store: ports.Store, hv: adapter.Hypervisor
) -> reconcile.Reconciler:
    """A reconciler on ``store`` and ``hv`` that reaches the declared hosts too (SPEC §10).

    The connections it opens to other hosts are closed with the command.
    ``INFINIBAY_PLACEMENT`` (``spread``, the default, or ``pack``) is how new VMs
    are placed among them.
    """
    fleet = hosts.Hosts(hv, connect=adapter.Hypervisor)
    ctx.call_on_close(fleet.close)
    return reconcile.Reconciler(store, hv, hosts=fleet, strategy=hosts.placement_strategy())
