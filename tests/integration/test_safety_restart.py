"""RestartRequired follows the running guest, whoever restarts it.

With ``updatePolicy: OnRestart`` a vCPU change on a running VM is written to
the persistent config and waits for the next boot (``RestartRequired=True``).
When someone else power-cycles the VM (``virsh destroy`` + ``virsh start``),
the next pass finds the guest on its new config: nothing to do, and the
condition cleared. A ``virsh reset`` is not a new boot of the config (the same
QEMU process keeps its CPUs), so it does not clear the condition.
"""

from __future__ import annotations

import libvirt
import pytest

from reconciler.models import record
from tests.integration.harness import Harness

pytestmark = pytest.mark.integration


def _restart_required(h: Harness) -> str:
    with h.store() as store:
        rec = store.get(record.ResourceKey("VirtualMachine", h.name("web")))
    assert rec is not None
    return str({c["type"]: c for c in rec.status["conditions"]}["RestartRequired"]["status"])


def _live_vcpus(h: Harness) -> str | None:
    return h.domain_xml("web", inactive=False).findtext("vcpu")


def test_restart_required_is_cleared_by_a_power_cycle_done_by_someone_else(h: Harness) -> None:
    h.write(h.pool(), h.network(), h.template(), h.vm("web"))
    assert h.apply().exit_code == 0
    h.write(h.pool(), h.network(), h.template(), h.vm("web", cpus=2))
    result = h.apply()
    assert result.exit_code == 0, result.output
    assert _live_vcpus(h) == "1"
    assert _restart_required(h) == "True"

    h.domain("web").reset()  # a hardware reset: same QEMU process, same CPUs
    result = h.apply()
    assert result.exit_code == 0 and "Nothing to do" in result.output, result.output
    assert _live_vcpus(h) == "1"
    assert _restart_required(h) == "True"

    dom = h.domain("web")
    dom.destroy()  # the operator power-cycles it, behind the reconciler's back
    dom.create()
    assert _live_vcpus(h) == "2"
    result = h.apply()
    assert result.exit_code == 0, result.output
    assert "Nothing to do" in result.output  # no drift: the VM runs as declared
    assert _restart_required(h) == "False"
    assert h.state("web") == libvirt.VIR_DOMAIN_RUNNING
    with h.store() as store:
        reasons = [
            e.reason for e in store.events(record.ResourceKey("VirtualMachine", h.name("web")))
        ]
    assert "DriftDetected" not in reasons and "Restarted" not in reasons
    assert h.plan().exit_code == 0
