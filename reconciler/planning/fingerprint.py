"""Hashes that tell whether a saved plan still describes the world (``plan -out``).

A saved plan stores four digests: of the manifests it was made from, of the
record, of the part of libvirt it is about, and of the plan itself. ``apply
FILE`` computes them again under the writer lock and carries out the plan only
when every one is the same: the manifests, the record and the world are then
what the plan was made from, so planning again gives exactly that plan.

Only what decides a plan is hashed. The record's status (rewritten by every
pass), a volume's allocation (it moves as a guest writes) and libvirt objects
that neither the manifests nor the record name, and that another installation
owns, are left out: a neighbour creating a domain does not make a plan stale.
"""

from __future__ import annotations

import dataclasses
import enum
import hashlib
import json
from collections.abc import Sequence
from typing import Any

from pydantic import BaseModel

from reconciler.models import desired, firewall, kinds, naming, observed, record
from reconciler.planning import actions

__all__ = ["canonical", "digest", "manifests", "plan", "records", "world"]


def canonical(value: Any) -> Any:
    """``value`` as JSON-shaped data in one order: dataclasses (compared fields), enums, sets."""
    if isinstance(value, BaseModel):
        return canonical(value.model_dump(mode="json"))
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {
            f.name: canonical(getattr(value, f.name))
            for f in dataclasses.fields(value)
            if f.compare
        }
    if isinstance(value, enum.Enum):
        return canonical(value.value)
    if isinstance(value, dict):
        return {str(k): canonical(v) for k, v in sorted(value.items(), key=lambda i: str(i[0]))}
    if isinstance(value, set | frozenset):
        return sorted((canonical(v) for v in value), key=json.dumps)
    if isinstance(value, list | tuple):
        return [canonical(v) for v in value]
    if value is None or isinstance(value, str | int | float | bool):
        return value
    return str(value)


def digest(value: Any) -> str:
    """``sha256:HEX`` of ``value``'s canonical JSON."""
    text = json.dumps(canonical(value), sort_keys=True, separators=(",", ":"))
    return "sha256:" + hashlib.sha256(text.encode()).hexdigest()


def manifests(state: desired.DesiredState) -> str:
    """The declared manifests (where each came from does not decide a plan)."""
    return digest(sorted(([i.kind.value, i.name, i.manifest] for i in state), key=str))


def records(recorded: Sequence[record.ResourceRecord]) -> str:
    """The record's resources as planning reads them; status left out."""
    return digest(
        sorted(
            (
                [
                    r.key.kind,
                    r.key.name,
                    r.uid,
                    r.generation,
                    r.spec_hash,
                    r.labels,
                    r.annotations,
                    r.deleted_at.isoformat() if r.deleted_at else None,
                ]
                for r in recorded
            ),
            key=str,
        )
    )


def world(
    seen: observed.World,
    state: desired.DesiredState,
    recorded: Sequence[record.ResourceRecord],
    installation: str,
) -> str:
    """The libvirt objects this plan is about: named by the manifests or record, or ours."""
    named: dict[str, set[str]] = {kind.value: set() for kind in kinds.Kind}
    for item in state:
        named[item.kind.value].add(item.name)
        named[item.kind.value].add(
            naming.libvirt_name(item.name, item.manifest.metadata.annotations)
        )
    for rec in recorded:
        named[rec.key.kind] |= {rec.key.name, naming.libvirt_name(rec.key.name, rec.annotations)}

    def about(name: str, kind: kinds.Kind, owner: observed.Ownership | None) -> bool:
        ours = owner is not None and owner.installation == installation
        return ours or name in named[kind.value]

    domains = {
        n: d for n, d in seen.domains.items() if about(n, kinds.Kind.VIRTUAL_MACHINE, d.owner)
    }
    networks = {n: o for n, o in seen.networks.items() if about(n, kinds.Kind.NETWORK, o.owner)}
    on_disks = {disk.pool for d in domains.values() for disk in d.shape.disks}
    pools = {
        n: p
        for n, p in seen.pools.items()
        if n in on_disks or about(n, kinds.Kind.STORAGE_POOL, None)
    }
    filters = {firewall.policy_filter(n) for n in named[kinds.Kind.FIREWALL_POLICY.value]}
    filters |= {firewall.vm_filter(n) for n in domains}
    filters |= {
        nic.filter.filter
        for d in domains.values()
        for nic in d.shape.nics
        if nic.filter is not None
    }
    return digest(
        {
            "domains": domains,
            "networks": networks,
            "pools": pools,
            "filters": {n: f for n, f in seen.filters.items() if n in filters},
        }
    )


def plan(planned: actions.Plan) -> str:
    """The plan's changes as ``plan -o json`` shows them, and what it holds back."""
    return digest(
        {
            "changes": [c.as_json() for c in planned.changes],
            "suspended": [str(k) for k in planned.suspended],
        }
    )
