"""The protocol every kind's planning handler implements, and what VMs refer to."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable
from typing import Protocol

from reconciler.models import observed, record
from reconciler.planning import context

__all__ = ["KindPlanner", "Uses"]


@dataclasses.dataclass(frozen=True)
class Uses:
    """What one VM refers to: the references a kind's users are found by."""

    template: str | None
    networks: frozenset[str]
    pools: frozenset[str]
    department: str | None = None
    policies: frozenset[str] = frozenset()  # its department's policy and what that extends

    @classmethod
    def of(
        cls,
        template: str | None,
        networks: Iterable[str],
        pools: Iterable[str],
        department: str | None = None,
        policies: Iterable[str] = (),
    ) -> Uses:
        return cls(template, frozenset(networks), frozenset(pools), department, frozenset(policies))


class KindPlanner(Protocol):
    """How the planner treats the resources of one kind."""

    what: str  # what the libvirt object is called in messages: "domain", "storage pool"

    def plan(self, ctx: context.Context) -> None:
        """Plan every desired resource of the kind: one change each, or in sync."""

    def exists(self, ctx: context.Context, name: str) -> bool:
        """Whether libvirt has an object of this kind named ``name``."""

    def ownership(
        self, ctx: context.Context, key: record.ResourceKey
    ) -> tuple[bool, observed.Ownership | None]:
        """Whether the libvirt object of ``key`` (if any) is ours, and its foreign owner."""

    def used_by(self, name: str, uses: Uses) -> bool:
        """Whether a VM with these references uses the resource ``name`` of this kind."""

    def orphans(self, ctx: context.Context) -> Iterable[str]:
        """Names of libvirt objects labelled ours that no manifest declares (for pruning)."""
