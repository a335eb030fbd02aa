"""``plan -out FILE`` / ``apply FILE`` (terraform's saved plans) and the plan's colours.

``apply FILE`` carries out the saved plan only while the manifests, the record
and libvirt are what it was made from; otherwise it refuses, changing nothing.
Colours: on a terminal (a real pty), never when piped or with ``NO_COLOR``.
"""

from __future__ import annotations

import json
import os
import pty
import subprocess
import sys
from pathlib import Path

import pytest

from reconciler.models import record
from tests.integration.harness import Harness

pytestmark = pytest.mark.integration

CLI = [sys.executable, "-c", "from reconciler.cli.main import main; main()"]


def _base(h: Harness, **vm: object) -> None:
    h.write(h.pool(), h.network(), h.template(), h.vm("web", powerState="Stopped", **vm))


def test_apply_of_a_saved_plan_carries_out_exactly_it(h: Harness, tmp_path: Path) -> None:
    _base(h)
    saved = tmp_path / "web.plan"
    planned = h.plan("-out", str(saved))
    assert planned.exit_code == 2, planned.output
    assert f"infinibay apply {saved}" in planned.output
    assert oct(saved.stat().st_mode & 0o777) == "0o600"
    document = json.loads(saved.read_text())
    assert document["kind"] == "SavedPlan"
    assert set(document["hashes"]) == {"manifests", "record", "world", "plan"}
    assert not h.has_domain("web")

    applied = h.run("apply", str(saved), "--shutdown-timeout", "1")
    assert applied.exit_code == 0, applied.output
    assert h.has_domain("web")
    assert h.plan().exit_code == 0

    # The plan was carried out: the record moved, so the same file is now stale.
    again = h.run("apply", str(saved))
    assert again.exit_code == 1 and "stale: the record changed" in again.output, again.output


def test_a_saved_plan_is_refused_when_the_manifests_changed(h: Harness, tmp_path: Path) -> None:
    _base(h)
    assert h.apply().exit_code == 0
    _base(h, cpus=2)
    saved = tmp_path / "p"
    assert h.plan("--out", str(saved)).exit_code == 2
    _base(h, cpus=3)
    refused = h.run("apply", str(saved))
    assert refused.exit_code == 1, refused.output
    assert "stale: the manifests changed since it was made" in refused.output
    assert "nothing was applied" in refused.output
    assert h.domain_xml("web").findtext("vcpu") == "1"


def test_a_saved_plan_is_refused_when_libvirt_changed(h: Harness, tmp_path: Path) -> None:
    _base(h)
    assert h.apply().exit_code == 0
    _base(h, cpus=2)
    saved = tmp_path / "p"
    assert h.plan("-out", str(saved)).exit_code == 2
    h.domain("web").setAutostart(1)  # behind the reconciler's back
    refused = h.run("apply", str(saved))
    assert refused.exit_code == 1 and "stale: libvirt changed" in refused.output, refused.output
    assert h.domain_xml("web").findtext("vcpu") == "1"


def test_a_saved_plan_is_refused_when_the_record_changed(h: Harness, tmp_path: Path) -> None:
    _base(h)
    assert h.apply().exit_code == 0
    _base(h, cpus=2)
    saved = tmp_path / "p"
    assert h.plan("-out", str(saved)).exit_code == 2
    with h.store() as store:
        store.set_annotation(record.ResourceKey("VirtualMachine", h.name("web")), "note", "x")
    refused = h.run("apply", str(saved))
    assert refused.exit_code == 1 and "stale: the record changed" in refused.output


def test_a_saved_plan_takes_no_other_inputs(h: Harness, tmp_path: Path) -> None:
    _base(h)
    saved = tmp_path / "p"
    assert h.plan("-out", str(saved)).exit_code == 2
    mixed = h.run("apply", str(saved), "-f", str(h.workdir))
    assert mixed.exit_code != 0 and "PLANFILE alone" in mixed.output
    junk = tmp_path / "junk"
    junk.write_text("{}")
    bad = h.run("apply", str(junk))
    assert bad.exit_code == 1 and "not a saved plan" in bad.output
    stdin = h.run("plan", "-f", "-", "-out", str(tmp_path / "q"))
    assert stdin.exit_code != 0 and "stdin" in stdin.output


def _on_a_terminal(h: Harness, *extra_env: tuple[str, str]) -> str:
    env = {k: v for k, v in os.environ.items() if k != "NO_COLOR"}
    env.update(dict(extra_env))
    leader, follower = pty.openpty()
    try:
        proc = subprocess.run(
            [*CLI, "--db", h.db_url, "-c", h.uri, "plan", "-f", str(h.workdir)],
            stdin=subprocess.DEVNULL,
            stdout=follower,
            stderr=subprocess.PIPE,
            env=env,
            timeout=120,
        )
        os.close(follower)
        follower = -1
        chunks = []
        while True:
            try:
                chunk = os.read(leader, 65536)
            except OSError:
                break
            if not chunk:
                break
            chunks.append(chunk)
    finally:
        if follower != -1:
            os.close(follower)
        os.close(leader)
    assert proc.returncode == 2, proc.stderr
    return b"".join(chunks).decode()


def test_the_plan_is_coloured_on_a_terminal_only(h: Harness) -> None:
    _base(h)
    coloured = _on_a_terminal(h)
    assert f"\x1b[32m+ virtualmachine/{h.name('web')} (create" in coloured, coloured
    assert "\x1b[" not in _on_a_terminal(h, ("NO_COLOR", "1"))
    piped = subprocess.run(
        [*CLI, "--db", h.db_url, "-c", h.uri, "plan", "-f", str(h.workdir)],
        capture_output=True,
        text=True,
        env={k: v for k, v in os.environ.items() if k != "NO_COLOR"},
        timeout=120,
    )
    assert piped.returncode == 2 and "+ virtualmachine/" in piped.stdout
    assert "\x1b[" not in piped.stdout
