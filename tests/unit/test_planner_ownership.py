"""The planner on objects it did not make: NICs by MAC, disks by volume, honest adoption."""

from __future__ import annotations

import dataclasses
from typing import Any

import pydantic
import pytest

from reconciler.models import kinds, observed
from reconciler.planning import actions, planner
from tests.unit import fakes

Impact = actions.Impact
Verb = actions.Verb
POOL = {"kind": "StoragePool", "metadata": {"name": "default"}, "spec": {"path": "/pools/default"}}
LAB = {
    "kind": "Network",
    "metadata": {"name": "lab"},
    "spec": {"mode": "nat", "ipv4": {"address": "10.20.0.1/24"}},
}
MAC_A, MAC_B = "52:54:00:00:00:0a", "52:54:00:00:00:0b"


def _vm(name: str = "web-1", **spec: Any) -> dict[str, Any]:
    spec.setdefault("disks", [{"name": "root", "size": "2GiB"}])
    spec.setdefault("networks", [{"network": "lab"}])
    return {"kind": "VirtualMachine", "metadata": {"name": name}, "spec": spec}


def _converged(*documents: dict[str, Any]) -> tuple[fakes.FakeHypervisor, fakes.FakeRecord]:
    hv, rec = fakes.FakeHypervisor(), fakes.FakeRecord()
    _, outcomes = rec.converge(fakes.state_of(list(documents)), hv)
    assert all(o.ok for o in outcomes), [o.error for o in outcomes]
    assert rec.plan(fakes.state_of(list(documents)), hv).empty
    return hv, rec


def _fields(change: actions.Change) -> dict[str, tuple[Any, Any, Impact]]:
    return {f.path: (f.old, f.new, f.impact) for f in change.fields}


def _vm_change(plan: actions.Plan) -> actions.Change:
    return next(c for c in plan.changes if c.key.kind == "VirtualMachine")


# --- NICs by MAC ------------------------------------------------------------------------


def test_two_nics_share_a_network_and_removing_one_names_it_by_mac() -> None:
    both = [{"network": "lab", "mac": MAC_A}, {"network": "lab", "mac": MAC_B}]
    hv, rec = _converged(POOL, LAB, _vm(networks=both))
    assert [n.mac for n in hv.domains["web-1"].shape.nics] == [MAC_A, MAC_B]

    plan = rec.plan(fakes.state_of([POOL, LAB, _vm(networks=both[1:])]), hv)

    assert _fields(_vm_change(plan)) == {f"networks[lab/{MAC_A}]": (MAC_A, None, Impact.RESTART)}


def test_the_status_lists_every_mac_of_nics_that_share_a_network() -> None:
    both = [{"network": "lab", "mac": MAC_A}, {"network": "lab", "mac": MAC_B}]
    _, rec = _converged(POOL, LAB, _vm(networks=both))

    status = rec.by_key[fakes.key(kinds.Kind.VIRTUAL_MACHINE, "web-1")].status

    assert status["macs"] == {f"lab/{MAC_A}": MAC_A, f"lab/{MAC_B}": MAC_B}


def test_the_same_network_twice_needs_a_mac_on_each_nic() -> None:
    twice = [{"network": "lab", "mac": MAC_A}, {"network": "lab"}]

    with pytest.raises(pydantic.ValidationError, match="network 'lab' is listed twice"):
        fakes.state_of([_vm(networks=twice)])
    with pytest.raises(pydantic.ValidationError, match=f"MAC '{MAC_A}' is listed twice"):
        fakes.state_of([_vm(networks=[{"network": "lab", "mac": MAC_A}] * 2)])


def test_a_vm_listing_a_shared_network_replaces_the_templates_nics_on_it() -> None:
    template = {
        "kind": "Template",
        "metadata": {"name": "t"},
        "spec": {"networks": [{"network": "lab"}]},
    }
    both = [{"network": "lab", "mac": MAC_A}, {"network": "lab", "mac": MAC_B}]

    vm = fakes.state_of([template, _vm(template="t", networks=both)]).effective_vms["web-1"]

    assert [(n.network, n.mac) for n in vm.nics] == [("lab", MAC_A), ("lab", MAC_B)]


# --- disks that hold data -------------------------------------------------------------------


def _with_allocation(world: observed.World, pool: str, volume: str, size: int) -> observed.World:
    found = world.pools[pool]
    volumes = dict(found.volumes)
    volumes[volume] = dataclasses.replace(volumes[volume], allocation=size)
    return dataclasses.replace(
        world, pools={**world.pools, pool: dataclasses.replace(found, volumes=volumes)}
    )


def test_detaching_a_disk_that_holds_data_is_data_loss_naming_its_volume_and_bytes() -> None:
    hv, rec = _converged(POOL, LAB, _vm(powerState="Stopped"))
    state = fakes.state_of([POOL, LAB, _vm(powerState="Stopped", disks=[])])
    world = _with_allocation(hv.observe(), "default", "web-1.root.qcow2", 196608)

    plan = planner.plan(state, rec.records, world, installation=rec.installation)

    change = _vm_change(plan)
    assert _fields(change) == {
        "disks[root]": (
            "default/web-1.root.qcow2 (196608 bytes allocated)",
            None,
            Impact.DATA_LOSS,
        )
    }
    assert change.impact is Impact.DATA_LOSS


def test_pointing_a_disk_at_another_volume_is_data_loss_even_on_a_stopped_vm() -> None:
    fast = {"kind": "StoragePool", "metadata": {"name": "fast"}, "spec": {"path": "/pools/fast"}}
    hv, rec = _converged(POOL, fast, LAB, _vm(powerState="Stopped"))
    moved = [{"name": "root", "size": "2GiB", "pool": "fast"}]
    state = fakes.state_of([POOL, fast, LAB, _vm(powerState="Stopped", disks=moved)])
    world = _with_allocation(hv.observe(), "default", "web-1.root.qcow2", 1 << 20)

    plan = planner.plan(state, rec.records, world, installation=rec.installation)

    fields = _fields(_vm_change(plan))
    assert fields["disks[root]"] == (
        f"default/web-1.root.qcow2 ({1 << 20} bytes allocated)",
        "fast/web-1.root.qcow2",
        Impact.DATA_LOSS,
    )


def test_a_disk_whose_volume_is_gone_is_reattached_without_data_loss() -> None:
    hv, rec = _converged(POOL, LAB, _vm(powerState="Stopped"))
    del hv.files["/pools/default"]["web-1.root.qcow2"]

    plan = rec.plan(fakes.state_of([POOL, LAB, _vm(powerState="Stopped", disks=[])]), hv)

    assert _fields(_vm_change(plan)) == {
        "disks[root]": ("default/web-1.root.qcow2 (not found)", None, Impact.LIVE)
    }


# --- adoption -------------------------------------------------------------------------------


def _unmanaged(*parts: observed.Unmodelled) -> observed.World:
    shape = observed.VmShape(
        cpus=1,
        memory=512 << 20,
        firmware=kinds.Firmware.BIOS,
        machine=kinds.Machine.Q35,
        graphics_type=kinds.GraphicsType.VNC,
        graphics_listen="127.0.0.1",
        disks=(),
        nics=(
            observed.NicShape("lab", MAC_A),
            observed.NicShape("<bridge>", MAC_B),
        ),
        autostart=False,
    )
    domain = observed.ObservedDomain(
        name="web-1",
        uuid="u-web-1",
        owner=None,
        shape=shape,
        live=None,
        power=kinds.PowerState.STOPPED,
        graphics_port=None,
        unmodelled=parts,
    )
    return observed.World(domains={"web-1": domain})


def test_adopting_keeps_a_bridge_nic_and_says_so() -> None:
    world = _unmanaged(observed.Unmodelled(f"interface <bridge> {MAC_B}", True))
    state = fakes.state_of([POOL, LAB, _vm(disks=[], networks=[{"network": "lab"}])])

    change = _vm_change(planner.plan(state, [], world, installation="inst-1", adopt=True))

    assert change.verb is Verb.UPDATE and change.adopt
    assert "networks[lab]" not in _fields(change)  # the NIC on lab is the one kept by MAC
    assert "networks[<bridge>]" not in _fields(change)
    assert change.note == f"not modelled, kept as is: interface <bridge> {MAC_B}"


def test_adopting_what_cannot_be_represented_is_refused_in_one_line() -> None:
    world = _unmanaged(
        observed.Unmodelled("architecture 'aarch64' (x86_64 only)", False),
        observed.Unmodelled(f"interface <bridge> {MAC_B}", True),
    )
    state = fakes.state_of([POOL, LAB, _vm(disks=[])])

    change = _vm_change(planner.plan(state, [], world, installation="inst-1", adopt=True))

    assert change.verb is Verb.CONFLICT
    assert change.note == (
        "the libvirt domain named 'web-1' cannot be adopted: the manifests cannot represent "
        "its architecture 'aarch64' (x86_64 only); it is left untouched"
    )
