"""One rule for which files are manifests, shared by the loader's walk and the watcher."""

from __future__ import annotations

import os
from pathlib import Path, PurePath

import pytest

from reconciler import manifests
from reconciler.daemon import sources
from reconciler.manifests import loader

CASES = [
    ("vms.yaml", True),
    ("vms.yml", True),
    ("sub/dir/vms.yml", True),
    ("a#b.yaml", True),  # only a leading '#' marks an editor's file
    ("README.md", False),
    ("vms.yaml.txt", False),
    (".vms.yaml", False),
    (".vms.yaml.swp", False),
    ("vms.yaml~", False),
    ("vms.yml~", False),
    (".#vms.yaml", False),
    ("#vms.yaml#", False),
    ("#vms.yaml", False),
    ("sub/#vms.yaml", False),
    (".git/config.yaml", False),
    (".hidden/vms.yaml", False),
    ("site/.github/workflows/ci.yml", False),
    ("#tmp/vms.yaml", False),
    ("old~/vms.yaml", False),
]


@pytest.mark.parametrize(("relative", "counts"), CASES)
def test_which_relative_paths_are_manifests(relative: str, counts: bool) -> None:
    assert manifests.is_manifest(PurePath(relative)) is counts


def test_no_path_is_a_manifest_outside_its_directory() -> None:
    assert not manifests.is_manifest(PurePath(""))
    assert not manifests.is_manifest(PurePath("/etc/vms.yaml"))


def test_the_loader_reads_exactly_what_the_watcher_counts(tmp_path: Path) -> None:
    root = tmp_path / "site"
    for relative, _ in CASES:
        path = root / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text("")  # empty documents load as nothing
    walked = {str(p.relative_to(root)) for p in loader._walk(root)}
    watched = {
        os.path.relpath(os.path.join(d, n), root)
        for d, _, names in os.walk(root)
        for n in names
        if sources.is_manifest_path(root, Path(d, n))
    }
    expected = {relative for relative, counts in CASES if counts}
    assert walked == expected
    assert watched == expected
