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
A value inside a document (an item of a ``kind: List``) can be taken out as a
document of its own (:meth:`Document.member`), with the stream's positions.

Nothing the YAML library raises escapes :func:`parse`: syntax errors, reader
errors (a NUL byte, other non-printable characters), values a tag cannot
construct (``!!int abc``, a 13th month) and anything unforeseen become a
:class:`Problem` with a position. Nesting deeper than the caller's limit is
refused while events are read, before the recursive composer could exhaust the
stack (libyaml itself stops at 1,000 levels), and a stream stops after the
caller's document budget. Messages are built from the library's *problem* and
*context* words only, never from ``str(exc)``: that adds a snippet of the
offending line, and the line may be a secret.

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
from typing import Any, NamedTuple

import yaml

__all__ = ["MAX_NODES", "Document", "Parsed", "Path", "Position", "Problem", "Slot", "parse"]

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
    over_budget: bool = False  # the stream holds more documents than the caller allowed


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

    def member(self, path: Path) -> Document:
        """The value at ``path`` (which must exist) as a document of its own.

        An item of a ``kind: List`` is validated as if it were a document of the
        stream: its paths start at the item, its positions are still the file's,
        and the keys written twice inside it are its own. The node is found by
        the same key matching as the walk (merge keys are already flattened into
        the node tree once the document is constructed).
        """
        data, node = self.data, self.node
        loader = yaml.constructor.SafeConstructor()
        for part in path:
            data = data[part]
            node = _child(node, part, loader)
        inner = tuple(
            dataclasses.replace(d, path=d.path[len(path) :])
            for d in self.duplicates
            if _normal(d.path[: len(path)]) == _normal(path)
        )
        return Document(index=self.index, data=data, node=node, duplicates=inner)


def _child(node: yaml.Node, part: str | int, loader: yaml.constructor.SafeConstructor) -> yaml.Node:
    """The node of ``part`` under ``node``: the last key that reads as it, as the data has it.

    Should none match (it cannot once the data has ``part``), positions fall back
    to ``node`` itself rather than fail.
    """
    if isinstance(node, yaml.SequenceNode) and isinstance(part, int) and part < len(node.value):
        child: yaml.Node = node.value[part]
        return child
    if isinstance(node, yaml.MappingNode):
        found: list[yaml.Node] = [v for k, v in node.value if _key(k, loader) == part]
        if found:
            return found[-1]
    return node


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


class _TooDeep(yaml.MarkedYAMLError):
    """Nesting beyond the caller's limit, raised where it is first exceeded."""

    def __init__(self, limit: int, mark: Any) -> None:
        super().__init__(
            problem=f"nesting deeper than {limit} levels (INFINIBAY_MAX_DEPTH); "
            "refusing to load it",
            problem_mark=mark,
        )


def _inspect(node: yaml.Node, max_depth: int) -> tuple[int, tuple[Problem, ...]]:
    """One walk over the node graph: its size once aliases expand, and its duplicate keys.

    Explicit keys written twice in one mapping are reported; merge keys may be
    overridden. Sizes are memoised per node, so each alias is walked once and a
    recursive one counts once instead of looping. A node deeper than
    ``max_depth`` raises :class:`_TooDeep`, which also bounds this recursion.
    """
    sizes: dict[int, int] = {}
    duplicates: list[Problem] = []
    scalar = yaml.ScalarNode

    def size(node: yaml.Node, path: Path, depth: int = 0) -> int:
        known = sizes.get(id(node))
        if known is not None:
            return known
        if depth > max_depth:
            raise _TooDeep(max_depth, node.start_mark)
        sizes[id(node)] = 1
        total = 1
        if isinstance(node, yaml.MappingNode):
            first: dict[tuple[str, str], yaml.Mark] = {}
            for key_node, value_node in node.value:
                if isinstance(key_node, scalar) and key_node.tag != _MERGE_TAG:
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
                name = key_node.value if isinstance(key_node, scalar) else "?"
                total += leaf(key_node, depth + 1) or size(key_node, path, depth + 1)
                total += leaf(value_node, depth + 1) or size(value_node, (*path, name), depth + 1)
        elif isinstance(node, yaml.SequenceNode):
            total += sum(
                leaf(item, depth + 1) or size(item, (*path, index), depth + 1)
                for index, item in enumerate(node.value)
            )
        sizes[id(node)] = total
        return total

    def leaf(node: yaml.Node, depth: int) -> int:
        """:func:`size` of a scalar seen for the first time (most nodes are), else 0.

        Spares the call that builds the child's path, which only a collection needs.
        """
        if type(node) is not scalar or depth > max_depth or id(node) in sizes:
            return 0
        sizes[id(node)] = 1
        return 1

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
        "YAML error"
        if isinstance(exc, yaml.constructor.ConstructorError | _TooDeep)
        else "YAML syntax error"
    )
    return Problem(position, f"{what}: {problem}")


def _unreadable(exc: yaml.reader.ReaderError, text: str) -> Problem:
    """A character the YAML reader refuses, located from its offset into ``text``."""
    before = text[: exc.position]
    line = before.count("\n") + 1
    column = exc.position - (before.rfind("\n") + 1) + 1
    return Problem(
        Position(line, column),
        f"YAML error: unacceptable character #x{exc.character:04x}: {exc.reason}",
    )


class _Guarded:
    """Loader mixin: a value its tag cannot construct is a located ConstructorError.

    SafeConstructor lets Python's own errors through (``int('abc')`` for
    ``!!int abc``, ``datetime`` for a 13th month); their text would echo the
    value, so only the tag and the error's type are kept.
    """

    def construct_object(self, node: yaml.Node, deep: bool = False) -> Any:
        try:
            return super().construct_object(node, deep)  # type: ignore[misc]
        except yaml.YAMLError:
            raise
        except Exception as exc:
            raise yaml.constructor.ConstructorError(
                problem=f"a value tagged {node.tag.rsplit(':', 1)[-1]!r} cannot be "
                f"constructed ({type(exc).__name__})",
                problem_mark=node.start_mark,
            ) from exc


class _Pure(_Guarded, yaml.SafeLoader):
    """The pure-Python loader, counting nesting as events are read.

    Its composer recurses once per level, so depth is checked here, before a
    100,000-level ``[[[...`` could reach Python's recursion limit.
    """

    max_depth = 64
    _depth = 0

    def get_event(self) -> Any:
        event = super().get_event()  # type: ignore[no-untyped-call]
        if isinstance(event, yaml.CollectionStartEvent):
            self._depth += 1
            if self._depth > self.max_depth:
                raise _TooDeep(self.max_depth, event.start_mark)
        elif isinstance(event, yaml.CollectionEndEvent):
            self._depth -= 1
        return event


# libyaml composes in C and stops at 1,000 levels by itself; the caller's lower limit is
# checked on the composed node graph (:func:`_inspect`), so only the mixin is needed here.
_C_LOADER = getattr(yaml, "CSafeLoader", None)
_Fast: Any = type("_Fast", (_Guarded, _C_LOADER), {}) if _C_LOADER is not None else None


@dataclasses.dataclass(frozen=True)
class Parsed:
    """What :func:`parse` read: documents and problems in order, and how many documents."""

    items: list[Document | Problem]
    count: int  # documents in the stream read so far, empty ones included


def parse(text: str, *, max_depth: int = 64, budget: int | None = None) -> Parsed:
    """Read each non-empty document of ``text``; a syntax error ends the stream.

    Documents before a syntax error are still returned, so their own errors are
    reported in the same run. Past ``budget`` documents the stream stops with a
    problem marked ``over_budget``.
    """
    if _Fast is not None:
        try:
            return _parse(text, _Fast, strict=True, max_depth=max_depth, budget=budget)
        except Exception:  # reported below, in the pure-Python loader's words
            pass
    try:
        return _parse(text, _Pure, strict=False, max_depth=max_depth, budget=budget)
    except yaml.reader.ReaderError as exc:  # raised before any document is read
        return Parsed([_unreadable(exc, text)], 0)


def _parse(
    text: str, loader_class: Any, *, strict: bool, max_depth: int, budget: int | None
) -> Parsed:
    """Compose, check and construct each document; ``strict`` lets YAML errors propagate."""
    loader = loader_class(text)
    loader.max_depth = max_depth
    items: list[Document | Problem] = []
    index = 0
    start = Position(1, 1)
    try:
        while loader.check_node():
            node = loader.get_node()
            if node is None:
                break
            start = Position.of(node.start_mark)
            if budget is not None and index >= budget:
                items.append(
                    Problem(
                        start,
                        f"more than {budget} documents; refusing to load any of them",
                        over_budget=True,
                    )
                )
                break
            expanded, duplicates = _inspect(node, max_depth)
            if expanded > MAX_NODES:
                items.append(
                    Problem(
                        start,
                        f"YAML error: the document expands to more than {MAX_NODES} nodes "
                        "through aliases; refusing to load it",
                    )
                )
                index += 1
                continue
            data = loader.construct_document(node)
            if data is not None:
                items.append(Document(index=index, data=data, node=node, duplicates=duplicates))
            index += 1
    except yaml.MarkedYAMLError as exc:
        if strict:
            raise
        items.append(_syntax(exc))
    except Exception as exc:
        if strict:
            raise
        mark = loader.get_mark() if hasattr(loader, "get_mark") else None
        where = Position.of(mark) if mark is not None else start
        items.append(
            Problem(where, f"YAML error: the document cannot be read ({type(exc).__name__})")
        )
    finally:
        loader.dispose()
    return Parsed(items, index)
