"""YAML documents as plain data plus the position of every node.

PyYAML's loaders throw positions away once they build Python objects, but every
validation message must point at a line and column. So each document is first
*composed* into a node tree, then *constructed* with the ordinary safe
constructor (tags, anchors and ``<<`` merge keys behave exactly as users
expect). The node tree is kept with the data; when a message needs a position,
it is walked next to the data to record, for every data path (``("spec",
"disks", 0, "size")``), where its key and its value start. Positions are
1-based, as editors show them. Valid manifests, the usual case, skip that walk.

Aliases are walked once: a path reached only through an alias points at its
nearest recorded ancestor, which keeps the walk linear. A document whose
aliases would expand past :data:`MAX_NODES` is refused before it is built, so
a hostile commit cannot make validation run for hours.
Duplicate keys in one mapping are reported (PyYAML would silently keep the last).

Documents are composed with libyaml (``CSafeLoader``, several times faster than
the pure-Python parser: a directory of 1,000 manifests is read in a fraction of
a second) when PyYAML was built with it. Its error messages are worded
differently, so a stream that fails to parse is parsed again with the
pure-Python loader, whose messages are the documented ones; documents before
the error are still yielded first, as before.
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Iterator
from typing import Any, NamedTuple

import yaml

__all__ = ["MAX_NODES", "Document", "Path", "Position", "Problem", "Slot", "parse"]

Path = tuple[str | int, ...]
MAX_NODES = 100_000  # far beyond any real manifest; stops "billion laughs" alias bombs
_MERGE_TAG = "tag:yaml.org,2002:merge"


class Position(NamedTuple):
    line: int
    column: int

    @classmethod
    def of(cls, mark: yaml.Mark) -> Position:
        return cls(mark.line + 1, mark.column + 1)


@dataclasses.dataclass(frozen=True)
class Slot:
    """Where one data path sits: its key (``None`` for list items and the root) and value."""

    key: Position | None
    value: Position
    inline: bool  # a scalar or a flow collection: the value shares the key's line

    @property
    def field(self) -> Position:
        """The best single point for the field: the value when inline, else its key line."""
        if self.inline or self.key is None:
            return self.value
        return self.key


@dataclasses.dataclass(frozen=True)
class Problem:
    """A YAML-level error: a syntax error, or a key written twice in one mapping."""

    position: Position
    message: str
    path: Path = ()


@dataclasses.dataclass(frozen=True)
class Document:
    index: int  # 0-based position in the stream, empty documents included
    data: Any
    node: yaml.Node = dataclasses.field(repr=False, compare=False)
    duplicates: tuple[Problem, ...] = ()  # keys written twice in one mapping

    @property
    def start(self) -> Position:
        return Position.of(self.node.start_mark)

    @functools.cached_property
    def slots(self) -> dict[Path, Slot]:
        """Where every data path sits; walked on first use (a valid manifest rarely needs it)."""
        slots: dict[Path, Slot] = {}
        _walk(self.node, (), None, yaml.constructor.SafeConstructor(), slots, set())
        return slots

    def slot(self, path: Path) -> tuple[Path, Slot]:
        """The slot of ``path`` or of its longest recorded prefix."""
        for end in range(len(path), -1, -1):
            found = self.slots.get(_normal(path[:end]))
            if found is not None:
                return path[:end], found
        raise AssertionError("the root slot is always recorded")


def _normal(path: Path) -> Path:
    return tuple(part if isinstance(part, int) else str(part) for part in path)


def _key(node: yaml.Node, loader: yaml.constructor.SafeConstructor) -> str | int | None:
    if not isinstance(node, yaml.ScalarNode):
        return None
    value = loader.construct_object(node)
    if isinstance(value, bool) or not isinstance(value, int):
        return str(value)
    return value


def _inline(node: yaml.Node) -> bool:
    if isinstance(node, yaml.ScalarNode):
        return True
    return bool(getattr(node, "flow_style", False))


def _walk(
    node: yaml.Node,
    path: Path,
    key: Position | None,
    loader: yaml.constructor.SafeConstructor,
    slots: dict[Path, Slot],
    seen: set[int],
) -> None:
    slots[_normal(path)] = Slot(key=key, value=Position.of(node.start_mark), inline=_inline(node))
    if id(node) in seen:
        return
    seen.add(id(node))
    if isinstance(node, yaml.MappingNode):
        for key_node, value_node in node.value:
            name = _key(key_node, loader)
            if name is not None:
                _walk(
                    value_node, (*path, name), Position.of(key_node.start_mark), loader, slots, seen
                )
    elif isinstance(node, yaml.SequenceNode):
        for index, item in enumerate(node.value):
            _walk(item, (*path, index), None, loader, slots, seen)


def _inspect(node: yaml.Node) -> tuple[int, tuple[Problem, ...]]:
    """One walk over the node graph: its size once aliases expand, and its duplicate keys.

    Explicit keys written twice in one mapping are reported; merge keys may be
    overridden. Sizes are memoised per node, so each alias is walked once and a
    recursive one counts once instead of looping.
    """
    sizes: dict[int, int] = {}
    duplicates: list[Problem] = []

    def size(node: yaml.Node, path: Path) -> int:
        known = sizes.get(id(node))
        if known is not None:
            return known
        sizes[id(node)] = 1
        total = 1
        if isinstance(node, yaml.MappingNode):
            first: dict[tuple[str, str], yaml.Mark] = {}
            for key_node, value_node in node.value:
                if isinstance(key_node, yaml.ScalarNode) and key_node.tag != _MERGE_TAG:
                    ident = (key_node.tag, key_node.value)
                    if ident in first:
                        where = Position.of(first[ident])
                        duplicates.append(
                            Problem(
                                Position.of(key_node.start_mark),
                                f"key written twice; first at line {where.line}",
                                (*path, key_node.value),
                            )
                        )
                    else:
                        first[ident] = key_node.start_mark
                name = key_node.value if isinstance(key_node, yaml.ScalarNode) else "?"
                total += size(key_node, path) + size(value_node, (*path, name))
        elif isinstance(node, yaml.SequenceNode):
            total += sum(size(item, (*path, index)) for index, item in enumerate(node.value))
        sizes[id(node)] = total
        return total

    return size(node, ()), tuple(duplicates)


def _syntax(exc: yaml.MarkedYAMLError) -> Problem:
    mark = exc.problem_mark or exc.context_mark
    position = Position.of(mark) if mark is not None else Position(1, 1)
    problem = exc.problem or exc.context or "invalid YAML"
    if exc.context and exc.problem and exc.context_mark is not None:
        where = Position.of(exc.context_mark)
        if where != position:
            problem = f"{problem} ({exc.context} at line {where.line}, column {where.column})"
    what = (
        "YAML error" if isinstance(exc, yaml.constructor.ConstructorError) else "YAML syntax error"
    )
    return Problem(position, f"{what}: {problem}")


def parse(text: str) -> Iterator[Document | Problem]:
    """Yield each non-empty document of ``text``; a syntax error ends the stream.

    Documents before a syntax error are still yielded, so their own errors are
    reported in the same run.
    """
    fast = getattr(yaml, "CSafeLoader", None)
    if fast is not None:
        try:
            documents = list(_parse(text, fast, strict=True))
        except yaml.MarkedYAMLError:
            pass  # reported below, in the pure-Python loader's words
        else:
            yield from documents
            return
    yield from _parse(text, yaml.SafeLoader, strict=False)


def _parse(text: str, loader_class: Any, *, strict: bool) -> Iterator[Document | Problem]:
    """Compose, check and construct each document; ``strict`` lets YAML errors propagate."""
    loader = loader_class(text)
    index = 0
    try:
        while loader.check_node():
            node = loader.get_node()
            if node is None:
                break
            expanded, duplicates = _inspect(node)
            if expanded > MAX_NODES:
                yield Problem(
                    Position.of(node.start_mark),
                    f"YAML error: the document expands to more than {MAX_NODES} nodes "
                    "through aliases; refusing to load it",
                )
                index += 1
                continue
            data = loader.construct_document(node)
            if data is not None:
                yield Document(index=index, data=data, node=node, duplicates=duplicates)
            index += 1
    except yaml.MarkedYAMLError as exc:
        if strict:
            raise
        yield _syntax(exc)
    finally:
        loader.dispose()
