"""Turn pydantic validation errors into located, readable findings.

Pydantic reports each error with a ``loc`` (the path inside the input) and a
message written for programmers. This module maps the ``loc`` onto the YAML
node that caused it and rewrites the message for someone editing a manifest:

* an unknown field points at its *key* and suggests the closest field name the
  model accepts at that place (``cpu`` → ``did you mean 'cpus'?``);
* a missing field keeps its full path in the message but points at the
  *parent* mapping, because the missing key has no node of its own;
* ``Value error, `` and similar prefixes are dropped;
* errors raised by a model-level validator arrive with the model's ``loc``.
  :data:`_REFINEMENTS` moves them to the field the message is about, found by
  the message's own wording (``DHCP range ...`` → ``dhcp``; a host or member
  listed twice → that item). It is a short, explicit table on purpose: when a
  message is not in it, the error points at the model, which is still right,
  just less precise.
"""

from __future__ import annotations

import dataclasses
import difflib
import re
import types
import typing
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import pydantic

from reconciler.manifests import _yaml

__all__ = ["Finding", "field_path", "suggest", "translate"]

_PREFIXES = ("Value error, ", "Assertion failed, ")


@dataclasses.dataclass(frozen=True)
class Finding:
    path: _yaml.Path
    position: _yaml.Position
    message: str


def field_path(path: _yaml.Path) -> str:
    """``("spec", "disks", 0, "size")`` → ``spec.disks[0].size``."""
    text = ""
    for part in path:
        if isinstance(part, int):
            text += f"[{part}]"
        else:
            text += f".{part}" if text else str(part)
    return text


def suggest(word: str, candidates: Sequence[str]) -> str | None:
    """The closest candidate to ``word``, ignoring case, or ``None``."""
    lowered = {candidate.lower(): candidate for candidate in candidates}
    match = difflib.get_close_matches(word.lower(), list(lowered), n=1, cutoff=0.6)
    return lowered[match[0]] if match else None


def _unwrap(annotation: Any) -> Any:
    """Strip ``Annotated`` and ``X | None`` until a plain type or generic remains."""
    while True:
        origin = typing.get_origin(annotation)
        if origin is typing.Annotated:
            annotation = typing.get_args(annotation)[0]
        elif origin in (typing.Union, types.UnionType):
            members = [arg for arg in typing.get_args(annotation) if arg is not type(None)]
            if len(members) != 1:
                return annotation
            annotation = members[0]
        else:
            return annotation


def _is_model(annotation: Any) -> typing.TypeGuard[type[pydantic.BaseModel]]:
    return isinstance(annotation, type) and issubclass(annotation, pydantic.BaseModel)


def _model_at(root: type[pydantic.BaseModel], loc: _yaml.Path) -> type[pydantic.BaseModel] | None:
    """The model class that validates the value at ``loc``, if that value is a model."""
    current: Any = root
    for part in loc:
        current = _unwrap(current)
        origin = typing.get_origin(current)
        if isinstance(part, int) and origin is list:
            current = typing.get_args(current)[0]
        elif _is_model(current) and isinstance(part, str) and part in current.model_fields:
            current = current.model_fields[part].annotation
        elif origin is dict:
            current = typing.get_args(current)[1]
        else:
            return None
    current = _unwrap(current)
    return current if _is_model(current) else None


def _data_at(data: Any, path: _yaml.Path) -> Any:
    for part in path:
        if isinstance(data, dict):
            data = data.get(part)
        elif isinstance(data, list) and isinstance(part, int) and 0 <= part < len(data):
            data = data[part]
        else:
            return None
    return data


def _second(items: Any, key: str, value: str) -> int | None:
    """Index of the second item whose ``key`` equals ``value`` (case-insensitively)."""
    if not isinstance(items, list):
        return None
    hits = [
        i
        for i, item in enumerate(items)
        if isinstance(item, dict) and str(item.get(key, "")).lower() == value.lower()
    ]
    return hits[1] if len(hits) > 1 else None


def _first(items: Any, key: str, value: str) -> int | None:
    if not isinstance(items, list):
        return None
    for i, item in enumerate(items):
        if isinstance(item, dict) and str(item.get(key, "")) == value:
            return i
    return None


def _listed_twice(member: str, key: str) -> Callable[[re.Match[str], Any], _yaml.Path]:
    def refine(match: re.Match[str], data: Any) -> _yaml.Path:
        index = _second(_data_at(data, (member,)), key, match.group(1))
        return (member,) if index is None else (member, index, key)

    return refine


def _static_host(field: str) -> Callable[[re.Match[str], Any], _yaml.Path]:
    def refine(match: re.Match[str], data: Any) -> _yaml.Path:
        hosts = _data_at(data, ("hosts",))
        index = (
            _second(hosts, field, match.group(1))
            if field == "mac"
            else _first(hosts, field, match.group(1))
        )
        return ("hosts",) if index is None else ("hosts", index, field)

    return refine


def _fixed(*path: str | int) -> Callable[[re.Match[str], Any], _yaml.Path]:
    return lambda _match, _data: path


# Model-validator messages (reconciler.models.kinds) and the field each is about,
# relative to the model that raised it.
_REFINEMENTS: tuple[tuple[re.Pattern[str], Callable[[re.Match[str], Any], _yaml.Path]], ...] = (
    (re.compile(r"^DHCP range"), _fixed("dhcp")),
    (re.compile(r"^static host MAC (\S+) is listed twice"), _static_host("mac")),
    (re.compile(r"^static host (\S+) is"), _static_host("ip")),
    (re.compile(r"^mode bridge takes no 'ipv4'"), _fixed("ipv4")),
    (re.compile(r"^memory "), _fixed("memory")),
    (re.compile(r"^disk '(.+)' is listed twice"), _listed_twice("disks", "name")),
    (re.compile(r"^network '(.+)' is listed twice"), _listed_twice("networks", "network")),
    (re.compile(r"^MAC '(.+)' is listed twice"), _listed_twice("networks", "mac")),
)


def _clean(message: str) -> str:
    for prefix in _PREFIXES:
        if message.startswith(prefix):
            return message[len(prefix) :]
    return message


def _refine(message: str, data: Any) -> _yaml.Path:
    """The path, relative to the model, of the field ``message`` is about (``()`` if unsure)."""
    for pattern, refine in _REFINEMENTS:
        match = pattern.search(message)
        if match is not None:
            path = refine(match, data)
            return path if _data_at(data, path) is not None else ()
    return ()


def _one(error: Any, root: type[pydantic.BaseModel], document: _yaml.Document) -> Finding:
    loc: _yaml.Path = tuple(error["loc"])
    kind: str = error["type"]
    message = _clean(str(error["msg"]))
    if kind == "extra_forbidden":
        name = str(loc[-1])
        model = _model_at(root, loc[:-1])
        allowed = sorted(model.model_fields) if model is not None else []
        hint = suggest(name, allowed)
        if hint is not None:
            message = f"unknown field {name!r}; did you mean {hint!r}?"
        elif allowed:
            message = f"unknown field {name!r}; expected one of: {', '.join(allowed)}"
        else:
            message = f"unknown field {name!r}"
        _, slot = document.slot(loc)
        return Finding(loc, slot.key or slot.value, message)
    if kind == "missing":
        _, slot = document.slot(loc[:-1])
        return Finding(loc, slot.field, "required field is missing")
    if kind == "enum" and isinstance(error.get("input"), str):
        message = f"{message}, not {error['input']!r}"
    if kind == "value_error" and _model_at(root, loc) is not None:
        loc = (*loc, *_refine(message, _data_at(document.data, loc)))
    _, slot = document.slot(loc)
    return Finding(loc, slot.field, message)


def translate(
    exc: pydantic.ValidationError, root: type[pydantic.BaseModel], document: _yaml.Document
) -> Iterator[Finding]:
    """One located finding per error in ``exc``, raised validating ``document`` as ``root``."""
    for error in exc.errors(include_url=False):
        yield _one(error, root, document)
