"""``infinibay explain KIND[.field.path]``: a field's type and description, from the models.

Like ``kubectl explain``: ``explain firewallpolicy.spec.rules`` shows what a
rule is, one line per field, from the same pydantic models (and descriptions)
that validate the manifests and generate ``schemas/``.
"""

from __future__ import annotations

import enum
import types
import typing
from typing import Any

import click
import pydantic

from reconciler import errors
from reconciler.models import catalog, kinds

__all__ = ["explain"]


def _models(annotation: Any) -> list[type[pydantic.BaseModel]]:
    """The pydantic models an annotation holds (through lists, optionals, Annotated)."""
    found: list[type[pydantic.BaseModel]] = []
    if isinstance(annotation, type) and issubclass(annotation, pydantic.BaseModel):
        return [annotation]
    for arg in typing.get_args(annotation):
        found += _models(arg)
    return found


def _type_name(annotation: Any) -> str:
    origin = typing.get_origin(annotation)
    if origin is typing.Annotated:
        return _type_name(typing.get_args(annotation)[0])
    if origin in (typing.Union, types.UnionType):
        names = [_type_name(a) for a in typing.get_args(annotation) if a is not type(None)]
        return " | ".join(names)
    if origin is list:
        return f"[]{_type_name(typing.get_args(annotation)[0])}"
    if origin is dict:
        return "map"
    if origin is typing.Literal:
        return " | ".join(repr(a) for a in typing.get_args(annotation))
    if isinstance(annotation, type):
        if issubclass(annotation, pydantic.BaseModel):
            return "object"
        if issubclass(annotation, enum.Enum):
            return " | ".join(str(m.value) for m in annotation)
        return annotation.__name__
    return str(annotation)


def describe(path: str) -> list[str]:
    """The lines ``explain`` prints for ``KIND[.field...]``; :class:`UsageError` if unknown."""
    head, *fields = path.split(".")
    kind = catalog.parse_kind(head)
    model: type[pydantic.BaseModel] = kinds.KINDS[kind]
    shown = kind.value
    description = type_name = ""
    for field in fields:
        info = model.model_fields.get(field)
        if info is None:
            known = ", ".join(model.model_fields)
            raise errors.UsageError(f"{shown} has no field {field!r} (fields: {known})")
        shown = f"{shown}.{field}"
        description = info.description or ""
        type_name = _type_name(info.annotation)
        inner = _models(info.annotation)
        if not inner:
            return [
                f"FIELD: {shown} <{_type_name(info.annotation)}>",
                "",
                description or "(no description)",
            ]
        model = inner[0]
    lines = [f"KIND: {kind.value}" if not fields else f"FIELD: {shown} <{type_name}>"]
    if description:
        lines += ["", description]
    lines += ["", "FIELDS:"]
    for name, info in model.model_fields.items():
        required = " (required)" if info.is_required() else ""
        lines.append(f"  {name} <{_type_name(info.annotation)}>{required}")
        if info.description:
            lines.append(f"      {info.description}")
    return lines


@click.command()
@click.argument("path", metavar="KIND[.FIELD...]")
def explain(path: str) -> None:
    """Show the fields of a kind or of one field, e.g. firewallpolicy.spec.rules."""
    try:
        lines = describe(path)
    except errors.UsageError as exc:
        raise click.UsageError(str(exc)) from None
    click.echo("\n".join(lines))
