"""Convergence, property-tested: applying a plan and planning again yields an empty plan.

Each example draws a desired state *A*, converges an empty fake world on it,
disturbs that world out of band (power changes, a changed vCPU count, deleted
volumes, stopped or undefined networks, an undefined domain), then draws a
desired state *B* (a new revision of the manifests) and applies it the way a
reconcile pass does: plan, record the specs, execute, record tombstones and
status. Planning *B* again against the resulting world and record must find
nothing to do. Every define goes through the XML renderer and the projection,
so this also proves that rendering and projection agree for every shape the
planner can produce.
"""

from __future__ import annotations

import dataclasses
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from reconciler.models import effective, kinds
from reconciler.planning import actions
from tests.unit import fakes

POOLS = ("default", "fast")
NETWORKS = {"lab": "10.20.0", "dmz": "10.30.0", "storage-backplane": "10.40.0"}
TEMPLATES = ("small", "big")
VMS = ("web-1", "web-2", "db-1")
DISKS = ("root", "data")
IMAGES = {"Golden_A.qcow2": 8 << 30, "Golden_B.qcow2": 8 << 30}
GiB = 1 << 30

PROPERTY = settings(
    max_examples=100,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)


def _declared_mac(vm: str, network: str) -> str:
    return f"52:54:00:aa:{VMS.index(vm):02x}:{list(NETWORKS).index(network):02x}"


@st.composite
def network_documents(draw: st.DrawFn, name: str) -> dict[str, Any]:
    mode = draw(st.sampled_from(list(kinds.NetworkMode)))
    prefix = NETWORKS[name]
    spec: dict[str, Any] = {"mode": mode.value, "autostart": draw(st.booleans())}
    if mode is kinds.NetworkMode.BRIDGE:
        spec["bridge"] = f"br-{name[:8]}"
    else:
        if draw(st.booleans()):
            spec["bridge"] = f"virbr-{name[:6]}"
        if mode is not kinds.NetworkMode.ISOLATED or draw(st.booleans()):
            ipv4: dict[str, Any] = {"address": f"{prefix}.1/24"}
            if draw(st.booleans()):
                ipv4["dhcp"] = {
                    "start": f"{prefix}.100",
                    "end": f"{prefix}.{draw(st.integers(101, 200))}",
                }
            if draw(st.booleans()):
                ipv4["hosts"] = [
                    {"mac": "52:54:00:bb:00:01", "ip": f"{prefix}.10", "name": "db"},
                    {"mac": "52:54:00:bb:00:02", "ip": f"{prefix}.11"},
                ]
            spec["ipv4"] = ipv4
    if draw(st.booleans()):
        spec["domain"] = f"{name}.internal"
    if draw(st.booleans()):
        spec["mtu"] = draw(st.sampled_from([1400, 1500, 9000]))
    return {"kind": "Network", "metadata": {"name": name}, "spec": spec}


def _hardware(draw: st.DrawFn, *, vm: str | None) -> dict[str, Any]:
    spec: dict[str, Any] = {}
    if draw(st.booleans()):
        spec["cpus"] = draw(st.integers(1, 8))
    if draw(st.booleans()):
        spec["memory"] = f"{draw(st.sampled_from([256, 512, 1024, 1536]))}MiB"
    if draw(st.booleans()):
        spec["firmware"] = draw(st.sampled_from(["bios", "uefi"]))
    if draw(st.booleans()):
        spec["machine"] = draw(st.sampled_from(["q35", "pc"]))
    if draw(st.booleans()):
        graphics = {"type": draw(st.sampled_from(["vnc", "spice", "none"]))}
        if draw(st.booleans()):
            graphics["listen"] = draw(st.sampled_from(["127.0.0.1", "0.0.0.0"]))
        spec["graphics"] = graphics
    disks = []
    for disk in draw(st.lists(st.sampled_from(DISKS), unique=True, max_size=2)):
        entry: dict[str, Any] = {"name": disk, "size": f"{draw(st.integers(1, 4))}GiB"}
        if draw(st.booleans()):
            entry["pool"] = draw(st.sampled_from(POOLS))
        if vm is not None and draw(st.booleans()):
            entry["image"] = draw(st.sampled_from(sorted(IMAGES)))
        if draw(st.booleans()):
            entry["reclaimPolicy"] = draw(st.sampled_from(["Retain", "Delete"]))
        disks.append(entry)
    if disks:
        spec["disks"] = disks
    nics = []
    for network in draw(st.lists(st.sampled_from(sorted(NETWORKS)), unique=True, max_size=2)):
        nic = {"network": network}
        if vm is not None and draw(st.booleans()):
            nic["mac"] = _declared_mac(vm, network)
        nics.append(nic)
    if nics:
        spec["networks"] = nics
    return spec


@st.composite
def desired_documents(draw: st.DrawFn) -> list[dict[str, Any]]:
    """A valid set of manifests: every pool, network and template a VM uses is declared."""
    documents: list[dict[str, Any]] = []
    templates = {
        name: {"kind": "Template", "metadata": {"name": name}, "spec": _hardware(draw, vm=None)}
        for name in TEMPLATES
    }
    vms: list[dict[str, Any]] = []
    for name in draw(st.lists(st.sampled_from(VMS), unique=True, max_size=3)):
        spec = _hardware(draw, vm=name)
        if draw(st.booleans()):
            spec["template"] = draw(st.sampled_from(TEMPLATES))
        spec["powerState"] = draw(st.sampled_from(["Running", "Stopped", "Paused"]))
        spec["autostart"] = draw(st.booleans())
        spec["updatePolicy"] = draw(st.sampled_from(["OnRestart", "Restart"]))
        metadata: dict[str, Any] = {"name": name}
        if draw(st.integers(0, 5)) == 0:
            metadata["annotations"] = {kinds.PROTECT_ANNOTATION: "true"}
        vms.append({"kind": "VirtualMachine", "metadata": metadata, "spec": spec})
    used_templates = {vm["spec"]["template"] for vm in vms if "template" in vm["spec"]}
    extra = set(draw(st.lists(st.sampled_from(TEMPLATES), unique=True, max_size=1)))
    documents += [templates[name] for name in sorted(used_templates | extra)]
    documents += vms
    state = fakes.state_of(documents)
    pools = {d.pool for vm in state.effective_vms.values() for d in vm.disks}
    pools |= set(draw(st.lists(st.sampled_from(POOLS), unique=True, max_size=1)))
    networks = {n.network for vm in state.effective_vms.values() for n in vm.nics}
    networks |= set(draw(st.lists(st.sampled_from(sorted(NETWORKS)), unique=True, max_size=1)))
    for pool in sorted(pools):
        spec = {"path": f"/var/lib/infinibay/pools/{pool}", "autostart": draw(st.booleans())}
        documents.insert(0, {"kind": "StoragePool", "metadata": {"name": pool}, "spec": spec})
    for network in sorted(networks):
        documents.insert(0, draw(network_documents(network)))
    return documents


def _keep_volumes(
    before: list[dict[str, Any]], after: list[dict[str, Any]]
) -> list[dict[str, Any]]:
    """Make ``after`` a revision that never shrinks a disk nor swaps its image.

    A shrink is refused at validation (tested on its own) and an image swap is a
    data-loss replacement covered by its own test, so the convergence property
    leaves both out: sizes only grow and images stay.
    """
    old = fakes.state_of(before).effective_vms
    new = fakes.state_of(after).effective_vms
    for document in after:
        name = document["metadata"]["name"]
        if document["kind"] != "VirtualMachine" or name not in old:
            continue
        was = {(d.name, d.pool): d for d in old[name].disks}
        overrides = {d["name"]: d for d in document["spec"].get("disks", [])}
        for disk in new[name].disks:
            previous = was.get((disk.name, disk.pool))
            if previous is None:
                continue
            entry = overrides.setdefault(disk.name, {"name": disk.name})
            entry["size"] = f"{max(disk.size, previous.size) // GiB}GiB"
            entry.pop("image", None)
            if previous.image is not None:
                entry["image"] = previous.image
        if overrides:
            document["spec"]["disks"] = list(overrides.values())
    return after


@st.composite
def disturbances(draw: st.DrawFn, hv: fakes.FakeHypervisor) -> list[str]:
    """Out-of-band changes to a converged world, as someone with virsh would make them."""
    done = []
    for name in sorted(hv.domains):
        domain = hv.domains[name]
        what = draw(
            st.sampled_from(["none", "stop", "start", "pause", "cpus", "autostart", "undefine"])
        )
        if what == "stop":
            domain.power, domain.live, domain.port = kinds.PowerState.STOPPED, None, None
        elif what in ("start", "pause"):
            domain.power = kinds.PowerState.RUNNING if what == "start" else kinds.PowerState.PAUSED
            domain.live = domain.shape
        elif what == "cpus":
            domain.shape = dataclasses.replace(domain.shape, cpus=domain.shape.cpus % 8 + 1)
        elif what == "autostart":
            domain.autostart = not domain.autostart
        elif what == "undefine":
            del hv.domains[name]
        done.append(f"{what} domain {name}")
    for name in sorted(hv.networks):
        what = draw(st.sampled_from(["none", "stop", "autostart", "undefine"]))
        if what == "stop":
            hv.networks[name].active = False
        elif what == "autostart":
            hv.networks[name].autostart = not hv.networks[name].autostart
        elif what == "undefine":
            del hv.networks[name]
        done.append(f"{what} network {name}")
    for directory in sorted(hv.files):
        for volume in sorted(hv.files[directory]):
            if volume not in IMAGES and draw(st.integers(0, 3)) == 0:
                del hv.files[directory][volume]
                done.append(f"delete volume {directory}/{volume}")
    return done


def _converge_and_replan(
    record: fakes.FakeRecord,
    hv: fakes.FakeHypervisor,
    documents: list[dict[str, Any]],
    *,
    prune: bool,
    adopt: bool = False,
) -> actions.Plan:
    state = fakes.state_of(documents)
    _, outcomes = record.converge(state, hv, prune=prune, adopt=adopt)
    failed = [(str(o.change.key), o.error) for o in outcomes if not o.ok]
    assert not failed, failed
    again = record.plan(state, hv, prune=prune)
    assert not again.errors
    return again


def _leftovers(plan: actions.Plan) -> list[dict[str, Any]]:
    """Changes still planned; a protected resource's refused deletion is expected to stay."""
    return [c.as_json() for c in plan.changes if c.verb is not actions.Verb.PROTECTED]


@PROPERTY
@given(documents=desired_documents())
def test_applying_a_plan_to_an_empty_world_then_planning_again_is_empty(
    documents: list[dict[str, Any]],
) -> None:
    hv, record = fakes.FakeHypervisor(images=IMAGES), fakes.FakeRecord()

    again = _converge_and_replan(record, hv, documents, prune=False)

    assert _leftovers(again) == []
    assert again.spec_writes == ()


@PROPERTY
@given(data=st.data(), first=desired_documents(), prune=st.booleans())
def test_a_disturbed_world_and_a_new_revision_converge_in_one_pass(
    data: st.DataObject, first: list[dict[str, Any]], prune: bool
) -> None:
    hv, record = fakes.FakeHypervisor(images=IMAGES), fakes.FakeRecord()
    assert _leftovers(_converge_and_replan(record, hv, first, prune=False)) == []
    data.draw(disturbances(hv), label="out of band")
    second = _keep_volumes(first, data.draw(desired_documents(), label="revision"))

    again = _converge_and_replan(record, hv, second, prune=prune)

    assert _leftovers(again) == []
    if prune:
        wanted = {(d["kind"], d["metadata"]["name"]) for d in second}
        protected = {(c.key.kind, c.key.name) for c in again.changes}
        owned = {("VirtualMachine", name) for name in hv.domains} | {
            ("Network", name) for name in hv.networks
        }
        assert owned <= wanted | protected


@PROPERTY
@given(data=st.data(), documents=desired_documents())
def test_pruning_everything_but_protected_resources_leaves_no_owned_object(
    data: st.DataObject, documents: list[dict[str, Any]]
) -> None:
    hv, record = fakes.FakeHypervisor(images=IMAGES), fakes.FakeRecord()
    _converge_and_replan(record, hv, documents, prune=False)
    data.draw(disturbances(hv), label="out of band")

    again = _converge_and_replan(record, hv, [], prune=True)

    protected = {c.key.name for c in again.changes if c.verb is actions.Verb.PROTECTED}
    assert _leftovers(again) == []
    assert set(hv.domains) <= protected
    retained = {
        f"{vm.name}.{d.name}.qcow2"
        for vm in fakes.state_of(documents).effective_vms.values()
        for d in vm.disks
        if d.reclaim is kinds.ReclaimPolicy.RETAIN or vm.name in protected
    }
    on_disk = {v for files in hv.files.values() for v in files if v not in IMAGES}
    assert on_disk <= retained


@PROPERTY
@given(data=st.data(), theirs=desired_documents())
def test_adopting_unmanaged_objects_converges_and_then_owns_them(
    data: st.DataObject, theirs: list[dict[str, Any]]
) -> None:
    hv = fakes.FakeHypervisor(images=IMAGES)
    _converge_and_replan(fakes.FakeRecord("someone-else"), hv, theirs, prune=False)
    made: list[fakes.FakeDomain | fakes.FakeNetwork] = [*hv.domains.values(), *hv.networks.values()]
    for thing in made:
        thing.owner = None  # made by hand: another installation's objects are never adopted
    for files in hv.files.values():  # a hand-made volume is never taken over (SPEC §13)
        for name in [n for n in files if n not in IMAGES]:
            del files[name]
    ours = _keep_volumes(theirs, data.draw(desired_documents(), label="ours"))
    record = fakes.FakeRecord()

    again = _converge_and_replan(record, hv, ours, prune=False, adopt=True)

    assert _leftovers(again) == []
    state = fakes.state_of(ours)
    assert all(hv.domains[name].owner.installation == record.installation for name in state.vms)  # type: ignore[union-attr]
    assert all(
        hv.networks[name].owner.installation == record.installation  # type: ignore[union-attr]
        for name in state.networks
    )


def test_the_property_strategies_cover_templates_protection_and_images() -> None:
    """Guard against a strategy that quietly stops generating the interesting cases."""
    seen: set[str] = set()

    @settings(max_examples=100, deadline=None, database=None, derandomize=True)
    @given(documents=desired_documents())
    def collect(documents: list[dict[str, Any]]) -> None:
        state = fakes.state_of(documents)
        for vm in state.effective_vms.values():
            seen.add("template" if vm.template else "plain")
            seen.add(f"power:{vm.power.value}")
            if vm.protected:
                seen.add("protected")
            if any(d.image for d in vm.disks):
                seen.add("image")
        for network in state.networks.values():
            assert isinstance(network.manifest, kinds.Network)
            seen.add(f"mode:{network.manifest.spec.mode.value}")

    collect()

    assert {"template", "plain", "image", "protected", "power:Paused", "mode:bridge"} <= seen
    assert effective.DEFAULT_POOL in POOLS


# --- known gaps in one-pass convergence ---------------------------------------------------

_POOL = {"kind": "StoragePool", "metadata": {"name": "default"}, "spec": {"path": "/pools/a"}}


def _stopped_vm(size: str) -> dict[str, Any]:
    return {
        "kind": "VirtualMachine",
        "metadata": {"name": "web-1"},
        "spec": {"powerState": "Stopped", "disks": [{"name": "root", "size": size}]},
    }


def test_a_disk_grown_while_its_pool_was_stopped_converges_in_one_pass() -> None:
    hv, record = fakes.FakeHypervisor(), fakes.FakeRecord()
    assert (
        _leftovers(_converge_and_replan(record, hv, [_POOL, _stopped_vm("1GiB")], prune=False))
        == []
    )
    hv.pools["default"].active = False

    again = _converge_and_replan(record, hv, [_POOL, _stopped_vm("2GiB")], prune=False)

    assert _leftovers(again) == []


def test_moving_a_pool_that_holds_vm_volumes_converges_in_one_pass() -> None:
    hv, record = fakes.FakeHypervisor(), fakes.FakeRecord()
    assert (
        _leftovers(_converge_and_replan(record, hv, [_POOL, _stopped_vm("1GiB")], prune=False))
        == []
    )
    moved = {**_POOL, "spec": {"path": "/pools/b"}}

    again = _converge_and_replan(record, hv, [moved, _stopped_vm("1GiB")], prune=False)

    assert _leftovers(again) == []
