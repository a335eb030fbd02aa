"""Exit codes as a script sees them: 2 only means "the plan has changes".

Every case runs the installed ``infinibay`` console script as a real process. A
usage error (a misspelt option, a missing ``-f``, a choice not offered) exits 1
with click's own message, exactly like any other error; ``plan`` exits 2 when it
has changes and 0 when it has none; ``--help`` lists the codes.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from tests.integration.harness import INFINIBAY, Harness

pytestmark = pytest.mark.integration


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("plan", "--prnue", "-f", "."), "No such option '--prnue'. Did you mean '--prune'?"),
        (("plan",), "Error: Missing option '-f' / '--filename'."),
        (("plan", "-f", ".", "-o", "yaml"), "Error: Invalid value for '-o' / '--output'"),
        (("get", "vmz"), "unknown kind 'vmz'"),
        (("events", "--since", "yesterday"), "'yesterday' is neither a duration"),
        (("--bogus", "get", "vms"), "Error: No such option '--bogus'"),
        (("db", "nope"), "Error: No such command 'nope'."),
        (("explain", "vm.spec.nope"), "has no field 'nope'"),
    ],
)
def test_a_usage_error_exits_1_with_clicks_message(
    tmp_path: Path, args: tuple[str, ...], message: str
) -> None:
    command = [str(INFINIBAY), "--db", f"sqlite:///{tmp_path / 'x.db'}", *args]
    done = subprocess.run(command, capture_output=True, text=True, timeout=60, check=False)
    assert done.returncode == 1, done.stdout + done.stderr
    assert message in done.stderr
    assert "Usage: infinibay" in done.stderr
    assert "Traceback" not in done.stderr


def test_plan_exits_2_only_for_changes_and_0_without(h: Harness) -> None:
    h.write(h.pool(), h.network(), h.template(), h.vm("web", powerState="Stopped"))
    changes = h.cli("plan", "-f", str(h.workdir))
    assert changes.returncode == 2, changes.stdout + changes.stderr
    assert f"+ virtualmachine/{h.name('web')} (create" in changes.stdout
    applied = h.cli("apply", "-f", str(h.workdir), "--shutdown-timeout", "1")
    assert applied.returncode == 0, applied.stdout + applied.stderr
    none = h.cli("plan", "-f", str(h.workdir))
    assert none.returncode == 0, none.stdout + none.stderr
    broken = h.workdir / "broken.yaml"
    broken.write_text("kind: VirtualMachine\nmetadata: {name: x}\nspec: {cpus: many}\n")
    invalid = h.cli("plan", "-f", str(broken))
    assert invalid.returncode == 1, invalid.stdout + invalid.stderr


def test_help_documents_the_exit_codes() -> None:
    done = subprocess.run(
        [str(INFINIBAY), "--help"], capture_output=True, text=True, timeout=60, check=False
    )
    assert done.returncode == 0, done.stderr
    text = " ".join(done.stdout.split())
    for line in (
        "Exit codes:",
        "0 success (plan: no changes)",
        "1 error, usage errors included",
        "2 plan: the plan has changes (no other command exits 2)",
        "130 interrupted (Ctrl-C)",
    ):
        assert line in text
