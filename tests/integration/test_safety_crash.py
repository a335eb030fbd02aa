"""Crash safety: a real ``infinibay apply`` process SIGKILLed mid-pass, then applied again.

The process is the installed entry point (``python -m reconciler apply``) with
the record and libvirt given by environment, as a systemd unit or a CI job
would run it. Each case watches libvirt (or the clock) until the pass has got
to a given point, kills the process with SIGKILL (no clean-up of any kind can
run), and then checks that the next apply converges without duplicates, leaks
or manual clean-up: every domain defined once and running, exactly one volume
file per disk, one Ready record row per manifest, the killed run closed as
``aborted``, and a third apply with nothing to do.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable

import libvirt
import pytest

from reconciler.models import record
from tests.integration.harness import Harness

pytestmark = pytest.mark.integration

VMS = [f"vm{i}" for i in range(6)]


def _command(h: Harness) -> tuple[list[str], dict[str, str]]:
    env = {**os.environ, "INFINIBAY_DATABASE_URL": h.db_url, "INFINIBAY_LIBVIRT_URI": h.uri}
    argv = [sys.executable, "-m", "reconciler", "apply", "-f", str(h.workdir)]
    return [*argv, "--shutdown-timeout", "1"], env


def _domains(h: Harness) -> list[libvirt.virDomain]:
    return [d for d in h.conn.listAllDomains() if d.name().startswith(h.prefix)]


def _volume_files(h: Harness) -> list[str]:
    return sorted(p.name for p in h.pool_dir.iterdir())


def _running(h: Harness) -> int:
    return sum(1 for d in _domains(h) if d.isActive())


# When to pull the plug: a moment of the pass, read from libvirt (or the clock).
KILL_POINTS: dict[str, Callable[[Harness, float], bool]] = {
    "after-0.2s": lambda h, elapsed: elapsed >= 0.2,
    "pool-defined": lambda h, _e: any(
        p.name() == h.name("pool") for p in h.conn.listAllStoragePools()
    ),
    "2-volumes": lambda h, _e: len(_volume_files(h)) >= 2,
    "3-domains-defined": lambda h, _e: len(_domains(h)) >= 3,
    "2-domains-running": lambda h, _e: _running(h) >= 2,
}


def _kill_when(h: Harness, point: Callable[[Harness, float], bool]) -> None:
    argv, env = _command(h)
    started = time.monotonic()
    process = subprocess.Popen(argv, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        while not point(h, time.monotonic() - started):
            assert process.poll() is None, "the apply finished before the kill point"
            assert time.monotonic() - started < 120, "the kill point was never reached"
            time.sleep(0.01)
        process.send_signal(signal.SIGKILL)
    finally:
        process.wait(timeout=30)
    assert process.returncode == -signal.SIGKILL


def _apply(h: Harness) -> subprocess.CompletedProcess[str]:
    argv, env = _command(h)
    return subprocess.run(argv, env=env, capture_output=True, text=True, timeout=300, check=False)


@pytest.mark.parametrize("when", list(KILL_POINTS))
def test_apply_killed_mid_pass_converges_on_the_next_without_duplicates_or_leaks(
    h: Harness, when: str
) -> None:
    manifests = [h.pool(), h.network(), h.template(), *(h.vm(vm) for vm in VMS)]
    h.write(*manifests)

    _kill_when(h, KILL_POINTS[when])
    with h.store() as store:
        open_runs = [r.id for r in store.runs() if r.finished_at is None]
    if when == "after-0.2s":
        assert len(open_runs) <= 1  # the process may still have been starting up
    else:
        assert len(open_runs) == 1  # killed inside the pass: its run was left open

    done = _apply(h)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "Traceback" not in done.stderr

    names = sorted(d.name() for d in _domains(h))
    assert names == sorted(h.name(vm) for vm in VMS)  # each defined once, nothing else
    assert all(h.state(vm) == libvirt.VIR_DOMAIN_RUNNING for vm in VMS)
    expected = sorted(f"{h.name(vm)}.root.qcow2" for vm in VMS)
    assert _volume_files(h) == expected  # one volume per disk: no leaked or duplicate file
    pool = h.conn.storagePoolLookupByName(h.name("pool"))
    pool.refresh(0)
    assert sorted(v.name() for v in pool.listAllVolumes()) == expected
    for vm in VMS:  # each domain uses its own volume
        source = h.domain_xml(vm).find("devices/disk/source")
        assert source is not None and source.get("volume") == f"{h.name(vm)}.root.qcow2"
    assert [n.name() for n in h.conn.listAllNetworks() if n.name().startswith(h.prefix)] == [
        h.name("net")
    ]

    with h.store() as store:
        rows = store.resources()
        assert sorted((r.key.kind, r.key.name) for r in rows) == sorted(
            (str(m["kind"]), str(m["metadata"]["name"])) for m in manifests
        )
        assert {r.status.get("phase") for r in rows} == {"Ready"}
        assert all(r.generation == 1 for r in rows)  # the killed pass recorded the same spec
        runs = {r.id: r for r in store.runs()}
        for run_id in open_runs:
            assert runs[run_id].result == "aborted" and runs[run_id].finished_at is not None
        assert all(r.finished_at is not None for r in runs.values())
        vm_events = store.events(record.ResourceKey("VirtualMachine", h.name("vm0")))
        assert "ApplyFailed" not in [e.reason for e in vm_events]

    third = _apply(h)
    assert third.returncode == 0, third.stdout + third.stderr
    assert "Nothing to do" in third.stdout
