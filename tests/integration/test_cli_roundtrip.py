"""What the CLI prints reads back: ``get -o yaml`` re-applies, drift says declared and found.

Real ``infinibay`` processes against the real libvirtd. ``get vm NAME -o yaml``
piped into ``apply -f -`` is accepted: the fields the reconciler sets (``uid``,
``generation``, ``creationTimestamp``, ``status``) are ignored with one located
notice, and nothing changes. So is the ``kind: List`` that ``get vms -o yaml``
(or ``-o json``) prints, item by item, and a mistake inside an item is one
located line. A guest stopped behind the reconciler's back is
planned as ``powerState: declared Running, found Stopped``, and the
``DriftDetected`` event reads the same way.
"""

from __future__ import annotations

import libvirt
import pytest
import yaml

from reconciler.models import record
from tests.integration.harness import Harness

pytestmark = pytest.mark.integration


def test_get_yaml_of_a_vm_is_applied_back_unchanged_with_a_notice(h: Harness) -> None:
    h.write(h.pool(), h.network(), h.template(), h.vm("web", powerState="Stopped"))
    applied = h.cli("apply", "-f", str(h.workdir))
    assert applied.returncode == 0, applied.stdout + applied.stderr

    shown = h.cli("get", "vm", h.name("web"), "-o", "yaml")
    assert shown.returncode == 0, shown.stderr
    document = yaml.safe_load(shown.stdout)
    assert {"uid", "generation", "creationTimestamp"} <= set(document["metadata"])

    planned = h.cli("plan", "-f", "-", stdin=shown.stdout)
    assert planned.returncode == 0, planned.stdout + planned.stderr
    again = h.cli("apply", "-f", "-", stdin=shown.stdout)
    assert again.returncode == 0, again.stdout + again.stderr
    assert "Nothing to do: everything is converged." in again.stdout
    notice = (
        f"VirtualMachine/{h.name('web')}: metadata.uid, metadata.generation, "
        "metadata.creationTimestamp: set by the reconciler, ignored"
    )
    assert notice in again.stderr
    assert again.stderr.startswith("note: -:")
    with h.store() as store:
        rec = store.get(record.ResourceKey("VirtualMachine", h.name("web")))
        assert rec is not None and rec.generation == document["metadata"]["generation"]


def test_get_vms_yaml_lists_what_apply_reads_back_as_a_no_op(h: Harness) -> None:
    h.write(
        h.pool(),
        h.network(),
        h.template(),
        h.vm("web", powerState="Stopped"),
        h.vm("db", powerState="Stopped"),
    )
    applied = h.cli("apply", "-f", str(h.workdir))
    assert applied.returncode == 0, applied.stdout + applied.stderr

    shown = h.cli("get", "vms", "-o", "yaml")
    assert shown.returncode == 0, shown.stderr
    listed = yaml.safe_load(shown.stdout)
    assert listed["kind"] == "List"
    assert {item["metadata"]["name"] for item in listed["items"]} == {h.name("web"), h.name("db")}

    for command in ("validate", "plan"):
        done = h.cli(command, "-f", "-", stdin=shown.stdout)
        assert done.returncode == 0, done.stdout + done.stderr
    again = h.cli("apply", "-f", "-", stdin=shown.stdout)
    assert again.returncode == 0, again.stdout + again.stderr
    assert "Nothing to do: everything is converged." in again.stdout
    notices = [line for line in again.stderr.splitlines() if "set by the reconciler" in line]
    assert len(notices) == 2, again.stderr
    for short in ("web", "db"):
        assert any(f"VirtualMachine/{h.name(short)}: metadata.uid" in n for n in notices)

    as_json = h.cli("get", "vms", "-o", "json")
    assert as_json.returncode == 0, as_json.stderr
    again = h.cli("apply", "-f", "-", stdin=as_json.stdout)
    assert again.returncode == 0, again.stdout + again.stderr
    assert "Nothing to do: everything is converged." in again.stdout


def test_an_invalid_field_inside_a_listed_item_is_one_located_line(h: Harness) -> None:
    h.write(
        h.pool(),
        h.network(),
        h.template(),
        h.vm("web", powerState="Stopped"),
        h.vm("db", powerState="Stopped"),
    )
    assert h.cli("apply", "-f", str(h.workdir)).returncode == 0
    listed = yaml.safe_load(h.cli("get", "vms", "-o", "yaml").stdout)
    item = next(i for i in listed["items"] if i["metadata"]["name"] == h.name("web"))
    item["spec"]["cpuss"] = 2
    text = yaml.safe_dump(listed, sort_keys=False)
    line = next(n for n, row in enumerate(text.splitlines(), 1) if "cpuss: 2" in row)
    column = text.splitlines()[line - 1].index("cpuss") + 1
    path = h.workdir.parent / "listed.yaml"
    path.write_text(text)

    for source, stdin in (("-", text), (str(path), None)):
        done = h.cli("apply", "-f", source, stdin=stdin)
        assert done.returncode == 1, done.stdout + done.stderr
        assert done.stderr.splitlines() == [
            f"{source}:{line}:{column}: VirtualMachine/{h.name('web')}: spec.cpuss: unknown "
            "field 'cpuss'; did you mean 'cpus'?",
            "error: 1 invalid manifest entry; nothing was applied",
        ], done.stderr
        assert "Traceback" not in done.stderr


def test_drift_reads_declared_then_found_in_the_plan_and_the_event(h: Harness) -> None:
    h.write(h.pool(), h.network(), h.template(), h.vm("web"))
    applied = h.cli("apply", "-f", str(h.workdir), "--shutdown-timeout", "1")
    assert applied.returncode == 0, applied.stdout + applied.stderr
    h.domain("web").destroy()

    plan = h.cli("plan", "-f", str(h.workdir))
    assert plan.returncode == 2, plan.stdout + plan.stderr
    assert "    powerState: declared Running, found Stopped (live)" in plan.stdout
    assert "Stopped -> Running" not in plan.stdout

    healed = h.cli("apply", "-f", str(h.workdir), "--shutdown-timeout", "1")
    assert healed.returncode == 0, healed.stdout + healed.stderr
    assert h.state("web") == libvirt.VIR_DOMAIN_RUNNING
    with h.store() as store:
        events = store.events(record.ResourceKey("VirtualMachine", h.name("web")))
    detected = [e.message for e in events if e.reason == "DriftDetected"]
    assert detected == ["out-of-band change: powerState: declared Running, found Stopped"]


def test_describe_and_history_use_manifest_names_and_sizes(h: Harness) -> None:
    h.write(h.pool(), h.network(), h.template(), h.vm("web", powerState="Stopped", memory="64MiB"))
    assert h.cli("apply", "-f", str(h.workdir)).returncode == 0
    h.write(
        h.pool(),
        h.network(),
        h.template(),
        h.vm("web", powerState="Stopped", memory="128MiB"),
    )
    assert h.cli("apply", "-f", str(h.workdir)).returncode == 0

    described = h.cli("describe", "vm", h.name("web"))
    assert described.returncode == 0, described.stderr
    text = described.stdout
    for internal in ("graphics_type", "graphics_listen", "reclaim:", "nics:", "image_pool"):
        assert internal not in text, text
    for named in ("graphics:", "type: vnc", "networks:", "reclaimPolicy: Retain", "128MiB"):
        assert named in text, text

    history = h.cli("history", f"vm/{h.name('web')}")
    assert history.returncode == 0, history.stderr
    assert "~ spec.memory: 64MiB -> 128MiB" in history.stdout, history.stdout
    assert str(64 * 1024 * 1024) not in history.stdout
    assert "effective." not in history.stdout
