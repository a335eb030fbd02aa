"""Several hypervisors (SPEC §10): placement over two real libvirt daemons.

The host's system libvirtd is one host, the namespaced second libvirtd of
``scripts/lib/second-libvirtd.sh`` the other. VMs are defined, never started
(``powerState: Stopped``), so the memory they ask for is only what placement
counts: each asks a quarter of a host's memory, so four fit on a host and a
fifth does not.
"""

from __future__ import annotations

import os
import shlex
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

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
