"""``examples/daemon`` works as its README says: a git repo, the daemon, a systemd unit.

The example's fixed names, bridge, subnet and pool path are rewritten onto
this test's prefix (a shared host may run the example itself); everything
else is what the README does: a bare repository, a clone that commits
``manifests/`` and pushes ``main``, and ``infinibay daemon --source
file://... --ref main --path manifests``.
"""

from __future__ import annotations

import os
import shlex
import shutil
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from reconciler.cli import daemon as daemon_command
from reconciler.cli import main
from tests.fixtures.git import git
from tests.integration.harness import Harness
from tests.integration.test_daemon import Daemon, running, spawn, until

pytestmark = pytest.mark.integration

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "daemon"
UNIT = EXAMPLE / "infinibay-daemon.service"

__all__ = ["spawn"]  # a fixture shared with test_daemon


def _exec_start() -> list[str]:
    lines = UNIT.read_text().replace("\\\n", " ").splitlines()
    (command,) = [line.split("=", 1)[1] for line in lines if line.startswith("ExecStart=")]
    return shlex.split(command)


def test_the_units_command_line_is_one_the_daemon_accepts() -> None:
    argv = _exec_start()
    assert Path(argv[0]).name == "infinibay"
    values = {"${INFINIBAY_SOURCE}": "file:///srv/x.git", "${INFINIBAY_REF}": "main",
              "${INFINIBAY_PATH}": "manifests"}  # fmt: skip
    args = [values.get(arg, arg) for arg in argv[1:]]
    split = args.index("daemon")
    parent = main.cli.make_context("infinibay", args[: split + 1], resilient_parsing=True)
    ctx = daemon_command.daemon.make_context("daemon", args[split + 1 :], parent=parent)
    assert ctx.params["source"] == "file:///srv/x.git"
    assert ctx.params["listen"] == ("127.0.0.1", 9180)
    assert ctx.params["prune"] is True


def test_the_unit_passes_systemd_analyze_verify(tmp_path: Path) -> None:
    infinibay = Path(sys.executable).with_name("infinibay")
    env = tmp_path / "daemon.env"
    env.write_text("INFINIBAY_SOURCE=file:///srv/x.git\nINFINIBAY_REF=main\nINFINIBAY_PATH=m\n")
    unit = tmp_path / UNIT.name
    unit.write_text(
        UNIT.read_text()
        .replace("/opt/infinibay/.venv/bin/infinibay", str(infinibay))
        .replace("/etc/infinibay/daemon.env", str(env))
    )
    done = subprocess.run(
        ["systemd-analyze", "verify", str(unit)], capture_output=True, text=True, check=False
    )
    assert done.returncode == 0, done.stderr


def _rehome(h: Harness, text: str) -> str:
    for old, new in (
        ("gitops-tiny", h.name("tiny")),
        ("gitops-web", h.name("web")),
        ("ib-gitops0", h.bridge()),
        ("/var/lib/infinibay/pools/gitops", str(h.pool_dir)),
        ("10.215.0.", f"{h.subnet}."),
        ("name: gitops", f"name: {h.name('gitops')}"),
        ("pool: gitops", f"pool: {h.name('gitops')}"),
        ("network: gitops", f"network: {h.name('gitops')}"),
    ):
        text = text.replace(old, new)
    return text


@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)  # backends: see test_daemon
def test_the_example_converges_from_a_git_branch_as_the_readme_says(
    h: Harness, spawn: Callable[..., Daemon], tmp_path: Path
) -> None:
    bare, work = tmp_path / "gitops.git", tmp_path / "gitops"
    git(tmp_path, "init", "--quiet", "--bare", "--initial-branch=main", str(bare))
    git(tmp_path, "clone", "--quiet", str(bare), str(work))
    shutil.copytree(EXAMPLE / "manifests", work / "manifests")
    for path in (work / "manifests").iterdir():
        path.write_text(_rehome(h, path.read_text()))
    git(work, "add", "manifests")
    git(work, "commit", "--quiet", "-m", "desired state")
    git(work, "push", "--quiet", "origin", "HEAD:main")
    head = git(work, "rev-parse", "HEAD")

    daemon = spawn(
        "--source", f"file://{bare}", "--ref", "main", "--path", "manifests",
        "--git-interval", "5s", "--interval", "5m",
        "--cache-dir", os.fspath(tmp_path / "cache"),
    )  # fmt: skip
    until(lambda: running(h, "web"), 120, "gitops-web runs", daemon)
    ready = until(lambda: (r := daemon.readyz())["ready"] and r, 30, "ready", daemon)
    assert ready["source"]["appliedRevision"] == f"main@sha1:{head}"
    assert daemon.terminate() == 0
