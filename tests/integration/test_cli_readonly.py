"""Read-only commands never create a record, nor the directory it would live in.

``get``, ``describe``, ``events`` and ``history`` on a record that does not
exist say so in one line and exit 1; ``plan`` plans against an empty record
(everything is to create) and says it did. On SQLite neither the file nor its
directory appears; on PostgreSQL an empty database gets no schema.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from reconciler.store import schema_state
from tests.integration.harness import INFINIBAY, Harness

pytestmark = pytest.mark.integration

READERS = [
    ("get", "vms"),
    ("get", "vm", "web"),
    ("describe", "vm", "web"),
    ("events",),
    ("events", "vm/web"),
    ("history", "vm/web"),
]


def test_a_reader_on_a_missing_sqlite_record_creates_nothing(tmp_path: Path) -> None:
    where = tmp_path / "nonexistent" / "dir" / "x.db"
    for args in READERS:
        command = [str(INFINIBAY), "--db", f"sqlite:///{where}", *args]
        done = subprocess.run(command, capture_output=True, text=True, timeout=60, check=False)
        assert (done.returncode, done.stdout) == (1, ""), (args, done.stderr)
        assert done.stderr == f"error: no record at {where} (run apply first, or pass --db)\n"
        assert not (tmp_path / "nonexistent").exists()


def test_plan_on_a_missing_record_plans_everything_and_creates_nothing(
    h: Harness, tmp_path: Path
) -> None:
    where = tmp_path / "nonexistent" / "x.db"
    h.write(h.pool(), h.network(), h.template(), h.vm("web"))
    done = h.cli("plan", "-f", str(h.workdir), db=f"sqlite:///{where}")
    assert done.returncode == 2, done.stdout + done.stderr
    assert f"+ virtualmachine/{h.name('web')} (create" in done.stdout
    assert f"note: no record at {where} yet; planning against an empty one" in done.stderr
    assert not where.parent.exists()
    assert not h.has_domain("web")


def test_a_reader_on_a_fresh_database_adds_no_schema(h: Harness) -> None:
    """On both backends: a fresh PostgreSQL database stays without tables, SQLite without a file."""
    done = h.cli("get", "vms")
    assert done.returncode == 1, done.stdout + done.stderr
    assert done.stderr.startswith("error: no record at ")
    assert done.stderr.endswith(" (run apply first, or pass --db)\n")
    if h.db_url.startswith("sqlite"):
        assert not Path(h.db_url.removeprefix("sqlite:///")).exists()
    else:
        assert schema_state(h.db_url).current is None


def test_a_reader_on_an_existing_record_still_works(h: Harness) -> None:
    h.write(h.pool(), h.network(), h.template(), h.vm("web", powerState="Stopped"))
    assert h.cli("apply", "-f", str(h.workdir)).returncode == 0
    for args in READERS:
        named = [a.replace("web", h.name("web")) for a in args]
        done = h.cli(*named)
        assert done.returncode == 0, (named, done.stderr)
