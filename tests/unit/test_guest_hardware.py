"""Guest hardware, planned and rendered: defaults at creation, owned where set, located errors.

SPEC section 9: a field the manifests set is compared and patched; one they
leave unset takes its default when the domain is created (host-passthrough
where the host can run it, the guest agent, a tablet, virtio video) and is
left as it is afterwards. PCI host devices are checked against the host's
node devices, and a windows guest needs the operator's virtio-win ISO.
"""

from __future__ import annotations

import dataclasses
from typing import Any

from lxml import etree

from reconciler.hypervisor import patch, projection, xml
from reconciler.models import effective, kinds, observed
from reconciler.planning import actions, planner, targets
from tests.unit import fakes

POOL: dict[str, Any] = {
    "kind": "StoragePool",
    "metadata": {"name": "default"},
    "spec": {"path": "/pools/default"},
}
ISOS: dict[str, Any] = {
    "kind": "StoragePool",
    "metadata": {"name": "isos"},
    "spec": {"path": "/pools/isos", "images": True},
}
LAB: dict[str, Any] = {
    "kind": "Network",
    "metadata": {"name": "lab"},
    "spec": {"mode": "nat", "ipv4": {"address": "10.20.0.1/24"}},
}
OWNER = observed.Ownership("VirtualMachine", "desk", "inst-1", "0123456789abcdef")


def _vm(name: str = "desk", **spec: Any) -> dict[str, Any]:
    spec.setdefault("disks", [{"name": "root", "size": "2GiB"}])
    spec.setdefault("networks", [{"network": "lab"}])
    return {"kind": "VirtualMachine", "metadata": {"name": name}, "spec": spec}


def _effective(**spec: Any) -> effective.EffectiveVM:
    return fakes.state_of([_vm(**spec), POOL, LAB]).effective_vms["desk"]


# --- defaults -----------------------------------------------------------------------------


def test_a_new_vm_gets_the_desktop_defaults_and_an_existing_one_keeps_what_it_has() -> None:
    vm = _effective(graphics={"type": "spice"})

    created = targets.guest_hardware(vm, creating=True, host=observed.Host())
    existing = targets.guest_hardware(vm, creating=False, host=observed.Host())

    assert created == {
        "cpu_mode": "host-passthrough",
        "tpm": False,
        "guest_agent": True,
        "spice_agent": True,
        "tablet": True,
        "video": "virtio",
        "hyperv": False,
        "cdroms": (),
        "boot": ("disk",),
        "host_devices": (),
    }
    assert set(existing.values()) == {None}


def test_a_windows_uefi_guest_gets_a_tpm_hyperv_and_the_virtio_win_iso() -> None:
    vm = _effective(
        os="windows", firmware="uefi", cdroms=[{"name": "i", "pool": "isos", "image": "w.iso"}]
    )
    virtio = observed.CdromShape("isos", "virtio-win.iso")

    fields = targets.guest_hardware(vm, creating=False, host=observed.Host(), virtio_win=virtio)

    assert fields["tpm"] is True and fields["hyperv"] is True
    assert fields["cdroms"] == (observed.CdromShape("isos", "w.iso"), virtio)


def test_the_default_cpu_falls_back_where_the_host_cannot_pass_it_through() -> None:
    assert observed.Host(cpu_modes=("host-passthrough", "host-model")).default_cpu() == (
        "host-passthrough",
        "",
    )
    mode, why = observed.Host(domain_type="qemu", cpu_modes=("maximum", "host-model")).default_cpu()
    assert mode == "host-model" and "not supported by this host (qemu)" in why
    mode, why = observed.Host(domain_type="kvm", nested=True).default_cpu()
    assert mode == "" and "nested" in why


def test_template_hardware_merges_under_the_vm() -> None:
    template = {
        "kind": "Template",
        "metadata": {"name": "desktop"},
        "spec": {
            "tpm": True,
            "video": "qxl",
            "cpu": {"mode": "host-model"},
            "cdroms": [{"name": "install", "pool": "isos", "image": "a.iso"}],
        },
    }
    state = fakes.state_of(
        [
            template,
            _vm(
                template="desktop",
                video="vga",
                cdroms=[{"name": "install", "pool": "isos", "image": "b.iso"}],
            ),
            POOL,
            ISOS,
            LAB,
        ]
    )
    vm = state.effective_vms["desk"]
    assert (vm.tpm, vm.video, vm.cpu_mode) == (True, kinds.Video.VGA, kinds.CpuMode.HOST_MODEL)
    assert vm.cdroms == (effective.EffectiveCdrom("install", "isos", "b.iso"),)


# --- planning -----------------------------------------------------------------------------


def test_a_set_field_that_differs_is_a_restart_change_and_converges() -> None:
    documents = [_vm(), POOL, LAB]
    hv, rec = fakes.FakeHypervisor(), fakes.FakeRecord()
    rec.converge(fakes.state_of(documents), hv)
    assert rec.plan(fakes.state_of(documents), hv).empty

    changed = [_vm(tpm=True, video="qxl", guestAgent=False), POOL, LAB]
    plan = rec.plan(fakes.state_of(changed), hv)
    (change,) = plan.changes
    fields = {f.path: (f.old, f.new, f.impact) for f in change.fields}
    cold = actions.Impact.RESTART  # the fake's guests run
    assert fields["tpm"] == (False, True, cold)
    assert fields["video"] == ("virtio", "qxl", cold)
    assert fields["guestAgent"] == (True, False, cold)
    rec.converge(fakes.state_of(changed), hv)
    assert rec.plan(fakes.state_of(changed), hv).empty


def _plan_on(
    host: observed.Host, *documents: dict[str, Any], virtio_win: str | None = None
) -> actions.Plan:
    state = dataclasses.replace(fakes.state_of(list(documents)), virtio_win=virtio_win)
    world = dataclasses.replace(fakes.FakeHypervisor().observe(), host=host)
    return planner.plan(state, [], world, installation="inst-1")


def test_a_pci_device_the_host_lacks_is_a_located_error() -> None:
    host = observed.Host(pci=frozenset({"0000:01:00.0"}))
    vm = _vm(hostDevices=[{"pci": "0000:01:00.0"}, {"pci": "0000:02:00.0"}])

    plan = _plan_on(host, vm, POOL, LAB)

    assert len(plan.errors) == 1
    assert plan.errors[0].endswith(
        "VirtualMachine/desk: spec.hostDevices[1].pci: the host has no PCI device 0000:02:00.0 "
        "(see virsh nodedev-list --cap pci)"
    )
    assert not any(c.key.name == "desk" for c in plan.changes)


def test_a_windows_guest_without_the_virtio_win_iso_is_a_located_error() -> None:
    vm = _vm(os="windows")

    unset = _plan_on(observed.Host(), vm, POOL, LAB)
    missing = _plan_on(observed.Host(), vm, POOL, LAB, virtio_win="nowhere/virtio-win.iso")

    assert (
        "spec.os: a windows guest gets the virtio-win driver ISO: set INFINIBAY_VIRTIO_WIN"
        in (unset.errors[0])
    )
    assert "spec.os: the virtio-win driver ISO nowhere/virtio-win.iso" in missing.errors[0]


# --- rendering and patching -----------------------------------------------------------------


def _shape(**guest: Any) -> observed.VmShape:
    return observed.VmShape(
        cpus=1,
        memory=64 << 20,
        firmware=kinds.Firmware.UEFI,
        machine=kinds.Machine.Q35,
        graphics_type=kinds.GraphicsType.SPICE,
        graphics_listen="127.0.0.1",
        disks=(observed.DiskShape("root", "default", "desk-root.qcow2"),),
        nics=(),
        autostart=False,
        **guest,
    )


def test_every_device_renders_as_libvirt_takes_it() -> None:
    shape = _shape(
        cpu_mode="host-passthrough",
        tpm=True,
        guest_agent=True,
        spice_agent=True,
        tablet=True,
        video="qxl",
        hyperv=True,
        cdroms=(observed.CdromShape("isos", "w.iso"), observed.CdromShape("isos", "v.iso")),
        boot=("cdrom", "disk"),
        host_devices=("0000:01:00.1",),
    )
    root = etree.fromstring(
        xml.render_domain("desk", shape, domain_type="kvm", owner=OWNER).encode()
    )

    assert root.find("cpu").get("mode") == "host-passthrough"  # type: ignore[union-attr]
    assert [b.get("dev") for b in root.findall("os/boot")] == ["cdrom", "hd"]
    assert root.find("features/hyperv/relaxed[@state='on']") is not None
    cdroms = root.findall("devices/disk[@device='cdrom']")
    assert [(c.find("target").get("dev"), c.find("target").get("bus")) for c in cdroms] == [  # type: ignore[union-attr]
        ("sda", "sata"),
        ("sdb", "sata"),
    ]
    assert all(c.find("readonly") is not None for c in cdroms)
    address = root.find("devices/hostdev[@type='pci']/source/address")
    assert address is not None and {
        k: address.get(k) for k in ("domain", "bus", "slot", "function")
    } == {
        "domain": "0x0000",
        "bus": "0x01",
        "slot": "0x00",
        "function": "0x1",
    }
    assert root.find("devices/tpm/backend[@type='emulator'][@version='2.0']") is not None
    assert (
        projection.parse_domain(etree.tostring(root, encoding="unicode"), autostart=False)[2]
        == shape
    )


def test_a_patch_changes_the_video_model_and_removes_the_tpm_keeping_libvirts_details() -> None:
    created = _shape(tpm=True, video="qxl", guest_agent=True, spice_agent=True, tablet=True)
    document = xml.render_domain("desk", created, domain_type="kvm", owner=OWNER)
    root = etree.fromstring(document.encode())
    video = root.find("devices/video")
    assert video is not None
    etree.SubElement(
        video, "address", type="pci", domain="0x0000", bus="0x00", slot="0x01", function="0x0"
    )
    channel = root.find("devices/channel[@type='unix']")
    assert channel is not None
    etree.SubElement(channel, "address", type="virtio-serial", controller="0", bus="0", port="1")

    target = dataclasses.replace(created, tpm=False, video="virtio")
    patched = patch.patch_domain(etree.tostring(root, encoding="unicode"), target, owner=OWNER)

    after = etree.fromstring(patched.encode())
    assert after.find("devices/tpm") is None
    assert after.find("devices/video/model").get("type") == "virtio"  # type: ignore[union-attr]
    assert after.find("devices/video/address[@slot='0x01']") is not None
    assert after.find("devices/channel[@type='unix']/address[@port='1']") is not None
    parsed = projection.parse_domain(patched, autostart=False)[2]
    assert (parsed.tpm, parsed.video, parsed.guest_agent, parsed.tablet) == (
        False,
        "virtio",
        True,
        True,
    )
