"""A move over storage both hosts share: found out by a probe, neither copied nor deleted.

The test's pool directory (``INFINIBAY_TEST_POOL_ROOT``) is outside what the
second libvirtd's namespace makes private, so both hosts see one directory,
as two hypervisors see one NFS export. A cold move that copied and then
deleted the source's volumes would replace the disk with itself and then
delete it; the move must find the storage shared, copy nothing, keep the
volume and still move the domain.
"""

from __future__ import annotations

import hashlib
from typing import Any

import libvirt
import pytest

from tests.integration.harness import Harness, doc

pytestmark = pytest.mark.integration


def _digest(conn: libvirt.virConnect, pool: str, volume: str) -> tuple[int, str]:
    """Size and sha256 of a volume, read through libvirt's download stream."""
    found = conn.storagePoolLookupByName(pool)
    found.refresh(0)
    vol = found.storageVolLookupByName(volume)
    stream = conn.newStream(0)
    vol.download(stream, 0, 0, 0)
    digest, size = hashlib.sha256(), 0
    while chunk := stream.recv(1 << 20):
        if isinstance(chunk, int):  # -2: would block; a blocking stream never says so
            continue
        digest.update(chunk)
        size += len(chunk)
    stream.finish()
    return size, digest.hexdigest()


def _hosts(h: Harness, uri2: str) -> list[dict[str, Any]]:
    return [
        doc("Host", h.name("hv1"), {"uri": h.uri}),
        doc("Host", h.name("hv2"), {"uri": uri2}),
    ]


def _vm(h: Harness, host: str, power: str) -> dict[str, Any]:
    """The test's VM, pinned to ``host``, with a 16 MiB disk in the test's pool."""
    return doc(
        "VirtualMachine",
        h.name("vm"),
        {
            "cpus": 1,
            "memory": "64MiB",
            "powerState": power,
            "graphics": {"type": "none"},
            "disks": [{"name": "root", "size": "16MiB", "pool": h.name("pool")}],
            "host": h.name(host),
        },
    )


def test_a_move_over_shared_storage_keeps_the_volume_and_moves_the_domain(
    h: Harness,
    libvirt_uri2: str,
    libvirt_conn2: libvirt.virConnect,
    libvirt_cleanup2: None,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("INFINIBAY_HOST_URIS", f"{h.uri} {libvirt_uri2}")
    hosts = _hosts(h, libvirt_uri2)

    h.write(*hosts, h.pool(), _vm(h, "hv1", "Stopped"))
    assert (first := h.sh("apply", "-f", str(h.workdir))).exit_code == 0, first.output
    volumes = [v.name() for v in h.conn.storagePoolLookupByName(h.name("pool")).listAllVolumes(0)]
    assert len(volumes) == 1, volumes
    before = _digest(h.conn, h.name("pool"), volumes[0])

    h.write(*hosts, h.pool(), _vm(h, "hv2", "Stopped"))
    planned = h.sh("plan", "-f", str(h.workdir))
    moved = h.sh("apply", "-f", str(h.workdir))

    line = f"~ virtualmachine/{h.name('vm')} (move {h.name('hv1')} -> {h.name('hv2')}"
    assert line in planned.stdout, planned.output
    assert moved.exit_code == 0, moved.output
    assert not h.has_domain("vm")
    assert libvirt_conn2.lookupByName(h.name("vm")).isPersistent()
    assert _digest(libvirt_conn2, h.name("pool"), volumes[0]) == before
    assert _digest(h.conn, h.name("pool"), volumes[0]) == before  # one file, still there
    left = [v.name() for v in h.conn.storagePoolLookupByName(h.name("pool")).listAllVolumes(0)]
    assert left == volumes  # and no probe left behind
    with h.store() as store:
        reasons = {e.reason: e.message for e in store.events() if e.key.name == h.name("vm")}
        status = next(r.status for r in store.resources() if r.key.name == h.name("vm"))
    assert "VolumeShared" in reasons and "VolumeCopied" not in reasons, reasons
    assert "storage shared" in reasons["Moved"], reasons
    assert status["host"] == h.name("hv2")
    again = h.sh("apply", "-f", str(h.workdir))
    assert again.exit_code == 0 and "Nothing to do" in again.stdout, again.output


def test_a_running_vm_on_pools_declared_shared_moves_live(
    h: Harness,
    libvirt_uri2: str,
    libvirt_conn2: libvirt.virConnect,
    libvirt_cleanup2: None,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("INFINIBAY_HOST_URIS", f"{h.uri} {libvirt_uri2}")
    hosts = _hosts(h, libvirt_uri2)
    pool = h.pool()
    pool["spec"]["shared"] = True

    h.write(*hosts, pool, _vm(h, "hv1", "Running"))
    assert (first := h.sh("apply", "-f", str(h.workdir))).exit_code == 0, first.output
    assert h.state("vm") == libvirt.VIR_DOMAIN_RUNNING
    uuid = h.conn.lookupByName(h.name("vm")).UUIDString()

    h.write(*hosts, pool, _vm(h, "hv2", "Running"))
    planned = h.sh("plan", "-f", str(h.workdir))
    moved = h.sh("apply", "-f", str(h.workdir))

    line = f"~ virtualmachine/{h.name('vm')} (move {h.name('hv1')} -> {h.name('hv2')}, live)"
    assert line in planned.stdout, planned.output
    assert moved.exit_code == 0, moved.output
    assert not h.has_domain("vm")
    there = libvirt_conn2.lookupByName(h.name("vm"))
    assert there.state()[0] == libvirt.VIR_DOMAIN_RUNNING  # never stopped: migrated
    assert there.isPersistent() and there.UUIDString() == uuid
    with h.store() as store:
        reasons = {e.reason for e in store.events() if e.key.name == h.name("vm")}
        status = next(r.status for r in store.resources() if r.key.name == h.name("vm"))
    assert "Migrated" in reasons and not reasons & {"Stopping", "VolumeCopied"}, reasons
    assert status["host"] == h.name("hv2") and status["phase"] == "Ready", status
    again = h.sh("apply", "-f", str(h.workdir))
    assert again.exit_code == 0 and "Nothing to do" in again.stdout, again.output
