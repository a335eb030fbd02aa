"""Concurrency: two reconcilers on one record take turns on the writer lock.

Two real ``infinibay apply`` processes are started at the same moment on the
same record and manifests (the record not even created yet, so they also race
to create its schema): both exit 0, every domain and volume exists once and
was created once, and the one that waited for the lock finds nothing to do. A
reconciler that cannot get the lock within ``--lock-timeout`` fails and says
who holds it.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time

import libvirt
import pytest

from reconciler.models import record
from tests.integration.harness import Harness

pytestmark = pytest.mark.integration

VMS = ["a", "b", "c"]


def _start(h: Harness, *options: str, shutdown_timeout: float = 1) -> subprocess.Popen[str]:
    env = {**os.environ, "INFINIBAY_DATABASE_URL": h.db_url, "INFINIBAY_LIBVIRT_URI": h.uri}
    argv = [sys.executable, "-m", "reconciler", *options, "apply", "-f", str(h.workdir)]
    return subprocess.Popen(
        [*argv, "--shutdown-timeout", str(shutdown_timeout)],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def test_two_applies_started_at_once_take_turns_and_create_nothing_twice(h: Harness) -> None:
    h.write(h.pool(), h.network(), h.template(), *(h.vm(vm) for vm in VMS))

    first, second = _start(h), _start(h)
    outputs = [p.communicate(timeout=300) for p in (first, second)]

    for process, (stdout, stderr) in zip((first, second), outputs, strict=True):
        assert process.returncode == 0, stdout + stderr
        assert "Traceback" not in stderr
    waited = [stdout for stdout, _ in outputs if "Nothing to do" in stdout]
    worked = [stdout for stdout, _ in outputs if "Nothing to do" not in stdout]
    assert len(waited) == 1 and len(worked) == 1, outputs  # the second planned after the first
    for vm in VMS:
        assert f"virtualmachine/{h.name(vm)} created, started" in worked[0]

    domains = [d.name() for d in h.conn.listAllDomains() if d.name().startswith(h.prefix)]
    assert sorted(domains) == sorted(h.name(vm) for vm in VMS)
    assert all(h.state(vm) == libvirt.VIR_DOMAIN_RUNNING for vm in VMS)
    assert sorted(p.name for p in h.pool_dir.iterdir()) == sorted(
        f"{h.name(vm)}.root.qcow2" for vm in VMS
    )
    with h.store() as store:
        for vm in VMS:
            events = store.events(record.ResourceKey("VirtualMachine", h.name(vm)))
            counts = {e.reason: e.count for e in events}
            assert counts["Created"] == 1 and counts["VolumeCreated"] == 1, counts
            assert "VolumeReused" not in counts
        runs = store.runs()
        assert len(runs) == 2 and {r.result for r in runs} == {"succeeded"}
        first_run, second_run = sorted(runs, key=lambda r: r.id)
        assert first_run.finished_at is not None
        assert second_run.started_at >= first_run.finished_at  # strictly one after the other
        assert len(store.resources()) == 3 + len(VMS)


def test_apply_that_cannot_get_the_lock_in_time_fails_naming_the_holder(h: Harness) -> None:
    h.write(h.pool(), h.network(), h.template(), h.vm("slow"))
    result = h.apply()
    assert result.exit_code == 0, result.output
    # Declared Stopped: the holder waits out a graceful shutdown the firmware-only guest
    # ignores, holding the lock for the whole --shutdown-timeout.
    h.write(h.pool(), h.network(), h.template(), h.vm("slow", powerState="Stopped"))
    holder = _start(h, shutdown_timeout=15)
    try:
        deadline = time.monotonic() + 60
        while True:  # until the holder's pass has begun: it holds the lock
            with h.store() as store:
                if any(r.finished_at is None for r in store.runs()):
                    break
            assert holder.poll() is None, holder.communicate()
            assert time.monotonic() < deadline
            time.sleep(0.05)
        started = time.monotonic()
        loser = _start(h, "--lock-timeout", "0.5")
        stdout, stderr = loser.communicate(timeout=60)
        assert loser.returncode == 1, stdout + stderr
        assert time.monotonic() - started < 15
        message = stdout + stderr
        assert f"locked by pid {holder.pid}" in message, message
        assert "--lock-timeout" in message
        assert "Traceback" not in message
        assert holder.poll() is None  # the loser gave up while the holder was still working
    finally:
        holder_out, holder_err = holder.communicate(timeout=300)
    assert holder.returncode == 0, holder_out + holder_err
    assert h.state("slow") == libvirt.VIR_DOMAIN_SHUTOFF
    with h.store() as store:
        assert len(store.runs()) == 2  # the loser never started a pass
