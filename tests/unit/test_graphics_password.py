"""A generated display password: planned as a yes/no field, rendered, patched, never shown."""

from __future__ import annotations

import json
from typing import Any

from lxml import etree

from reconciler.hypervisor import graphics, patch, projection, xml
from reconciler.models import console, kinds, observed
from reconciler.planning import actions
from tests.unit import fakes
from tests.unit.test_planner import LAB, POOL, _converged, _fields, _only, _plan, _vm

Impact = actions.Impact
OWNER = observed.Ownership("VirtualMachine", "web-1", "inst", "hash")
GENERATE = {"type": "vnc", "password": "generate"}


def _shape(
    *, kind: kinds.GraphicsType = kinds.GraphicsType.VNC, password: bool
) -> observed.VmShape:
    return observed.VmShape(
        cpus=1,
        memory=64 << 20,
        firmware=kinds.Firmware.BIOS,
        machine=kinds.Machine.Q35,
        graphics_type=kind,
        graphics_listen="127.0.0.1",
        disks=(),
        nics=(),
        autostart=False,
        graphics_password=password,
    )


def _passwd(document: str) -> str | None:
    found = etree.fromstring(document.encode()).find("devices/graphics")
    assert found is not None
    return found.get("passwd")


def test_a_new_domain_gets_the_given_password_and_projects_as_having_one() -> None:
    document = xml.render_domain(
        "web-1",
        _shape(password=True),
        domain_type="qemu",
        owner=OWNER,
        graphics_password="Ab3dEf9h",
    )

    assert _passwd(document) == "Ab3dEf9h"
    assert projection.parse_domain(document, autostart=False)[2].graphics_password


def test_a_patch_keeps_an_existing_password_sets_a_missing_one_and_removes_an_unwanted_one() -> (
    None
):
    with_one = xml.render_domain(
        "web-1",
        _shape(password=True),
        domain_type="qemu",
        owner=OWNER,
        graphics_password="Keep1234",
    )
    without = xml.render_domain("web-1", _shape(password=False), domain_type="qemu", owner=OWNER)

    kept = patch.patch_domain(
        with_one, _shape(password=True), owner=OWNER, graphics_password="New12345"
    )
    set_now = patch.patch_domain(
        without, _shape(password=True), owner=OWNER, graphics_password="New12345"
    )
    removed = patch.patch_domain(with_one, _shape(password=False), owner=OWNER)

    assert (_passwd(kept), _passwd(set_now), _passwd(removed)) == ("Keep1234", "New12345", None)


def test_a_spice_password_too_long_for_vnc_is_replaced_when_the_display_becomes_vnc() -> None:
    spice = _shape(kind=kinds.GraphicsType.SPICE, password=True)
    long = graphics.new_password(kinds.GraphicsType.SPICE)
    document = xml.render_domain(
        "web-1", spice, domain_type="qemu", owner=OWNER, graphics_password=long
    )

    patched = patch.patch_domain(
        document, _shape(password=True), owner=OWNER, graphics_password="Vnc12345"
    )

    assert len(long) == 24 and _passwd(patched) == "Vnc12345"


def test_generated_passwords_are_random_and_fit_their_display() -> None:
    vnc = {graphics.new_password(kinds.GraphicsType.VNC) for _ in range(50)}
    assert len(vnc) == 50 and all(len(p) == 8 and p.isalnum() for p in vnc)
    assert graphics.fits(kinds.GraphicsType.SPICE, "x" * 24)
    assert not graphics.fits(kinds.GraphicsType.VNC, "x" * 9)


def test_setting_a_password_is_live_and_the_running_display_takes_it_in_place() -> None:
    hv, rec = _converged(POOL, LAB, _vm())

    change = _only(_plan(hv, rec, POOL, LAB, _vm(graphics=GENERATE)))

    assert _fields(change) == {"graphics.password": ("none", "generate", Impact.LIVE)}
    assert change.intends(actions.Patch) and change.intends(actions.SyncGraphicsPassword)


def test_once_set_the_password_is_stable_and_never_in_the_plan_or_record() -> None:
    hv, rec = _converged(POOL, LAB, _vm(graphics=GENERATE))
    document = hv.domains["web-1"].document
    password = _passwd(document)

    plan = _plan(hv, rec, POOL, LAB, _vm(graphics=GENERATE))

    assert plan.empty
    assert password and len(password) == 8
    assert password not in json.dumps(
        [r.spec for r in rec.records] + [r.status for r in rec.records]
    )
    assert hv.domains["web-1"].live is not None and hv.domains["web-1"].live.graphics_password


def test_removing_a_password_from_a_running_vm_waits_for_a_restart() -> None:
    hv, rec = _converged(POOL, LAB, _vm(graphics=GENERATE))

    change = _only(_plan(hv, rec, POOL, LAB, _vm(graphics={"type": "vnc", "password": "none"})))

    assert _fields(change) == {"graphics.password": ("set", "none", Impact.RESTART)}
    assert not change.intends(actions.SyncGraphicsPassword)


def test_a_manifest_silent_on_the_password_keeps_the_one_the_display_has() -> None:
    hv, rec = _converged(POOL, LAB, _vm(graphics=GENERATE))
    password = _passwd(hv.domains["web-1"].document)

    plan = _plan(hv, rec, POOL, LAB, _vm())

    assert [f.path for c in plan.changes for f in c.fields if f.path != "spec"] == []
    assert _passwd(hv.domains["web-1"].document) == password


def test_a_password_comes_from_the_template_and_a_vm_can_turn_it_off() -> None:
    template: dict[str, Any] = {
        "kind": "Template",
        "metadata": {"name": "desk"},
        "spec": {"graphics": GENERATE},
    }
    state = fakes.state_of([POOL, LAB, template, _vm(template="desk")])
    assert state.effective_vms["web-1"].graphics_password is kinds.GraphicsPassword.GENERATE
    off = _vm(template="desk", graphics={"password": "none"})
    assert fakes.state_of([POOL, LAB, template, off]).effective_vms["web-1"].graphics_password is (
        kinds.GraphicsPassword.NONE
    )


def test_the_console_uri_and_vv_file_carry_the_password_and_repr_does_not() -> None:
    found = console.Console(kinds.GraphicsType.SPICE, "127.0.0.1", 5901, "p@ss word")

    assert found.uri == "spice://127.0.0.1:5901?password=p%40ss+word"
    assert "password=p@ss word\n" in found.vv("web-1")
    assert found.vv("web-1").startswith("[virt-viewer]\ntype=spice\nhost=127.0.0.1\nport=5901\n")
    assert "p@ss" not in repr(found)
    assert console.Console(kinds.GraphicsType.VNC, "::1", 5900, "").uri == "vnc://[::1]:5900"
