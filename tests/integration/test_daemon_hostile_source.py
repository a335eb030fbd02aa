"""A daemon whose directory source turns hostile keeps healing (issue: the runner thread died).

A NUL byte (``yaml.reader.ReaderError``), 100,000 nested ``[`` (``RecursionError``
in the pure-Python composer) and bad UTF-8 used to escape the loader and kill
the daemon's runner thread for good. Now each is one located manifest error:
the revision is refused with an ``InvalidRevision`` event naming
``FILE:LINE:COL``, the last good revision stays in force, and afterwards a
``virsh destroy`` is still healed (within 10 s, as in test_daemon). A symlink
to a stand-in secret outside the source is refused the same way, and the
secret never reaches the record or the log.
"""

from __future__ import annotations

import functools
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.integration.harness import Harness
from tests.integration.test_daemon import Daemon, dump, running, source_events, spawn, until

# Timed against the daemon's reaction bounds: run after the parallel phase, alone (scripts/test).
pytestmark = [pytest.mark.integration, pytest.mark.timing]

__all__ = ["spawn"]  # the daemon fixture, shared with test_daemon

SECRET = "Stand-In-Shadow-Hash-0xC0FFEE"


def _refused(h: Harness, located: str) -> bool:
    return any(located in e.message for e in source_events(h, "InvalidRevision"))


def _last_run(h: Harness) -> int:
    """The id of the newest finished run, 0 before any."""
    with h.store() as store:
        run = store.last_run()
    return int(run.id) if run is not None and run.finished_at is not None else 0


@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
def test_hostile_files_are_refused_revisions_and_a_destroyed_vm_is_still_healed(
    h: Harness, spawn: Callable[..., Daemon], tmp_path: Path
) -> None:
    source = h.workdir
    (source / "all.yaml").write_text(dump(h.pool(), h.network(), h.template(), h.vm("web")))
    daemon = spawn("--source", str(source), "--interval", "10m", "--debounce", "200ms")
    until(lambda: running(h, "web"), 120, "the VM runs", daemon)
    until(lambda: daemon.readyz()["ready"], 30, "the daemon is ready", daemon)
    secret = tmp_path / "shadow"
    secret.write_text(f"root: {SECRET}\n")

    hostile: list[tuple[str, Callable[[Path], object], str]] = [
        ("nul.yaml", lambda p: p.write_bytes(b'kind: "a\x00b"\n'), "nul.yaml:1:9: ?/?: YAML error"),
        ("deep.yaml", lambda p: p.write_text("[" * 100_000), "deep.yaml:1:65: ?/?: YAML error"),
        ("latin.yaml", lambda p: p.write_bytes(b"a: caf\xe9\n"), "latin.yaml:1:7: ?/?: not UTF-8"),
        ("shadow.yaml", lambda p: p.symlink_to(secret), "shadow.yaml:1:1: ?/?: a symlink"),
    ]
    for name, write, located in hostile:
        write(source / name)
        until(
            functools.partial(_refused, h, located),
            30,
            f"{name} is refused as an invalid revision",
            daemon,
        )
        (source / name).unlink()
    after = _last_run(h)
    until(lambda: _last_run(h) > after, 30, "the source is read again", daemon)

    h.domain("web").destroy()
    destroyed = time.monotonic()
    # 10 s as in test_daemon's healing test: starting QEMU on a loaded host takes seconds.
    until(lambda: running(h, "web"), 10, "the destroyed VM runs again", daemon)
    assert time.monotonic() - destroyed < 10
    assert daemon.http("/healthz")[0] == 200
    assert all(SECRET not in e.message for e in source_events(h, "InvalidRevision"))
    assert SECRET not in daemon.log.read_text()
    assert daemon.terminate() == 0
