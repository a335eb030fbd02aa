"""A VM merged over its template: scalars override, disks merge by name, NICs by network."""

from __future__ import annotations

from typing import Any

import pytest

from reconciler.models import effective, kinds

API = {"apiVersion": "infinibay.io/v1alpha1"}


def _template(**spec: Any) -> kinds.Template:
    return kinds.Template.model_validate(
        {**API, "kind": "Template", "metadata": {"name": "tpl"}, "spec": spec}
    )


def _vm(metadata: dict[str, Any] | None = None, **spec: Any) -> kinds.VirtualMachine:
    return kinds.VirtualMachine.model_validate(
        {
            **API,
            "kind": "VirtualMachine",
            "metadata": {"name": "web-1", **(metadata or {})},
            "spec": spec,
        }
    )


TEMPLATE = _template(
    cpus=2,
    memory="2GiB",
    firmware="uefi",
    graphics={"type": "spice"},
    disks=[{"name": "root", "size": "20GiB", "pool": "fast", "image": "golden.qcow2"}],
    networks=[{"network": "lab"}],
)


def test_a_vm_without_template_takes_the_installation_defaults() -> None:
    vm = effective.merge(_vm(), None)

    assert vm == effective.EffectiveVM(
        name="web-1",
        template=None,
        cpus=effective.DEFAULT_CPUS,
        memory=effective.DEFAULT_MEMORY,
        firmware=kinds.Firmware.BIOS,
        machine=kinds.Machine.Q35,
        graphics_type=kinds.GraphicsType.VNC,
        graphics_listen="127.0.0.1",
        disks=(),
        nics=(),
        power=kinds.PowerState.RUNNING,
        autostart=False,
        update_policy=kinds.UpdatePolicy.ON_RESTART,
        protected=False,
    )


def test_template_scalars_apply_when_the_vm_does_not_set_them() -> None:
    vm = effective.merge(_vm(template="tpl"), TEMPLATE)

    assert (vm.template, vm.cpus, vm.memory, vm.firmware) == (
        "tpl",
        2,
        2 << 30,
        kinds.Firmware.UEFI,
    )
    assert vm.graphics_type is kinds.GraphicsType.SPICE


def test_vm_scalars_override_the_template() -> None:
    vm = effective.merge(_vm(template="tpl", cpus=4, firmware="bios", machine="pc"), TEMPLATE)

    assert (vm.cpus, vm.memory, vm.firmware, vm.machine) == (
        4,
        2 << 30,
        kinds.Firmware.BIOS,
        kinds.Machine.PC,
    )


def test_graphics_merge_field_by_field() -> None:
    vm = effective.merge(_vm(template="tpl", graphics={"listen": "0.0.0.0"}), TEMPLATE)

    assert (vm.graphics_type, vm.graphics_listen) == (kinds.GraphicsType.SPICE, "0.0.0.0")


def test_disks_merge_by_name_keeping_the_template_fields_the_vm_does_not_restate() -> None:
    vm = effective.merge(
        _vm(
            template="tpl",
            disks=[
                {"name": "root", "size": "40GiB"},
                {"name": "data", "size": "1GiB", "reclaimPolicy": "Delete"},
            ],
        ),
        TEMPLATE,
    )

    assert vm.disks == (
        effective.EffectiveDisk(
            "root", 40 << 30, "fast", "golden.qcow2", kinds.ReclaimPolicy.RETAIN
        ),
        effective.EffectiveDisk("data", 1 << 30, "default", None, kinds.ReclaimPolicy.DELETE),
    )
    assert vm.disks[0].volume_name("web-1") == "web-1.root.qcow2"


def test_networks_merge_by_network() -> None:
    vm = effective.merge(
        _vm(
            template="tpl",
            networks=[{"network": "lab", "mac": "52:54:00:12:34:56"}, {"network": "office"}],
        ),
        TEMPLATE,
    )

    assert vm.nics == (
        effective.EffectiveNic("lab", "52:54:00:12:34:56"),
        effective.EffectiveNic("office", None),
    )


def test_vm_only_fields_come_from_the_vm() -> None:
    vm = effective.merge(
        _vm(
            {"annotations": {"infinibay.io/protect": "true"}},
            template="tpl",
            powerState="Stopped",
            autostart=True,
            updatePolicy="Restart",
        ),
        TEMPLATE,
    )

    assert (vm.power, vm.autostart, vm.update_policy, vm.protected) == (
        kinds.PowerState.STOPPED,
        True,
        kinds.UpdatePolicy.RESTART,
        True,
    )


def test_a_disk_without_size_anywhere_is_an_error() -> None:
    with pytest.raises(ValueError, match=r"^disk 'data' has no size in the VM or its template$"):
        effective.merge(_vm(template="tpl", disks=[{"name": "data"}]), TEMPLATE)


def test_resolve_takes_the_template_from_the_first_source_that_holds_it() -> None:
    other = _template(cpus=8)
    vm = _vm(template="tpl")
    assert effective.resolve(vm, {"tpl": TEMPLATE}, {"tpl": other}).cpus == 2
    assert effective.resolve(vm, {}, {"tpl": other}).cpus == 8
    assert effective.resolve(_vm(), {}).template is None


def test_resolve_names_a_template_no_source_holds() -> None:
    with pytest.raises(effective.MissingTemplate, match="template 'tpl' of VM 'web-1'"):
        effective.resolve(_vm(template="tpl"), {}, {"other": TEMPLATE})
