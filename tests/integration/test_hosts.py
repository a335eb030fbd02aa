"""Several hypervisors (SPEC §10): placement over two real libvirt daemons.

The host's system libvirtd is one host, the namespaced second libvirtd of
``scripts/lib/second-libvirtd.sh`` the other. The placement tests' VMs are
defined, never started (``powerState: Stopped``), so the memory they ask for is
only what placement counts: each asks a quarter of a host's memory, so four fit
on a host and a fifth does not.

The cold-move tests (a drain, a changed pin) put their pool under
``/var/lib/libvirt/images``, which the second libvirtd's mount namespace makes
its own: each host has its own directory there, so a move must really carry the
volume's bytes across. The volume is first filled with known guest data (a
qcow2 image made with ``qemu-img`` and uploaded through libvirt's stream), and
the copy on the other host must hold the same file and the same guest data.
"""

from __future__ import annotations

import hashlib
import os
import secrets
import shlex
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib import parse

import libvirt
import pytest

from tests.fixtures.services import unavailable
from tests.integration.harness import Harness, doc

pytestmark = pytest.mark.integration


@pytest.fixture
def fleet(
    h: Harness,
    libvirt_uri2: str,
    libvirt_conn2: libvirt.virConnect,
    libvirt_cleanup2: None,
    monkeypatch: pytest.MonkeyPatch,
) -> tuple[Harness, libvirt.virConnect, list[dict[str, Any]]]:
    """Two Host manifests (hv1: rack a, the system libvirtd; hv2: rack b, the second)."""
    monkeypatch.setenv("INFINIBAY_HOST_URIS", f"{h.uri} {libvirt_uri2}")
    hosts = [
        doc(
            "Host",
            h.name("hv1"),
            {"uri": h.uri, "overcommit": {"cpu": 8.0}},
            labels={"rack": "a"},
        ),
        doc(
            "Host",
            h.name("hv2"),
            {"uri": libvirt_uri2, "overcommit": {"cpu": 8.0}},
            labels={"rack": "b"},
        ),
    ]
    return h, libvirt_conn2, hosts


def _quarter(h: Harness, conn2: libvirt.virConnect) -> str:
    """A quarter of the smaller host's memory, in MiB: four fit on either host, five on none."""
    return f"{min(h.conn.getInfo()[1], conn2.getInfo()[1]) // 4}MiB"


def _vm(h: Harness, short: str, memory: str, **spec: Any) -> dict[str, Any]:
    return doc(
        "VirtualMachine",
        h.name(short),
        {"cpus": 1, "memory": memory, "powerState": "Stopped", "graphics": {"type": "none"}} | spec,
    )


def _on(conn: libvirt.virConnect, h: Harness) -> set[str]:
    return {d.name() for d in conn.listAllDomains() if d.name().startswith(h.prefix)}


def test_six_vms_spread_three_and_three_and_a_second_apply_has_nothing_to_do(
    fleet: tuple[Harness, libvirt.virConnect, list[dict[str, Any]]],
) -> None:
    h, conn2, hosts = fleet
    memory = _quarter(h, conn2)
    h.write(*hosts, *(_vm(h, f"vm{i}", memory) for i in range(6)))

    planned = h.sh("plan", "-f", str(h.workdir))
    applied = h.sh("apply", "-f", str(h.workdir))

    assert planned.exit_code == 2, planned.output
    assert f"(create on {h.name('hv2')}, live)" in planned.stdout
    assert applied.exit_code == 0, applied.output
    assert len(_on(h.conn, h)) == 3 and len(_on(conn2, h)) == 3
    again = h.sh("apply", "-f", str(h.workdir))
    assert again.exit_code == 0 and "Nothing to do" in again.stdout, again.output
    hosts_table = h.sh("get", "hosts")
    assert hosts_table.exit_code == 0, hosts_table.output
    rows = {line.split()[0]: line.split() for line in hosts_table.stdout.splitlines()[1:]}
    assert rows[h.name("hv1")][2] == "yes" and rows[h.name("hv2")][2] == "yes"
    with h.store() as store:
        placed = {
            r.key.name: r.status.get("host")
            for r in store.resources()
            if r.key.kind == "VirtualMachine"
        }
    assert list(placed.values()).count(h.name("hv2")) == 3
    assert {n for n, host in placed.items() if host == h.name("hv2")} == _on(conn2, h)


def test_pack_fills_one_host_first_four_and_two(
    fleet: tuple[Harness, libvirt.virConnect, list[dict[str, Any]]],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    h, conn2, hosts = fleet
    monkeypatch.setenv("INFINIBAY_PLACEMENT", "pack")
    memory = _quarter(h, conn2)
    h.write(*hosts, *(_vm(h, f"vm{i}", memory) for i in range(6)))

    applied = h.sh("apply", "-f", str(h.workdir))

    assert applied.exit_code == 0, applied.output
    assert sorted([len(_on(h.conn, h)), len(_on(conn2, h))]) == [2, 4]


def test_a_selector_and_a_pin_choose_the_host(
    fleet: tuple[Harness, libvirt.virConnect, list[dict[str, Any]]],
) -> None:
    h, conn2, hosts = fleet
    h.write(
        *hosts,
        _vm(h, "b1", "64MiB", hostSelector={"rack": "b"}),
        _vm(h, "b2", "64MiB", hostSelector={"rack": "b"}),
        _vm(h, "pinned", "64MiB", host=h.name("hv1")),
    )

    applied = h.sh("apply", "-f", str(h.workdir))

    assert applied.exit_code == 0, applied.output
    assert _on(conn2, h) == {h.name("b1"), h.name("b2")}
    assert _on(h.conn, h) == {h.name("pinned")}


def test_a_vm_that_fits_nowhere_is_a_located_error_naming_each_host_and_nothing_runs(
    fleet: tuple[Harness, libvirt.virConnect, list[dict[str, Any]]],
) -> None:
    h, conn2, hosts = fleet
    memory = _quarter(h, conn2)
    h.write(*hosts, *(_vm(h, f"vm{i}", memory) for i in range(9)))

    applied = h.sh("apply", "-f", str(h.workdir))

    assert applied.exit_code == 1, applied.output
    line = next(x for x in applied.stderr.splitlines() if "fits on no host" in x)
    assert "manifests.yaml:" in line and f"VirtualMachine/{h.name('vm')}" in line
    assert f"{h.name('hv1')}: not enough memory" in line
    assert f"{h.name('hv2')}: not enough memory" in line
    assert not _on(h.conn, h) and not _on(conn2, h)


def test_a_host_uri_the_operator_did_not_allow_is_refused(
    fleet: tuple[Harness, libvirt.virConnect, list[dict[str, Any]]],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    h, conn2, hosts = fleet
    monkeypatch.setenv("INFINIBAY_HOST_URIS", h.uri)
    h.write(*hosts, _vm(h, "vm", "64MiB"))

    applied = h.sh("apply", "-f", str(h.workdir))

    assert applied.exit_code == 1, applied.output
    assert "spec.uri" in applied.stderr and "INFINIBAY_HOST_URIS" in applied.stderr
    assert not _on(h.conn, h) and not _on(conn2, h)


SCRIPT = Path(__file__).resolve().parents[2] / "scripts" / "lib" / "second-libvirtd.sh"


def _script(*args: str) -> subprocess.CompletedProcess[str]:
    done = subprocess.run(
        [str(SCRIPT), *args], capture_output=True, text=True, timeout=180, check=False
    )
    assert done.returncode == 0, done.stdout + done.stderr
    return done


@pytest.fixture
def own_host(tmp_path: Path, prefix: str) -> Iterator[tuple[str, str]]:
    """A libvirtd of this test's own (its root, its URI), to stop and start again."""
    if os.geteuid() != 0:
        unavailable("a second libvirtd needs root (mount and network namespaces)")
    root = str(tmp_path / "hv")
    started = _script("start", root)
    exports = dict(word.split("=", 1) for word in shlex.split(started.stdout)[1:])
    try:
        yield root, exports["INFINIBAY_TEST_LIBVIRT_URI2"]
    finally:
        _script("stop", root)


def test_an_unreachable_host_fails_only_itself_and_converges_once_it_is_back(
    h: Harness, own_host: tuple[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    root, uri2 = own_host
    monkeypatch.setenv("INFINIBAY_HOST_URIS", f"{h.uri} {uri2}")
    hosts = [
        doc("Host", h.name("hv1"), {"uri": h.uri, "overcommit": {"cpu": 8.0}}),
        doc("Host", h.name("hv2"), {"uri": uri2, "overcommit": {"cpu": 8.0}}),
    ]
    there = [_vm(h, f"far{i}", "64MiB", host=h.name("hv2")) for i in range(2)]
    h.write(*hosts, _vm(h, "near", "64MiB", host=h.name("hv1")), *there)
    assert h.sh("apply", "-f", str(h.workdir)).exit_code == 0

    _script("halt", root)
    h.write(
        *hosts,
        _vm(h, "near", "64MiB", host=h.name("hv1"), cpus=2),
        _vm(h, "new", "64MiB", host=h.name("hv1")),
        *there,
    )
    planned = h.sh("plan", "-f", str(h.workdir))
    applied = h.sh("apply", "-f", str(h.workdir))

    assert planned.exit_code == 2, planned.output
    for i in range(2):
        line = f"? virtualmachine/{h.name(f'far{i}')} unknown (host {h.name('hv2')} unreachable)"
        assert line in planned.stdout, planned.output
    assert applied.exit_code == 1, applied.output
    assert h.name("hv2") in applied.output
    assert h.domain_xml("near").findtext("vcpu") == "2"
    assert h.has_domain("new")
    with h.store() as store:
        status = {r.key.name: r.status for r in store.resources()}
    far = status[h.name("far0")]
    assert far["phase"] == "Unknown" and far["host"] == h.name("hv2")
    assert any(c["type"] == "HostUnreachable" and c["status"] == "True" for c in far["conditions"])
    assert status[h.name("hv2")]["reachable"] is False
    assert status[h.name("hv1")]["reachable"] is True
    listed = h.sh("get", "hosts")
    rows = {line.split()[0]: line.split() for line in listed.stdout.splitlines()[1:]}
    assert listed.exit_code == 0 and rows[h.name("hv2")][2] == "no", listed.output
    shown = h.sh("get", "vms")
    assert shown.exit_code == 0 and f"host {h.name('hv2')} was not observed" in shown.stderr

    _script("resume", root)
    back = h.sh("apply", "-f", str(h.workdir))

    assert back.exit_code == 0, back.output
    again = h.sh("plan", "-f", str(h.workdir))
    assert again.exit_code == 0, again.output
    with h.store() as store:
        far = next(r.status for r in store.resources() if r.key.name == h.name("far0"))
    assert far["phase"] == "Ready" and far["host"] == h.name("hv2")
    assert not any(c["type"] == "HostUnreachable" for c in far["conditions"])


# --- cold moves: a drain, a changed pin ------------------------------------------------

IMAGES = Path("/var/lib/libvirt/images")
"""Bind-mounted over by the second libvirtd: a path here is a different directory on each host."""


def _hv2_root(uri: str) -> Path:
    """The root of the second libvirtd behind ``uri``: its socket is ``ROOT/run/libvirt/...``."""
    sockets = parse.parse_qs(parse.urlsplit(uri).query).get("socket", [])
    assert sockets, f"{uri} names no socket of scripts/lib/second-libvirtd.sh"
    return Path(sockets[0]).parents[2]


@pytest.fixture
def private_pool(prefix: str, libvirt_uri2: str) -> Iterator[tuple[Path, Path]]:
    """This test's pool path under /var/lib/libvirt/images (hv1's directory) and hv2's own
    directory of that path, as this process sees it.

    Asked for before the harness, so that it is torn down after the libvirt clean-ups,
    which remove the pool from each host first; then both directories go.
    """
    path = IMAGES / f"{prefix}pool"
    theirs = _hv2_root(libvirt_uri2) / path.relative_to("/")
    yield path, theirs
    for directory in (path, theirs):
        shutil.rmtree(directory, ignore_errors=True)


def _guest_disk(tmp_path: Path, *, compact: bool = False) -> tuple[Path, bytes]:
    """A 16 MiB guest disk whose first MiB is random: the raw disk, and the same as qcow2.

    ``compact``: 64 KiB of data in 4 KiB clusters, a qcow2 file smaller than the
    one libvirt creates empty for a 16 MiB volume (some 190 KiB of metadata), as
    a compacted or adopted image is: a copy must end where its bytes end.
    """
    raw, image = tmp_path / "guest.raw", tmp_path / "guest.qcow2"
    with raw.open("wb") as out:
        out.write(secrets.token_bytes(64 << 10 if compact else 1 << 20))
        out.truncate(16 << 20)
    options = ["-o", "cluster_size=4096"] if compact else []
    subprocess.run(
        ["qemu-img", "convert", "-q", "-f", "raw", "-O", "qcow2", *options, str(raw), str(image)],
        check=True,
        timeout=60,
    )
    return raw, image.read_bytes()


def _volume(conn: libvirt.virConnect, pool: str, name: str) -> Any:
    found = conn.storagePoolLookupByName(pool)
    found.refresh(0)
    return found.storageVolLookupByName(name)


def _upload(conn: libvirt.virConnect, pool: str, name: str, data: bytes) -> None:
    """Write ``data`` over volume ``pool/name`` through libvirt's upload stream."""
    stream = conn.newStream(0)
    _volume(conn, pool, name).upload(stream, 0, len(data), 0)
    view = memoryview(data)
    while view:
        view = view[stream.send(bytes(view[: 1 << 20])) :]
    stream.finish()


def _download(conn: libvirt.virConnect, pool: str, name: str) -> bytes:
    """Volume ``pool/name``'s file, read through libvirt's download stream."""
    stream = conn.newStream(0)
    _volume(conn, pool, name).download(stream, 0, 0, 0)
    chunks = []
    while chunk := stream.recv(1 << 20):
        chunks.append(chunk)
    stream.finish()
    return b"".join(chunks)


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _assert_guest_sees(raw: Path, image: bytes, tmp_path: Path) -> None:
    """The qcow2 ``image`` holds, as the guest reads it, exactly the disk ``raw``."""
    copy = tmp_path / "copy.qcow2"
    copy.write_bytes(image)
    compared = subprocess.run(
        ["qemu-img", "compare", "-f", "raw", "-F", "qcow2", str(raw), str(copy)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert compared.returncode == 0, compared.stdout + compared.stderr


def _pools(conn: libvirt.virConnect, h: Harness) -> set[str]:
    return {p.name() for p in conn.listAllStoragePools() if p.name().startswith(h.prefix)}


def _moves(h: Harness, vms: set[str]) -> tuple[dict[str, Any], list[tuple[str, str, str]]]:
    """Each VM's ``status.host`` in the record, and their events (name, reason, message)."""
    with h.store() as store:
        placed = {
            r.key.name: r.status.get("host")
            for r in store.resources()
            if r.key.kind == "VirtualMachine" and r.key.name in vms
        }
        events = [(e.key.name, e.reason, e.message) for e in store.events() if e.key.name in vms]
    return placed, events


def test_a_drain_cold_moves_the_vms_with_their_data_and_leaves_nothing_of_ours_on_the_host(
    private_pool: tuple[Path, Path],
    fleet: tuple[Harness, libvirt.virConnect, list[dict[str, Any]]],
    tmp_path: Path,
) -> None:
    (here, theirs), (h, conn2, hosts) = private_pool, fleet
    hv1, hv2, pool = h.name("hv1"), h.name("hv2"), h.name("pool")
    run, idle = h.name("run"), h.name("idle")
    volume = {vm: f"{vm}.root.qcow2" for vm in (run, idle)}
    disks = [{"name": "root", "size": "16MiB", "pool": pool}]

    def world(power: str, *, drain: bool = False) -> list[dict[str, Any]]:
        # Pinned to hv2 at first. A drain applies to placed VMs (a VM pinned to a
        # draining host has nowhere to go), so the pins go with it and placement
        # must choose hv1.
        pin = {} if drain else {"host": hv2}
        first, second = hosts
        return [
            first,
            {**second, "spec": {**second["spec"], "drain": drain}},
            doc("StoragePool", pool, {"path": str(here)}),
            _vm(h, "run", "64MiB", powerState=power, disks=disks, **pin),
            _vm(h, "idle", "64MiB", disks=disks, **pin),
        ]

    h.write(*world("Stopped"))
    assert (made := h.sh("apply", "-f", str(h.workdir))).exit_code == 0, made.output
    assert _on(conn2, h) == {run, idle} and _pools(conn2, h) == {pool}
    assert not _on(h.conn, h) and not _pools(h.conn, h)
    # The premise: the volumes are in hv2's own directory, and hv1 has none of it.
    assert (theirs / volume[run]).is_file() and not here.exists()
    raw, image = _guest_disk(tmp_path)
    _upload(conn2, pool, volume[run], image)
    assert _download(conn2, pool, volume[run]) == image
    h.write(*world("Running"))
    assert (started := h.sh("apply", "-f", str(h.workdir))).exit_code == 0, started.output
    assert conn2.lookupByName(run).state()[0] == libvirt.VIR_DOMAIN_RUNNING
    before = {vm: _sha256(_download(conn2, pool, volume[vm])) for vm in (run, idle)}

    h.write(*world("Running", drain=True))
    planned = h.sh("plan", "-f", str(h.workdir))
    drained = h.sh("apply", "-f", str(h.workdir))

    assert planned.exit_code == 2, planned.output
    # The running VM is stopped, moved and started again; the stopped one stays off.
    for vm, how in ((run, "cold, restart"), (idle, "cold")):
        line = f"~ virtualmachine/{vm} (move {hv2} -> {hv1}, {how})"
        assert line in planned.stdout, planned.output
    assert drained.exit_code == 0, drained.output
    assert _on(h.conn, h) == {run, idle}
    assert h.conn.lookupByName(run).state()[0] == libvirt.VIR_DOMAIN_RUNNING
    assert h.conn.lookupByName(idle).state()[0] == libvirt.VIR_DOMAIN_SHUTOFF
    moved = {vm: _download(h.conn, pool, volume[vm]) for vm in (run, idle)}
    assert {vm: _sha256(data) for vm, data in moved.items()} == before
    _assert_guest_sees(raw, moved[run], tmp_path)
    # Nothing of ours is left on hv2: no domain, not the pool, no volume in its directory.
    assert not _on(conn2, h) and not _pools(conn2, h)
    assert not (theirs.exists() and any(theirs.iterdir())), sorted(theirs.iterdir())
    placed, events = _moves(h, {run, idle})
    assert placed == {run: hv1, idle: hv1}
    for vm in (run, idle):
        reasons = [reason for name, reason, _ in events if name == vm]
        assert reasons.count("Moved") == 1 and reasons.count("VolumeCopied") == 1, events
    copied = next(m for name, reason, m in events if name == run and reason == "VolumeCopied")
    assert f"from {hv2} to {hv1}" in copied and f"sha256 {before[run][:12]} verified" in copied
    again = h.sh("plan", "-f", str(h.workdir))
    assert again.exit_code == 0 and "No changes" in again.stdout, again.output
    still = h.sh("apply", "-f", str(h.workdir))
    assert still.exit_code == 0 and "Nothing to do" in still.stdout, still.output


def test_a_changed_pin_cold_moves_a_stopped_vm_with_its_data(
    private_pool: tuple[Path, Path],
    fleet: tuple[Harness, libvirt.virConnect, list[dict[str, Any]]],
    tmp_path: Path,
) -> None:
    (here, theirs), (h, conn2, hosts) = private_pool, fleet
    hv1, hv2, pool, vm = h.name("hv1"), h.name("hv2"), h.name("pool"), h.name("vm")
    volume = f"{vm}.root.qcow2"

    def world(pin: str) -> list[dict[str, Any]]:
        disks = [{"name": "root", "size": "16MiB", "pool": pool}]
        return [
            *hosts,
            doc("StoragePool", pool, {"path": str(here)}),
            _vm(h, "vm", "64MiB", host=pin, disks=disks),
        ]

    h.write(*world(hv1))
    assert (made := h.sh("apply", "-f", str(h.workdir))).exit_code == 0, made.output
    assert _on(h.conn, h) == {vm} and not _on(conn2, h)
    assert (here / volume).is_file() and not theirs.exists()  # hv2 has none of it
    raw, image = _guest_disk(tmp_path, compact=True)
    assert len(image) < 190 << 10  # smaller than the empty qcow2 of a 16 MiB volume
    # Written as the file itself (as a compacted or adopted image is): libvirt's upload
    # would keep the empty qcow2's larger file around it.
    (here / volume).write_bytes(image)
    h.conn.storagePoolLookupByName(pool).refresh(0)
    before = _sha256(_download(h.conn, pool, volume))

    h.write(*world(hv2))
    planned = h.sh("plan", "-f", str(h.workdir))
    moved = h.sh("apply", "-f", str(h.workdir))

    assert planned.exit_code == 2, planned.output
    assert f"~ virtualmachine/{vm} (move {hv1} -> {hv2}, cold)" in planned.stdout, planned.output
    assert moved.exit_code == 0, moved.output
    assert _on(conn2, h) == {vm} and not _on(h.conn, h)
    assert conn2.lookupByName(vm).state()[0] == libvirt.VIR_DOMAIN_SHUTOFF
    copy = _download(conn2, pool, volume)
    assert _sha256(copy) == before
    _assert_guest_sees(raw, copy, tmp_path)
    # hv1 keeps the pool (it is not drained) but not the volume.
    assert not (here / volume).exists()
    if pool in _pools(h.conn, h):
        left = h.conn.storagePoolLookupByName(pool)
        left.refresh(0)
        assert volume not in left.listVolumes()
    placed, events = _moves(h, {vm})
    assert placed == {vm: hv2}
    reasons = [reason for _, reason, _ in events]
    assert reasons.count("Moved") == 1 and reasons.count("VolumeCopied") == 1, events
    again = h.sh("apply", "-f", str(h.workdir))
    assert again.exit_code == 0 and "Nothing to do" in again.stdout, again.output
