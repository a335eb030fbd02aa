"""The desktop guest's hardware on the real libvirtd: TPM, agent channels, tablet, video, CPU.

Guests run under TCG (``INFINIBAY_DOMAIN_TYPE=qemu``): this nested test host
cannot start a KVM guest whose CPU is passed through, and under TCG the host's
domain capabilities say host-passthrough is not supported, so the default CPU
falls back to host-model, which ``describe`` says. A TPM guest runs with its
own swtpm process; its state directory (``/var/lib/libvirt/swtpm/UUID``) stays
when the VM is deleted with a retained volume and goes with the last of its
volumes. A PCI address the host does not have fails the plan, located, before
anything is made.
"""

from __future__ import annotations

import contextlib
import hashlib
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import libvirt
import pytest
import yaml

from tests.integration import test_examples_apply
from tests.integration.harness import Harness, doc

pytestmark = pytest.mark.integration

SWTPM_STATE = Path("/var/lib/libvirt/swtpm")


@pytest.fixture(autouse=True)
def _tcg(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("INFINIBAY_DOMAIN_TYPE", "qemu")


@pytest.fixture
def tpm_states() -> Iterator[list[Path]]:
    """TPM state directories a test leaves behind on purpose, removed afterwards."""
    left: list[Path] = []
    yield left
    for path in left:
        shutil.rmtree(path, ignore_errors=True)


def _swtpm_for(uuid: str) -> list[str]:
    """The command lines of running swtpm processes whose state is the domain's."""
    found = []
    for cmdline in Path("/proc").glob("[0-9]*/cmdline"):
        try:
            argv = cmdline.read_bytes().split(b"\0")
        except OSError:
            continue
        if argv and argv[0].endswith(b"swtpm") and any(uuid.encode() in a for a in argv):
            found.append(b" ".join(argv).decode())
    return found


def _state_digest(uuid: str) -> dict[str, str]:
    return {
        str(path.relative_to(SWTPM_STATE / uuid)): hashlib.sha256(path.read_bytes()).hexdigest()
        for path in sorted((SWTPM_STATE / uuid).rglob("*"))
        if path.is_file()
    }


def test_a_tpm_guest_runs_under_swtpm_with_agent_tablet_and_video_and_converges(
    h: Harness, tpm_states: list[Path]
) -> None:
    h.write(
        h.pool(),
        h.network(),
        h.template(graphics={"type": "spice", "listen": "127.0.0.1"}),
        h.vm("desk", tpm=True, video="virtio"),
    )
    result = h.apply()
    assert result.exit_code == 0, result.output
    assert h.state("desk") == libvirt.VIR_DOMAIN_RUNNING

    uuid = h.domain("desk").UUIDString()
    assert _swtpm_for(uuid), "no swtpm process runs for the guest"
    root = h.domain_xml("desk")
    assert root.find("devices/tpm/backend[@type='emulator']") is not None
    agent = "devices/channel[@type='unix']/target[@name='org.qemu.guest_agent.0']"
    assert root.find(agent) is not None
    spice = "devices/channel[@type='spicevmc']/target[@name='com.redhat.spice.0']"
    assert root.find(spice) is not None
    assert root.find("devices/input[@type='tablet'][@bus='usb']") is not None
    assert root.find("devices/video/model[@type='virtio']") is not None
    cpu = root.find("cpu")
    assert cpu is not None and cpu.get("mode") == "host-model"  # TCG: no host-passthrough

    again = h.apply()
    assert again.exit_code == 0, again.output
    assert "Nothing to do" in again.output
    assert h.plan().exit_code == 0

    described = h.run("describe", "vm", h.name("desk"))
    assert described.exit_code == 0, described.output
    assert "host-model (default: host-passthrough is not supported by this host (qemu)" in (
        described.output
    )

    # Deleted with its volume retained, the VM leaves its TPM state with that volume.
    tpm_states.append(SWTPM_STATE / uuid)
    assert (SWTPM_STATE / uuid).is_dir()
    deleted = h.run("delete", "vm", h.name("desk"), "--shutdown-timeout", "1")
    assert deleted.exit_code == 0, deleted.output
    assert not h.has_domain("desk")
    assert (SWTPM_STATE / uuid).is_dir()


def test_a_tpm_guest_deleted_with_all_its_volumes_takes_its_tpm_state_along(h: Harness) -> None:
    disks = [{"name": "root", "size": "16MiB", "pool": h.name("pool"), "reclaimPolicy": "Delete"}]
    h.write(h.pool(), h.network(), h.template(), h.vm("gone", tpm=True, disks=disks))
    result = h.apply()
    assert result.exit_code == 0, result.output
    uuid = h.domain("gone").UUIDString()
    assert _swtpm_for(uuid)
    assert (SWTPM_STATE / uuid).is_dir()

    deleted = h.run("delete", "vm", h.name("gone"), "--allow-data-loss", "--shutdown-timeout", "1")
    assert deleted.exit_code == 0, deleted.output
    assert not h.has_domain("gone")
    assert not (SWTPM_STATE / uuid).exists()


def test_adopting_a_virt_install_guest_keeps_its_tpm_and_its_state(
    h: Harness, tpm_states: list[Path]
) -> None:
    h.write(h.pool(), h.network())
    assert h.apply().exit_code == 0
    disk = h.pool_dir / f"{h.name('vm')}.qcow2"
    subprocess.run(["qemu-img", "create", "-q", "-f", "qcow2", str(disk), "16M"], check=True)
    mac = h.mac(1)
    printed = subprocess.run(
        [
            "virt-install",
            "--connect",
            h.uri,
            "--print-xml",
            "--import",
            "--noautoconsole",
            "--virt-type",
            "qemu",
            "--name",
            h.name("vm"),
            "--memory",
            "64",
            "--vcpus",
            "1",
            "--osinfo",
            "debian11",
            "--machine",
            "q35",
            "--disk",
            f"path={disk},format=qcow2",
            "--tpm",
            "emulator,model=tpm-crb,version=2.0",
            "--graphics",
            "vnc,listen=127.0.0.1",
            "--network",
            f"network={h.name('net')},mac={mac}",
        ],
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    dom = h.conn.defineXML(printed)
    dom.create()  # the first start is what creates the TPM's state
    uuid = dom.UUIDString()
    tpm_states.append(SWTPM_STATE / uuid)
    before = _state_digest(uuid)
    assert before, "swtpm made no state"

    vm = doc(
        "VirtualMachine",
        h.name("vm"),
        {
            "memory": "64MiB",
            "machine": "q35",
            "tpm": True,
            "graphics": {"type": "vnc", "listen": "127.0.0.1"},
            "disks": [{"name": "root", "pool": h.name("pool"), "volume": disk.name}],
            "networks": [{"network": h.name("net"), "mac": mac}],
        },
    )
    h.write(h.pool(), h.network(), vm)
    adopt = h.plan("--adopt")
    assert adopt.exit_code == 2, adopt.output
    assert "tpm" not in adopt.output.replace(h.name("vm"), "")  # already there: no change
    result = h.apply("--adopt")
    assert result.exit_code == 0, result.output

    root = h.domain_xml("vm")
    tpm = root.find("devices/tpm")
    assert tpm is not None and tpm.get("model") == "tpm-crb"  # libvirt's details kept
    assert h.domain("vm").UUIDString() == uuid
    assert _swtpm_for(uuid)
    assert _state_digest(uuid).keys() == before.keys()
    assert h.plan().exit_code == 0


def test_a_pci_address_the_host_lacks_fails_the_plan_located_and_touches_nothing(
    h: Harness,
) -> None:
    h.write(
        h.pool(),
        h.network(),
        h.template(),
        h.vm("gpu", hostDevices=[{"pci": "0000:fe:1f.7"}]),
    )
    lines = (h.workdir / "manifests.yaml").read_text().splitlines()
    line = next(i for i, text in enumerate(lines, 1) if "0000:fe:1f.7" in text)
    expected = (
        f"manifests.yaml:{line}:"
        f"{lines[line - 1].index('0000:fe') + 1}: VirtualMachine/{h.name('gpu')}: "
        "spec.hostDevices[0].pci: the host has no PCI device 0000:fe:1f.7"
    )

    plan = h.plan()
    assert plan.exit_code == 1, plan.output
    assert expected in plan.output
    result = h.apply()
    assert result.exit_code == 1, result.output
    assert expected in result.output
    assert not h.has_domain("gpu")
    with pytest.raises(libvirt.libvirtError):
        h.conn.networkLookupByName(h.name("net"))
    with pytest.raises(libvirt.libvirtError):
        h.conn.storagePoolLookupByName(h.name("pool"))


def test_the_desktops_example_and_its_windows_desktop_run(
    h: Harness, monkeypatch: pytest.MonkeyPatch, tpm_states: list[Path]
) -> None:
    example = Path(__file__).resolve().parents[2] / "examples" / "desktops"
    docs = [
        d
        for path in sorted(example.glob("*.yaml"))
        for d in yaml.safe_load_all(path.read_text())
        if d
    ]
    # The README's Windows desktop, with its virtio-win ISO in an image pool of its own.
    windows = {
        "template": "desktop",
        "firmware": "uefi",
        "os": "windows",
        "video": "qxl",
        "bootOrder": ["disk", "cdrom"],
        "firstBoot": {"windowsUnattend": '<unattend xmlns="urn:schemas-microsoft-com:unattend"/>'},
    }
    docs.append(doc("VirtualMachine", "windows-desk", windows))
    rehomed = test_examples_apply._rehome(h, docs)
    isos = h.pool_dir.with_name(f"{h.pool_dir.name}-isos")
    isos.mkdir()
    (isos / "virtio-win.iso").write_bytes(b"\0" * (1 << 20))  # any ISO of that name will do
    rehomed.append(doc("StoragePool", h.name("isos"), {"path": str(isos), "images": True}))
    monkeypatch.setenv("INFINIBAY_VIRTIO_WIN", f"{h.name('isos')}/virtio-win.iso")
    h.write(*rehomed)
    try:
        _run_the_desktops(h, tpm_states)
    finally:
        with contextlib.suppress(libvirt.libvirtError):
            pool = h.conn.storagePoolLookupByName(h.name("isos"))
            pool.destroy()
            pool.undefine()
        shutil.rmtree(isos, ignore_errors=True)


def _run_the_desktops(h: Harness, tpm_states: list[Path]) -> None:
    assert h.run("validate", "-f", str(h.workdir)).exit_code == 0
    result = h.apply()
    assert result.exit_code == 0, result.output
    assert h.state("linux-desk") == h.state("windows-desk") == libvirt.VIR_DOMAIN_RUNNING
    windows = h.domain_xml("windows-desk")
    assert windows.find("features/hyperv/relaxed[@state='on']") is not None
    assert windows.find("devices/tpm/backend[@type='emulator']") is not None
    assert windows.find("devices/video/model[@type='qxl']") is not None
    cdrom = windows.find("devices/disk[@device='cdrom']")
    assert cdrom is not None
    source, target = cdrom.find("source"), cdrom.find("target")
    assert source is not None and source.get("volume") == "virtio-win.iso"
    assert target is not None and target.get("bus") == "sata"
    assert [b.get("dev") for b in windows.findall("os/boot")] == ["hd", "cdrom"]
    seeds = {
        short: [
            s.get("volume", "")
            for s in h.domain_xml(short).findall("devices/disk[@device='cdrom']/source")
            if ".cidata-" in s.get("volume", "") or ".unattend-" in s.get("volume", "")
        ]
        for short in ("linux-desk", "windows-desk")
    }
    assert [v.split(".")[1].split("-")[0] for v in seeds["linux-desk"]] == ["cidata"]
    assert [v.split(".")[1].split("-")[0] for v in seeds["windows-desk"]] == ["unattend"]
    for short in ("linux-desk", "windows-desk"):
        uuid = h.domain(short).UUIDString()
        tpm_states.append(SWTPM_STATE / uuid)
        assert _swtpm_for(uuid), short
    again = h.apply()
    assert again.exit_code == 0, again.output
    assert "Nothing to do" in again.output
    described = h.run("describe", "vm", h.name("windows-desk"))
    assert described.exit_code == 0 and "CPU:" in described.output, described.output

    uuid = h.domain("linux-desk").UUIDString()
    deleted = h.run("delete", "vm", h.name("linux-desk"), "--shutdown-timeout", "1")
    assert deleted.exit_code == 0, deleted.output
    assert not (SWTPM_STATE / uuid).exists()  # its only disk went, and its TPM state with it
    pool = h.conn.storagePoolLookupByName(h.name("desktops"))
    pool.refresh(0)
    assert seeds["linux-desk"][0] not in pool.listVolumes()  # its seed went with it
