"""Every manifest field has a description, for ``infinibay explain`` and in ``schemas/``."""

from __future__ import annotations

import json
import typing
from pathlib import Path
from typing import Any

import pydantic
import pytest

from reconciler.cli import explain
from reconciler.manifests import schema
from reconciler.models import kinds

SCHEMAS = Path(__file__).resolve().parents[2] / "schemas"
MANIFESTS = [
    kinds.StoragePool,
    kinds.Network,
    kinds.Template,
    kinds.VirtualMachine,
    kinds.FirewallPolicy,
    kinds.Department,
    kinds.Host,
]


def undescribed(model: type[pydantic.BaseModel], path: str, seen: set[type[Any]]) -> list[str]:
    """The dotted paths under ``model`` of fields without a description."""
    if model in seen:
        return []
    seen.add(model)
    missing = []
    for name, info in model.model_fields.items():
        field = f"{path}.{info.alias or name}"
        if not (info.description or "").strip():
            missing.append(field)
        for nested in explain._models(info.annotation):
            missing += undescribed(nested, field, seen)
    return missing


def test_every_kind_is_covered() -> None:
    assert {typing.get_args(m.model_fields["kind"].annotation)[0] for m in MANIFESTS} == {
        k.value for k in kinds.Kind
    }


@pytest.mark.parametrize("model", MANIFESTS, ids=lambda m: m.__name__)
def test_every_field_has_a_description(model: type[pydantic.BaseModel]) -> None:
    assert undescribed(model, model.__name__, set()) == []


def test_a_field_without_a_description_is_found() -> None:
    class Bare(pydantic.BaseModel):
        described: int = pydantic.Field(0, description="Has one.")
        bare: int = 0

    assert undescribed(Bare, "Bare", set()) == ["Bare.bare"]


def _descriptions(node: Any) -> list[str]:
    found: list[str] = []
    if isinstance(node, dict):
        if isinstance(node.get("description"), str):
            found.append(node["description"])
        for value in node.values():
            found += _descriptions(value)
    elif isinstance(node, list):
        for value in node:
            found += _descriptions(value)
    return found


def test_the_descriptions_are_in_the_committed_schemas() -> None:
    assert schema.stale(SCHEMAS) == []
    document = json.loads((SCHEMAS / "virtualmachine.json").read_text())
    text = _descriptions(document)
    info = kinds.VirtualMachineSpec.model_fields["powerState"]
    assert info.description in text
    assert kinds.Metadata.model_fields["labels"].description in text
    assert explain.describe("vm.spec.powerState")[-1] == info.description
