"""Suspending reconciliation (``infinibay.io/reconcile: disabled``): plan, apply and the
daemon's passes leave the resource alone and say so; ``suspend``/``resume`` set it in the
record; ``get`` shows it."""

from __future__ import annotations

import json
import signal
import time
from collections.abc import Callable

import pytest

from reconciler.models import record
from tests.integration.harness import Harness
from tests.integration.test_daemon import Daemon, dump, running, spawn, until

__all__ = ["spawn"]  # the daemon tests' fixture, used here too

pytestmark = pytest.mark.integration


def test_suspend_holds_back_plan_and_apply_until_resume(h: Harness) -> None:
    h.write(h.pool(), h.network(), h.template(), h.vm("web", powerState="Stopped"))
    assert h.apply().exit_code == 0
    key = record.ResourceKey("VirtualMachine", h.name("web"))

    suspended = h.sh("suspend", f"vm/{h.name('web')}")
    assert suspended.exit_code == 0, suspended.output
    with h.store() as store:
        rec = store.get(key)
        assert rec is not None
        assert rec.annotations["infinibay.io/reconcile"] == "disabled"
        assert [e.reason for e in store.events(key)][-1] == "Suspended"

    listed = h.sh("get", "vm")
    header, *rows = listed.output.splitlines()
    assert header.split()[-1] == "SUSPENDED" and rows[0].split()[-1] == "yes", listed.output

    h.write(h.pool(), h.network(), h.template(), h.vm("web", powerState="Stopped", cpus=2))
    planned = h.plan()
    assert planned.exit_code == 0, planned.output
    assert f"= virtualmachine/{h.name('web')} (suspended" in planned.output
    assert "1 suspended" in planned.output
    as_json = json.loads(h.plan("-o", "json").output)
    assert as_json["suspended"] == [f"virtualmachine/{h.name('web')}"]

    applied = h.apply()
    assert applied.exit_code == 0, applied.output
    assert h.domain_xml("web").findtext("vcpu") == "1"  # left as it was
    with h.store() as store:
        rec = store.get(key)
        assert rec is not None and rec.annotations["infinibay.io/reconcile"] == "disabled"

    pruned = h.sh("apply", "-f", str(h.write(h.pool(), h.network(), h.template())), "--prune")
    assert pruned.exit_code == 0, pruned.output
    assert h.has_domain("web")  # a suspended resource is not pruned either

    h.write(h.pool(), h.network(), h.template(), h.vm("web", powerState="Stopped", cpus=2))
    resumed = h.sh("resume", "vm", h.name("web"))
    assert resumed.exit_code == 0, resumed.output
    assert h.plan().exit_code == 2
    assert h.apply().exit_code == 0
    assert h.domain_xml("web").findtext("vcpu") == "2"
    assert "SUSPENDED" not in h.sh("get", "vm").output


def test_a_manifest_annotation_suspends_too(h: Harness) -> None:
    h.write(h.pool(), h.network(), h.template(), h.vm("web", powerState="Stopped"))
    assert h.apply().exit_code == 0
    web = h.vm("web", powerState="Stopped", cpus=2)
    web["metadata"]["annotations"] = {"infinibay.io/reconcile": "disabled"}
    h.write(h.pool(), h.network(), h.template(), web)
    planned = h.plan()
    assert planned.exit_code == 0 and "suspended" in planned.output, planned.output
    assert h.apply().exit_code == 0
    assert h.domain_xml("web").findtext("vcpu") == "1"

    created = h.vm("new", powerState="Stopped")
    created["metadata"]["annotations"] = {"infinibay.io/reconcile": "disabled"}
    h.write(h.pool(), h.network(), h.template(), web, created)
    assert h.apply().exit_code == 0
    assert not h.has_domain("new")  # not even created while suspended


def test_suspend_names_what_is_missing(h: Harness) -> None:
    h.write(h.pool())
    assert h.apply().exit_code == 0
    result = h.sh("suspend", "vm", h.name("ghost"))
    assert result.exit_code == 1 and "not found" in result.output


@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
def test_the_daemon_honours_a_suspension_set_while_it_runs(
    h: Harness, spawn: Callable[..., Daemon]
) -> None:
    (h.workdir / "all.yaml").write_text(dump(h.pool(), h.network(), h.template(), h.vm("web")))
    daemon = spawn("--source", str(h.workdir), "--interval", "10m")
    until(lambda: running(h, "web"), 120, "the VM runs", daemon)
    until(lambda: daemon.readyz()["ready"], 30, "the daemon is ready", daemon)

    suspended = h.sh("suspend", "vm", h.name("web"))
    assert suspended.exit_code == 0, suspended.output
    with h.store() as store:
        before = len(store.runs(limit=1000))
    h.domain("web").destroy()
    # The domain's stop is a libvirt event: the daemon runs a pass, which leaves it alone.
    until(lambda: _runs(h) > before, 30, "a pass after the destroy", daemon)
    time.sleep(3)
    assert not running(h, "web")

    resumed = h.sh("resume", f"vm/{h.name('web')}")
    assert resumed.exit_code == 0, resumed.output
    daemon.proc.send_signal(signal.SIGHUP)  # a resync, as an operator would ask for
    until(lambda: running(h, "web"), 30, "the resumed VM runs again", daemon)
    assert daemon.terminate() == 0


def _runs(h: Harness) -> int:
    with h.store() as store:
        return len(store.runs(limit=1000))
