"""Status: what the record says about each resource after a pass, derived, never remembered.

Level-based: status is computed from a fresh observation and a fresh plan made
after the pass, not from what the pass believes it did. A resource with nothing
left to do is ``Ready`` at its current generation; one that still differs says
why (the failure of this pass, a conflict, or simply pending). Conditions
follow the Kubernetes shape: ``type``, ``status`` ("True"/"False"), ``reason``,
``message``, ``lastTransitionTime`` (kept while the status does not flip).

``Stalled`` and ``Reconciling`` (kstatus) carry what the engine decided about
this pass's failure (:func:`reconciler.engine.decision.decide`, handed in as a
:class:`Verdict`): a failure that retrying cannot fix is ``Stalled`` with its
reason (``Conflict``, ``DataLossRefused``, ``InvalidConfiguration``); one that
is retried, or a change still pending, is ``Reconciling``; a converged
resource is neither. Like kstatus, both are present only while True, so a
client can test for the condition's presence.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
from collections.abc import Mapping
from typing import Any

from reconciler.models import addresses as guest_addresses
from reconciler.models import desired, firewall, kinds, naming, observed, record
from reconciler.planning import actions
from reconciler.planning.handlers import vm as vm_handler

__all__ = ["Verdict", "compute", "condition", "restart_required"]


@dataclasses.dataclass(frozen=True)
class Verdict:
    """What the engine decided about a resource's failure in this pass."""

    terminal: bool  # retrying the same spec cannot help
    reason: str
    message: str


def restart_required(domain: observed.ObservedDomain | None) -> bool:
    """The running guest differs from the persistent config it would boot with."""
    if domain is None or domain.live is None:
        return False
    return vm_handler.restart_pending(domain.live, domain.shape)


def condition(
    previous: list[dict[str, Any]], kind: str, status: bool, reason: str, message: str, now: str
) -> dict[str, Any]:
    flag = "True" if status else "False"
    old = next((c for c in previous if c.get("type") == kind), None)
    since = old["lastTransitionTime"] if old is not None and old.get("status") == flag else now
    return {
        "type": kind,
        "status": flag,
        "reason": reason,
        "message": message,
        "lastTransitionTime": since,
    }


def _fields(change: actions.Change) -> str:
    return "; ".join(f"{f.path}: {f.old} -> {f.new}" for f in change.fields)


def compute(
    state: desired.DesiredState,
    records: list[record.ResourceRecord],
    world: observed.World,
    after: actions.Plan,
    failures: Mapping[record.ResourceKey, str],
    *,
    addresses: guest_addresses.Addresses | None = None,
    verdicts: Mapping[record.ResourceKey, Verdict] | None = None,
    now: dt.datetime | None = None,
) -> list[record.StatusWrite]:
    """One status per desired resource present in ``records``."""
    stamp = (now or dt.datetime.now(dt.UTC)).isoformat(timespec="seconds")
    remaining = {c.key: c for c in after.changes}
    by_key = {r.key: r for r in records if r.deleted_at is None}
    writes = []
    for loaded in state:
        key = record.ResourceKey(loaded.kind.value, loaded.name)
        rec = by_key.get(key)
        if rec is None:
            continue
        previous = list(rec.status.get("conditions", []))
        change = remaining.get(key)
        ready = change is None
        if ready:
            phase, reason, message = "Ready", "Converged", "libvirt matches the spec"
        elif change is not None and change.verb is actions.Verb.CONFLICT:
            phase, reason, message = "Conflict", "Conflict", change.note  # a failure too, but why
        elif key in failures:
            phase, reason, message = "Failed", "ApplyFailed", failures[key]
        else:
            phase, reason = "Pending", "Progressing"
            message = _fields(change) if change else ""
        # Drifted: the world left a spec the resource had converged on, and this pass
        # did not bring it back (the correction failed, or was refused or skipped).
        drift = change if change is not None and change.drift else None
        conditions = [
            condition(previous, "Ready", ready, reason, message, stamp),
            condition(
                previous,
                "Drifted",
                drift is not None,
                "DriftDetected" if drift else "InSync" if ready else reason,
                (_fields(drift) or drift.verb.value) if drift else "",
                stamp,
            ),
        ]
        conditions.extend(_progress(previous, ready, change, (verdicts or {}).get(key), stamp))
        status: dict[str, Any] = {
            "phase": phase,
            "observedGeneration": rec.generation if ready else rec.status.get("observedGeneration"),
            "lastReconciled": stamp,
        }
        libvirt = naming.libvirt_name(loaded.name, loaded.manifest.metadata.annotations)
        if loaded.kind is kinds.Kind.VIRTUAL_MACHINE:
            domain = world.domains.get(libvirt)
            pending = restart_required(domain)
            conditions.append(
                condition(
                    previous,
                    "RestartRequired",
                    pending,
                    "ConfigPending" if pending else "UpToDate",
                    "the running guest has not booted with its new configuration; "
                    "restart it or set updatePolicy: Restart"
                    if pending
                    else "",
                    stamp,
                )
            )
            if domain is not None:
                status.update(
                    uuid=domain.uuid,
                    power=domain.power.value,
                    macs=actions.nic_macs(domain.shape.nics),
                    graphicsPort=domain.graphics_port,
                    ips=guest_addresses.of_macs(
                        (n.mac for n in domain.shape.nics), addresses or {}
                    ),
                )
        elif loaded.kind is kinds.Kind.NETWORK and libvirt in world.networks:
            status.update(uuid=world.networks[libvirt].uuid, active=world.networks[libvirt].active)
        elif loaded.kind is kinds.Kind.STORAGE_POOL and libvirt in world.pools:
            status.update(uuid=world.pools[libvirt].uuid, active=world.pools[libvirt].active)
        elif loaded.kind is kinds.Kind.FIREWALL_POLICY:
            found = world.filters.get(firewall.policy_filter(loaded.name))
            if found is not None:
                status.update(uuid=found.uuid)
        status["conditions"] = conditions
        writes.append(record.StatusWrite(key=key, status=status))
    return writes


def _progress(
    previous: list[dict[str, Any]],
    ready: bool,
    change: actions.Change | None,
    verdict: Verdict | None,
    stamp: str,
) -> list[dict[str, Any]]:
    """``Stalled`` or ``Reconciling``, present only while True (kstatus): neither once converged."""
    if ready:
        return []
    if verdict is None and change is not None and change.verb is actions.Verb.CONFLICT:
        verdict = Verdict(True, "Conflict", change.note)  # not attempted, still not ours
    if verdict is None:
        verdict = Verdict(False, "Progressing", _fields(change) if change else "")
    kind = "Stalled" if verdict.terminal else "Reconciling"
    return [condition(previous, kind, True, verdict.reason, verdict.message, stamp)]
