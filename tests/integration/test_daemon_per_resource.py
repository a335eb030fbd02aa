"""Fifty VMs destroyed at once come back through passes for them alone, not fifty full passes.

A real daemon over the real libvirtd manages 50 diskless guests declared
Running. All 50 are destroyed at once with libvirt-python, as a host-wide
failure would. The lifecycle events are answered by passes narrowed to the VMs
they name (the runs table's ``scope``), which may take several VMs at once but
never plan the fleet: every run after the destroy has a scope, each VM is in
one, and together they are at most one run per VM.
"""

from __future__ import annotations

from collections.abc import Callable

import libvirt
import pytest

from reconciler.models import record
from tests.integration.harness import Harness
from tests.integration.test_daemon import Daemon, spawn, until

pytestmark = [pytest.mark.integration, pytest.mark.timing]
__all__ = ["spawn"]  # the fixture that starts daemons, shared with the daemon tests

FLEET = 50


@pytest.mark.timeout(900)  # fifty guests started twice on a 2-core host
@pytest.mark.parametrize("db_url", ["postgresql"], indirect=True)
def test_fifty_destroyed_vms_come_back_through_passes_for_them_alone(
    h: Harness, spawn: Callable[..., Daemon], libvirt_conn: libvirt.virConnect
) -> None:
    vms = [h.vm(f"v{i:02d}", powerState="Running", memory="32MiB") for i in range(FLEET)]
    h.write(h.template(disks=[], networks=[]), *vms)  # nothing to boot, nothing to send
    daemon = spawn("--source", str(h.workdir), "--interval", "1h")
    until(lambda: daemon.readyz()["ready"], 300, "the fleet is up", daemon)
    names = [h.name(f"v{i:02d}") for i in range(FLEET)]
    domains = [libvirt_conn.lookupByName(name) for name in names]
    assert all(d.isActive() for d in domains)
    with h.store() as store:
        before = max(r.id for r in store.runs(limit=1))

    for dom in domains:
        dom.destroy()

    def all_running() -> bool:
        return all(d.isActive() for d in domains)

    def runs_since() -> list[record.RunRecord]:
        with h.store() as store:
            return [r for r in store.runs(limit=500) if r.id > before]

    ended: list[record.RunRecord] = []

    def settled() -> bool:
        # Ready says the last pass converged; the events of the guests it started may
        # still be answered by a pass that is running now, and more may follow. What
        # is checked is one reading in which every run had ended.
        runs = runs_since()
        if runs and all(r.result is not None for r in runs) and daemon.readyz()["ready"]:
            ended[:] = runs
            return True
        return False

    until(all_running, 180, "every destroyed VM runs again", daemon)
    until(settled, 120, "the daemon's passes ended", daemon)
    runs = ended
    assert runs, "no pass ran"
    assert [r.id for r in runs if r.scope is None] == [], "a full pass ran"
    scoped = [key for r in runs for key in r.scope or ()]
    assert sorted(set(scoped)) == sorted(f"virtualmachine/{n}" for n in names)
    assert len(runs) <= FLEET
    assert all(r.result == "succeeded" for r in runs), [(r.id, r.result) for r in runs]
