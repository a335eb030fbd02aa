"""What every kind's libvirt object offers, and which module offers it for a kind.

A kind's module (:mod:`~reconciler.hypervisor.domains`,
:mod:`~reconciler.hypervisor.networks`, :mod:`~reconciler.hypervisor.pools`,
:mod:`~reconciler.hypervisor.nwfilters`)
is its handler: it reads the persistent definition a patch starts from, defines
a document (creation and patch alike: libvirt's define replaces the persistent
config), and undefines the object. :func:`handler` is the one dispatch from
:class:`reconciler.models.kinds.Kind`; its ``match`` ends in ``assert_never``,
so a kind added without a branch fails ``mypy``.

Observation is not part of the protocol: it is one bulk pass whose parts
depend on each other (a domain's file disk is mapped onto a volume through the
pools' directories), so each module's ``observe`` takes what its kind needs and
:class:`reconciler.hypervisor.adapter.Hypervisor` runs them in order.
"""

from __future__ import annotations

import typing
from typing import Any, Protocol

from reconciler.hypervisor import domains, networks, nwfilters, pools
from reconciler.models import kinds

__all__ = ["KindHandler", "handler"]


class KindHandler(Protocol):
    """One kind's libvirt object, on the connection ``conn`` to use now."""

    def definition(self, conn: Any, name: str) -> str:
        """The persistent XML, which a patch edits."""
        ...

    def define(self, conn: Any, name: str, document: str) -> str:
        """Define (create, or replace the persistent config of) the object; its UUID."""
        ...

    def undefine(self, conn: Any, name: str) -> None:
        """Stop the object if it runs, then undefine it."""
        ...


def handler(kind: kinds.Kind) -> KindHandler | None:
    """The handler of ``kind``; ``None`` for a kind that has no libvirt object."""
    match kind:
        case kinds.Kind.VIRTUAL_MACHINE:
            return domains
        case kinds.Kind.NETWORK:
            return networks
        case kinds.Kind.STORAGE_POOL:
            return pools
        case kinds.Kind.FIREWALL_POLICY:
            return nwfilters
        case kinds.Kind.TEMPLATE | kinds.Kind.DEPARTMENT | kinds.Kind.HOST:
            # A template, a department and a host live in the manifests and the record
            # only: libvirt has nothing to observe, define or undefine for them.
            return None
        case unreachable:
            typing.assert_never(unreachable)
