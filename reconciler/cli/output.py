"""Pure text helpers for the read-only commands: ages, times, tables, documents, diffs.

Nothing here does I/O, so every rule that decides how output looks is unit-tested
on its own (``tests/unit/test_cli_output.py``):

* **Tables** are rendered by ``rich`` without boxes or edges and wide enough never
  to wrap, so each row is one line of space-separated columns that ``awk`` can cut.
  Colour (a bold header) only when the caller says stdout is a terminal. Cells are
  :class:`rich.text.Text`, never markup: a message holding ``[brackets]`` prints as is.
* **Control characters are escaped** (:func:`escape`): a label, an annotation or
  an event message is written by whoever writes manifests, and a terminal
  would obey an ESC sequence in it. Cells, fields and diff lines show ``\x1b``
  instead; JSON output is left to ``json``, which escapes them itself.
* **Ages** read like kubectl's: ``45s``, ``5m``, ``2h``, ``3d``.
* **Times** are ISO 8601 in UTC with seconds, the form status conditions use.
* **Diffs** between two JSON-shaped documents are lists of :class:`FieldDiff`,
  rendered ``~ spec.cpus: 1 -> 2``, ``+ path: value`` and ``- path: value``.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import enum
import io
import json
import re
from collections.abc import Iterable, Sequence
from typing import Any

import yaml
from rich.cells import cell_len
from rich.console import Console
from rich.table import Table
from rich.text import Text

from reconciler.models import fields
from reconciler.planning import diff

__all__ = [
    "NONE",
    "DiffOp",
    "FieldDiff",
    "age",
    "diff_documents",
    "diff_line",
    "document",
    "escape",
    "parse_since",
    "parse_time",
    "table",
    "to_json",
    "to_yaml",
    "value_text",
]

NONE = "-"
"""What a cell shows when there is no value: one token, so columns stay parseable."""

_COLUMN_GAP = 3
# C0 and C1 controls, DEL, and the bidirectional overrides that reorder what a terminal shows.
_CONTROL_RE = re.compile("[\x00-\x1f\x7f-\x9f\u200e\u200f\u202a-\u202e\u2066-\u2069]")
_NAMED_CONTROLS = {"\n": "\\n", "\r": "\\r", "\t": "\\t"}


def _escaped(match: re.Match[str]) -> str:
    char = match.group()
    named = _NAMED_CONTROLS.get(char)
    if named is not None:
        return named
    return f"\\x{ord(char):02x}" if ord(char) < 0x100 else f"\\u{ord(char):04x}"


def escape(text: str) -> str:
    """``text`` with every control character written as an escape: ESC becomes ``\\x1b``."""
    return _CONTROL_RE.sub(_escaped, text)


def age(then: dt.datetime, now: dt.datetime) -> str:
    """How long ago ``then`` was, in the largest whole unit: ``45s``, ``5m``, ``2h``, ``3d``."""
    seconds = max(0, int((now - then).total_seconds()))
    if seconds < 60:
        return f"{seconds}s"
    if seconds < 3600:
        return f"{seconds // 60}m"
    if seconds < 86400:
        return f"{seconds // 3600}h"
    return f"{seconds // 86400}d"


def parse_time(text: str) -> dt.datetime | None:
    """An ISO 8601 timestamp (naive means UTC), or ``None`` when ``text`` is not one."""
    try:
        moment = dt.datetime.fromisoformat(text.strip())
    except ValueError:
        return None
    return moment.replace(tzinfo=dt.UTC) if moment.tzinfo is None else moment


def parse_since(text: str, now: dt.datetime) -> dt.datetime:
    """A duration before ``now`` (``30s``, ``5m``, ``1h``, ``2d``, ``1w``, ``1h30m``, as
    :func:`reconciler.models.fields.parse_duration` reads it, a unit required), or an
    ISO timestamp.

    Raises :class:`ValueError` with a sentence saying what is accepted.
    """
    try:
        seconds = fields.parse_duration(text, bare_seconds=False)
    except ValueError:
        pass
    else:
        return now - dt.timedelta(seconds=seconds)
    moment = parse_time(text)
    if moment is None:
        raise ValueError(
            f"{text!r} is neither a duration (30s, 5m, 1h, 2d) "
            "nor an ISO timestamp (2024-05-01T12:00:00Z)"
        )
    return moment


def table(
    headers: Sequence[str],
    rows: Iterable[Sequence[str]],
    *,
    terminal: bool = False,
    header: bool = True,
) -> str:
    """Aligned columns, upper-case headers, no trailing spaces; a bold header on a terminal."""
    body = [[escape(cell) for cell in row] for row in rows]
    grid = Table(
        box=None,
        pad_edge=False,
        show_edge=False,
        show_header=header,
        padding=(0, _COLUMN_GAP, 0, 0),
        header_style="bold" if terminal else "",
    )
    for title in headers:
        grid.add_column(title.upper(), no_wrap=True, overflow="ignore")
    for row in body:
        grid.add_row(*(Text(cell) for cell in row))
    widths = [cell_len(title) if header else 0 for title in headers]
    for row in body:
        widths = [max(width, cell_len(cell)) for width, cell in zip(widths, row, strict=True)]
    buffer = io.StringIO()
    console = Console(
        file=buffer,
        width=sum(widths) + _COLUMN_GAP * len(widths) + 1,
        force_terminal=terminal,
        color_system="standard" if terminal else None,
        no_color=not terminal,
        highlight=False,
        emoji=False,
        markup=False,
    )
    console.print(grid)
    return "\n".join(line.rstrip() for line in buffer.getvalue().splitlines())


def to_json(document: Any) -> str:
    return json.dumps(document, indent=2, ensure_ascii=False)


def to_yaml(document: Any) -> str:
    return yaml.safe_dump(document, sort_keys=False, allow_unicode=True, default_flow_style=False)


def document(value: Any, output_format: str) -> str:
    """``value`` as ``json`` (indented) or ``yaml``."""
    return to_json(value) if output_format == "json" else to_yaml(value).rstrip("\n")


def value_text(value: Any) -> str:
    """A value as it reads in a diff line: strings and numbers bare, the rest as JSON."""
    if isinstance(value, str):
        return value
    if isinstance(value, int | float) and not isinstance(value, bool):
        return str(value)
    return json.dumps(value, separators=(",", ":"), sort_keys=True)


class DiffOp(enum.StrEnum):
    ADDED = "added"
    REMOVED = "removed"
    CHANGED = "changed"


@dataclasses.dataclass(frozen=True)
class FieldDiff:
    path: str  # "spec.disks[0].size"
    op: DiffOp
    old: Any = None
    new: Any = None

    def as_json(self) -> dict[str, Any]:
        return {"path": self.path, "op": self.op.value, "old": self.old, "new": self.new}


def diff_documents(old: Any, new: Any) -> list[FieldDiff]:
    """Leaf-level differences from ``old`` to ``new``, keys sorted, list items by index."""
    return [
        FieldDiff(diff.render_path(d.path) or "(document)", DiffOp(d.op.value), d.old, d.new)
        for d in diff.document_diff(old, new)
    ]


def diff_line(diff: FieldDiff) -> str:
    if diff.op is DiffOp.ADDED:
        line = f"+ {diff.path}: {value_text(diff.new)}"
    elif diff.op is DiffOp.REMOVED:
        line = f"- {diff.path}: {value_text(diff.old)}"
    else:
        line = f"~ {diff.path}: {value_text(diff.old)} -> {value_text(diff.new)}"
    return escape(line)
