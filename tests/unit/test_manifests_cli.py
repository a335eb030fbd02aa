"""``infinibay validate`` exits 0 with a summary, or 1 with every located error, never a traceback.

Run through ``click.testing.CliRunner`` on the real group (so the one error
boundary in :mod:`reconciler.cli.main` is exercised) and once as the installed
console script in a subprocess, exactly as a user or CI would run it.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from reconciler.cli import main

ROOT = Path(__file__).resolve().parents[2]
DATA = Path("tests") / "data" / "manifests"
INVALID_LINES = [
    f"{DATA}/invalid/a-vm.yaml:5:13: VirtualMachine/web-1: spec.template: template 'linux-smal' "
    "is neither in the manifests nor in the record",
    f"{DATA}/invalid/a-vm.yaml:6:3: VirtualMachine/web-1: spec.cpuss: unknown field 'cpuss'; "
    "did you mean 'cpus'?",
    f"{DATA}/invalid/a-vm.yaml:7:11: VirtualMachine/web-1: spec.memory: give a unit, e.g. 4GiB "
    "or 4MiB (bare numbers are ambiguous)",
    f"{DATA}/invalid/b-network.yaml:6:11: Network/lab: spec.bridge: bridge name "
    "'ib-lab-far-too-long' is 19 characters; Linux allows at most 15",
    f"{DATA}/invalid/b-network.yaml:9:11: Network/lab: spec.ipv4.dhcp: DHCP range "
    "10.20.0.100-10.21.0.200 is outside 10.20.0.0/24",
    f"{DATA}/invalid/b-network.yaml:12:7: ?/web-2: kind: unknown kind 'VirtualMachin'; "
    "did you mean 'VirtualMachine'?",
]
SUMMARY = "5 manifests valid: 1 pools, 1 networks, 1 templates, 2 virtual machines"


@pytest.fixture(autouse=True)
def _at_root(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.chdir(ROOT)
    monkeypatch.setenv("INFINIBAY_DATABASE_URL", f"sqlite:///{tmp_path / 'record.db'}")


def test_validate_valid_directory_exits_0_with_a_summary() -> None:
    result = CliRunner().invoke(main.cli, ["validate", "-f", f"{DATA}/valid"])

    assert result.exit_code == 0, result.stderr
    assert result.stdout == SUMMARY + "\n"
    assert result.stderr == ""


def test_validate_invalid_directory_exits_1_with_every_error_line() -> None:
    result = CliRunner().invoke(main.cli, ["validate", "-f", f"{DATA}/invalid"])

    assert result.exit_code == 1
    assert result.stdout == ""
    assert result.stderr.splitlines() == [
        *INVALID_LINES,
        "error: 6 invalid manifest entries; nothing was applied",
    ]
    assert "Traceback" not in result.output


def test_validate_reads_stdin_with_dash() -> None:
    text = (ROOT / DATA / "valid" / "infra" / "pool.yaml").read_text()

    result = CliRunner().invoke(main.cli, ["validate", "-f", "-"], input=text)

    assert result.exit_code == 0, result.stderr
    assert result.stdout.startswith("1 manifests valid: 1 pools,")


def test_validate_reports_a_yaml_syntax_error_from_stdin_without_a_traceback() -> None:
    result = CliRunner().invoke(main.cli, ["validate", "-f", "-"], input="kind: [\n")

    assert result.exit_code == 1
    assert result.stderr.splitlines()[0] == (
        "-:2:1: ?/?: YAML syntax error: expected the node content, but found '<stream end>'"
    )
    assert "Traceback" not in result.output


def test_validate_missing_path_exits_1() -> None:
    result = CliRunner().invoke(main.cli, ["validate", "-f", "does-not-exist.yaml"])

    assert result.exit_code == 1
    assert result.stderr.splitlines()[0] == "does-not-exist.yaml: no such file or directory"


def test_validate_as_a_real_subprocess() -> None:
    infinibay = Path(sys.executable).with_name("infinibay")
    env = {**os.environ, "INFINIBAY_DATABASE_URL": "sqlite://"}

    def run(*paths: str) -> subprocess.CompletedProcess[str]:
        args = [str(infinibay), "validate", *(arg for path in paths for arg in ("-f", path))]
        return subprocess.run(
            args, cwd=ROOT, env=env, capture_output=True, text=True, timeout=60, check=False
        )

    valid = run(f"{DATA}/valid")
    invalid = run(f"{DATA}/invalid/a-vm.yaml", f"{DATA}/invalid/b-network.yaml")

    assert (valid.returncode, valid.stdout, valid.stderr) == (0, SUMMARY + "\n", "")
    assert invalid.returncode == 1
    assert invalid.stderr.splitlines()[:-1] == INVALID_LINES
    assert "Traceback" not in invalid.stderr
