"""``get``, ``describe``, ``events`` and ``history`` on a real record, through the real CLI.

The record is written directly through the Store API, as the planner and the
engine write it (manifest dump plus ``effective``, status, folded events), on
both backends (``db_url`` is SQLite and PostgreSQL). libvirt is
``test:///default`` for the record-centred tests, which must work there; one
test uses the real ``qemu:///system`` to prove the live overlay path runs, and
one an unreachable socket to prove the record-only fallback and its warning.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml
from click.testing import CliRunner, Result

from reconciler.cli import inspect as inspect_commands
from reconciler.cli import main
from reconciler.models import desired, effective, kinds, record
from reconciler.planning import targets
from reconciler.store import Store
from tests.integration.harness import Harness

pytestmark = pytest.mark.integration

TEST_DRIVER = "test:///default"
UNREACHABLE = "qemu+unix:///system?socket=/nonexistent/infinibay-test.sock"
API = kinds.API_VERSION
VM = record.ResourceKey("VirtualMachine", "web-1")


def _doc(kind: str, name: str, spec: dict[str, Any], **metadata: Any) -> dict[str, Any]:
    return {"apiVersion": API, "kind": kind, "metadata": {"name": name, **metadata}, "spec": spec}


TEMPLATE = _doc(
    "Template",
    "small",
    {
        "cpus": 1,
        "memory": "64MiB",
        "disks": [{"name": "root", "size": "16MiB", "pool": "default"}],
        "networks": [{"network": "lab"}],
    },
)
POOL = _doc("StoragePool", "default", {"path": "/var/lib/infinibay/pools/default"})
NETWORK = _doc(
    "Network",
    "lab",
    {"mode": "nat", "ipv4": {"address": "10.20.0.1/24"}},
)


def _vm(name: str = "web-1", labels: dict[str, str] | None = None, **spec: Any) -> dict[str, Any]:
    metadata_labels = {"team": "qa", **(labels or {})}
    return _doc("VirtualMachine", name, {"template": "small", **spec}, labels=metadata_labels)


def _apply(
    store: Store, *documents: dict[str, Any], revision: str | None = "main@sha1:aaaa"
) -> None:
    """Record documents as ``apply`` does: validated manifest dump, effective spec, hash."""
    manifests = [kinds.KINDS[kinds.Kind(d["kind"])].model_validate(d) for d in documents]
    templates = {m.metadata.name: m for m in manifests if isinstance(m, kinds.Template)}
    if not templates:
        template = kinds.Template.model_validate(TEMPLATE)
        templates[template.metadata.name] = template
    writes = []
    for index, manifest in enumerate(manifests):
        source = desired.Source(
            file="manifests.yaml", line=1, column=1, document=index, revision=revision
        )
        vm = None
        if isinstance(manifest, kinds.VirtualMachine):
            vm = effective.merge(manifest, templates.get(manifest.spec.template or ""))
        document = targets.spec_document(desired.Loaded(manifest, source), vm)
        writes.append(
            record.SpecWrite(
                key=record.ResourceKey(manifest.kind, manifest.metadata.name),
                spec=document,
                spec_hash=targets.spec_hash(document),
                labels=dict(manifest.metadata.labels),
                annotations=dict(manifest.metadata.annotations),
                source_file="manifests.yaml",
                source_document=index,
                source_revision=revision,
            )
        )
    store.apply_specs(writes)


def _ready(power: str | None = "Running", generation: int = 1) -> dict[str, Any]:
    status: dict[str, Any] = {
        "phase": "Ready",
        "observedGeneration": generation,
        "macs": {"lab": "52:54:00:00:00:10"},
        "conditions": [
            {
                "type": "Ready",
                "status": "True",
                "reason": "Converged",
                "message": "libvirt matches the spec",
                "lastTransitionTime": "2024-01-01T00:00:00+00:00",
            }
        ],
    }
    if power is not None:
        status["power"] = power
    return status


@pytest.fixture
def seeded(db_url: str) -> str:
    """A record with a pool, a network, a template, two VMs, statuses and events."""
    with Store.open(db_url) as store:
        _apply(store, POOL, NETWORK, TEMPLATE, _vm(cpus=2), _vm("db-1", memory="128MiB"))
        store.write_status(
            [
                record.StatusWrite(VM, _ready("Running")),
                record.StatusWrite(record.ResourceKey("VirtualMachine", "db-1"), _ready(None)),
                record.StatusWrite(
                    record.ResourceKey("StoragePool", "default"), {"phase": "Ready", "active": True}
                ),
            ]
        )
        store.record_events(
            [
                record.NewEvent(VM, record.EventType.NORMAL, "Created", "created domain web-1"),
                record.NewEvent(VM, record.EventType.NORMAL, "Started", "started"),
                record.NewEvent(
                    VM,
                    record.EventType.WARNING,
                    "DriftDetected",
                    "cpus changed [out of band]",
                    diff={"cpus": {"old": 2, "new": 1}},
                    revision="main@sha1:aaaa",
                ),
                record.NewEvent(
                    record.ResourceKey("VirtualMachine", "db-1"),
                    record.EventType.NORMAL,
                    "Created",
                    "created domain db-1",
                ),
            ]
        )
        store.record_events(
            [record.NewEvent(VM, record.EventType.NORMAL, "Started", "started")]
        )  # folds: count 2
    return db_url


def run(url: str, *args: str, uri: str = TEST_DRIVER) -> Result:
    return CliRunner().invoke(main.cli, ["--db", url, "-c", uri, *args])


def _rows(text: str) -> list[dict[str, str]]:
    """A table whose cells hold no spaces (every column but a last MESSAGE) as dicts."""
    header, *body = text.splitlines()
    titles = header.replace("LAST SEEN", "LAST-SEEN").split()
    return [dict(zip(titles, line.split(maxsplit=len(titles) - 1), strict=True)) for line in body]


# --- get ---------------------------------------------------------------------------


def test_get_vms_lists_the_record_with_status_columns(seeded: str) -> None:
    result = run(seeded, "get", "vms")
    assert result.exit_code == 0, result.output
    assert result.stdout.splitlines()[0].split() == [
        "NAME", "PHASE", "POWER", "CPUS", "MEMORY", "IP", "GRAPHICS", "AGE", "DRIFT",
    ]  # fmt: skip
    rows = {row["NAME"]: row for row in _rows(result.stdout)}
    assert set(rows) == {"web-1", "db-1"}
    web = rows["web-1"]
    assert [web[c] for c in ("PHASE", "POWER", "CPUS", "MEMORY")] == [
        "Ready",
        "Running",
        "2",
        "64MiB",
    ]
    assert web["AGE"].endswith("s")
    db = rows["db-1"]
    assert (db["POWER"], db["CPUS"], db["MEMORY"]) == ("-", "1", "128MiB")  # no power anywhere


@pytest.mark.parametrize("alias", ["vm", "vms", "virtualmachine", "VirtualMachines"])
def test_get_accepts_every_kind_alias(seeded: str, alias: str) -> None:
    result = run(seeded, "get", alias, "web-1")
    assert result.exit_code == 0, result.output
    assert _rows(result.stdout)[0]["NAME"] == "web-1"


def test_get_wide_adds_template_uuid_generations_and_source(seeded: str) -> None:
    result = run(seeded, "get", "vm", "web-1", "-o", "wide")
    assert result.exit_code == 0, result.output
    (row,) = _rows(result.stdout)
    assert (row["TEMPLATE"], row["GENERATION"], row["OBSERVED"]) == ("small", "1", "1")
    assert (row["SOURCE"], row["REVISION"]) == ("manifests.yaml", "main@sha1:aaaa")


def test_get_vm_json_is_one_documented_item(seeded: str) -> None:
    result = run(seeded, "get", "vm", "web-1", "-o", "json")
    assert result.exit_code == 0, result.output
    item = json.loads(result.stdout)
    assert list(item) == ["apiVersion", "kind", "metadata", "spec", "status"]
    assert (item["apiVersion"], item["kind"]) == (API, "VirtualMachine")
    metadata = item["metadata"]
    assert list(metadata) == [
        "name", "uid", "generation", "labels", "annotations", "creationTimestamp",
    ]  # fmt: skip
    assert (metadata["name"], metadata["generation"]) == ("web-1", 1)
    assert metadata["labels"] == {"team": "qa"}
    assert dt.datetime.fromisoformat(metadata["creationTimestamp"]).tzinfo is not None
    applied = kinds.VirtualMachine.model_validate(_vm(cpus=2))
    assert item["spec"] == applied.spec.model_dump(mode="json")
    status = item["status"]
    assert [status[f] for f in ("phase", "power", "observedGeneration")] == ["Ready", "Running", 1]
    assert {"ips", "graphicsPort", "drift", "conditions", "macs"} <= set(status)
    assert status["conditions"][0]["type"] == "Ready"


def test_get_vms_json_is_a_list_and_yaml_is_the_same_document(seeded: str) -> None:
    as_json = run(seeded, "get", "vms", "-o", "json")
    as_yaml = run(seeded, "get", "vms", "-o", "yaml")
    assert as_json.exit_code == as_yaml.exit_code == 0, as_json.output + as_yaml.output
    document = json.loads(as_json.stdout)
    assert (document["apiVersion"], document["kind"]) == (API, "List")
    assert [i["metadata"]["name"] for i in document["items"]] == ["db-1", "web-1"]
    assert yaml.safe_load(as_yaml.stdout) == document


def test_get_templates_networks_and_pools_have_their_own_columns(seeded: str) -> None:
    templates = run(seeded, "get", "tpl")
    assert templates.exit_code == 0, templates.output
    assert _rows(templates.stdout) == [
        {"NAME": "small", "CPUS": "1", "MEMORY": "64MiB", "DISKS": "1", "USED-BY": "2",
         "AGE": _rows(templates.stdout)[0]["AGE"]},
    ]  # fmt: skip
    networks = run(seeded, "get", "net")
    assert networks.exit_code == 0, networks.output
    (net,) = _rows(networks.stdout)
    assert (net["NAME"], net["MODE"], net["BRIDGE"], net["ADDRESS"]) == (
        "lab", "nat", "ib-lab", "10.20.0.1/24",
    )  # fmt: skip
    pools = run(seeded, "get", "storagepools")
    assert pools.exit_code == 0, pools.output
    (pool,) = _rows(pools.stdout)
    assert (pool["PATH"], pool["AUTOSTART"]) == ("/var/lib/infinibay/pools/default", "yes")


def test_get_of_a_name_not_in_the_record_exits_1_with_one_line(seeded: str) -> None:
    result = run(seeded, "get", "vm", "nope")
    assert result.exit_code == 1
    assert result.stderr == "error: virtualmachine/nope not found\n"
    assert result.stdout == ""


def test_get_of_an_empty_kind_exits_0_and_says_so_on_stderr(db_url: str) -> None:
    Store.open(db_url).close()  # an empty record: without one, get says there is none
    result = run(db_url, "get", "vms")
    assert result.exit_code == 0, result.output
    assert (result.stdout, result.stderr) == ("", "No virtual machines found.\n")
    assert json.loads(run(db_url, "get", "vms", "-o", "json").stdout)["items"] == []


def test_get_of_an_unknown_kind_is_a_usage_error(seeded: str) -> None:
    result = run(seeded, "get", "vmz")
    assert result.exit_code == 1
    assert "unknown kind 'vmz'; did you mean 'vm'" in result.stderr


def test_unreachable_libvirt_still_shows_the_record_and_warns_once(seeded: str) -> None:
    result = run(seeded, "get", "vms", uri=UNREACHABLE)
    assert result.exit_code == 0, result.output
    rows = {row["NAME"]: row for row in _rows(result.stdout)}
    assert (rows["web-1"]["POWER"], rows["web-1"]["DRIFT"]) == ("Running", "-")
    warnings = result.stderr.splitlines()
    assert len(warnings) == 1
    assert warnings[0].startswith(f"warning: libvirt at {UNREACHABLE} was not observed (")
    assert warnings[0].endswith("showing the record only")
    item = json.loads(run(seeded, "get", "vm", "web-1", "-o", "json", uri=UNREACHABLE).stdout)
    assert item["status"]["drift"] is None


def test_live_overlay_on_real_libvirt_keeps_record_power_for_a_vm_it_does_not_have(
    db_url: str, libvirt_uri: str, prefix: str
) -> None:
    stopped, unknown = f"{prefix}off", f"{prefix}new"
    with Store.open(db_url) as store:
        _apply(store, TEMPLATE, _vm(stopped), _vm(unknown))
        store.write_status(
            [
                record.StatusWrite(
                    record.ResourceKey("VirtualMachine", stopped), _ready("Stopped")
                ),
                record.StatusWrite(
                    record.ResourceKey("VirtualMachine", unknown), {"phase": "Pending"}
                ),
            ]
        )
    result = run(db_url, "get", "vms", uri=libvirt_uri)
    assert result.exit_code == 0, result.output
    assert result.stderr == ""  # libvirt was observed: no fallback warning
    rows = {row["NAME"]: row for row in _rows(result.stdout)}
    assert rows[stopped]["POWER"] == "Stopped"
    assert rows[unknown]["POWER"] == "-"
    # A converged VM whose domain is gone has drifted; one never converged has not.
    assert (rows[stopped]["DRIFT"], rows[unknown]["DRIFT"]) == ("yes", "no")
    assert (rows[stopped]["IP"], rows[stopped]["GRAPHICS"]) == ("-", "-")
    item = json.loads(run(db_url, "get", "vm", unknown, "-o", "json", uri=libvirt_uri).stdout)
    assert item["status"]["drift"] is False
    assert item["status"]["power"] is None


def test_get_overlays_live_power_graphics_and_drift_of_applied_domains(h: Harness) -> None:
    h.write(h.pool(), h.network(), h.template(), h.vm("run"), h.vm("off", powerState="Stopped"))
    applied = h.apply()
    assert applied.exit_code == 0, applied.output
    result = h.run("get", "vms")
    assert result.exit_code == 0, result.output
    assert result.stderr == ""
    rows = {row["NAME"]: row for row in _rows(result.stdout)}
    run, off = rows[h.name("run")], rows[h.name("off")]
    graphics = h.domain_xml("run", inactive=False).find("devices/graphics")
    assert graphics is not None
    port = graphics.get("port")
    assert (run["POWER"], run["GRAPHICS"], run["DRIFT"]) == ("Running", f"vnc:{port}", "no"), (
        result.stdout
    )
    assert (off["POWER"], off["GRAPHICS"], off["DRIFT"]) == ("Stopped", "-", "no"), result.stdout

    h.domain("run").destroy()  # out of band, as `virsh destroy` would
    after = h.run("get", "vms")
    rows = {row["NAME"]: row for row in _rows(after.stdout)}
    assert (rows[h.name("run")]["POWER"], rows[h.name("run")]["DRIFT"]) == ("Stopped", "yes"), (
        after.output
    )
    item = json.loads(h.run("get", "vm", h.name("run"), "-o", "json").stdout)
    assert (item["status"]["power"], item["status"]["drift"]) == ("Stopped", True)
    assert item["status"]["uuid"] == h.domain("run").UUIDString()
    network = _rows(h.run("get", "networks").stdout)[0]
    assert (network["BRIDGE"], network["ACTIVE"]) == (h.bridge(), "yes")


# --- describe ----------------------------------------------------------------------


def test_describe_vm_shows_spec_effective_status_conditions_and_events(seeded: str) -> None:
    result = run(seeded, "describe", "vm", "web-1")
    assert result.exit_code == 0, result.output
    text = result.stdout
    for line in [
        "Name:                 web-1",
        "Kind:                 VirtualMachine",
        "Generation:           1",
        "Observed Generation:  1",
        "Source:               manifests.yaml (document 3), revision main@sha1:aaaa",
        "Labels:               team=qa",
        "Annotations:          <none>",
        "Spec:",
        "  cpus: 2",
        "  template: small",
        "Effective Spec:",
        "  memory: 64MiB",
        "  Phase:              Ready",
        "  Power:              Running",
        "  MACs:               lab=52:54:00:00:00:10",
    ]:
        assert line in text.splitlines(), line
    conditions = text.split("Conditions:\n")[1].split("Events:\n")[0]
    (condition,) = _rows("\n".join(line.strip() for line in conditions.splitlines()))
    assert [condition[c] for c in ("TYPE", "STATUS", "REASON")] == ["Ready", "True", "Converged"]
    events = _rows("\n".join(line.strip() for line in text.split("Events:\n")[1].splitlines()))
    assert [(e["REASON"], e["COUNT"]) for e in events] == [
        ("Created", "1"), ("DriftDetected", "1"), ("Started", "2"),
    ]  # fmt: skip
    assert events[1]["MESSAGE"].endswith("cpus changed [out of band]")


def test_describe_template_lists_the_vms_using_it_without_touching_libvirt(seeded: str) -> None:
    result = run(seeded, "describe", "template", "small", uri=UNREACHABLE)
    assert result.exit_code == 0, result.output
    assert "  Used By:            db-1, web-1" in result.stdout.splitlines()
    assert result.stderr == ""


def test_describe_of_a_name_not_in_the_record_exits_1(seeded: str) -> None:
    result = run(seeded, "describe", "net", "nope")
    assert result.exit_code == 1
    assert result.stderr == "error: network/nope not found\n"


# --- events ------------------------------------------------------------------------


def test_events_table_lists_every_object_with_folded_counts(seeded: str) -> None:
    result = run(seeded, "events")
    assert result.exit_code == 0, result.output
    rows = _rows(result.stdout)
    assert result.stdout.splitlines()[0].split() == [
        "LAST", "SEEN", "TYPE", "REASON", "OBJECT", "COUNT", "ACTOR", "MESSAGE",
    ]  # fmt: skip
    assert {r["ACTOR"] for r in rows} == {"-"}  # written with no actor
    seen = {(r["OBJECT"], r["REASON"]): (r["TYPE"], r["COUNT"]) for r in rows}
    assert seen == {
        ("virtualmachine/web-1", "Created"): ("Normal", "1"),
        ("virtualmachine/web-1", "DriftDetected"): ("Warning", "1"),
        ("virtualmachine/web-1", "Started"): ("Normal", "2"),
        ("virtualmachine/db-1", "Created"): ("Normal", "1"),
    }
    assert rows[-1]["REASON"] == "Started"  # oldest first: the repeat moved it last


def test_events_of_one_object_as_json_lines(seeded: str) -> None:
    result = run(seeded, "events", "vm/web-1", "-o", "json")
    assert result.exit_code == 0, result.output
    lines = [json.loads(line) for line in result.stdout.splitlines()]
    assert [e["reason"] for e in lines] == ["Created", "DriftDetected", "Started"]
    drift = lines[1]
    assert list(drift) == [
        "id", "time", "firstSeen", "type", "reason", "object", "message", "count", "diff",
        "revision", "run", "actor",
    ]  # fmt: skip
    assert drift["object"]["kind"] == "VirtualMachine" and drift["object"]["name"] == "web-1"
    assert drift["object"]["uid"]
    assert (drift["type"], drift["diff"], drift["revision"]) == (
        "Warning", {"cpus": {"old": 2, "new": 1}}, "main@sha1:aaaa",
    )  # fmt: skip
    assert lines[2]["count"] == 2
    assert dt.datetime.fromisoformat(lines[2]["time"]) >= dt.datetime.fromisoformat(
        lines[2]["firstSeen"]
    )


def test_events_since_and_limit_filter(seeded: str) -> None:
    recent = run(seeded, "events", "--since", "1h", "-o", "json")
    assert recent.exit_code == 0, recent.output
    assert len(recent.stdout.splitlines()) == 4
    future = (dt.datetime.now(dt.UTC) + dt.timedelta(hours=1)).isoformat()
    later = run(seeded, "events", "--since", future)
    assert later.exit_code == 0, later.output
    assert (later.stdout, later.stderr) == ("", "No events found.\n")
    newest = run(seeded, "events", "--limit", "1", "-o", "json")
    assert [json.loads(line)["reason"] for line in newest.stdout.splitlines()] == ["Started"]
    bad = run(seeded, "events", "--since", "yesterday")
    assert bad.exit_code == 1
    assert "'yesterday' is neither a duration" in bad.stderr


def test_events_follow_prints_new_and_repeated_events_until_interrupted(
    seeded: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    polls: list[int] = []

    def wait(_seconds: float) -> None:
        polls.append(1)
        if len(polls) == 1:
            with Store.open(seeded) as store:
                store.record_events(
                    [
                        record.NewEvent(VM, record.EventType.NORMAL, "Stopped", "stopped"),
                        record.NewEvent(VM, record.EventType.NORMAL, "Started", "started"),
                    ]
                )
        elif len(polls) == 3:
            raise KeyboardInterrupt

    monkeypatch.setattr(inspect_commands, "_wait", wait)
    result = run(seeded, "events", "vm/web-1", "--follow", "-o", "json")
    assert result.exit_code == 0, result.output
    reasons = [(e["reason"], e["count"]) for e in map(json.loads, result.stdout.splitlines())]
    # The three known events, then the new one and the repeat folded into an old row,
    # each once: the second poll found nothing new.
    assert reasons == [
        ("Created", 1), ("DriftDetected", 1), ("Started", 2), ("Started", 3), ("Stopped", 1),
    ]  # fmt: skip
    assert len(polls) == 3


def test_events_of_an_object_without_events_is_empty_not_an_error(seeded: str) -> None:
    result = run(seeded, "events", "pool/default")
    assert result.exit_code == 0
    assert result.stderr == "No events found.\n"


# --- history -----------------------------------------------------------------------


def test_history_shows_each_revision_with_its_field_diff(seeded: str) -> None:
    with Store.open(seeded) as store:
        _apply(store, _vm(cpus=4, labels={"tier": "web"}), revision=None)
    result = run(seeded, "history", "vm/web-1")
    assert result.exit_code == 0, result.output
    first, second = result.stdout.split("\n\n")
    assert first.splitlines()[0] == "Generation 1"
    assert "  Revision:           main@sha1:aaaa" in first.splitlines()
    assert "  Changes:            created" in first.splitlines()
    lines = second.splitlines()
    assert lines[0] == "Generation 2"
    assert "  Revision:           -" in lines
    assert "  Source:             manifests.yaml" in lines
    assert "    ~ spec.cpus: 2 -> 4" in lines
    assert not any("effective." in line for line in lines)  # derived: manifest names only
    assert "    + metadata.labels.tier: web" in lines


def test_history_json_lists_revisions_with_changes(seeded: str) -> None:
    with Store.open(seeded) as store:
        _apply(store, _vm(cpus=3), revision="main@sha1:bbbb")
    result = run(seeded, "history", "virtualmachine/web-1", "-o", "json")
    assert result.exit_code == 0, result.output
    document = json.loads(result.stdout)
    assert (document["kind"], document["object"]) == (
        "History", {"kind": "VirtualMachine", "name": "web-1"},
    )  # fmt: skip
    assert document["deletedAt"] is None
    first, second = document["revisions"]
    assert (first["generation"], first["changes"]) == (1, [])
    assert (second["generation"], second["revision"]) == (2, "main@sha1:bbbb")
    assert {"path": "spec.cpus", "op": "changed", "old": 2, "new": 3} in second["changes"]


def test_history_outlives_deletion_and_says_when(seeded: str) -> None:
    with Store.open(seeded) as store:
        store.tombstone([VM])
    result = run(seeded, "history", "vm/web-1")
    assert result.exit_code == 0, result.output
    assert result.stdout.splitlines()[-1].startswith("Deleted ")
    assert run(seeded, "get", "vm", "web-1").exit_code == 1


def test_history_of_a_resource_that_never_existed_exits_1(seeded: str) -> None:
    result = run(seeded, "history", "vm/nope")
    assert result.exit_code == 1
    assert result.stderr == "error: virtualmachine/nope not found\n"
    assert run(seeded, "history", "web-1").exit_code == 1  # not KIND/NAME: usage error


def test_the_installed_console_script_prints_the_same_table_and_errors(seeded: str) -> None:
    infinibay = Path(sys.executable).with_name("infinibay")
    env = {**os.environ, "INFINIBAY_DATABASE_URL": seeded, "INFINIBAY_LIBVIRT_URI": TEST_DRIVER}

    def real(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [str(infinibay), *args],
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )

    listed = real("get", "vms")
    assert listed.returncode == 0, listed.stderr
    ageless = [{k: v for k, v in row.items() if k != "AGE"} for row in _rows(listed.stdout)]
    assert ageless == [
        {k: v for k, v in row.items() if k != "AGE"}
        for row in _rows(run(seeded, "get", "vms").stdout)
    ]
    missing = real("describe", "vm", "nope")
    assert (missing.returncode, missing.stdout, missing.stderr) == (
        1,
        "",
        "error: virtualmachine/nope not found\n",
    )
