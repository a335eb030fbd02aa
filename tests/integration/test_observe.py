"""Observation reads power, persistence and autostart from filtered listings.

:meth:`Hypervisor.observe` asks libvirtd once per property for every domain
(shut off, transient, autostart) instead of once per domain, and reads the XML
of several domains at once. These tests define real domains in each combination
and check that each is seen as ``virsh`` would report it.
"""

from __future__ import annotations

import time
from pathlib import Path

import libvirt
import pytest

from reconciler.hypervisor import adapter, domains, pools
from reconciler.models import kinds
from tests.fixtures.libvirt import (
    bridge_name,
    dir_pool,
    firmware_only_domain,
    isolated_network,
    qcow2_volume,
)

pytestmark = pytest.mark.integration


def _wait_running(dom: libvirt.virDomain) -> None:
    deadline = time.monotonic() + 30
    while dom.state()[0] != libvirt.VIR_DOMAIN_RUNNING and time.monotonic() < deadline:
        time.sleep(0.1)
    assert dom.state()[0] == libvirt.VIR_DOMAIN_RUNNING


def test_power_persistence_and_autostart_of_each_domain_are_observed(
    libvirt_conn: libvirt.virConnect,
    libvirt_uri: str,
    libvirt_cleanup: None,
    prefix: str,
    domain_type: str,
) -> None:
    conn = libvirt_conn
    stopped = conn.defineXML(firmware_only_domain(f"{prefix}stopped", domain_type, vnc=True))
    auto = conn.defineXML(firmware_only_domain(f"{prefix}auto", domain_type, vnc=True))
    auto.setAutostart(1)
    running = conn.defineXML(firmware_only_domain(f"{prefix}running", domain_type, vnc=True))
    running.create()
    paused = conn.defineXML(firmware_only_domain(f"{prefix}paused", domain_type, vnc=True))
    paused.create()
    _wait_running(paused)
    paused.suspend()
    transient = conn.createXML(firmware_only_domain(f"{prefix}transient", domain_type, vnc=True), 0)
    _wait_running(running)
    _wait_running(transient)

    hv = adapter.Hypervisor(libvirt_uri)
    names = [f"{prefix}{n}" for n in ("stopped", "auto", "running", "paused", "transient")]
    try:
        world = hv.observe()
        # A pass for a few VMs looks them up by name: the same readings, nothing else.
        narrowed = hv.observe(domains=[*names[1:], f"{prefix}never-defined"])
    finally:
        hv.close()

    assert narrowed.domains == {n: world.domains[n] for n in names[1:]}
    seen = {name: d for name, d in world.domains.items() if name.startswith(prefix)}
    assert set(seen) == {
        f"{prefix}{n}" for n in ("stopped", "auto", "running", "paused", "transient")
    }
    power = {name.removeprefix(prefix): d.power for name, d in seen.items()}
    assert power == {
        "stopped": kinds.PowerState.STOPPED,
        "auto": kinds.PowerState.STOPPED,
        "running": kinds.PowerState.RUNNING,
        "paused": kinds.PowerState.PAUSED,
        "transient": kinds.PowerState.RUNNING,
    }
    autostart = {name.removeprefix(prefix): d.shape.autostart for name, d in seen.items()}
    assert autostart == {
        "stopped": False,
        "auto": True,
        "running": False,
        "paused": False,
        "transient": False,
    }
    for short in ("stopped", "auto"):
        assert seen[f"{prefix}{short}"].live is None
        assert seen[f"{prefix}{short}"].graphics_port is None
    for short in ("running", "paused", "transient"):
        domain = seen[f"{prefix}{short}"]
        assert domain.live is not None, short
        assert domain.graphics_port is not None and domain.graphics_port >= 5900, short
    for short, dom in (("stopped", stopped), ("running", running), ("transient", transient)):
        assert seen[f"{prefix}{short}"].uuid == dom.UUIDString()


def test_a_domain_undefined_during_observation_is_left_out(
    monkeypatch: pytest.MonkeyPatch,
    libvirt_conn: libvirt.virConnect,
    libvirt_uri: str,
    libvirt_cleanup: None,
    prefix: str,
    domain_type: str,
) -> None:
    """Observation on a shared host: domains come and go between the listing and the read."""
    names = [f"{prefix}churn{i}" for i in range(20)]
    for name in names:
        libvirt_conn.defineXML(firmware_only_domain(name, domain_type, vnc=True))
    hv = adapter.Hypervisor(libvirt_uri)
    original = domains.read_domain
    undefined: list[str] = []

    def read_after_undefine(dom: libvirt.virDomain, **flags: bool) -> object:
        if dom.name() == names[7]:
            libvirt_conn.lookupByName(names[7]).undefine()
            undefined.append(names[7])
        return original(dom, **flags)

    monkeypatch.setattr(domains, "read_domain", read_after_undefine)
    try:
        world = hv.observe()
    finally:
        hv.close()

    assert undefined == [names[7]]
    seen = {name for name in world.domains if name.startswith(prefix)}
    assert seen == set(names) - {names[7]}


def test_active_and_autostart_of_networks_and_pools_are_observed(
    libvirt_conn: libvirt.virConnect,
    libvirt_uri: str,
    prefix: str,
    pool_dir: Path,
) -> None:
    conn = libvirt_conn
    idle = conn.networkDefineXML(isolated_network(f"{prefix}idle", bridge_name(prefix, 0)))
    idle.setAutostart(1)
    up = conn.networkDefineXML(isolated_network(f"{prefix}up", bridge_name(prefix, 1)))
    up.create()
    (pool_dir / "a").mkdir()
    (pool_dir / "b").mkdir()
    parked = conn.storagePoolDefineXML(dir_pool(f"{prefix}parked", pool_dir / "a"), 0)
    parked.setAutostart(1)
    serving = conn.storagePoolDefineXML(dir_pool(f"{prefix}serving", pool_dir / "b"), 0)
    serving.create(0)
    serving.createXML(qcow2_volume(f"{prefix}disk.qcow2", 1), 0)

    hv = adapter.Hypervisor(libvirt_uri)
    try:
        world = hv.observe()
    finally:
        hv.close()

    networks = {
        name.removeprefix(prefix): (n.active, n.shape.autostart)
        for name, n in world.networks.items()
        if name.startswith(prefix)
    }
    assert networks == {"idle": (False, True), "up": (True, False)}
    pools = {
        name.removeprefix(prefix): (p.active, p.shape.autostart, sorted(p.volumes))
        for name, p in world.pools.items()
        if name.startswith(prefix)
    }
    assert pools == {
        "parked": (False, True, []),
        "serving": (True, False, [f"{prefix}disk.qcow2"]),
    }


def test_a_pool_stopped_during_observation_is_seen_inactive(
    monkeypatch: pytest.MonkeyPatch,
    libvirt_conn: libvirt.virConnect,
    libvirt_uri: str,
    prefix: str,
    pool_dir: Path,
) -> None:
    """Another client stops a pool between the listing and the volume read: no failure."""
    (pool_dir / "c").mkdir()
    churn = libvirt_conn.storagePoolDefineXML(dir_pool(f"{prefix}churn", pool_dir / "c"), 0)
    churn.create(0)
    original = pools.observe_pool
    stopped: list[str] = []

    def observe_after_stop(pool: libvirt.virStoragePool, **flags: bool) -> object:
        if pool.name() == f"{prefix}churn":
            libvirt_conn.storagePoolLookupByName(pool.name()).destroy()
            stopped.append(pool.name())
        return original(pool, **flags)

    monkeypatch.setattr(pools, "observe_pool", observe_after_stop)
    hv = adapter.Hypervisor(libvirt_uri)
    try:
        world = hv.observe()
    finally:
        hv.close()
        churn.undefine()

    assert stopped == [f"{prefix}churn"]
    assert world.pools[f"{prefix}churn"].active is False
    assert world.pools[f"{prefix}churn"].volumes == {}
