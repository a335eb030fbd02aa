"""What the benchmark reports: rows of project vs floor figures, the table, the machine.

A :class:`Row` holds one measure's medians (seconds, or MiB for RSS), the ratio
project / floor, the target it is held to and whether it passed; :func:`table`
prints the rows as ``run.py`` does, and :meth:`Row.as_json` is the JSON report.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import os
import statistics
import sys
import time
from typing import Any

import libvirt

__all__ = ["BenchError", "Row", "Timeout", "log", "machine", "median", "table"]


class BenchError(Exception):
    """A step of the benchmark did not do what it must (a command failed, a plan not empty)."""


class Timeout(BenchError):
    """Something awaited did not happen in time."""


@dataclasses.dataclass
class Row:
    section: str
    measure: str
    project: float | None = None  # seconds, or MiB for RSS
    floor: float | None = None
    unit: str = "s"
    target: str = ""
    passed: bool | None = None
    samples: dict[str, list[float]] = dataclasses.field(default_factory=dict)
    note: str = ""

    @property
    def ratio(self) -> float | None:
        if self.project is None or not self.floor:
            return None
        return self.project / self.floor

    def as_json(self) -> dict[str, Any]:
        return {
            "section": self.section,
            "measure": self.measure,
            "unit": self.unit,
            "project": self.project,
            "floor": self.floor,
            "ratio": self.ratio,
            "target": self.target,
            "pass": self.passed,
            "note": self.note,
            "samples": self.samples,
        }


def median(values: list[float]) -> float:
    return statistics.median(values)


def _fmt(value: float | None, unit: str) -> str:
    if value is None:
        return "-"
    if unit == "s":
        return f"{value * 1000:.1f} ms" if value < 1 else f"{value:.2f} s"
    if unit == "x":
        return f"{value:.1f}x"
    return f"{value:.1f} {unit}"


def table(rows: list[Row], header: str) -> str:
    cells = [("section", "measure", "project", "floor", "ratio", "target", "result")]
    for row in rows:
        result = {True: "pass", False: "FAIL", None: ""}[row.passed]
        if row.note:
            result = f"{result} ({row.note})" if result else row.note
        cells.append(
            (
                row.section,
                row.measure,
                _fmt(row.project, row.unit),
                _fmt(row.floor, row.unit),
                f"{row.ratio:.2f}x" if row.ratio is not None else "-",
                row.target,
                result,
            )
        )
    widths = [max(len(line[i]) for line in cells) for i in range(len(cells[0]))]
    lines = [header]
    for index, line in enumerate(cells):
        lines.append("  ".join(c.ljust(w) for c, w in zip(line, widths, strict=True)).rstrip())
        if index == 0:
            lines.append("  ".join("-" * w for w in widths))
    return "\n".join(lines)


def log(message: str) -> None:
    print(f"[bench {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def machine(conn: libvirt.virConnect, domain_type: str) -> dict[str, Any]:
    def version(number: int) -> str:
        return f"{number // 1_000_000}.{number // 1000 % 1000}.{number % 1000}"

    return {
        "date": dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "nproc": os.cpu_count(),
        "accel": domain_type,
        "libvirt": version(conn.getLibVersion()),
        "qemu": version(conn.getVersion()),
        "python": sys.version.split()[0],
        "load_before": round(os.getloadavg()[0], 2),
    }
