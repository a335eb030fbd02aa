"""JSON Schemas for the manifest kinds, generated from the pydantic models.

The models are the single source of truth; ``schemas/`` holds their JSON
Schema so editors validate manifests as users type (a file starting with
``# yaml-language-server: $schema=../schemas/all.json``). One file per kind
(``schemas/virtualmachine.json``) and ``schemas/all.json``, which accepts any
kind (``oneOf``, discriminated by ``kind``) and is self-contained so editors
need not resolve references across files.

Output is deterministic (sorted keys, two-space indent, trailing newline) so a
test can compare a fresh rendering with the committed files and fail when they
are stale. Regenerate with::

    python -m reconciler.manifests.schema        # or scripts/gen-schemas
    python -m reconciler.manifests.schema --check  # exit 1 when stale
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pydantic

from reconciler.models import kinds

__all__ = ["ALL", "BASE_ID", "DIALECT", "REGENERATE", "main", "render", "stale", "write"]

BASE_ID = "https://infinibay.io/schemas/v1alpha1/"
DIALECT = "https://json-schema.org/draft/2020-12/schema"
ALL = "all.json"
REGENERATE = "scripts/gen-schemas"


def _file_name(kind: kinds.Kind) -> str:
    return f"{kind.value.lower()}.json"


def _decorate(
    schema: dict[str, Any], file_name: str, title: str, description: str
) -> dict[str, Any]:
    return {
        **schema,
        "$schema": DIALECT,
        "$id": BASE_ID + file_name,
        "title": title,
        "description": description,
    }


def _dump(schema: dict[str, Any]) -> str:
    return json.dumps(schema, indent=2, sort_keys=True, ensure_ascii=False) + "\n"


def render() -> dict[str, str]:
    """Every schema file's name and text, as :func:`write` would save them."""
    files: dict[str, str] = {}
    for kind, model in kinds.KINDS.items():
        name = _file_name(kind)
        schema = model.model_json_schema()
        files[name] = _dump(
            _decorate(schema, name, kind.value, f"A {kind.value} manifest ({kinds.API_VERSION}).")
        )
    union = pydantic.TypeAdapter(kinds.Manifest).json_schema()
    files[ALL] = _dump(
        _decorate(union, ALL, "Manifest", f"Any Infinibay manifest ({kinds.API_VERSION}).")
    )
    return dict(sorted(files.items()))


def stale(directory: Path) -> list[str]:
    """Names of schema files in ``directory`` that are missing, outdated or unexpected."""
    expected = render()
    present = {path.name for path in directory.glob("*.json")} if directory.is_dir() else set()
    outdated = [
        name
        for name, text in expected.items()
        if name not in present or (directory / name).read_text(encoding="utf-8") != text
    ]
    return sorted({*outdated, *(present - set(expected))})


def write(directory: Path) -> list[str]:
    """Write every schema into ``directory``, delete unexpected ``*.json``; return what changed."""
    changed = stale(directory)
    directory.mkdir(parents=True, exist_ok=True)
    expected = render()
    for name in changed:
        path = directory / name
        if name in expected:
            path.write_text(expected[name], encoding="utf-8")
        else:
            path.unlink()
    return changed


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m reconciler.manifests.schema",
        description="Generate JSON Schemas for the manifest kinds.",
    )
    parser.add_argument("directory", nargs="?", default="schemas", type=Path)
    parser.add_argument("--check", action="store_true", help="only report stale files; exit 1")
    args = parser.parse_args(argv)
    if args.check:
        outdated = stale(args.directory)
        for name in outdated:
            print(f"{args.directory / name} is stale; run {REGENERATE}")
        return 1 if outdated else 0
    for name in write(args.directory):
        print(f"wrote {args.directory / name}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
