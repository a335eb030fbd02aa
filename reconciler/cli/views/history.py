"""How ``history`` shows a resource's applied revisions and what changed between them."""

from __future__ import annotations

import dataclasses
import datetime as dt
from collections.abc import Sequence
from typing import Any

from reconciler.cli import output
from reconciler.cli.views import base
from reconciler.models import documents, fields, kinds, record

__all__ = ["history_json", "history_lines"]


def _changes(revisions: Sequence[record.RevisionRecord]) -> list[list[output.FieldDiff]]:
    """Each revision's field diff against the one before; the first has none."""
    return [
        output.diff_documents(before.spec, after.spec) if before is not None else []
        for before, after in zip([None, *revisions[:-1]], revisions, strict=True)
    ]


_SIZES = ("memory", "size")  # byte counts in the record, sizes as the manifests write them


def _size(value: Any) -> Any:
    if isinstance(value, int) and not isinstance(value, bool):
        return fields.format_size(value)
    return value


def _readable(diff: output.FieldDiff) -> output.FieldDiff:
    """A diff of a byte count (``spec.memory``, ``spec.disks[0].size``) shown as sizes."""
    if diff.path.rsplit(".", 1)[-1] not in _SIZES:
        return diff
    return dataclasses.replace(diff, old=_size(diff.old), new=_size(diff.new))


def history_lines(revisions: Sequence[record.RevisionRecord], now: dt.datetime) -> list[str]:
    lines: list[str] = []
    for rev, diffs in zip(revisions, _changes(revisions), strict=True):
        if lines:
            lines.append("")
        applied = documents.timestamp(rev.applied_at)
        lines += [
            f"Generation {rev.generation}",
            base.field("Applied", f"{applied} ({output.age(rev.applied_at, now)} ago)", 2),
            base.field("Revision", rev.source_revision, 2),
            base.field("Source", rev.source_file, 2),
            base.field("Spec Hash", rev.spec_hash, 2),
        ]
        if rev.run_id is not None:
            lines.append(base.field("Run", rev.run_id, 2))
        if rev.actor is not None:
            lines.append(base.field("Actor", rev.actor, 2))
        if rev is revisions[0]:
            lines.append("  Changes:            created")
        elif not diffs:
            lines.append("  Changes:            none (re-applied)")
        else:
            lines.append("  Changes:")
            shown = [d for d in diffs if not d.path.startswith("effective.")]  # derived
            lines += [f"    {output.diff_line(_readable(d))}" for d in shown or diffs]
    return lines


def history_json(
    key: record.ResourceKey,
    revisions: Sequence[record.RevisionRecord],
    deleted_at: dt.datetime | None = None,
) -> dict[str, Any]:
    return {
        "apiVersion": kinds.API_VERSION,
        "kind": "History",
        "object": {"kind": key.kind, "name": key.name},
        "deletedAt": documents.timestamp(deleted_at) if deleted_at is not None else None,
        "revisions": [
            {
                "generation": rev.generation,
                "appliedAt": documents.timestamp(rev.applied_at),
                "revision": rev.source_revision,
                "file": rev.source_file,
                "specHash": rev.spec_hash,
                "run": rev.run_id,
                "actor": rev.actor,
                "spec": rev.spec,
                "changes": [d.as_json() for d in diffs],
            }
            for rev, diffs in zip(revisions, _changes(revisions), strict=True)
        ],
    }
