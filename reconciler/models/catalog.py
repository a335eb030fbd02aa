"""What each kind is called: aliases, display names, libvirt's word, ``KIND/NAME``.

One home for every fact that a user or a message names a kind by, shared by
the CLI, the daemon and its HTTP API. Each fact is an exhaustive ``match`` over
:class:`~reconciler.models.kinds.Kind` ending in ``assert_never``, so a kind
added without its words here fails ``mypy`` instead of falling through.

Parsing is pure and raises :class:`~reconciler.errors.UsageError` with a
did-you-mean hint; the CLI turns it into a usage error (exit 2), the HTTP API
into a 400.
"""

from __future__ import annotations

import difflib
import typing

from reconciler import errors
from reconciler.models import kinds

__all__ = [
    "ALIASES",
    "aliases",
    "display",
    "libvirt_what",
    "parse_kind",
    "parse_ref",
    "short",
]

_Kind = kinds.Kind


def aliases(kind: kinds.Kind) -> tuple[str, ...]:
    """Every lower-case word that names ``kind`` on a command line or in a query."""
    match kind:
        case _Kind.VIRTUAL_MACHINE:
            return ("virtualmachine", "virtualmachines", "vm", "vms")
        case _Kind.TEMPLATE:
            return ("template", "templates", "tpl", "tpls")
        case _Kind.NETWORK:
            return ("network", "networks", "net", "nets")
        case _Kind.STORAGE_POOL:
            return ("storagepool", "storagepools", "pool", "pools")
        case _Kind.FIREWALL_POLICY:
            return ("firewallpolicy", "firewallpolicies", "fw", "fwp", "policy", "policies")
        case _Kind.DEPARTMENT:
            return ("department", "departments", "dept", "depts")
        case _Kind.HOST:
            return ("host", "hosts", "hv")
        case unreachable:
            typing.assert_never(unreachable)


def short(kind: kinds.Kind) -> str:
    """The word usage messages suggest: ``vm``, ``template``, ``network``, ``pool``."""
    match kind:
        case _Kind.VIRTUAL_MACHINE:
            return "vm"
        case _Kind.TEMPLATE:
            return "template"
        case _Kind.NETWORK:
            return "network"
        case _Kind.STORAGE_POOL:
            return "pool"
        case _Kind.FIREWALL_POLICY:
            return "firewallpolicy"
        case _Kind.DEPARTMENT:
            return "department"
        case _Kind.HOST:
            return "host"
        case unreachable:
            typing.assert_never(unreachable)


def display(kind: kinds.Kind, *, plural: bool = False) -> str:
    """The kind in a sentence: ``storage pool``, ``virtual machines``."""
    match kind:
        case _Kind.VIRTUAL_MACHINE:
            word = "virtual machine"
        case _Kind.TEMPLATE:
            word = "template"
        case _Kind.NETWORK:
            word = "network"
        case _Kind.STORAGE_POOL:
            word = "storage pool"
        case _Kind.FIREWALL_POLICY:
            word = "firewall policy"
            return "firewall policies" if plural else word
        case _Kind.DEPARTMENT:
            word = "department"
        case _Kind.HOST:
            word = "host"
        case unreachable:
            typing.assert_never(unreachable)
    return f"{word}s" if plural else word


def libvirt_what(kind: kinds.Kind) -> str:
    """What libvirt calls the object of ``kind`` (a template has none: it says ``template``)."""
    match kind:
        case _Kind.VIRTUAL_MACHINE:
            return "domain"
        case _Kind.TEMPLATE:
            return "template"
        case _Kind.NETWORK:
            return "network"
        case _Kind.STORAGE_POOL:
            return "storage pool"
        case _Kind.FIREWALL_POLICY:
            return "nwfilter"
        case _Kind.DEPARTMENT:
            return "department"  # none: a department is the record's, its parts are others'
        case _Kind.HOST:
            return "host"  # none: a host is a libvirt connection, not an object in one
        case unreachable:
            typing.assert_never(unreachable)


ALIASES: dict[str, kinds.Kind] = {alias: kind for kind in kinds.Kind for alias in aliases(kind)}
"""Every alias of every kind, lower case, to its kind."""


def parse_kind(text: str) -> kinds.Kind:
    """``"vms"`` -> VirtualMachine, case-insensitively; :class:`UsageError` with a hint else."""
    kind = ALIASES.get(text.lower())
    if kind is None:
        close = difflib.get_close_matches(text.lower(), ALIASES, n=1)
        hint = f"; did you mean {close[0]!r}?" if close else ""
        known = ", ".join(short(k) for k in _USAGE_ORDER)
        raise errors.UsageError(f"unknown kind {text!r}{hint} ({known})")
    return kind


_USAGE_ORDER = (_Kind.VIRTUAL_MACHINE, _Kind.TEMPLATE, _Kind.NETWORK, _Kind.STORAGE_POOL)


def parse_ref(text: str) -> tuple[kinds.Kind, str]:
    """``"vm/web-1"`` -> (VirtualMachine, ``"web-1"``); :class:`UsageError` when not KIND/NAME."""
    kind, sep, name = text.partition("/")
    if not sep or not name:
        raise errors.UsageError(f"{text!r} is not KIND/NAME, e.g. vm/web-1")
    return parse_kind(kind), name
