"""Drain: ``drain: true`` cold-moves a host's VMs and their data to the other host.

The pool lives under ``/var/lib/libvirt/images``, which the second libvirtd's
namespace makes its own, so each host has its own copy of the directory and a
move must really copy the volumes (the shared case is test_hosts_shared).
"""

from __future__ import annotations

import hashlib
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import libvirt
import pytest

from tests.integration.harness import Harness, doc

pytestmark = pytest.mark.integration


def _digests(conn: libvirt.virConnect, pool: str) -> dict[str, tuple[int, str]]:
    """Each volume of ``pool``: size and sha256, read through libvirt's download stream."""
    found = conn.storagePoolLookupByName(pool)
    found.refresh(0)
    result = {}
    for vol in found.listAllVolumes(0):
        stream = conn.newStream(0)
        vol.download(stream, 0, 0, 0)
        digest, size = hashlib.sha256(), 0
        while chunk := stream.recv(1 << 20):
            if isinstance(chunk, int):
                continue
            digest.update(chunk)
            size += len(chunk)
        stream.finish()
        result[vol.name()] = (size, digest.hexdigest())
    return result


def _ours(conn: libvirt.virConnect, prefix: str) -> tuple[set[str], set[str]]:
    domains = {d.name() for d in conn.listAllDomains() if d.name().startswith(prefix)}
    pools = {p.name() for p in conn.listAllStoragePools() if p.name().startswith(prefix)}
    return domains, pools


@pytest.fixture
def private_pool(prefix: str) -> Iterator[Path]:
    """A pool directory each host has its own of, removed from this host last.

    Asked for before the harness, so that it is torn down after the libvirt
    clean-up, which removes the pool from each host first.
    """
    path = Path("/var/lib/libvirt/images") / f"{prefix}pool"
    yield path
    shutil.rmtree(path, ignore_errors=True)


def test_drain_moves_the_vms_and_their_volumes_and_leaves_nothing_behind(
    private_pool: Path,
    h: Harness,
    libvirt_uri2: str,
    libvirt_conn2: libvirt.virConnect,
    libvirt_cleanup2: None,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("INFINIBAY_HOST_URIS", f"{h.uri} {libvirt_uri2}")
    pool = h.name("pool")

    def world(*, draining: bool) -> list[dict[str, Any]]:
        return [
            # First everything goes to hv2 (hv1 takes nothing new); then hv2 drains.
            doc("Host", h.name("hv1"), {"uri": h.uri, "schedulable": draining}),
            doc("Host", h.name("hv2"), {"uri": libvirt_uri2, "drain": draining}),
            doc("StoragePool", pool, {"path": str(private_pool)}),
            *(
                doc(
                    "VirtualMachine",
                    h.name(f"vm{i}"),
                    {
                        "cpus": 1,
                        "memory": "64MiB",
                        "graphics": {"type": "none"},
                        "disks": [{"name": "root", "size": "16MiB", "pool": pool}],
                    },
                )
                for i in range(2)
            ),
        ]

    h.write(*world(draining=False))
    assert (first := h.sh("apply", "-f", str(h.workdir))).exit_code == 0, first.output
    vms = {h.name("vm0"), h.name("vm1")}
    assert _ours(libvirt_conn2, h.prefix) == (vms, {pool})
    assert _ours(h.conn, h.prefix) == (set(), set())
    before = _digests(libvirt_conn2, pool)
    assert len(before) == 2

    h.write(*world(draining=True))
    planned = h.sh("plan", "-f", str(h.workdir))
    drained = h.sh("apply", "-f", str(h.workdir))

    for vm in sorted(vms):
        line = f"~ virtualmachine/{vm} (move {h.name('hv2')} -> {h.name('hv1')}, cold, restart)"
        assert line in planned.stdout, planned.output
    assert drained.exit_code == 0, drained.output
    assert _ours(h.conn, h.prefix) == (vms, {pool})
    assert all(h.conn.lookupByName(vm).state()[0] == libvirt.VIR_DOMAIN_RUNNING for vm in vms)
    assert _digests(h.conn, pool) == before  # the same bytes, volume by volume
    assert _ours(libvirt_conn2, h.prefix) == (set(), set())  # not a domain, not the pool
    with h.store() as store:
        placed = {r.key.name: r.status.get("host") for r in store.resources() if r.key.name in vms}
        reasons = [e.reason for e in store.events() if e.key.name in vms]
    assert placed == dict.fromkeys(vms, h.name("hv1"))
    assert reasons.count("Moved") == 2 and reasons.count("VolumeCopied") == 2, reasons
    again = h.sh("apply", "-f", str(h.workdir))
    assert again.exit_code == 0 and "Nothing to do" in again.stdout, again.output
