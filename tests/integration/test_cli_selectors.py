"""kubectl's habits on the real CLI and libvirtd: ``-l``, ``-L``, ``--show-labels``,
``-o name``, ``KIND/NAME``, global options after the command, completion, ``get -w``."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from reconciler.models import record
from tests.integration.harness import Harness

pytestmark = pytest.mark.integration

CLI = [sys.executable, "-c", "from reconciler.cli.main import main; main()"]


def _setup(h: Harness) -> Path:
    web = h.vm("web", powerState="Stopped")
    web["metadata"]["labels"] = {"app": "web", "tier": "front"}
    db = h.vm("db", powerState="Stopped")
    db["metadata"]["labels"] = {"app": "db"}
    h.write(h.pool(), h.network(), h.template(), web, db)
    result = h.apply()
    assert result.exit_code == 0, result.output
    return h.workdir


def _names(output: str) -> list[str]:
    return [line for line in output.splitlines() if line]


def test_get_selects_by_label_and_shows_label_columns(h: Harness) -> None:
    _setup(h)
    result = h.run("get", "vms", "-l", "app=web", "-o", "name")
    assert result.exit_code == 0, result.output
    assert _names(result.output) == [f"vm/{h.name('web')}"]

    result = h.run("get", "vm", "-l", "app in (web,db),!tier", "-o", "name")
    assert _names(result.output) == [f"vm/{h.name('db')}"]

    result = h.run("get", "vm", "-L", "app", "--show-labels")
    assert result.exit_code == 0, result.output
    header, *rows = result.output.splitlines()
    assert header.split()[-2:] == ["APP", "LABELS"]
    web_row = next(r for r in rows if r.startswith(h.name("web")))
    assert web_row.split()[-2:] == ["web", "app=web,tier=front"]

    result = h.run("get", "vm", "-l", "app=nothing")
    assert result.exit_code == 0 and "No virtual machines found" in result.output

    bad = h.run("get", "vm", "-l", "app=(x")
    assert bad.exit_code != 0 and "selector" in bad.output


def test_kind_slash_name_and_kind_name_are_accepted_everywhere(h: Harness) -> None:
    _setup(h)
    web = h.name("web")
    for args in (("get", f"vm/{web}"), ("get", "vm", web)):
        result = h.run(*args, "-o", "name")
        assert result.exit_code == 0, result.output
        assert _names(result.output) == [f"vm/{web}"]
    for args in (("describe", f"vm/{web}"), ("describe", "vm", web)):
        result = h.run(*args)
        assert result.exit_code == 0, result.output
        assert "Name:" in result.output and web in result.output
    for args in (("history", f"vm/{web}"), ("history", "vm", web)):
        assert h.run(*args).exit_code == 0
    for args in (("events", f"vm/{web}"), ("events", "vm", web)):
        result = h.run(*args, "-o", "json")
        assert result.exit_code == 0 and web in result.output
        assert h.name("db") not in result.output
    mixed = h.run("get", f"vm/{web}", h.name("db"))
    assert mixed.exit_code != 0 and "KIND/NAME" in mixed.output


def test_events_plan_apply_and_delete_take_a_selector(h: Harness) -> None:
    _setup(h)
    result = h.run("events", "-l", "app=db", "-o", "json")
    assert result.exit_code == 0, result.output
    assert h.name("db") in result.output and h.name("web") not in result.output

    web = h.vm("web", powerState="Stopped", cpus=2)
    web["metadata"]["labels"] = {"app": "web", "tier": "front"}
    db = h.vm("db", powerState="Stopped", cpus=2)
    db["metadata"]["labels"] = {"app": "db"}
    h.write(h.pool(), h.network(), h.template(), web, db)

    planned = h.plan("-l", "app=web")
    assert planned.exit_code == 2, planned.output
    assert h.name("web") in planned.output and h.name("db") not in planned.output

    applied = h.apply("-l", "app=web")
    assert applied.exit_code == 0, applied.output
    assert h.domain_xml("web").findtext("vcpu") == "2"
    assert h.domain_xml("db").findtext("vcpu") == "1"  # not selected: left as it was
    assert h.plan("-l", "app=web").exit_code == 0
    assert h.plan().exit_code == 2  # db still to do

    deleted = h.run("delete", "vm", "-l", "app=db", "--shutdown-timeout", "1")
    assert deleted.exit_code == 0, deleted.output
    assert not h.has_domain("db") and h.has_domain("web")
    with h.store() as store:
        assert store.get(record.ResourceKey("VirtualMachine", h.name("db"))) is None


def _env(h: Harness, **extra: str) -> dict[str, str]:
    env = dict(os.environ)
    env.pop("INFINIBAY_DATABASE_URL", None)
    env.update(extra)
    return env


def test_global_options_after_the_command(h: Harness) -> None:
    _setup(h)
    result = subprocess.run(
        [*CLI, "get", "vm", "-o", "name", "--db", h.db_url, "-c", h.uri, "-v"],
        capture_output=True,
        text=True,
        env=_env(h),
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    assert f"vm/{h.name('web')}" in result.stdout.split()


def _complete(h: Harness, words: str) -> list[str]:
    cword = len(words.split()) - (0 if words.endswith(" ") else 1)
    result = subprocess.run(
        CLI,
        capture_output=True,
        text=True,
        env=_env(
            h,
            _INFINIBAY_COMPLETE="bash_complete",
            COMP_WORDS=words,
            COMP_CWORD=str(cword),
        ),
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    return [line.split(",", 1)[1] for line in result.stdout.splitlines() if "," in line]


def test_shell_completion_offers_kinds_names_and_paths(h: Harness) -> None:
    _setup(h)
    prog = f"infinibay --db {h.db_url} get "
    assert "vm" in _complete(h, prog)
    assert "network" in _complete(h, prog + "net")
    names = _complete(h, prog + "vm ")
    assert sorted(names) == sorted([h.name("db"), h.name("web")])
    assert _complete(h, f"{prog}vm/{h.name('we')}") == [f"vm/{h.name('web')}"]
    assert _complete(h, f"infinibay --db {h.db_url} describe vm {h.name('d')}") == [h.name("db")]
    result = subprocess.run(
        CLI,
        capture_output=True,
        text=True,
        env=_env(
            h,
            _INFINIBAY_COMPLETE="bash_complete",
            COMP_WORDS=f"infinibay plan -f {h.workdir}/ex",
            COMP_CWORD="3",
        ),
        timeout=120,
    )
    # click hands -f to the shell's own file-name completion
    assert result.stdout.splitlines() == [f"file,{h.workdir}/ex"]
    missing = h.workdir / "none.db"
    assert _complete(h, f"infinibay --db sqlite:///{missing} get vm ") == []
    assert not missing.exists()  # completion never creates a record


def test_get_watch_prints_a_row_again_when_it_changes(h: Harness) -> None:
    _setup(h)
    with subprocess.Popen(
        [*CLI, "--db", h.db_url, "-c", h.uri, "get", "vm", h.name("web"), "-w"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=_env(h),
    ) as proc:
        try:
            assert proc.stdout is not None
            header = proc.stdout.readline()
            first = proc.stdout.readline()
            assert header.split()[0] == "NAME", header
            assert "Stopped" in first, first
            started = h.run("start", "vm", h.name("web"))
            assert started.exit_code == 0, started.output
            deadline = time.monotonic() + 30
            line = ""
            while time.monotonic() < deadline:
                line = proc.stdout.readline()
                if "Running" in line:
                    break
            assert "Running" in line and line.startswith(h.name("web")), line
        finally:
            proc.send_signal(signal.SIGINT)
            try:
                proc.wait(timeout=20)
            finally:
                if proc.poll() is None:
                    proc.kill()
        assert proc.returncode == 0, proc.stderr.read() if proc.stderr else ""
