"""``validate`` reads the record as ``plan`` does, and says when it could not.

A VM whose template was applied earlier validates on its own, as it plans; a
record that cannot be read is named on stderr and the manifests are checked
alone; without a record nothing is created.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from tests.integration.harness import Harness

pytestmark = pytest.mark.integration


def test_validate_accepts_a_vm_whose_template_is_in_the_record(h: Harness) -> None:
    h.write(h.pool(), h.network(), h.template())
    applied = h.cli("apply", "-f", str(h.workdir))
    assert applied.returncode == 0, applied.stdout + applied.stderr
    alone = h.workdir.parent / "vm.yaml"
    alone.write_text(yaml.safe_dump(h.vm("web", powerState="Stopped")))

    done = h.cli("validate", "-f", str(alone))

    assert done.returncode == 0, done.stdout + done.stderr
    assert "1 manifests valid" in done.stdout
    assert h.cli("plan", "-f", str(alone)).returncode == 2


def test_validate_says_when_the_record_could_not_be_read(h: Harness, tmp_path: Path) -> None:
    broken = tmp_path / "broken.db"
    broken.write_text("this is not a database\n" * 100)
    alone = tmp_path / "vm.yaml"
    alone.write_text(yaml.safe_dump(h.vm("web")))

    done = h.cli("validate", "-f", str(alone), db=f"sqlite:///{broken}")

    assert done.returncode == 1, done.stdout + done.stderr
    assert "note: the record was not read (" in done.stderr
    assert "references checked against the manifests only" in done.stderr
    assert "spec.template: " in done.stderr


def test_validate_without_a_record_creates_none(h: Harness, tmp_path: Path) -> None:
    where = tmp_path / "none" / "x.db"
    h.write(h.pool(), h.network(), h.template(), h.vm("web"))
    done = h.cli("validate", "-f", str(h.workdir), db=f"sqlite:///{where}")
    assert done.returncode == 0, done.stdout + done.stderr
    assert not where.parent.exists()
