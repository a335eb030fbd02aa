"""The benchmark runs end to end in its CI preset, reports every section and cleans up.

``bench/run.py --tiny`` is run exactly as ``make bench`` runs the full one (a
subprocess of this virtualenv's Python against the real libvirtd). Nothing here
asserts a timing: the CI host's speed is not the project's; what is proven is
that each section ran, the table and the JSON say so, and no ``ibbench-*``
object of this run is left behind on the shared libvirtd.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import libvirt
import pytest

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
SECTIONS = ("noop", "apply", "power", "planner", "daemon")


@pytest.mark.timeout(900)
def test_tiny_benchmark_prints_every_section_and_leaves_nothing_behind(
    libvirt_conn: libvirt.virConnect, libvirt_uri: str, tmp_path: Path
) -> None:
    report_path = tmp_path / "bench.json"
    done = subprocess.run(
        [sys.executable, "bench/run.py", "--tiny", "-c", libvirt_uri, "--json", str(report_path)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        env={**os.environ, "INFINIBAY_LIBVIRT_URI": libvirt_uri},
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr

    lines = done.stdout.splitlines()
    assert lines[0].startswith("infinibay bench "), done.stdout
    assert lines[1].split()[:7] == [
        "section",
        "measure",
        "project",
        "floor",
        "ratio",
        "target",
        "result",
    ]
    printed = {line.split()[0] for line in lines[3:] if line.strip()}
    assert set(SECTIONS) <= printed, done.stdout

    report = json.loads(report_path.read_text())
    assert "error" not in report
    assert {row["section"] for row in report["results"]} >= set(SECTIONS)
    assert report["sizes"]["vms"] == 10
    for row in report["results"]:
        if row["section"] in ("noop", "apply", "power"):
            assert row["project"] > 0 and row["floor"] > 0, row

    prefix = report["prefix"]
    assert prefix.startswith("ibbench-")
    left = [d.name() for d in libvirt_conn.listAllDomains() if d.name().startswith(prefix)]
    left += [p.name() for p in libvirt_conn.listAllStoragePools() if p.name().startswith(prefix)]
    assert left == []
