"""``start``, ``stop`` and ``restart`` act on the real domain now, record events, and say
that the declared powerState wins at the next pass; ``restart`` clears RestartRequired."""

from __future__ import annotations

import libvirt
import pytest

from reconciler.models import record
from tests.integration.harness import Harness

pytestmark = pytest.mark.integration


def _reasons(h: Harness, short: str) -> list[str]:
    with h.store() as store:
        return [e.reason for e in store.events(record.ResourceKey("VirtualMachine", h.name(short)))]


def _condition(h: Harness, short: str, kind: str) -> str:
    with h.store() as store:
        rec = store.get(record.ResourceKey("VirtualMachine", h.name(short)))
    assert rec is not None
    return str({c["type"]: c for c in rec.status["conditions"]}[kind]["status"])


def test_start_and_stop_act_now_and_the_declared_power_state_wins_later(h: Harness) -> None:
    h.write(h.pool(), h.network(), h.template(), h.vm("web", powerState="Stopped"))
    assert h.apply().exit_code == 0
    assert h.state("web") == libvirt.VIR_DOMAIN_SHUTOFF

    started = h.sh("start", "vm", h.name("web"))
    assert started.exit_code == 0, started.output
    assert h.state("web") == libvirt.VIR_DOMAIN_RUNNING
    assert "declared powerState Stopped wins at the next reconcile pass" in started.output
    assert "Started" in _reasons(h, "web")
    assert h.sh("start", f"vm/{h.name('web')}").output.strip().endswith("already running.")

    # The guest has no OS: it ignores ACPI, and a graceful stop gives up, leaving it running.
    graceful = h.sh("stop", f"vm/{h.name('web')}", "--timeout", "1")
    assert graceful.exit_code == 1, graceful.output
    assert "still running after 1s of ACPI shutdown" in graceful.output
    assert "--force" in graceful.output
    assert h.state("web") == libvirt.VIR_DOMAIN_RUNNING

    planned = h.plan()  # the declared Stopped wins at the next pass
    assert planned.exit_code == 2 and "powerState" in planned.output, planned.output

    forced = h.sh("stop", "vm", h.name("web"), "--force")
    assert forced.exit_code == 0, forced.output
    assert h.state("web") == libvirt.VIR_DOMAIN_SHUTOFF
    assert (
        "forced off" in forced.output and "matches the declared powerState Stopped" in forced.output
    )
    assert _reasons(h, "web")[-1] == "Stopped"
    assert h.plan().exit_code == 0


def test_restart_boots_the_new_configuration_and_clears_restart_required(h: Harness) -> None:
    h.write(h.pool(), h.network(), h.template(), h.vm("web"))
    assert h.apply().exit_code == 0
    h.write(h.pool(), h.network(), h.template(), h.vm("web", cpus=2))
    assert h.apply().exit_code == 0
    assert h.domain_xml("web", inactive=False).findtext("vcpu") == "1"
    assert _condition(h, "web", "RestartRequired") == "True"

    restarted = h.sh("restart", "vm", h.name("web"), "--force")
    assert restarted.exit_code == 0, restarted.output
    assert "restarted (forced off)" in restarted.output
    assert "matches the declared powerState Running" in restarted.output
    assert h.state("web") == libvirt.VIR_DOMAIN_RUNNING
    assert h.domain_xml("web", inactive=False).findtext("vcpu") == "2"
    assert _condition(h, "web", "RestartRequired") == "False"
    assert _reasons(h, "web")[-1] == "Restarted"
    assert h.plan().exit_code == 0


def test_power_verbs_refuse_what_is_not_an_owned_vm(h: Harness) -> None:
    h.write(h.pool(), h.network(), h.template())
    assert h.apply().exit_code == 0
    missing = h.sh("start", "vm", h.name("nothing"))
    assert missing.exit_code == 1 and "not found" in missing.output
    wrong = h.sh("stop", f"network/{h.name('net')}")
    assert wrong.exit_code != 0 and "virtual machines" in wrong.output
