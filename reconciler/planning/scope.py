"""Narrowing a plan: to the resources a label selector picks, never to suspended ones.

A plan is computed for everything first (so a VM's template, networks and
pools are all known), then :func:`restrict` keeps the changes, record writes
and volume claims of the resources in scope. A resource is *suspended* when
its manifest or its record carries ``infinibay.io/reconcile: disabled``
(:data:`reconciler.models.kinds.RECONCILE_ANNOTATION`): it is left exactly as
it is, neither changed nor pruned, and listed in :attr:`Plan.suspended`.
A resource's labels are its manifest's when declared, else its record's; a
libvirt object known to neither has none.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

from reconciler.models import desired, kinds, record, selectors
from reconciler.planning import actions

__all__ = ["restrict", "suspended_keys"]


def _declared(state: desired.DesiredState) -> dict[record.ResourceKey, desired.Loaded]:
    return {record.ResourceKey(item.kind.value, item.name): item for item in state}


def suspended_keys(
    state: desired.DesiredState, records: Sequence[record.ResourceRecord]
) -> frozenset[record.ResourceKey]:
    """Resources whose manifest or live record suspends reconciliation."""
    keys = {key for key, item in _declared(state).items() if item.manifest.metadata.suspended}
    keys |= {r.key for r in records if r.deleted_at is None and kinds.suspended(r.annotations)}
    return frozenset(keys)


def restrict(
    plan: actions.Plan,
    state: desired.DesiredState,
    records: Sequence[record.ResourceRecord],
    selector: selectors.Selector | None = None,
) -> actions.Plan:
    """``plan`` without what the selector leaves out or suspension holds back."""
    declared = _declared(state)
    recorded = {r.key: r for r in records if r.deleted_at is None}
    paused = suspended_keys(state, records)

    def labels(key: record.ResourceKey) -> dict[str, str]:
        if key in declared:
            return dict(declared[key].manifest.metadata.labels)
        rec = recorded.get(key)
        return dict(rec.labels) if rec is not None else {}

    def selected(key: record.ResourceKey) -> bool:
        return selector is None or selector.matches(labels(key))

    def kept(key: record.ResourceKey) -> bool:
        return selected(key) and key not in paused

    if selector is None and not paused:
        return plan
    shown = sorted(k for k in paused if selected(k) and (k in declared or k in recorded))
    return dataclasses.replace(
        plan,
        changes=tuple(c for c in plan.changes if kept(c.key)),
        in_sync=tuple(k for k in plan.in_sync if kept(k)),
        spec_writes=tuple(w for w in plan.spec_writes if kept(w.key)),
        volume_claims=tuple(v for v in plan.volume_claims if kept(v.owner)),
        not_found=tuple(k for k in plan.not_found if selected(k)),
        suspended=tuple(shown),
    )
