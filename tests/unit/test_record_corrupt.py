"""A record that does not hold what was written there fails with one typed, located line.

Where the record's values are parsed (a recorded spec into its manifest, an
effective disk, an event's type, a run's trigger), a corrupt value raises
:class:`reconciler.errors.RecordCorrupt` naming the resource and the field;
no validation error of the parsing library crosses the layer.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pydantic
import pytest
from sqlalchemy import update

from reconciler import errors
from reconciler.engine import recorded
from reconciler.manifests import loader
from reconciler.models import effective, kinds, record
from reconciler.store import schema
from reconciler.store import store as store_module

_NOW = dt.datetime(2026, 12, 1, tzinfo=dt.UTC)


def _recorded(kind: str, name: str, spec: dict[str, Any]) -> record.ResourceRecord:
    document = {"apiVersion": kinds.API_VERSION, "kind": kind, "metadata": {"name": name}}
    return record.ResourceRecord(
        key=record.ResourceKey(kind, name),
        uid=f"uid-{name}",
        generation=1,
        spec={**document, "spec": spec},
        spec_hash="0" * 16,
        source_file="vm.yaml",
        source_document=0,
        source_revision=None,
        labels={},
        annotations={},
        status={},
        created_at=_NOW,
        updated_at=_NOW,
        deleted_at=None,
    )


def _one_line_corrupt(info: pytest.ExceptionInfo[errors.RecordCorrupt]) -> str:
    message = str(info.value)
    assert "\n" not in message
    assert not isinstance(info.value.__cause__, errors.InfinibayError)
    return message


def test_a_valid_recorded_spec_parses_back_into_its_manifest() -> None:
    rec = _recorded("Network", "lab", {"mode": "isolated"})

    manifest = record.manifest(rec)

    assert isinstance(manifest, kinds.Network)
    assert manifest.metadata.name == "lab"


def test_a_recorded_spec_with_a_corrupt_field_names_the_resource_and_the_field() -> None:
    rec = _recorded("Network", "lab", {"mode": "sideways"})

    with pytest.raises(errors.RecordCorrupt) as info:
        record.manifest(rec)

    message = _one_line_corrupt(info)
    assert message.startswith("the spec of network/lab in the record is corrupt at spec.mode: ")
    assert isinstance(info.value.__cause__, pydantic.ValidationError)


def test_a_corrupt_spec_is_a_store_error_not_a_validation_error() -> None:
    rec = _recorded("Network", "lab", {"mode": "sideways"})

    with pytest.raises(errors.StoreError):
        record.manifest(rec)
    with pytest.raises(errors.RecordCorrupt):
        record.spec_as(rec, kinds.Network)


def test_a_recorded_resource_of_an_unknown_kind_is_corrupt() -> None:
    rec = _recorded("Firewall", "edge", {})

    with pytest.raises(errors.RecordCorrupt) as info:
        record.manifest(rec)

    message = _one_line_corrupt(info)
    assert "'edge'" in message and "'Firewall'" in message


def test_the_desired_state_rebuilt_from_a_corrupt_record_fails_typed() -> None:
    records = [
        _recorded("Network", "lab", {"mode": "isolated"}),
        _recorded("StoragePool", "fast", {"path": 7}),
    ]

    with pytest.raises(errors.RecordCorrupt) as info:
        recorded.desired_from_record(records)

    assert "storagepool/fast" in _one_line_corrupt(info)
    assert "spec.path" in str(info.value)


def test_loading_against_a_corrupt_recorded_template_fails_typed(tmp_path: Path) -> None:
    empty = tmp_path / "empty.yaml"
    empty.write_text("")
    records = [_recorded("Template", "golden", {"cpus": "many"})]

    with pytest.raises(errors.RecordCorrupt) as info:
        loader.load_against([str(empty)], records)

    assert "template/golden" in _one_line_corrupt(info)
    assert "spec.cpus" in str(info.value)


_DISK = {"name": "root", "size": 1 << 30, "pool": "default", "reclaim": "Delete"}


def test_a_recorded_effective_disk_parses_back() -> None:
    disk = effective.EffectiveDisk.from_record(dict(_DISK))

    assert disk.name == "root" and disk.size == 1 << 30 and disk.pool == "default"
    assert disk.reclaim is kinds.ReclaimPolicy.DELETE


@pytest.mark.parametrize(
    ("document", "expected"),
    [
        ({k: v for k, v in _DISK.items() if k != "size"}, "disk 'root' of virtualmachine/web"),
        (_DISK | {"size": "big"}, "corrupt at size: 'big'"),
        (_DISK | {"reclaim": "Shred"}, "corrupt at reclaim: 'Shred'"),
        (_DISK | {"pool": None}, "corrupt at pool: None"),
        (["root"], "a disk of virtualmachine/web in the record is corrupt"),
    ],
)
def test_a_corrupt_effective_disk_names_the_disk_and_the_field(
    document: Any, expected: str
) -> None:
    with pytest.raises(errors.RecordCorrupt) as info:
        effective.EffectiveDisk.from_record(document, vm="web")

    assert expected in _one_line_corrupt(info)


@pytest.fixture
def store(tmp_path: Path) -> Iterator[store_module.Store]:
    with store_module.Store.open(f"sqlite:///{tmp_path / 'state.db'}") as opened:
        yield opened


def test_a_corrupt_event_row_is_one_typed_error_naming_the_event(
    store: store_module.Store,
) -> None:
    key = record.ResourceKey("Network", "lab")
    store.record_events([record.NewEvent(key, record.EventType.NORMAL, "Created", "made")])
    with store._engine.begin() as conn:  # a hand edit that bypasses the CHECK constraint
        conn.exec_driver_sql("PRAGMA ignore_check_constraints = ON")
        conn.execute(update(schema.Event).values(type="Loud"))
        conn.exec_driver_sql("PRAGMA ignore_check_constraints = OFF")

    with pytest.raises(errors.RecordCorrupt) as info:
        store.events(key)

    message = _one_line_corrupt(info)
    assert "of network/lab" in message
    assert "corrupt at type: 'Loud' is none of Normal, Warning" in message


def test_a_corrupt_run_row_is_one_typed_error_naming_the_run(store: store_module.Store) -> None:
    run_id = store.start_run(record.Trigger.APPLY, None)
    with store._engine.begin() as conn:
        conn.execute(update(schema.Run).values(trigger="telepathy"))

    with pytest.raises(errors.RecordCorrupt) as info:
        store.runs()

    message = _one_line_corrupt(info)
    assert message.startswith(f"run {run_id} in the record is corrupt at trigger: 'telepathy'")


def test_a_corrupt_spec_row_fails_typed_when_the_desired_state_is_rebuilt(
    store: store_module.Store,
) -> None:
    document = {
        "apiVersion": kinds.API_VERSION,
        "kind": "Network",
        "metadata": {"name": "lab"},
        "spec": {"mode": "isolated"},
    }
    key = record.ResourceKey("Network", "lab")
    write = record.SpecWrite(key, document, "0" * 16, {}, {}, "lab.yaml", 0, None)
    store.apply_specs([write])
    with store._engine.begin() as conn:
        conn.execute(
            update(schema.Resource).values(spec=document | {"spec": {"mode": "isolated", "x": 1}})
        )

    with pytest.raises(errors.RecordCorrupt) as info:
        recorded.desired_from_record(store.resources())

    assert "network/lab" in _one_line_corrupt(info)
    assert "spec.x" in str(info.value)
