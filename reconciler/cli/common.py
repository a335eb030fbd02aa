"""What every command shares: kind aliases, opening the record and libvirt, output helpers."""

from __future__ import annotations

import contextlib
import difflib
from collections.abc import Iterator

import click

from reconciler import errors, settings
from reconciler.hypervisor import adapter
from reconciler.models import kinds
from reconciler.store import store as store_module

__all__ = ["KIND_ALIASES", "hypervisor", "open_store", "parse_kind", "parse_ref", "settings_of"]

KIND_ALIASES: dict[str, kinds.Kind] = {
    alias: kind
    for kind, aliases in {
        kinds.Kind.VIRTUAL_MACHINE: ("virtualmachine", "virtualmachines", "vm", "vms"),
        kinds.Kind.TEMPLATE: ("template", "templates", "tpl", "tpls"),
        kinds.Kind.NETWORK: ("network", "networks", "net", "nets"),
        kinds.Kind.STORAGE_POOL: ("storagepool", "storagepools", "pool", "pools"),
    }.items()
    for alias in aliases
}


def parse_kind(text: str) -> kinds.Kind:
    kind = KIND_ALIASES.get(text.lower())
    if kind is None:
        close = difflib.get_close_matches(text.lower(), KIND_ALIASES, n=1)
        hint = f"; did you mean {close[0]!r}?" if close else ""
        raise click.BadParameter(f"unknown kind {text!r}{hint} (vm, template, network, pool)")
    return kind


def parse_ref(text: str) -> tuple[kinds.Kind, str]:
    """``vm/web-1`` -> (VirtualMachine, "web-1")."""
    kind, sep, name = text.partition("/")
    if not sep or not name:
        raise click.BadParameter(f"{text!r} is not KIND/NAME, e.g. vm/web-1")
    return parse_kind(kind), name


def settings_of(ctx: click.Context) -> settings.Settings:
    obj = ctx.find_root().obj
    assert isinstance(obj, settings.Settings)
    return obj


@contextlib.contextmanager
def open_store(ctx: click.Context) -> Iterator[store_module.Store]:
    config = settings_of(ctx)
    with store_module.Store.open(config.database_url, lock_timeout=config.lock_timeout) as store:
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
