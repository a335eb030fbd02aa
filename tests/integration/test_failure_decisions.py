"""A failure libvirt itself refuses is decided terminal: Stalled, and not retried.

The daemon's loop runs in-process against the real libvirtd and a real record:
the definition of a VM with more vCPUs than its machine type allows is refused
by libvirt (``VIR_ERR_CONFIG_UNSUPPORTED``), so the adapter marks the error
permanent, the VM's status says ``Stalled`` with reason ``InvalidConfiguration``
and no retry of it is scheduled, while its neighbour converges.
"""

from __future__ import annotations

from reconciler.daemon import config, loop, metrics, queue, sources
from reconciler.hypervisor import adapter
from reconciler.models import record
from tests.integration.harness import Harness


def _conditions(h: Harness, short: str) -> dict[str, tuple[str, str]]:
    with h.store() as store:
        rec = store.get(record.ResourceKey("VirtualMachine", h.name(short)))
    assert rec is not None
    return {c["type"]: (c["status"], c["reason"]) for c in rec.status["conditions"]}


def test_a_definition_libvirt_refuses_ends_stalled_and_is_not_retried(h: Harness) -> None:
    h.write(
        h.pool(),
        h.network(),
        h.template(),
        h.vm("big", cpus=256, machine="pc"),  # pc allows 255 vCPUs: libvirt refuses the define
        h.vm("ok", powerState="Stopped"),
    )
    work, backoff = queue.WorkQueue(), queue.Backoff()
    cfg = config.Config(source=str(h.workdir), shutdown_timeout=1)
    with h.store() as store, adapter.Hypervisor(h.uri) as hv:
        daemon = loop.Loop(
            cfg,
            store,
            hv,
            sources.DirectorySource(str(h.workdir)),
            work,
            backoff,
            metrics.Metrics(work.depth),
        )
        daemon.process([queue.Item(loop.ALL, record.Trigger.WATCH)])
        last = daemon.last_pass

    assert last is not None and last.failed == (f"virtualmachine/{h.name('big')}",)
    assert not h.has_domain("big")
    assert h.has_domain("ok")
    assert work.delayed() == {}  # nothing scheduled: the same definition fails the same way
    assert backoff.retrying() == []
    big = _conditions(h, "big")
    assert big["Stalled"] == ("True", "InvalidConfiguration")
    assert "Reconciling" not in big
    assert big["Ready"][0] == "False"
    ok = _conditions(h, "ok")
    assert ok["Ready"] == ("True", "Converged")
    assert "Stalled" not in ok and "Reconciling" not in ok
