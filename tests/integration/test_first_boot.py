"""First-boot seeds on the real libvirtd: built in-process, uploaded, attached, replaced.

A VM's ``firstBoot.cloudInit`` becomes a NoCloud ISO (label ``cidata``) that is
uploaded into its pool through libvirt's volume upload stream and attached as
a SATA cdrom. Read back through libvirt's download stream and pycdlib, it
holds the manifest's user-data and a meta-data with a stable instance-id.
The volume is named by its content: an unchanged manifest uploads nothing, a
changed ``userData`` uploads a new seed and deletes the old one, and the seed
goes with the VM. The guest is never started.
"""

from __future__ import annotations

import json
from typing import Any

import libvirt
import pytest
import yaml

from reconciler.hypervisor import seed as seed_iso
from tests.integration.harness import Harness

pytestmark = pytest.mark.integration

USER_DATA = "#cloud-config\nssh_authorized_keys: [ssh-ed25519 AAAAC3Nza test@example]\n"
UNATTEND = (
    '<unattend xmlns="urn:schemas-microsoft-com:unattend"><settings pass="windowsPE"/></unattend>'
)


def _base(h: Harness) -> list[dict[str, Any]]:
    return [h.pool(), h.network(), h.template()]


def _seeds(h: Harness) -> dict[str, bytes]:
    """Every seed volume in the test's pool, by name, read through libvirt's download stream."""
    pool = h.conn.storagePoolLookupByName(h.name("pool"))
    pool.refresh(0)
    found = {}
    for volume in pool.listAllVolumes(0):
        if ".cidata-" not in volume.name() and ".unattend-" not in volume.name():
            continue
        stream = h.conn.newStream(0)
        volume.download(stream, 0, 0, 0)
        chunks: list[bytes] = []
        stream.recvAll(lambda _s, data, acc: acc.append(data), chunks)
        stream.finish()
        found[volume.name()] = b"".join(chunks)
    return found


def _cdroms(h: Harness) -> list[str]:
    return [
        s.get("volume", "")
        for s in h.domain_xml("vm").findall("devices/disk[@device='cdrom']/source")
    ]


def _events(h: Harness, reason: str) -> list[str]:
    result = h.run("events", "-o", "json")
    found = (json.loads(line) for line in result.output.splitlines() if line.strip())
    return [e["message"] for e in found if e["reason"] == reason]


def test_the_seed_iso_reads_back_is_attached_and_is_replaced_only_when_it_changes(
    h: Harness,
) -> None:
    vm = h.vm("vm", powerState="Stopped", firstBoot={"cloudInit": {"userData": USER_DATA}})
    h.write(*_base(h), vm)

    result = h.apply()
    assert result.exit_code == 0, result.output

    [(name, image)] = _seeds(h).items()
    label, files = seed_iso.read(image)
    assert label == "cidata"
    assert files["user-data"] == USER_DATA.encode()
    assert yaml.safe_load(files["meta-data"]) == {
        "instance-id": f"iid-{h.name('vm')}",
        "local-hostname": h.name("vm"),
    }
    assert _cdroms(h) == [name]
    target = h.domain_xml("vm").find(f"devices/disk/source[@volume='{name}']/../target")
    assert target is not None and target.get("bus") == "sata"
    assert len(_events(h, "SeedUploaded")) == 1

    # Unchanged: nothing to do, nothing uploaded.
    plan = h.plan()
    assert plan.exit_code == 0, plan.output
    assert h.apply().exit_code == 0
    assert len(_events(h, "SeedUploaded")) == 1 and list(_seeds(h)) == [name]

    # Changed user-data: a new seed, attached in place of the old one, which is deleted.
    changed = USER_DATA + "runcmd: [[touch, /etc/seeded]]\n"
    vm["spec"]["firstBoot"]["cloudInit"]["userData"] = changed
    h.write(*_base(h), vm)
    plan = h.plan()
    assert plan.exit_code == 2, plan.output
    assert "cloud-init runs again only when it changes" in plan.output
    assert h.apply().exit_code == 0
    [(new, image)] = _seeds(h).items()
    assert new != name and seed_iso.read(image)[1]["user-data"] == changed.encode()
    assert _cdroms(h) == [new]
    assert h.plan().exit_code == 0

    # The seed goes with the VM.
    h.write(*_base(h))
    result = h.apply("--prune")
    assert result.exit_code == 0, result.output
    assert _seeds(h) == {}


def test_a_windows_answer_file_gets_a_seed_of_its_own(h: Harness) -> None:
    vm = h.vm(
        "vm",
        powerState="Stopped",
        firstBoot={"cloudInit": {"userData": USER_DATA}, "windowsUnattend": UNATTEND},
    )
    h.write(*_base(h), vm)

    result = h.apply()
    assert result.exit_code == 0, result.output

    found = {seed_iso.read(image)[0]: seed_iso.read(image)[1] for image in _seeds(h).values()}
    assert found["UNATTEND"] == {"Autounattend.xml": UNATTEND.encode()}
    assert set(found["cidata"]) == {"user-data", "meta-data"}
    assert sorted(_cdroms(h)) == sorted(_seeds(h))
    assert h.plan().exit_code == 0


def test_a_malformed_answer_file_is_a_located_error_and_nothing_is_made(h: Harness) -> None:
    vm = h.vm("vm", firstBoot={"windowsUnattend": "<unattend>"})
    h.write(*_base(h), vm)

    result = h.apply()

    assert result.exit_code == 1
    [line] = [line for line in result.output.splitlines() if "windowsUnattend" in line]
    assert "manifests.yaml:" in line and f"VirtualMachine/{h.name('vm')}" in line
    assert "not well-formed XML" in line
    assert not h.has_domain("vm")
    with pytest.raises(libvirt.libvirtError):
        h.conn.storagePoolLookupByName(h.name("pool"))
