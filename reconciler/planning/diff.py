"""Generic document diffs: which paths of a JSON document changed, and from what to what.

This is the one adapter to :mod:`deepdiff`. It answers only *where* two JSON
documents (dicts, lists, scalars) differ; what a difference *means* (its impact,
how it reads in a plan or in ``history``) stays with the callers, which shape the
result: the planner compares template specs with lists as whole values and
``None`` equal to a missing key; ``history`` shows every leaf, list items by index.

The options pin deepdiff to a leaf-by-leaf, index-by-index comparison, which is
what the callers render: ``zip_ordered_iterables`` compares list items by position
instead of aligning them like ``difflib``, and ``threshold_to_diff_deeper=0`` keeps
it from reporting a much-changed dict as one replaced value. Differences come back
sorted by path, depth first, keys in order, so the output is deterministic.

deepdiff costs tens of milliseconds to import (it pulls in pydantic and asyncio
helpers); only commands that diff pay it, so it is imported inside the function.
"""

from __future__ import annotations

import dataclasses
import enum
from typing import Any

__all__ = ["Difference", "Op", "document_diff", "render_path"]

Path = tuple[str | int, ...]

_OPS = {
    "dictionary_item_added": "added",
    "iterable_item_added": "added",
    "dictionary_item_removed": "removed",
    "iterable_item_removed": "removed",
    "values_changed": "changed",
    "type_changes": "changed",
}


class Op(enum.StrEnum):
    ADDED = "added"
    REMOVED = "removed"
    CHANGED = "changed"


@dataclasses.dataclass(frozen=True)
class Difference:
    """One changed path: a key or list item added or removed, or a value changed.

    ``old`` is ``None`` for an addition and ``new`` for a removal.
    """

    path: Path
    op: Op
    old: Any = None
    new: Any = None


def _order(path: Path) -> tuple[tuple[int, int | str], ...]:
    # Siblings are all keys or all indexes; the tag only keeps mypy's and
    # Python's comparisons total.
    return tuple((0, p) if isinstance(p, int) else (1, str(p)) for p in path)


def document_diff(old: Any, new: Any) -> list[Difference]:
    """Leaf-level differences from ``old`` to ``new``, sorted by path.

    A key or list item present on one side only is one difference carrying the
    whole value; values of different types (``1`` and ``1.0``, ``1`` and ``True``)
    differ even when they compare equal.
    """
    import deepdiff  # here, not at the top: see the module docstring (import cost)

    tree = deepdiff.DeepDiff(
        old,
        new,
        view="tree",
        zip_ordered_iterables=True,
        threshold_to_diff_deeper=0,
    )
    found: list[Difference] = []
    for report, levels in tree.items():
        op = Op(_OPS[report])
        for level in levels:
            found.append(
                Difference(
                    tuple(level.path(output_format="list")),
                    op,
                    old=None if op is Op.ADDED else level.t1,
                    new=None if op is Op.REMOVED else level.t2,
                )
            )
    return sorted(found, key=lambda d: _order(d.path))


def render_path(path: Path) -> str:
    """``("spec", "disks", 0, "size")`` as ``spec.disks[0].size``; the root is ``""``."""
    text = ""
    for part in path:
        if isinstance(part, int):
            text = f"{text}[{part}]"
        elif text:
            text = f"{text}.{part}"
        else:
            text = part
    return text
