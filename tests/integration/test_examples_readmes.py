"""Every ``examples/*/README.md`` runs as written, its clean-up included, and leaves nothing.

The fenced ``sh`` and ``bash`` blocks of each README are its commands. They run
in a copy of the repository's ``examples/`` whose manifests are rewritten onto
this test's prefix, pool directory, bridges and subnets (as
``test_examples_apply`` does: a shared host may run the examples themselves),
from the copy's root, with ``INFINIBAY_DATABASE_URL``, ``INFINIBAY_LIBVIRT_URI``
and ``LIBVIRT_DEFAULT_URI`` pointing at this test's record and libvirt,
``INFINIBAY_SHUTDOWN_TIMEOUT=1`` (the guests never answer ACPI), and the
project's virtualenv as ``.venv``. Each command line must succeed (``plan``
may also exit 2: changes pending, as the READMEs say).

A block a test cannot run as written (one that installs the project, starts a
long-running daemon, or writes system files) is preceded in its README by
``<!-- test: skip (why) -->``; every other block runs. After the last block
(the README's clean-up), libvirt holds nothing of the test's prefix.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import libvirt
import pytest
import yaml

from tests.integration.harness import Harness
from tests.integration.test_examples_apply import EXAMPLES, _rehome

pytestmark = pytest.mark.integration

_BLOCK = re.compile(r"(<!-- test: skip[^>]*-->\s*\n)?```(?:sh|bash)\n(.*?)```", re.S)
_VENV = Path(sys.executable).parent.parent


def blocks(readme: str) -> list[tuple[bool, str]]:
    """The README's shell blocks in order: (runnable, text)."""
    return [(match[1] is None, match[2]) for match in _BLOCK.finditer(readme)]


def commands(block: str) -> list[str]:
    """One command per logical line (``\\`` continuations joined); blank lines dropped."""
    joined = block.replace("\\\n", " ")
    return [
        line for line in joined.splitlines() if line.strip() and not line.lstrip().startswith("#")
    ]


def _copy(h: Harness, example: str, root: Path) -> Path:
    """``examples/EXAMPLE`` copied under ``root``, its manifests rehomed file by file."""
    source = EXAMPLES / example
    target = root / "examples" / example
    shutil.copytree(source, target)
    files = sorted(p for p in target.rglob("*.yaml"))
    per_file = [[d for d in yaml.safe_load_all(p.read_text()) if d] for p in files]
    rehomed = iter(_rehome(h, [d for docs in per_file for d in docs]))
    for path, docs in zip(files, per_file, strict=True):
        path.write_text(yaml.safe_dump_all([next(rehomed) for _ in docs], sort_keys=False))
    (root / ".venv").symlink_to(_VENV)
    return target


def _left(conn: libvirt.virConnect, prefix: str) -> list[str]:
    found = [f"domain {d.name()}" for d in conn.listAllDomains() if d.name().startswith(prefix)]
    found += [f"network {n.name()}" for n in conn.listAllNetworks() if n.name().startswith(prefix)]
    found += [f"pool {p.name()}" for p in conn.listAllStoragePools() if p.name().startswith(prefix)]
    found += [f"nwfilter {f.name()}" for f in conn.listAllNWFilters() if prefix in f.name()]
    return found


def _run(h: Harness, root: Path, command: str) -> subprocess.CompletedProcess[str]:
    env = {
        **os.environ,
        "PATH": f"{_VENV / 'bin'}:{os.environ['PATH']}",
        "INFINIBAY_DATABASE_URL": h.db_url,
        "INFINIBAY_LIBVIRT_URI": h.uri,
        "LIBVIRT_DEFAULT_URI": h.uri,
        # The guests boot no OS and never answer ACPI: force them off after 1 s, not 60.
        "INFINIBAY_SHUTDOWN_TIMEOUT": "1",
    }
    return subprocess.run(
        ["bash", "-o", "pipefail", "-c", command],
        cwd=root,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )


def _setup(h: Harness, example: str, root: Path) -> None:
    """What a skipped block would have done before the clean-up: the daemon's first pass."""
    if example == "daemon":
        result = _run(h, root, "infinibay apply -f examples/daemon/manifests/ --shutdown-timeout 1")
        assert result.returncode == 0, result.stdout + result.stderr


def test_every_example_has_a_readme_with_a_cleanup() -> None:
    for example in sorted(p for p in EXAMPLES.iterdir() if p.is_dir()):
        readme = (example / "README.md").read_text()
        assert "## Clean up" in readme, example.name
        runnable = [text for ok, text in blocks(readme) if ok]
        assert runnable and "infinibay delete" in runnable[-1], example.name


@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)  # the backends are proven elsewhere
@pytest.mark.parametrize(
    "example", sorted(p.name for p in EXAMPLES.iterdir() if (p / "README.md").is_file())
)
def test_the_readme_runs_as_written_and_its_cleanup_leaves_nothing(
    h: Harness, example: str, tmp_path: Path
) -> None:
    root = tmp_path / "repo"
    _copy(h, example, root)
    _setup(h, example, root)
    readme = (EXAMPLES / example / "README.md").read_text()
    ran = []
    for runnable, block in blocks(readme):
        if not runnable:
            continue
        for command in commands(block):
            result = _run(h, root, command)
            allowed = (0, 2) if command.split()[:2] == ["infinibay", "plan"] else (0,)
            assert result.returncode in allowed, (
                f"{example}/README.md: {command!r} exited {result.returncode}\n"
                f"{result.stdout}{result.stderr}"
            )
            ran.append(command)
    assert any(c.startswith("infinibay delete") for c in ran), ran
    assert _left(h.conn, h.prefix) == []
