"""Plan and apply output: the ``+ ~ -/+ - ! ?`` lines, summaries and JSON documents.

The text form is for people and stays stable enough to grep; ``-o json`` is
the documented contract for scripts (README: "JSON output").
"""

from __future__ import annotations

import json
from typing import Any

import click

from reconciler.engine import execute
from reconciler.models import kinds
from reconciler.planning import actions

__all__ = ["apply_json", "outcome_line", "plan_json", "plan_lines", "plan_summary"]


def _value(value: Any) -> str:
    if value is None:
        return "(none)"
    if isinstance(value, list | dict):
        return json.dumps(value, separators=(",", ":"))
    return str(value)


# The colour of each symbol on a terminal, as terraform colours its plan.
_COLOURS = {"+": "green", "~": "yellow", "-/+": "magenta", "-": "red", "!": "yellow", "?": "red"}


def _paint(text: str, symbol: str, colour: bool) -> str:
    if not colour:
        return text
    bold = True if symbol in ("!", "?", "-/+") else None
    return click.style(text, fg=_COLOURS.get(symbol), bold=bold)


def plan_lines(plan: actions.Plan, *, colour: bool = False) -> list[str]:
    """The plan's lines; ``colour`` paints each change's head line by its symbol."""
    lines = []
    for change in plan.changes:
        label = str(change.key)
        if change.verb is actions.Verb.CONFLICT:
            lines.append(_paint(f"? {label}: conflict: {change.note}", "?", colour))
            continue
        if change.verb is actions.Verb.UNKNOWN:
            lines.append(_paint(f"? {label} unknown ({change.note})", "?", colour))
            continue
        what = change.verb.value
        if change.move_from:
            target = change.target
            stays_off = (
                isinstance(target, actions.VmTarget)
                and target.power is not kinds.PowerState.RUNNING
            )
            how = "live" if change.move_live else "cold" if stays_off else "cold, restart"
            head = f"~ {label} (move {change.move_from} -> {change.host}, {how})"
            lines.append(_paint(head, "~", colour))
            continue
        if change.host:
            what += f" on {change.host}"
        if change.drifted:
            what = "drift" if change.verb is actions.Verb.UPDATE else "drift, recreate"
        if change.adopt:
            what += ", adopt"
        head = f"{change.symbol} {label} ({what}, {change.impact.label})"
        lines.append(_paint(head, change.symbol, colour))
        for field in change.fields:
            if change.drift:  # libvirt moved: say what the manifest says, then what is there
                diff = f"declared {_value(field.new)}, found {_value(field.old)}"
            else:
                diff = f"{_value(field.old)} -> {_value(field.new)}"
            lines.append(f"    {field.path}: {diff} ({field.impact.label})")
        for volume in change.retained:
            fate = "delete" if volume.deletes else "retain"
            if volume.seed:
                why = "first-boot seed"
            elif volume.created:
                why = f"reclaimPolicy {volume.reclaim.value}"
            else:
                why = "not created by this installation"
            if not volume.exists:
                why += "; already gone"
            lines.append(f"    volume {volume.pool}/{volume.volume}: {fate} ({why})")
        if change.note:
            lines.append(f"    note: {change.note}")
    for key in plan.suspended:
        lines.append(_paint(f"= {key} (suspended: infinibay.io/reconcile: disabled)", "=", colour))
    return lines


def plan_summary(plan: actions.Plan) -> str:
    counts = plan.counts()
    if not counts:
        held = f" ({len(plan.suspended)} suspended)" if plan.suspended else ""
        return f"No changes: libvirt and the record match the manifests{held}."
    order = [
        ("create", "to create"),
        ("update", "to update"),
        ("drift", "drifted"),
        ("replace", "to replace"),
        ("delete", "to delete"),
        ("protected", "protected"),
        ("conflict", "conflicting"),
    ]
    parts = [f"{counts[k]} {label}" for k, label in order if counts.get(k)]
    if plan.suspended:
        parts.append(f"{len(plan.suspended)} suspended")
    return "Plan: " + ", ".join(parts) + "."


def plan_json(plan: actions.Plan) -> dict[str, Any]:
    document: dict[str, Any] = {
        "changes": [c.as_json() for c in plan.changes],
        "summary": plan.counts(),
        "empty": plan.empty,
    }
    if plan.suspended:
        document["suspended"] = [str(k) for k in plan.suspended]
    if plan.not_found:  # only a delete names what may not exist
        document["notFound"] = [str(k) for k in plan.not_found]
    return document


def outcome_line(outcome: execute.Outcome) -> str:
    label = str(outcome.change.key)
    if not outcome.ok:
        return f"{label} failed: {outcome.error}"
    return f"{label} {', '.join(outcome.steps) or 'unchanged'}"


def apply_json(
    plan: actions.Plan, outcomes: list[execute.Outcome], run_id: int | None
) -> dict[str, Any]:
    return {
        "run": run_id,
        "plan": plan_json(plan),
        "results": [
            {
                "resource": str(o.change.key),
                "kind": o.change.key.kind,
                "name": o.change.key.name,
                "action": o.change.verb.value,
                "ok": o.ok,
                "steps": o.steps,
                "error": o.error or None,
            }
            for o in outcomes
        ],
        "converged": all(o.ok for o in outcomes) and not plan.not_found,
    }
