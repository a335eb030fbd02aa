"""Suspending reconciliation (``infinibay.io/reconcile: disabled``): plan, apply and the
daemon's passes leave the resource alone and say so; ``suspend``/``resume`` set it in the
record; ``get`` shows it."""

from __future__ import annotations

import json

import pytest

from reconciler.models import record
from tests.integration.harness import Harness

pytestmark = pytest.mark.integration


def test_suspend_holds_back_plan_and_apply_until_resume(h: Harness) -> None:
    h.write(h.pool(), h.network(), h.template(), h.vm("web", powerState="Stopped"))
    assert h.apply().exit_code == 0
    key = record.ResourceKey("VirtualMachine", h.name("web"))

    suspended = h.run("suspend", f"vm/{h.name('web')}")
    assert suspended.exit_code == 0, suspended.output
    with h.store() as store:
        rec = store.get(key)
        assert rec is not None
        assert rec.annotations["infinibay.io/reconcile"] == "disabled"
        assert [e.reason for e in store.events(key)][-1] == "Suspended"

    listed = h.run("get", "vm")
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

    pruned = h.run("apply", "-f", str(h.write(h.pool(), h.network(), h.template())), "--prune")
    assert pruned.exit_code == 0, pruned.output
    assert h.has_domain("web")  # a suspended resource is not pruned either

    h.write(h.pool(), h.network(), h.template(), h.vm("web", powerState="Stopped", cpus=2))
    resumed = h.run("resume", "vm", h.name("web"))
    assert resumed.exit_code == 0, resumed.output
    assert h.plan().exit_code == 2
    assert h.apply().exit_code == 0
    assert h.domain_xml("web").findtext("vcpu") == "2"
    assert "SUSPENDED" not in h.run("get", "vm").output


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
    result = h.run("suspend", "vm", h.name("ghost"))
    assert result.exit_code == 1 and "not found" in result.output
