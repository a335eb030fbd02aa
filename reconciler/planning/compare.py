"""Field diffs between an observed and a desired shape, and between two recorded specs.

Shared by every kind's planning handler: :func:`compare` diffs the named
fields of two shapes with the impact each field has; :func:`record_diff` is
the record-only diff of two spec documents (a template's, say).
"""

from __future__ import annotations

import enum
from typing import Any

from reconciler.planning import actions, diff

__all__ = ["compare", "record_diff", "show"]


def show(value: Any) -> Any:
    """A shape's value as the plan prints it: enums by value, dataclasses as dicts."""
    if isinstance(value, enum.Enum):
        return value.value
    if isinstance(value, tuple):
        return [show(v) for v in value]
    if hasattr(value, "__dataclass_fields__"):
        return {k: show(getattr(value, k)) for k in value.__dataclass_fields__}
    return value


def compare(
    current: Any, target: Any, impacts: dict[str, actions.Impact]
) -> list[actions.FieldChange]:
    """The fields named in ``impacts`` that differ, each with its impact."""
    return [
        actions.FieldChange(name, show(getattr(current, name)), show(getattr(target, name)), impact)
        for name, impact in impacts.items()
        if getattr(current, name) != getattr(target, name)
    ]


def record_diff(old: Any, new: Any) -> list[actions.FieldChange]:
    """Record-only field changes between two specs, down through dicts only.

    A list is one field (a template's list changes as a whole), a missing key
    reads as ``None``, and values compare with ``==``: ``1`` and ``1.0`` are the
    same size. :func:`diff.document_diff` finds the paths; this folds them up.
    """
    heads: list[diff.Path] = []
    for found in diff.document_diff(old, new):
        cut = next((i for i, part in enumerate(found.path) if isinstance(part, int)), None)
        head = found.path[:cut]
        if head not in heads:
            heads.append(head)
    out: list[actions.FieldChange] = []
    for head in heads:
        before, after = _get(old, head), _get(new, head)
        if before != after:
            out.append(
                actions.FieldChange(diff.render_path(head), before, after, actions.Impact.RECORD)
            )
    return out


def _get(document: Any, path: diff.Path) -> Any:
    for key in path:
        document = document.get(key) if isinstance(document, dict) else None
    return document
