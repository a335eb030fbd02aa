"""First-boot seeds: their files, their content-named volumes, the ISO, and the plan."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from reconciler import errors
from reconciler.hypervisor import seed as seed_iso
from reconciler.manifests import loader
from reconciler.models import kinds, seeds
from reconciler.planning import actions
from tests.unit import fakes
from tests.unit.test_planner import LAB, POOL, _converged, _fields, _only, _plan, _vm

Impact = actions.Impact
USER_DATA = "#cloud-config\npackages: [htop]\n"


def _first_boot(user_data: str = USER_DATA, **cloud: Any) -> dict[str, Any]:
    return {"cloudInit": {"userData": user_data, **cloud}}


def _volumes(hv: fakes.FakeHypervisor) -> set[str]:
    return {n for n in hv.files.get("/pools/default", {}) if seeds.kind_of(n)}


def test_a_cloud_init_seed_holds_user_data_as_written_and_a_stable_instance_id() -> None:
    seed = seeds.cloud_init("web-1", USER_DATA, network_config={"version": 2})

    label, files = seed_iso.read(seed_iso.build(seed))

    assert label == "cidata"
    assert files == {
        "user-data": USER_DATA.encode(),
        "meta-data": b"instance-id: iid-web-1\nlocal-hostname: web-1\n",
        "network-config": b"version: 2\n",
    }
    assert seeds.cloud_init("web-1", USER_DATA, network_config={"version": 2}) == seed


def test_a_seeds_volume_is_named_by_its_content() -> None:
    one = seeds.cloud_init("web-1", USER_DATA)
    other = seeds.cloud_init("web-1", USER_DATA + "# changed\n")
    renamed = seeds.cloud_init("web-1", USER_DATA, instance_id="iid-2")

    assert one.volume("web-1") == seeds.cloud_init("web-1", USER_DATA).volume("web-1")
    assert len({one.volume("web-1"), other.volume("web-1"), renamed.volume("web-1")}) == 3
    assert seeds.kind_of(one.volume("web-1")) == seeds.CIDATA
    assert seeds.kind_of("web-1.root.qcow2") is None
    unattend = seeds.windows_unattend("<unattend/>")
    assert seed_iso.read(seed_iso.build(unattend))[1] == {"Autounattend.xml": b"<unattend/>"}
    assert seeds.kind_of(unattend.volume("win")) == seeds.UNATTEND


def test_an_answer_file_that_is_not_xml_is_refused() -> None:
    with pytest.raises(ValueError, match="not well-formed XML"):
        kinds.FirstBoot(windowsUnattend="<unattend>")


def test_a_seed_is_uploaded_before_the_domain_and_attached_as_a_cdrom() -> None:
    hv, rec = fakes.FakeHypervisor(), fakes.FakeRecord()
    state = fakes.state_of([POOL, LAB, _vm(firstBoot=_first_boot())])

    plan = rec.plan(state, hv)
    change = next(c for c in plan.changes if c.key.kind == "VirtualMachine")
    assert change.intends(actions.UploadSeed)
    assert "instance-id iid-web-1" in _fields(change)["firstBoot.cloudInit"][1]
    _, outcomes = rec.converge(state, hv)

    assert all(o.ok for o in outcomes)
    volume = seeds.cloud_init("web-1", USER_DATA).volume("web-1")
    assert _volumes(hv) == {volume}
    assert [c.volume for c in hv.domains["web-1"].shape.seeds or ()] == [volume]
    assert rec.plan(state, hv).empty


def test_a_changed_user_data_is_a_new_seed_and_the_old_one_goes() -> None:
    hv, rec = _converged(POOL, LAB, _vm(firstBoot=_first_boot(), powerState="Stopped"))
    old = seeds.cloud_init("web-1", USER_DATA).volume("web-1")
    new = seeds.cloud_init("web-1", USER_DATA + "runcmd: [true]\n").volume("web-1")
    state = fakes.state_of(
        [
            POOL,
            LAB,
            _vm(firstBoot=_first_boot(USER_DATA + "runcmd: [true]\n"), powerState="Stopped"),
        ]
    )

    change = _only(rec.plan(state, hv))
    assert _fields(change)["firstBoot.cloudInit"][:2] == (
        f"default/{old}",
        f"default/{new} (instance-id iid-web-1: cloud-init runs again only when it changes)",
    )
    assert [i.volume for i in change.intended(actions.DeleteSeed)] == [old]
    _, outcomes = rec.converge(state, hv)

    assert all(o.ok for o in outcomes)
    assert _volumes(hv) == {new}
    assert rec.plan(state, hv).empty


def test_a_running_guest_keeps_its_old_seed_until_it_restarts() -> None:
    hv, rec = _converged(POOL, LAB, _vm(firstBoot=_first_boot()))
    old = seeds.cloud_init("web-1", USER_DATA).volume("web-1")
    state = fakes.state_of([POOL, LAB, _vm(firstBoot=_first_boot("#cloud-config\n"))])

    change = _only(rec.plan(state, hv))
    assert _fields(change)["firstBoot.cloudInit"][2] is Impact.RESTART
    assert not change.intends(actions.DeleteSeed)
    rec.converge(state, hv)

    assert old in _volumes(hv) and len(_volumes(hv)) == 2


def test_dropping_first_boot_detaches_and_deletes_the_seed() -> None:
    hv, rec = _converged(POOL, LAB, _vm(firstBoot=_first_boot(), powerState="Stopped"))

    _, outcomes = rec.converge(fakes.state_of([POOL, LAB, _vm(powerState="Stopped")]), hv)

    assert all(o.ok for o in outcomes)
    assert _volumes(hv) == set()
    assert hv.domains["web-1"].shape.seeds == ()


def test_deleting_the_vm_deletes_its_seed_and_is_no_data_loss() -> None:
    hv, rec = _converged(POOL, LAB, _vm(firstBoot=_first_boot(), powerState="Stopped"))

    plan = _plan(hv, rec, POOL, LAB, prune=True)
    change = _only(plan)
    assert change.impact is not Impact.DATA_LOSS
    assert [v.seed for v in change.retained] == [False, True]
    _, outcomes = rec.converge(fakes.state_of([POOL, LAB]), hv, prune=True)

    assert all(o.ok for o in outcomes)
    assert _volumes(hv) == set()


def test_a_seed_pool_of_its_own_is_made_before_the_vm_that_uploads_into_it() -> None:
    seeds_pool = {
        "kind": "StoragePool",
        "metadata": {"name": "seeds"},
        "spec": {"path": "/pools/s"},
    }
    vm = _vm(firstBoot={**_first_boot(), "pool": "seeds"})
    hv, rec = fakes.FakeHypervisor(), fakes.FakeRecord()

    plan = rec.plan(fakes.state_of([POOL, seeds_pool, LAB, vm]), hv)

    change = next(c for c in plan.changes if c.key.kind == "VirtualMachine")
    assert "storagepool/seeds" in {str(k) for k in change.depends_on}
    [upload] = change.intended(actions.UploadSeed)
    assert upload.seed.pool == "seeds"


def test_first_boot_without_a_pool_is_refused_where_it_is_written(tmp_path: Path) -> None:
    manifest = tmp_path / "vm.yaml"
    manifest.write_text(
        "apiVersion: infinibay.io/v1alpha1\nkind: VirtualMachine\nmetadata: {name: web-1}\n"
        "spec:\n  firstBoot:\n    cloudInit: {userData: '#cloud-config'}\n"
    )

    with pytest.raises(errors.ManifestError) as info:
        loader.load([str(manifest)])

    assert info.value.messages == [
        f"{manifest}:5:3: VirtualMachine/web-1: spec.firstBoot: firstBoot needs a pool for its "
        "seed volume: set firstBoot.pool or give the VM a disk"
    ]
