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

The checks run in five passes, each only over what the previous one accepted,
so one mistake yields one message rather than a cascade:

1. per document: YAML, ``apiVersion``, ``kind``, then the pydantic model of the
   kind (messages located by :mod:`reconciler.manifests._pydantic`);
2. across documents: duplicate ``kind/name``; references to templates, networks
   and pools that are neither declared in this run nor in ``known`` (the record).
   A reference to a document that is declared but invalid is not reported again;
3. the trust boundary (SPEC §13, :class:`reconciler.settings.Boundary`): pool
   paths inside the operator's roots, graphics on loopback, and ``image:``
   only from image pools (``images: true``);
4. each VirtualMachine is merged over its template
   (:func:`reconciler.models.effective.merge`); a merge error, a disk left in
   an undeclared pool (the default pool included) and an image taken from a
   pool that is not an image pool are located on the VM;
5. across the valid documents and the record: ``extends`` cycles, department
   quotas, IPv4 subnets that overlap (a network of the record that this run
   does not declare included) and a MAC given to two NICs (the record's VMs
   included). Overlaps with networks libvirt has but the record does not know
   are the planner's to find, since only it observes libvirt.

A VM whose template is known only from the record is merged over the
record's template spec, which the caller passes as ``templates``.

Directories are walked recursively for ``*.yaml`` and ``*.yml`` in sorted order;
hidden files and directories (``.git``, ``.github``, editors' ``#x.yaml#``,
``.#x.yaml`` and ``x.yaml~``; :mod:`reconciler.manifests.paths`) are skipped, symlinked
directories are not entered, and a file that resolves outside its source root
(the directory named, or the directory a named file is in) is refused unread.
Caps from :class:`reconciler.settings.Limits` bound the size of each file, the
nesting of each document and the documents of the whole run; past the document
cap the run stops at once with that one message. A file named twice is read
once. A top-level ``status`` is ignored: it is never read from manifests.

A document of ``kind: List`` (what ``get KIND -o yaml`` and ``-o json`` print)
stands for its ``items``: each is checked and located as a document of its own,
so ``get vms -o yaml | infinibay apply -f -`` reads back, the fields the
reconciler sets (``metadata.uid``, ``generation``, ``creationTimestamp`` and
``status``) ignored with one notice per item.
"""

from __future__ import annotations

import dataclasses
import ipaddress
import os
import re
import stat as stat_mode
import sys
import typing
from collections.abc import Callable, Collection, Iterable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any, TextIO

import pydantic

from reconciler import errors, settings
from reconciler.manifests import _pydantic, _yaml, paths
from reconciler.models import catalog, desired, effective, fields, firewall, kinds, record

__all__ = ["STDIN", "Cache", "load", "load_against", "recorded_macs"]

STDIN = "-"
_KIND_NAMES = [kind.value for kind in kinds.Kind]
LIST_KIND = "List"
_LIST_FIELDS = ("apiVersion", "kind", "items")
SERVER_SET = ("uid", "generation", "creationTimestamp")
"""Metadata ``get -o yaml`` prints that the reconciler sets: ignored, with a notice."""
_NO_SIZE = re.compile(r"^disk '(.+)' has no size")
_DNS_LABEL = re.compile(fields.DNS_LABEL)
_REFERENCES = (
    ("disks", "pool", kinds.Kind.STORAGE_POOL),
    ("disks", "imagePool", kinds.Kind.STORAGE_POOL),
    ("networks", "network", kinds.Kind.NETWORK),
    ("cdroms", "pool", kinds.Kind.STORAGE_POOL),
)

# Fields of a kind's spec that name another resource.
_SCALAR_REFERENCES: dict[kinds.Kind, tuple[tuple[str, kinds.Kind], ...]] = {
    kinds.Kind.VIRTUAL_MACHINE: (
        ("template", kinds.Kind.TEMPLATE),
        ("department", kinds.Kind.DEPARTMENT),
        ("host", kinds.Kind.HOST),
    ),
    kinds.Kind.DEPARTMENT: (
        ("network", kinds.Kind.NETWORK),
        ("firewall", kinds.Kind.FIREWALL_POLICY),
    ),
}

AnyManifest = kinds.AnyManifest


class Cache:
    """What a daemon keeps between loads of its source, so that a change costs what it changed.

    A daemon loads its whole source again on every change, and with thousands
    of manifests reading, validating and merging every one of them again made
    each edit cost seconds. Yet the first pass (YAML, then the kind's model)
    depends on a file's text alone, and a VM's merge on its manifest, its
    template and its department's network alone, all frozen: so a file whose
    text is unchanged gives back the very documents and manifests it gave last
    time, and a VM whose inputs are those same objects its same effective VM.
    Every check across documents still runs over the whole source on each load,
    so a cached load reports exactly what an uncached one does.

    A load keeps what it used and drops the rest: the cache holds at most one
    copy of the source, the one the daemon's desired state holds anyway. Not
    thread-safe: one source, one loop.
    """

    def __init__(self) -> None:
        self._files: dict[str, tuple[str, int, _yaml.Parsed]] = {}
        self._models: dict[int, tuple[_yaml.Document, AnyManifest]] = {}
        self._merged: dict[tuple[int, int, str | None], _Merged] = {}
        self._used: tuple[set[str], set[int], set[tuple[int, int, str | None]]] = (
            set(),
            set(),
            set(),
        )

    def parse(self, name: str, text: str, max_depth: int, budget: int) -> _yaml.Parsed:
        """``_yaml.parse`` of ``text``; the same result as last time for the same text."""
        hit = self._files.get(name)
        if hit is not None and hit[0] == text and hit[1] == max_depth and hit[2].count <= budget:
            parsed = hit[2]
        else:
            parsed = _yaml.parse(text, max_depth=max_depth, budget=budget)
            if any(isinstance(p, _yaml.Problem) and p.over_budget for p in parsed.items):
                return parsed  # depends on the budget, not on the text alone
            self._files[name] = (text, max_depth, parsed)
        self._used[0].add(name)
        return parsed

    def validate(
        self, document: _yaml.Document, model: type[AnyManifest], body: dict[str, Any]
    ) -> AnyManifest:
        """``model.model_validate(body)``, once per document; raises what it raises."""
        hit = self._models.get(id(document))
        if hit is not None and hit[0] is document and type(hit[1]) is model:
            manifest = hit[1]
        else:
            manifest = model.model_validate(body)
            self._models[id(document)] = (document, manifest)
        self._used[1].add(id(document))
        return manifest

    def merge(
        self,
        vm: kinds.VirtualMachine,
        template: kinds.Template | None,
        department_network: str | None,
    ) -> effective.EffectiveVM:
        """:func:`reconciler.models.effective.merge`, once per VM, template and network."""
        key = (id(vm), id(template), department_network)
        hit = self._merged.get(key)
        if hit is None or hit.vm is not vm or hit.template is not template:
            hit = _Merged(vm, template, effective.merge(vm, template, department_network))
            self._merged[key] = hit
        self._used[2].add(key)
        return hit.result

    def settle(self) -> None:
        """The end of a load: keep what it used, drop the rest."""
        files, models, merged = self._used
        self._files = {k: v for k, v in self._files.items() if k in files}
        self._models = {k: v for k, v in self._models.items() if k in models}
        self._merged = {k: v for k, v in self._merged.items() if k in merged}
        self._used = (set(), set(), set())


@dataclasses.dataclass(frozen=True)
class _Merged:
    vm: kinds.VirtualMachine  # held, so that the ids keying it are not reused
    template: kinds.Template | None
    result: effective.EffectiveVM


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


def _walk(root: Path) -> list[Path]:
    """Manifest files under ``root`` (:func:`~reconciler.manifests.paths.is_manifest`), sorted.

    Hidden directories are not entered, nor are symlinked ones.
    """
    found: list[Path] = []
    for directory, subdirs, names in os.walk(root):
        subdirs[:] = [d for d in subdirs if not paths.hidden(d)]
        found.extend(
            path
            for path in (Path(directory, name) for name in names)
            if paths.is_manifest(path.relative_to(root))
        )
    return sorted(found)


def _read_file(
    file: Path, root: str, limits: settings.Limits, *, linked: bool
) -> tuple[str, str | None]:
    """``(name, text)``; ``text`` is ``None`` and ``name`` a located message on failure.

    A symlink (``linked``) that resolves outside ``root`` (to ``/etc/shadow``)
    is refused without being opened, and its content can never reach a message.
    Any other file lies inside ``root`` already, since the walk does not enter
    symlinked directories. The file is opened with ``O_NOFOLLOW``, so a
    symlink swapped in after the check does not lead out either.
    """
    real = os.path.realpath(file) if linked else str(file)
    if linked and not settings.inside(real, root):
        return f"{file}:1:1: ?/?: a symlink leading outside the source root {root}; not read", None
    try:
        fd = os.open(real, os.O_RDONLY | os.O_NOFOLLOW | getattr(os, "O_CLOEXEC", 0))
    except OSError as exc:
        return f"{file}: cannot read: {exc.strerror or exc}", None
    with os.fdopen(fd, "rb") as handle:
        size = os.fstat(fd).st_size
        data = handle.read(limits.file_bytes + 1) if size <= limits.file_bytes else b""
    if size > limits.file_bytes or len(data) > limits.file_bytes:
        return (
            f"{file}:1:1: ?/?: the file is larger than {limits.file_bytes} bytes "
            "(INFINIBAY_MAX_FILE_BYTES); not read"
        ), None
    try:
        return str(file), data.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = data.count(b"\n", 0, exc.start) + 1
        column = exc.start - (data.rfind(b"\n", 0, exc.start) + 1) + 1
        return (
            f"{file}:{line}:{column}: ?/?: not UTF-8 text ({exc.reason} at byte {exc.start})"
        ), None


def _read(
    paths: Sequence[str], stdin: TextIO | None, limits: settings.Limits
) -> Iterator[tuple[str, str | None]]:
    """Yield ``(name, text)``; ``text`` is ``None`` (and ``name`` a message) on failure.

    The source root of a directory is the directory itself, of a file the
    directory it is named in, both with symlinks resolved.
    """
    seen: set[tuple[int, int]] = set()  # (device, inode): a file named twice is read once
    for raw in paths:
        if raw == STDIN:
            text = (stdin if stdin is not None else sys.stdin).read(limits.file_bytes + 1)
            if len(text.encode("utf-8", "surrogatepass")) > limits.file_bytes:
                yield (
                    (
                        f"{STDIN}:1:1: ?/?: the input is larger than {limits.file_bytes} bytes "
                        "(INFINIBAY_MAX_FILE_BYTES); not read"
                    ),
                    None,
                )
            else:
                yield STDIN, text
            continue
        path = Path(raw)
        if path.is_dir():
            root, files = os.path.realpath(path), _walk(path)
        elif path.exists():
            root, files = os.path.realpath(path.parent), [path]
        else:
            yield f"{raw}: no such file or directory", None
            continue
        for file in files:
            try:
                stat = os.lstat(file)
                linked = stat_mode.S_ISLNK(stat.st_mode)
                if linked:
                    stat = os.stat(file)
            except OSError:
                continue  # a dangling symlink, or removed meanwhile
            if not stat_mode.S_ISREG(stat.st_mode) or (stat.st_dev, stat.st_ino) in seen:
                continue
            seen.add((stat.st_dev, stat.st_ino))
            yield _read_file(file, root, limits, linked=linked)


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
        pools: Mapping[str, kinds.StoragePool],
        boundary: settings.Boundary,
        limits: settings.Limits,
        departments: Mapping[str, kinds.Department] | None = None,
        policies: Mapping[str, kinds.FirewallPolicy] | None = None,
        macs: Mapping[str, str] | None = None,
        networks: Mapping[str, kinds.Network] | None = None,
        cache: Cache | None = None,
    ) -> None:
        self.revision = revision
        self.cache = cache
        self.recorded_networks: Mapping[str, kinds.Network] = networks or {}
        self.recorded_macs: Mapping[str, str] = macs or {}  # MAC -> VM, from the record
        self.recorded_templates = templates
        self.recorded_departments: Mapping[str, kinds.Department] = departments or {}
        self.recorded_policies: Mapping[str, kinds.FirewallPolicy] = policies or {}
        self.recorded_pools = pools
        self.boundary = boundary
        self.limits = limits
        self.documents = 0  # documents read so far, against limits.documents
        self.image_reported: set[tuple[str, str]] = set()  # (template, disk)
        self.known = {(str(key.kind), key.name) for key in known}
        self.errors: list[_Error] = []
        self.notices: list[str] = []
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

    def too_many(self, name: str, where: _yaml.Position) -> errors.ManifestError:
        """The one message of a run past the document cap: nothing read is validated."""
        return errors.ManifestError(
            [
                f"{name}:{where.line}:{where.column}: ?/?: more than "
                f"{self.limits.documents} documents in this run (INFINIBAY_MAX_DOCUMENTS); "
                "refusing to load any of them"
            ]
        )

    # --- pass 1: each document ---------------------------------------------------

    def file(self, order: int, name: str, text: str) -> None:
        budget = self.limits.documents - self.documents
        if self.cache is not None:
            parsed = self.cache.parse(name, text, self.limits.depth, budget)
        else:
            parsed = _yaml.parse(text, max_depth=self.limits.depth, budget=budget)
        self.documents += parsed.count
        over = [p for p in parsed.items if isinstance(p, _yaml.Problem) and p.over_budget]
        if over:
            # The one message of the run: what was read so far is not validated at all.
            raise self.too_many(name, over[0].position)
        for item in parsed.items:
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
        if data.get("kind") == LIST_KIND:
            self.items(order, name, document)
            return
        kind, manifest_name, label = _label(data)
        doc = _Doc(name, order, document, label)
        for duplicate in document.duplicates:
            self.error(doc, duplicate.path, duplicate.message, at=duplicate.position)
        self.api_version(doc)
        if "kind" not in data:
            self.error(
                doc,
                ("kind",),
                f"required field is missing; one of {', '.join(_KIND_NAMES)}",
                at=document.start,
            )
            return
        if kind is None:
            hint = _pydantic.suggest(str(data["kind"]), [*_KIND_NAMES, LIST_KIND])
            advice = f"did you mean {hint!r}?" if hint else f"one of {', '.join(_KIND_NAMES)}"
            self.error(doc, ("kind",), f"unknown kind {data['kind']!r}; {advice}")
            return
        self.declared.append((kind, doc))
        if manifest_name is not None:
            self.declare(kind, manifest_name, doc)
        body = {key: value for key, value in data.items() if key != "status"}
        metadata = data.get("metadata")
        if isinstance(metadata, dict) and (ignored := [k for k in SERVER_SET if k in metadata]):
            # What get -o yaml prints back: read as a manifest, the reconciler's own fields go.
            where = doc.position(("metadata", ignored[0]))
            named = ", ".join(f"metadata.{k}" for k in ignored)
            self.notices.append(
                f"{doc.file}:{where.line}:{where.column}: {doc.label}: {named}: "
                "set by the reconciler, ignored"
            )
            body["metadata"] = {k: v for k, v in metadata.items() if k not in SERVER_SET}
        body["apiVersion"] = kinds.API_VERSION  # a wrong one is reported above, once
        model = kinds.KINDS[kind]
        try:
            if self.cache is not None:
                manifest = self.cache.validate(document, model, body)
            else:
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

    def api_version(self, doc: _Doc) -> None:
        data = doc.document.data
        api = data.get("apiVersion")
        if "apiVersion" not in data:
            self.error(
                doc,
                ("apiVersion",),
                f"required field is missing; use {kinds.API_VERSION}",
                at=doc.document.start,
            )
        elif api != kinds.API_VERSION:
            self.error(doc, ("apiVersion",), f"unknown apiVersion {api!r}; use {kinds.API_VERSION}")

    def items(self, order: int, name: str, document: _yaml.Document) -> None:
        """A ``kind: List`` (what ``get KIND -o yaml`` prints): each item is a document.

        The List itself holds ``apiVersion``, ``kind`` and ``items`` only. Its items
        count against the document cap like the documents of a stream, and each
        is checked (and located) exactly as a document of its own would be.
        """
        data = document.data
        doc = _Doc(name, order, document, f"{LIST_KIND}/?")
        for duplicate in document.duplicates:
            if duplicate.path[:1] != ("items",):
                self.error(doc, duplicate.path, duplicate.message, at=duplicate.position)
        self.api_version(doc)
        for key in data:
            if key not in _LIST_FIELDS:
                self.error(
                    doc,
                    (key if isinstance(key, str | int) else str(key),),
                    f"unknown field {str(key)!r}; a {LIST_KIND} has {', '.join(_LIST_FIELDS)}",
                )
        items = data.get("items")
        if "items" not in data:
            self.error(
                doc,
                ("items",),
                f"required field is missing; a {LIST_KIND} holds its manifests in items",
                at=document.start,
            )
            return
        if not isinstance(items, list):
            self.error(
                doc,
                ("items",),
                f"a {LIST_KIND}'s items must be a list of manifests, not a {type(items).__name__}",
            )
            return
        self.documents += len(items)
        if self.documents > self.limits.documents:
            raise self.too_many(name, doc.position(("items",)))
        for index in range(len(items)):
            self.document(order, name, document.member(("items", index)))

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
        message = f"{catalog.display(kind)} {name!r} is neither in the manifests nor in the record"
        self.error(doc, path, f"{message}; did you mean {hint!r}?" if hint else message)
        return False

    def references(self) -> None:
        """Check references as written, in valid and invalid documents alike."""
        for kind, doc in self.declared:
            spec = doc.document.data.get("spec")
            if not isinstance(spec, dict):
                continue
            for field, target in _SCALAR_REFERENCES.get(kind, ()):
                if _is_name(spec.get(field)):
                    self.reference(doc, ("spec", field), target, spec[field])
            if kind is kinds.Kind.FIREWALL_POLICY:
                extends = spec.get("extends")
                for i, item in enumerate(extends if isinstance(extends, list) else []):
                    if _is_name(item):
                        self.reference(
                            doc, ("spec", "extends", i), kinds.Kind.FIREWALL_POLICY, item
                        )
            if kind not in (kinds.Kind.TEMPLATE, kinds.Kind.VIRTUAL_MACHINE):
                continue
            for member, field, target in _REFERENCES:
                items = spec.get(member)
                for i, item in enumerate(items if isinstance(items, list) else []):
                    if isinstance(item, dict) and _is_name(item.get(field)):
                        self.reference(doc, ("spec", member, i, field), target, item[field])

    # --- pass 3: the trust boundary ----------------------------------------------------

    def trust(self) -> None:
        """Pool paths, graphics listen addresses and template images, checked as written."""
        for (_kind, name), valid in self.valid.items():
            manifest = valid.manifest
            if isinstance(manifest, kinds.StoragePool):
                problem = self.boundary.pool_problem(
                    manifest.spec.path, images=manifest.spec.images
                )
                if problem is not None:
                    self.error(valid.doc, ("spec", "path"), problem)
            elif isinstance(manifest, kinds.Host):
                problem = self.boundary.host_problem(manifest.spec.uri)
                if problem is not None:
                    self.error(valid.doc, ("spec", "uri"), problem)
            elif isinstance(manifest, kinds.Template | kinds.VirtualMachine):
                graphics = manifest.spec.graphics
                if graphics is not None and "listen" in graphics.model_fields_set:
                    problem = self.boundary.listen_problem(graphics.listen)
                    if problem is not None:
                        self.error(valid.doc, ("spec", "graphics", "listen"), problem)
                # A cdrom's ISO is an image like a disk's backing file: from image pools only.
                for index, cdrom in enumerate(manifest.spec.cdroms or []):
                    problem = self.image_problem(cdrom.image, cdrom.pool)
                    if problem is not None:
                        self.error(valid.doc, ("spec", "cdroms", index, "pool"), problem)
            if isinstance(manifest, kinds.Template):
                for index, disk in enumerate(manifest.spec.disks):
                    if disk.image is None:
                        continue
                    source = disk.imagePool or disk.pool or effective.DEFAULT_POOL
                    problem = self.image_problem(disk.image, source)
                    if problem is not None:
                        self.image_reported.add((name, disk.name))
                        where = "imagePool" if disk.imagePool else "image"
                        self.error(valid.doc, ("spec", "disks", index, where), problem)

    def image_problem(self, image: str, pool: str) -> str | None:
        """Why ``image`` may not come from ``pool``; ``None`` also when reported elsewhere."""
        valid = self.valid.get((kinds.Kind.STORAGE_POOL, pool))
        declared = valid.manifest if valid is not None else self.recorded_pools.get(pool)
        if declared is None and (
            (kinds.Kind.STORAGE_POOL, pool) in self.first
            or (kinds.Kind.STORAGE_POOL.value, pool) not in self.known
        ):
            return None  # invalid or undeclared: reported as such
        if isinstance(declared, kinds.StoragePool) and declared.spec.images:
            return None
        return (
            f"image {image!r} must come from an image pool; storage pool {pool!r} is not "
            "marked 'images: true' (set it on a pool under INFINIBAY_IMAGE_ROOTS, or name "
            "one with 'imagePool')"
        )

    # --- pass 4: effective VMs ---------------------------------------------------------

    def merge_all(self) -> None:
        templates = self.templates()  # once: looking them up per VM made a load quadratic
        for (kind, name), valid in self.valid.items():
            if kind is kinds.Kind.VIRTUAL_MACHINE:
                assert isinstance(valid.manifest, kinds.VirtualMachine)
                self.merge(name, valid.manifest, valid.doc, templates)

    def templates(self) -> dict[str, kinds.Template]:
        """The valid templates of this run, by name."""
        return {
            name: valid.manifest
            for (kind, name), valid in self.valid.items()
            if isinstance(valid.manifest, kinds.Template)
        }

    def department(self, name: str | None) -> kinds.Department | None:
        """The department ``name`` of this run, else of the record; ``None`` if neither."""
        if name is None:
            return None
        valid = self.valid.get((kinds.Kind.DEPARTMENT, name))
        if valid is not None and isinstance(valid.manifest, kinds.Department):
            return valid.manifest
        return self.recorded_departments.get(name)

    def policies(self) -> dict[str, kinds.FirewallPolicy]:
        """The firewall policies of the record, overridden by the valid ones of this run."""
        found = dict(self.recorded_policies)
        for (_kind, name), valid in self.valid.items():
            if isinstance(valid.manifest, kinds.FirewallPolicy):
                found[name] = valid.manifest
        return found

    # --- pass 5: firewall policies and department quotas ---------------------------------

    def extends(self) -> None:
        """Refuse ``extends`` cycles (naming both ends) and chains deeper than the bands."""
        policies = self.policies()
        depth = firewall.levels({name: p.spec for name, p in policies.items()})

        for (kind, name), valid in sorted(self.valid.items()):
            if kind is not kinds.Kind.FIREWALL_POLICY:
                continue
            assert isinstance(valid.manifest, kinds.FirewallPolicy)
            cyclic = False
            for index, parent in enumerate(valid.manifest.spec.extends):
                cycle = self.cycle(parent, name, policies)
                if cycle is not None:
                    cyclic = True
                    chain = " -> ".join(f"firewallpolicy/{n}" for n in (name, *cycle))
                    self.error(
                        valid.doc,
                        ("spec", "extends", index),
                        f"extends cycle: {chain}; a policy cannot extend itself",
                    )
            if not cyclic:
                deepest = depth[name]
                if deepest > firewall.MAX_LEVEL:
                    self.error(
                        valid.doc,
                        ("spec", "extends"),
                        f"extends nests {deepest} policies deep; at most {firewall.MAX_LEVEL}",
                    )

    @staticmethod
    def cycle(
        start: str, back_to: str, policies: Mapping[str, kinds.FirewallPolicy]
    ) -> tuple[str, ...] | None:
        """The path from ``start`` back to ``back_to`` through ``extends``, if there is one."""
        seen: set[str] = set()

        def walk(name: str) -> tuple[str, ...] | None:
            if name == back_to:
                return (name,)
            if name in seen or name not in policies:
                return None
            seen.add(name)
            for parent in policies[name].spec.extends:
                found = walk(parent)
                if found is not None:
                    return (name, *found)
            return None

        return walk(start)

    def _ordered(self, kind: kinds.Kind) -> list[_Valid]:
        found = [v for (k, _n), v in self.valid.items() if k is kind]
        return sorted(found, key=lambda v: (v.doc.order, v.doc.document.index))

    def subnets(self) -> None:
        """Refuse two networks whose IPv4 subnets overlap, at the later one's address.

        The record's networks that this run does not declare count too (they
        still exist, unless pruned after this run creates its own): they come
        first, so a manifest network overlapping one is the one reported.
        """
        seen: list[tuple[str, ipaddress.IPv4Network]] = [
            (f"{name} (in the record)", network.spec.ipv4.address.network)
            for name, network in sorted(self.recorded_networks.items())
            if network.spec.ipv4 is not None and (kinds.Kind.NETWORK, name) not in self.first
        ]
        for valid in self._ordered(kinds.Kind.NETWORK):
            assert isinstance(valid.manifest, kinds.Network)
            ipv4 = valid.manifest.spec.ipv4
            if ipv4 is None:
                continue
            subnet = ipv4.address.network
            for other, taken in seen:
                if subnet.overlaps(taken):
                    self.error(
                        valid.doc,
                        ("spec", "ipv4", "address"),
                        f"subnet {subnet} overlaps {taken} of network/{other}",
                    )
                    break
            seen.append((valid.manifest.metadata.name, subnet))

    def macs(self) -> None:
        """Refuse a MAC address given to two NICs: of two VMs, of one, or of a VM in the record."""
        owners: dict[str, str] = {}
        for valid in self._ordered(kinds.Kind.VIRTUAL_MACHINE):
            assert isinstance(valid.manifest, kinds.VirtualMachine)
            name = valid.manifest.metadata.name
            vm = self.effective.get(name)
            if vm is None:
                continue
            for nic in vm.nics:
                if nic.mac is None:
                    continue
                mac = nic.mac.lower()
                other = owners.get(mac)
                if other is None:
                    recorded = self.recorded_macs.get(mac)
                    if recorded is not None and recorded != name and recorded not in self.effective:
                        other = f"{recorded} (in the record)"
                if other is not None:
                    self.error(
                        valid.doc,
                        self._mac_path(valid.manifest, mac),
                        f"MAC {mac} is already used by virtualmachine/{other}",
                    )
                    continue
                owners[mac] = name

    @staticmethod
    def _mac_path(vm: kinds.VirtualMachine, mac: str) -> _yaml.Path:
        """Where the VM's manifest sets ``mac`` (else its template does: the VM's template)."""
        for index, nic in enumerate(vm.spec.networks or []):
            if nic.mac is not None and nic.mac.lower() == mac:
                return ("spec", "networks", index, "mac")
        return ("spec", "template") if vm.spec.template else ("spec",)

    def quotas(self) -> None:
        """Refuse manifests whose VMs exceed their department's quota, naming the VMs."""
        for (kind, name), valid in sorted(self.valid.items()):
            if kind is not kinds.Kind.DEPARTMENT:
                continue
            assert isinstance(valid.manifest, kinds.Department)
            quota = valid.manifest.spec.quota
            if quota is None:
                continue
            members = sorted(
                (vm for vm in self.effective.values() if vm.department == name),
                key=lambda vm: vm.name,
            )
            names = ", ".join(f"virtualmachine/{vm.name}" for vm in members)
            used: list[tuple[str, int, int | None, Callable[[int], str]]] = [
                ("vms", len(members), quota.vms, str),
                ("cpus", sum(vm.cpus for vm in members), quota.cpus, str),
                ("memory", sum(vm.memory for vm in members), quota.memory, fields.format_size),
            ]
            for field, total, limit, shown in used:
                if limit is not None and total > limit:
                    self.error(
                        valid.doc,
                        ("spec", "quota", field),
                        f"quota exceeded: {shown(total)} {field} > {shown(limit)} (by {names})",
                    )

    def merge(
        self,
        name: str,
        vm: kinds.VirtualMachine,
        doc: _Doc,
        templates: Mapping[str, kinds.Template],
    ) -> None:
        try:
            template = effective.template_for(vm, templates, self.recorded_templates)
        except effective.MissingTemplate:
            return  # dangling or invalid: already reported
        own = {disk.name: i for i, disk in enumerate(vm.spec.disks)}
        department = self.department(vm.spec.department)
        network = department.spec.network if department is not None else None
        try:
            if self.cache is not None:
                result = self.cache.merge(vm, template, network)
            else:
                result = effective.merge(vm, template, network)
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
        self.vm_images(vm, template, doc, result, own)
        self.first_boot_pool(vm, doc, result)
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

    def first_boot_pool(
        self, vm: kinds.VirtualMachine, doc: _Doc, result: effective.EffectiveVM
    ) -> None:
        """A VM's first-boot seeds need a pool to live in, one that is known."""
        first_boot = result.first_boot
        if first_boot is None:
            return
        path: _yaml.Path = ("spec", "firstBoot") if vm.spec.firstBoot else ("spec", "template")
        if first_boot.pool is None:
            self.error(
                doc,
                path,
                "firstBoot needs a pool for its seed volume: set firstBoot.pool or give the VM "
                "a disk",
            )
        elif not self.exists(kinds.Kind.STORAGE_POOL, first_boot.pool):
            self.error(
                doc,
                path,
                f"the seed pool {first_boot.pool!r} of firstBoot is neither in the manifests nor "
                "in the record",
            )

    def vm_images(
        self,
        vm: kinds.VirtualMachine,
        template: kinds.Template | None,
        doc: _Doc,
        result: effective.EffectiveVM,
        own: Mapping[str, int],
    ) -> None:
        """Report an effective disk's image that no image pool provides, where the VM decides it."""
        for disk in result.disks:
            source = disk.image_source
            if disk.image is None or source is None:
                continue
            index = own.get(disk.name)
            written = vm.spec.disks[index] if index is not None else None
            fields_set = written.model_fields_set if written is not None else set()
            decided = [f for f in ("imagePool", "image", "pool") if f in fields_set]
            if (
                not decided
                and template is not None
                and (
                    (template.metadata.name, disk.name) in self.image_reported
                    or (kinds.Kind.TEMPLATE, template.metadata.name) in self.valid
                )
            ):
                continue  # the template decides, and its own check covers it
            problem = self.image_problem(disk.image, source)
            if problem is None:
                continue
            path: _yaml.Path = (
                ("spec", "disks", index, decided[0])
                if index is not None and decided
                else ("spec", "template")
            )
            self.error(doc, path, problem)

    @staticmethod
    def pool_written(vm: kinds.VirtualMachine, template: kinds.Template | None, disk: str) -> bool:
        specs: list[kinds.TemplateSpec | kinds.VirtualMachineSpec] = [vm.spec]
        if template is not None:
            specs.append(template.spec)
        return any(d.name == disk and d.pool is not None for spec in specs for d in spec.disks)

    # --- result --------------------------------------------------------------------------

    def state(self) -> desired.DesiredState:
        result = desired.DesiredState(
            effective_vms=dict(self.effective),
            notices=self.notices,
            virtio_win=self.boundary.virtio_win,
        )
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
    pools: Mapping[str, kinds.StoragePool] | None = None,
    boundary: settings.Boundary | None = None,
    limits: settings.Limits | None = None,
    departments: Mapping[str, kinds.Department] | None = None,
    policies: Mapping[str, kinds.FirewallPolicy] | None = None,
    macs: Mapping[str, str] | None = None,
    networks: Mapping[str, kinds.Network] | None = None,
    cache: Cache | None = None,
) -> desired.DesiredState:
    """Read and validate every manifest under ``paths``; raise ManifestError listing all problems.

    ``paths`` are files, directories (recursive) or ``-`` for ``stdin`` (default
    ``sys.stdin``). ``known`` holds the resources already in the record, so a
    reference to one of them is satisfied. ``revision`` is stored in each
    document's :class:`~reconciler.models.desired.Source`. ``templates``,
    ``pools``, ``departments``, ``policies`` and ``networks`` are the record's, by
    name, and ``macs`` its VMs' MAC addresses (MAC -> VM).
    ``boundary`` and ``limits`` default to the operator's environment.
    ``cache`` (a daemon's) spares what an earlier load of the same files did.
    """
    limits = limits if limits is not None else settings.Limits.from_environ()
    boundary = boundary if boundary is not None else settings.Boundary.from_environ()
    run = _Run(
        known,
        revision,
        templates or {},
        pools or {},
        boundary,
        limits,
        departments,
        policies,
        macs,
        networks,
        cache,
    )
    try:
        for order, (name, text) in enumerate(_read(paths, stdin, limits)):
            if text is None:
                run.unlocated(order, name)
            else:
                run.file(order, name, text)
        run.references()
        run.trust()
        run.merge_all()
        run.extends()
        run.quotas()
        run.subnets()
        run.macs()
    finally:
        if cache is not None:
            cache.settle()
    if run.errors:
        raise errors.ManifestError(run.messages())
    return run.state()


def recorded_macs(nics: Iterable[tuple[str, Any, Any]]) -> dict[str, str]:
    """MAC -> VM name, from ``(vm, status.macs, spec.effective.nics)`` of the record's VMs.

    Every NIC the record's VMs declared or were given, the first VM's where two
    share one; :meth:`reconciler.store.store.Store.vm_nics` reads just these.
    """
    found: dict[str, str] = {}
    for name, given, declared in nics:
        macs = list(given.values()) if isinstance(given, dict) else []
        if isinstance(declared, list):
            macs += [n.get("mac") for n in declared if isinstance(n, dict)]
        for mac in macs:
            if isinstance(mac, str):
                found.setdefault(mac.lower(), name)
    return found


def _recorded_macs(records: Iterable[record.ResourceRecord]) -> dict[str, str]:
    """MAC -> VM name, for every NIC the record's VMs declared or were given."""
    return recorded_macs(
        (
            rec.key.name,
            rec.status.get("macs") if isinstance(rec.status, dict) else None,
            rec.spec.get("effective", {}).get("nics", []),
        )
        for rec in records
        if rec.key.kind == kinds.Kind.VIRTUAL_MACHINE.value
    )


def load_against(
    paths: Sequence[str],
    records: Iterable[record.ResourceRecord],
    *,
    revision: str | None = None,
    stdin: TextIO | None = None,
    cache: Cache | None = None,
    macs: Mapping[str, str] | None = None,
) -> desired.DesiredState:
    """:func:`load`, with references and templates also satisfied by the record.

    Tombstoned ``records`` are ignored, so a caller can pass the listing it also
    plans with. ``macs`` (:func:`recorded_macs`) spares a caller that reads
    the record's VMs' NICs alone from passing every VM's record; then
    ``records`` need hold no VM, since nothing refers to one.
    """
    live = [r for r in records if r.deleted_at is None]
    templates = {
        r.key.name: record.spec_as(r, kinds.Template)
        for r in live
        if r.key.kind == kinds.Kind.TEMPLATE.value
    }
    pools = {
        r.key.name: record.spec_as(r, kinds.StoragePool)
        for r in live
        if r.key.kind == kinds.Kind.STORAGE_POOL.value
    }
    departments = {
        r.key.name: record.spec_as(r, kinds.Department)
        for r in live
        if r.key.kind == kinds.Kind.DEPARTMENT.value
    }
    policies = {
        r.key.name: record.spec_as(r, kinds.FirewallPolicy)
        for r in live
        if r.key.kind == kinds.Kind.FIREWALL_POLICY.value
    }
    networks = {
        r.key.name: record.spec_as(r, kinds.Network)
        for r in live
        if r.key.kind == kinds.Kind.NETWORK.value
    }
    return load(
        paths,
        known=[r.key for r in live],
        revision=revision,
        stdin=stdin,
        templates=templates,
        pools=pools,
        departments=departments,
        policies=policies,
        macs=_recorded_macs(live) if macs is None else macs,
        networks=networks,
        cache=cache,
    )
