"""Label selectors, as kubectl writes them: ``-l app=web,tier!=db,env in (a,b),!legacy``.

A selector is a conjunction of requirements, comma-separated (commas inside
``( )`` separate values). Each requirement is one of::

    key=value  key==value  key!=value  key in (v1,v2)  key notin (v1,v2)  key  !key

``!=`` and ``notin`` also match a resource without the key, as in Kubernetes.
Parsing is pure and raises :class:`~reconciler.errors.UsageError` naming the
requirement that is malformed.
"""

from __future__ import annotations

import dataclasses
import enum
import re
from collections.abc import Mapping

from reconciler import errors

__all__ = ["Op", "Requirement", "Selector", "parse"]

_KEY = re.compile(
    r"^([a-z0-9A-Z]([-a-z0-9A-Z_.]*[a-z0-9A-Z])?/)?[a-z0-9A-Z]([-a-z0-9A-Z_.]*[a-z0-9A-Z])?$"
)
_VALUE = re.compile(r"^([a-z0-9A-Z]([-a-z0-9A-Z_.]*[a-z0-9A-Z])?)?$")
_SET = re.compile(r"^(?P<key>\S+)\s+(?P<op>in|notin)\s*\((?P<values>[^()]*)\)$")


class Op(enum.StrEnum):
    EQUALS = "="
    NOT_EQUALS = "!="
    IN = "in"
    NOT_IN = "notin"
    EXISTS = "exists"
    NOT_EXISTS = "!"


@dataclasses.dataclass(frozen=True)
class Requirement:
    key: str
    op: Op
    values: frozenset[str] = frozenset()

    def matches(self, labels: Mapping[str, str]) -> bool:
        match self.op:
            case Op.EXISTS:
                return self.key in labels
            case Op.NOT_EXISTS:
                return self.key not in labels
            case Op.EQUALS | Op.IN:
                return self.key in labels and labels[self.key] in self.values
            case Op.NOT_EQUALS | Op.NOT_IN:
                return self.key not in labels or labels[self.key] not in self.values


@dataclasses.dataclass(frozen=True)
class Selector:
    """Every requirement must match; the empty selector matches everything."""

    requirements: tuple[Requirement, ...] = ()
    text: str = ""

    def matches(self, labels: Mapping[str, str]) -> bool:
        return all(r.matches(labels) for r in self.requirements)

    def __str__(self) -> str:
        return self.text


def _split(text: str) -> list[str]:
    """Split on the commas outside parentheses."""
    parts, depth, current = [], 0, ""
    for char in text:
        if char == "(":
            depth += 1
        elif char == ")":
            depth -= 1
            if depth < 0:
                raise errors.UsageError(f"selector {text!r}: unbalanced ')'")
        if char == "," and depth == 0:
            parts.append(current)
            current = ""
        else:
            current += char
    if depth:
        raise errors.UsageError(f"selector {text!r}: unbalanced '('")
    parts.append(current)
    return [p.strip() for p in parts]


def _key(key: str, part: str) -> str:
    if not _KEY.match(key) or len(key.rpartition("/")[2]) > 63:
        raise errors.UsageError(f"selector requirement {part!r}: {key!r} is not a label key")
    return key


def _value(value: str, part: str) -> str:
    if not _VALUE.match(value) or len(value) > 63:
        raise errors.UsageError(f"selector requirement {part!r}: {value!r} is not a label value")
    return value


def _requirement(part: str) -> Requirement:
    if not part:
        raise errors.UsageError("selector has an empty requirement (two commas, or a trailing one)")
    if found := _SET.match(part):
        values = [v.strip() for v in found["values"].split(",")]
        if not any(values):
            raise errors.UsageError(f"selector requirement {part!r}: no values in ( )")
        op = Op.IN if found["op"] == "in" else Op.NOT_IN
        return Requirement(_key(found["key"], part), op, frozenset(_value(v, part) for v in values))
    for token, op in (("!=", Op.NOT_EQUALS), ("==", Op.EQUALS), ("=", Op.EQUALS)):
        if token in part:
            key, _, value = part.partition(token)
            return Requirement(
                _key(key.strip(), part), op, frozenset({_value(value.strip(), part)})
            )
    if part.startswith("!"):
        return Requirement(_key(part[1:].strip(), part), Op.NOT_EXISTS)
    return Requirement(_key(part, part), Op.EXISTS)


def parse(text: str) -> Selector:
    """``"app=web,!legacy"`` -> a :class:`Selector`; :class:`UsageError` when malformed."""
    if not text.strip():
        return Selector(text=text)
    return Selector(tuple(_requirement(p) for p in _split(text)), text.strip())
