"""The committed JSON Schemas in ``schemas/`` match the models, and describe every kind."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from reconciler.manifests import schema
from reconciler.models import kinds

ROOT = Path(__file__).resolve().parents[2]
SCHEMAS = ROOT / "schemas"


def test_committed_schemas_are_up_to_date() -> None:
    outdated = schema.stale(SCHEMAS)

    assert outdated == [], (
        f"schemas/ is stale ({', '.join(outdated)}); regenerate with `{schema.REGENERATE}` "
        "and commit the result"
    )


def test_rendering_is_deterministic_and_ends_with_a_newline() -> None:
    first, second = schema.render(), schema.render()

    assert first == second
    assert sorted(first) == [
        "all.json",
        "department.json",
        "firewallpolicy.json",
        "host.json",
        "network.json",
        "storagepool.json",
        "template.json",
        "virtualmachine.json",
    ]
    assert all(text.endswith("}\n") for text in first.values())


@pytest.mark.parametrize("kind", list(kinds.Kind), ids=str)
def test_each_kind_schema_is_identified_and_pins_api_version_and_kind(kind: kinds.Kind) -> None:
    document = json.loads(schema.render()[f"{kind.value.lower()}.json"])

    assert document["$id"] == f"{schema.BASE_ID}{kind.value.lower()}.json"
    assert document["$schema"] == schema.DIALECT
    assert document["title"] == kind.value
    assert document["additionalProperties"] is False
    assert document["properties"]["kind"]["const"] == kind.value
    assert document["properties"]["apiVersion"]["const"] == kinds.API_VERSION
    assert sorted(document["required"]) == ["apiVersion", "kind", "metadata", "spec"]


def test_all_schema_accepts_any_kind_discriminated_by_kind() -> None:
    document = json.loads(schema.render()["all.json"])

    assert document["$id"] == f"{schema.BASE_ID}all.json"
    assert len(document["oneOf"]) == len(kinds.Kind)
    assert set(document["discriminator"]["mapping"]) == {kind.value for kind in kinds.Kind}


def test_sizes_are_strings_with_a_unit_in_the_schema() -> None:
    document = json.loads(schema.render()["virtualmachine.json"])
    memory = document["$defs"]["VirtualMachineSpec"]["properties"]["memory"]["anyOf"][0]

    assert memory["type"] == "string"
    assert memory["pattern"].startswith("^[0-9]+")


def test_check_reports_stale_files_and_write_fixes_them(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "old.json").write_text("{}\n")

    assert schema.main(["--check", str(tmp_path)]) == 1
    assert f"{tmp_path / 'all.json'} is stale; run {schema.REGENERATE}" in capsys.readouterr().out
    assert schema.main([str(tmp_path)]) == 0
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(schema.render())
    assert schema.main(["--check", str(tmp_path)]) == 0
