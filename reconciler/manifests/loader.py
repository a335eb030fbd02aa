"""Load manifests from files, directories and stdin into a validated desired state.

Validation comes before anything is touched (SPEC §1): :func:`load` reads every
document of every path, collects *all* problems of the run and either returns a
:class:`~reconciler.models.desired.DesiredState` or raises one
:class:`~reconciler.errors.ManifestError` holding every problem, one line each::

    FILE:LINE:COL: KIND/NAME: FIELD.PATH: message

``KIND`` or ``NAME`` is ``?`` when the document does not say (or says something
unknown). Problems that belong to no field (YAML syntax, a document that is not a
mapping) leave the ``FIELD.PATH: `` part out, and a path that cannot be read is
reported as ``PATH: message``. Lines are sorted by file (in the order read), line
and column.

The checks run in three passes, each only over what the previous one accepted,
so one mistake yields one message rather than a cascade:

1. per document: YAML, ``apiVersion``, ``kind``, then the pydantic model of the
   kind (messages located by :mod:`reconciler.manifests._pydantic`);
2. across documents: duplicate ``kind/name``; references to templates, networks
   and pools that are neither declared in this run nor in ``known`` (the record).
   A reference to a document that is declared but invalid is not reported again;
3. each VirtualMachine is merged over its template
   (:func:`reconciler.models.effective.merge`); a merge error and a disk left in
   an undeclared pool (the default pool included) are located on the VM.

A VM whose template is known only from the record is merged over the
record's template spec, which the caller passes as ``templates``.

Directories are walked recursively for ``*.yaml`` and ``*.yml`` in sorted order;
hidden files and directories (``.git``, ``.github``) are skipped. A file named
twice is read once. A top-level ``status`` is ignored: it is never read from
manifests.
"""

from __future__ import annotations

import dataclasses
import re
import sys
import typing
from collections.abc import Collection, Iterable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any, TextIO

import pydantic

from reconciler import errors
from reconciler.manifests import _pydantic, _yaml
from reconciler.models import desired, effective, fields, kinds, record

__all__ = ["STDIN", "load", "load_against"]

STDIN = "-"
_SUFFIXES = (".yaml", ".yml")
_KIND_NAMES = [kind.value for kind in kinds.Kind]
_NO_SIZE = re.compile(r"^disk '(.+)' has no size")
_DNS_LABEL = re.compile(fields.DNS_LABEL)
_REFERENCES = (
    ("disks", "pool", kinds.Kind.STORAGE_POOL),
    ("networks", "network", kinds.Kind.NETWORK),
)

AnyManifest = kinds.StoragePool | kinds.Network | kinds.Template | kinds.VirtualMachine


@dataclasses.dataclass(frozen=True)
class _Error:
    order: int  # which file, in reading order
    line: int
    column: int
    text: str


@dataclasses.dataclass(frozen=True)
class _Doc:
    """One document of the run, with enough context to locate messages about it."""

    file: str
    order: int
    document: _yaml.Document
    label: str  # KIND/NAME as written in messages

    def position(self, path: _yaml.Path) -> _yaml.Position:
        return self.document.slot(path)[1].field


@dataclasses.dataclass(frozen=True)
class _Valid:
    manifest: AnyManifest
    doc: _Doc
    source: desired.Source


def _read(paths: Sequence[str], stdin: TextIO | None) -> Iterator[tuple[str, str | None]]:
    """Yield ``(name, text)``; ``text`` is ``None`` (and ``name`` a message) on failure."""
    seen: set[tuple[int, int]] = set()  # (device, inode): a file named twice is read once
    for raw in paths:
        if raw == STDIN:
            yield STDIN, (stdin if stdin is not None else sys.stdin).read()
            continue
        path = Path(raw)
        if path.is_dir():
            files = sorted(
                found
                for found in path.rglob("*")
                if found.suffix in _SUFFIXES
                and found.is_file()
                and not any(part.startswith(".") for part in found.relative_to(path).parts)
            )
        elif path.exists():
            files = [path]
        else:
            yield f"{raw}: no such file or directory", None
            continue
        for file in files:
            try:
                stat = file.stat()
                if (stat.st_dev, stat.st_ino) in seen:
                    continue
                seen.add((stat.st_dev, stat.st_ino))
                yield str(file), file.read_text(encoding="utf-8")
            except UnicodeDecodeError as exc:
                yield f"{file}:1:1: ?/?: not UTF-8 text ({exc.reason} at byte {exc.start})", None
            except OSError as exc:
                yield f"{file}: cannot read: {exc.strerror or exc}", None


def _is_name(value: Any) -> typing.TypeGuard[str]:
    """A well-formed reference; a malformed one is reported by the model instead."""
    return isinstance(value, str) and len(value) <= 63 and _DNS_LABEL.match(value) is not None


def _label(data: dict[Any, Any]) -> tuple[kinds.Kind | None, str | None, str]:
    raw_kind = data.get("kind")
    kind = kinds.Kind(raw_kind) if raw_kind in _KIND_NAMES else None
    metadata = data.get("metadata")
    raw_name = metadata.get("name") if isinstance(metadata, dict) else None
    name = str(raw_name) if isinstance(raw_name, str | int | float) else None
    return kind, name, f"{kind.value if kind else '?'}/{name if name is not None else '?'}"


class _Run:
    """The state of one :func:`load` call: what was declared, what is valid, what failed."""

    def __init__(
        self,
        known: Collection[record.ResourceKey],
        revision: str | None,
        templates: Mapping[str, kinds.Template],
    ) -> None:
        self.revision = revision
        self.recorded_templates = templates
        self.known = {(str(key.kind), key.name) for key in known}
        self.errors: list[_Error] = []
        self.declared: list[tuple[kinds.Kind, _Doc]] = []
        self.first: dict[tuple[kinds.Kind, str], _Doc] = {}
        self.valid: dict[tuple[kinds.Kind, str], _Valid] = {}
        self.effective: dict[str, effective.EffectiveVM] = {}

    # --- reporting ---------------------------------------------------------------

    def error(
        self, doc: _Doc, path: _yaml.Path, message: str, at: _yaml.Position | None = None
    ) -> None:
        where = at if at is not None else doc.position(path)
        field = _pydantic.field_path(path)
        text = f"{doc.file}:{where.line}:{where.column}: {doc.label}: "
        text += f"{field}: {message}" if field else message
        self.errors.append(_Error(doc.order, where.line, where.column, text))

    def unlocated(self, order: int, text: str) -> None:
        self.errors.append(_Error(order, 0, 0, text))

    # --- pass 1: each document ---------------------------------------------------

    def file(self, order: int, name: str, text: str) -> None:
        for item in _yaml.parse(text):
            if isinstance(item, _yaml.Problem):
                pos = item.position
                self.errors.append(
                    _Error(
                        order,
                        pos.line,
                        pos.column,
                        f"{name}:{pos.line}:{pos.column}: ?/?: {item.message}",
                    )
                )
            else:
                self.document(order, name, item)

    def document(self, order: int, name: str, document: _yaml.Document) -> None:
        data = document.data
        if not isinstance(data, dict):
            doc = _Doc(name, order, document, "?/?")
            self.error(
                doc,
                (),
                "a manifest must be a mapping with apiVersion, kind, metadata and spec, "
                f"not a {type(data).__name__}",
            )
            return
        kind, manifest_name, label = _label(data)
        doc = _Doc(name, order, document, label)
        for duplicate in document.duplicates:
            self.error(doc, duplicate.path, duplicate.message, at=duplicate.position)
        api = data.get("apiVersion")
        if "apiVersion" not in data:
            self.error(
                doc,
                ("apiVersion",),
                f"required field is missing; use {kinds.API_VERSION}",
                at=document.start,
            )
        elif api != kinds.API_VERSION:
            self.error(doc, ("apiVersion",), f"unknown apiVersion {api!r}; use {kinds.API_VERSION}")
        if "kind" not in data:
            self.error(
                doc,
                ("kind",),
                f"required field is missing; one of {', '.join(_KIND_NAMES)}",
                at=document.start,
            )
            return
        if kind is None:
            hint = _pydantic.suggest(str(data["kind"]), _KIND_NAMES)
            advice = f"did you mean {hint!r}?" if hint else f"one of {', '.join(_KIND_NAMES)}"
            self.error(doc, ("kind",), f"unknown kind {data['kind']!r}; {advice}")
            return
        self.declared.append((kind, doc))
        if manifest_name is not None:
            self.declare(kind, manifest_name, doc)
        body = {key: value for key, value in data.items() if key != "status"}
        body["apiVersion"] = kinds.API_VERSION  # a wrong one is reported above, once
        model = kinds.KINDS[kind]
        try:
            manifest = model.model_validate(body)
        except pydantic.ValidationError as exc:
            for finding in _pydantic.translate(exc, model, document):
                self.error(doc, finding.path, finding.message, at=finding.position)
            return
        if self.first.get((kind, manifest.metadata.name)) is not doc:
            return
        start = document.start

        def locate(path: tuple[str | int, ...]) -> tuple[int, int]:
            position = doc.document.slot(path)[1].value
            return position.line, position.column

        source = desired.Source(
            name, start.line, start.column, document.index, self.revision, locator=locate
        )
        self.valid[(kind, manifest.metadata.name)] = _Valid(manifest, doc, source)

    def declare(self, kind: kinds.Kind, name: str, doc: _Doc) -> None:
        first = self.first.get((kind, name))
        if first is None:
            self.first[(kind, name)] = doc
            return
        where = first.position(("metadata", "name"))
        self.error(
            doc,
            ("metadata", "name"),
            f"duplicate {kind.value}/{name}; "
            f"first defined at {first.file}:{where.line}:{where.column}",
        )

    # --- pass 2: references --------------------------------------------------------

    def exists(self, kind: kinds.Kind, name: str) -> bool:
        return (kind, name) in self.first or (kind.value, name) in self.known

    def reference(self, doc: _Doc, path: _yaml.Path, kind: kinds.Kind, name: str) -> bool:
        """Report ``name`` at ``path`` unless a ``kind`` of that name exists; True if it does."""
        if self.exists(kind, name):
            return True
        names = sorted(
            {n for k, n in self.first if k is kind} | {n for k, n in self.known if k == kind.value}
        )
        hint = _pydantic.suggest(name, names)
        what = "storage pool" if kind is kinds.Kind.STORAGE_POOL else kind.value.lower()
        message = f"{what} {name!r} is neither in the manifests nor in the record"
        self.error(doc, path, f"{message}; did you mean {hint!r}?" if hint else message)
        return False

    def references(self) -> None:
        """Check references as written, in valid and invalid documents alike."""
        for kind, doc in self.declared:
            spec = doc.document.data.get("spec")
            if kind not in (kinds.Kind.TEMPLATE, kinds.Kind.VIRTUAL_MACHINE) or not isinstance(
                spec, dict
            ):
                continue
            if kind is kinds.Kind.VIRTUAL_MACHINE and _is_name(spec.get("template")):
                self.reference(doc, ("spec", "template"), kinds.Kind.TEMPLATE, spec["template"])
            for member, field, target in _REFERENCES:
                items = spec.get(member)
                for i, item in enumerate(items if isinstance(items, list) else []):
                    if isinstance(item, dict) and _is_name(item.get(field)):
                        self.reference(doc, ("spec", member, i, field), target, item[field])

    # --- pass 3: effective VMs ---------------------------------------------------------

    def merge_all(self) -> None:
        for (kind, name), valid in self.valid.items():
            if kind is kinds.Kind.VIRTUAL_MACHINE:
                assert isinstance(valid.manifest, kinds.VirtualMachine)
                self.merge(name, valid.manifest, valid.doc)

    def merge(self, name: str, vm: kinds.VirtualMachine, doc: _Doc) -> None:
        template: kinds.Template | None = None
        if vm.spec.template is not None:
            loaded = self.valid.get((kinds.Kind.TEMPLATE, vm.spec.template))
            if loaded is None and vm.spec.template in self.recorded_templates:
                template = self.recorded_templates[vm.spec.template]
            elif loaded is None:
                return  # dangling or invalid: already reported
            else:
                assert isinstance(loaded.manifest, kinds.Template)
                template = loaded.manifest
        own = {disk.name: i for i, disk in enumerate(vm.spec.disks)}
        try:
            result = effective.merge(vm, template)
        except ValueError as exc:
            match = _NO_SIZE.match(str(exc))
            index = own.get(match.group(1)) if match else None
            if index is not None:
                self.error(
                    doc,
                    ("spec", "disks", index, "size"),
                    str(exc),
                    at=doc.position(("spec", "disks", index)),
                )
            else:
                self.error(doc, ("spec", "template") if template else ("spec",), str(exc))
            return
        self.effective[name] = result
        for disk in result.disks:
            if self.exists(kinds.Kind.STORAGE_POOL, disk.pool) or self.pool_written(
                vm, template, disk.name
            ):
                continue  # found, or an explicit pool already reported where it is written
            index = own.get(disk.name)
            path: _yaml.Path = (
                ("spec", "disks", index) if index is not None else ("spec", "template")
            )
            self.error(
                doc,
                path,
                f"disk {disk.name!r} uses the default storage pool {disk.pool!r}, which is neither "
                "in the manifests nor in the record; declare it or set 'pool'",
            )

    @staticmethod
    def pool_written(vm: kinds.VirtualMachine, template: kinds.Template | None, disk: str) -> bool:
        specs: list[kinds.TemplateSpec | kinds.VirtualMachineSpec] = [vm.spec]
        if template is not None:
            specs.append(template.spec)
        return any(d.name == disk and d.pool is not None for spec in specs for d in spec.disks)

    # --- result --------------------------------------------------------------------------

    def state(self) -> desired.DesiredState:
        result = desired.DesiredState(effective_vms=dict(self.effective))
        for (kind, name), valid in self.valid.items():
            result.by_kind(kind)[name] = desired.Loaded(valid.manifest, valid.source)
        return result

    def messages(self) -> list[str]:
        return [
            error.text for error in sorted(self.errors, key=lambda e: (e.order, e.line, e.column))
        ]


def load(
    paths: Sequence[str],
    *,
    known: Collection[record.ResourceKey] = (),
    revision: str | None = None,
    stdin: TextIO | None = None,
    templates: Mapping[str, kinds.Template] | None = None,
) -> desired.DesiredState:
    """Read and validate every manifest under ``paths``; raise ManifestError listing all problems.

    ``paths`` are files, directories (recursive) or ``-`` for ``stdin`` (default
    ``sys.stdin``). ``known`` holds the resources already in the record, so a
    reference to one of them is satisfied. ``revision`` is stored in each
    document's :class:`~reconciler.models.desired.Source`.
    """
    run = _Run(known, revision, templates or {})
    for order, (name, text) in enumerate(_read(paths, stdin)):
        if text is None:
            run.unlocated(order, name)
        else:
            run.file(order, name, text)
    run.references()
    run.merge_all()
    if run.errors:
        raise errors.ManifestError(run.messages())
    return run.state()


def load_against(
    paths: Sequence[str],
    records: Iterable[record.ResourceRecord],
    *,
    revision: str | None = None,
    stdin: TextIO | None = None,
) -> desired.DesiredState:
    """:func:`load`, with references and templates also satisfied by the record.

    Tombstoned ``records`` are ignored, so a caller can pass the listing it also
    plans with.
    """
    live = [r for r in records if r.deleted_at is None]
    templates = {
        r.key.name: kinds.Template.model_validate(r.spec)
        for r in live
        if r.key.kind == kinds.Kind.TEMPLATE.value
    }
    return load(
        paths, known=[r.key for r in live], revision=revision, stdin=stdin, templates=templates
    )
