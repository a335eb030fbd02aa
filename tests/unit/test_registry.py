"""Every dispatch on a kind is exhaustive: a kind registered without its handlers fails mypy."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from reconciler.engine import steps
from reconciler.models import kinds
from reconciler.planning import handlers

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize("kind", list(kinds.Kind))
def test_every_kind_has_a_planning_handler_and_engine_steps(kind: kinds.Kind) -> None:
    assert handlers.handler(kind).what
    assert kind in handlers.ORDER
    assert steps.steps_for(kind, hv=None, options=None) is not None  # type: ignore[arg-type]


def test_a_kind_added_without_handlers_fails_mypy_at_each_dispatch(tmp_path: Path) -> None:
    package = tmp_path / "reconciler"
    shutil.copytree(ROOT / "reconciler", package, ignore=shutil.ignore_patterns("__pycache__"))
    source = package / "models" / "kinds.py"
    text = source.read_text()
    member = '    VIRTUAL_MACHINE = "VirtualMachine"\n'
    assert member in text
    source.write_text(text.replace(member, member + '    GADGET = "Gadget"\n'))

    found = subprocess.run(
        [
            sys.executable,
            "-m",
            "mypy",
            "--config-file",
            str(ROOT / "pyproject.toml"),
            "--cache-dir",
            str(tmp_path / "cache"),
            "reconciler",
        ],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )

    assert found.returncode == 1, found.stdout + found.stderr
    for dispatch in (
        "reconciler/models/catalog.py",  # aliases, names
        "reconciler/models/desired.py",  # the desired state's table of the kind
        "reconciler/planning/handlers/__init__.py",
        "reconciler/engine/steps/__init__.py",
        "reconciler/hypervisor/handler.py",
        "reconciler/cli/views/__init__.py",
    ):
        assert dispatch in found.stdout, (dispatch, found.stdout)
    assert "Kind.GADGET" in found.stdout, found.stdout
