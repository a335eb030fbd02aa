"""Each kind has its own view; the CLI's and the API's JSON of a resource are one shape."""

from __future__ import annotations

import dataclasses
import datetime as dt
from typing import Any

import pytest

from reconciler.cli import views
from reconciler.cli.views import department, host, network, policy, pool, template, vm
from reconciler.models import documents, kinds, record

NOW = dt.datetime(2024, 5, 1, 12, 0, 0, tzinfo=dt.UTC)
K = kinds.Kind


def _record(kind: kinds.Kind, name: str, spec: dict[str, Any]) -> record.ResourceRecord:
    return record.ResourceRecord(
        key=record.ResourceKey(kind.value, name),
        uid=f"uid-{name}",
        generation=1,
        spec={
            "apiVersion": kinds.API_VERSION,
            "kind": kind.value,
            "metadata": {"name": name},
            "spec": spec,
        },
        spec_hash="h",
        source_file="site.yaml",
        source_document=3,
        source_revision="main@sha1:abc",
        labels={"team": "qa"},
        annotations={},
        status={"phase": "Ready", "observedGeneration": 1},
        created_at=NOW - dt.timedelta(minutes=5),
        updated_at=NOW,
        deleted_at=None,
    )


RECORDS = {
    K.STORAGE_POOL: _record(K.STORAGE_POOL, "default", {"path": "/var/lib/ib"}),
    K.NETWORK: _record(K.NETWORK, "lab", {"mode": "isolated"}),
    K.TEMPLATE: _record(K.TEMPLATE, "small", {"cpus": 1}),
    K.VIRTUAL_MACHINE: _record(K.VIRTUAL_MACHINE, "web-1", {"template": "small"}),
    K.FIREWALL_POLICY: _record(K.FIREWALL_POLICY, "base", {"presets": ["block-ssh"]}),
    K.DEPARTMENT: _record(K.DEPARTMENT, "eng", {"network": "lab", "firewall": "base"}),
    K.HOST: _record(K.HOST, "hv-2", {"uri": "qemu+ssh://root@hv-2/system"}),
}


@pytest.mark.parametrize(
    ("kind", "module_view"),
    [
        (K.STORAGE_POOL, pool.PoolView),
        (K.NETWORK, network.NetworkView),
        (K.TEMPLATE, template.TemplateView),
        (K.VIRTUAL_MACHINE, vm.VmView),
        (K.FIREWALL_POLICY, policy.PolicyView),
        (K.DEPARTMENT, department.DepartmentView),
        (K.HOST, host.HostView),
    ],
)
def test_each_kind_is_shown_by_its_own_view(kind: kinds.Kind, module_view: type[Any]) -> None:
    assert isinstance(views.view(kind), module_view)


def test_no_kind_is_shown_as_another_kinds_table() -> None:
    headers = {kind: tuple(views.view(kind).columns(wide=False)) for kind in K}
    assert len(set(headers.values())) == len(K)
    everything = list(RECORDS.values())
    for kind, rec in RECORDS.items():
        shown, rows = views.table_rows(kind, [rec], everything, views.Live(""), NOW, wide=True)
        assert len(rows[0]) == len(shown)
        assert tuple(shown[: len(headers[kind])]) == headers[kind]
    assert headers[K.TEMPLATE] == ("NAME", "CPUS", "MEMORY", "DISKS", "USED-BY", "AGE")
    assert headers[K.STORAGE_POOL][:3] == ("NAME", "PHASE", "PATH")


def test_only_kinds_kept_in_the_record_alone_need_no_libvirt_observation() -> None:
    record_only = {K.TEMPLATE, K.DEPARTMENT, K.FIREWALL_POLICY, K.HOST}
    assert {kind for kind in K if not views.view(kind).observes} == record_only


@pytest.mark.parametrize("kind", list(K))
def test_the_cli_and_the_api_print_one_shape_of_a_resource(kind: kinds.Kind) -> None:
    rec = RECORDS[kind]
    cli = views.item(rec, list(RECORDS.values()), views.Live(""))
    api = documents.resource(rec)
    # One function builds both; the API adds where the manifest was read.
    assert list(cli) == ["apiVersion", "kind", "metadata", "spec", "status"]
    assert list(api) == [*cli, "source"]
    assert {k: v for k, v in cli.items() if k != "status"} == {
        k: v for k, v in api.items() if k not in ("status", "source")
    }
    assert api["source"] == {"file": "site.yaml", "document": 3, "revision": "main@sha1:abc"}
    # The CLI overlays libvirt's view on the record's status; the API serves the record's.
    assert api["status"] == rec.status
    assert {k: cli["status"][k] for k in rec.status} == rec.status
    assert "drift" in cli["status"] and "drift" not in api["status"]


def test_a_template_document_names_the_vms_that_use_it() -> None:
    rec = RECORDS[K.TEMPLATE]
    status = views.item(rec, list(RECORDS.values()), views.Live(""))["status"]
    assert (status["usedBy"], status["drift"]) == (["web-1"], False)
    unused = dataclasses.replace(rec, key=record.ResourceKey("Template", "big"))
    assert views.item(unused, list(RECORDS.values()), views.Live(""))["status"]["usedBy"] == []
