"""Daemon sources: which file changes count, directory revisions and watching, git checkouts.

The git tests use real repositories on disk and the host's ``git``, as the
daemon does in production.
"""

from __future__ import annotations

import threading
import time
from pathlib import Path

import pytest

from reconciler import errors
from reconciler.daemon import sources
from tests.fixtures.git import git

TEMPLATE = """apiVersion: infinibay.io/v1alpha1
kind: Template
metadata: {{name: {name}}}
spec: {{cpus: 1, memory: 64MiB}}
"""


@pytest.fixture
def repo(tmp_path: Path) -> tuple[Path, Path]:
    """A bare repository and a work clone with one commit on ``main``."""
    bare = tmp_path / "origin.git"
    work = tmp_path / "work"
    git(tmp_path, "init", "--quiet", "--bare", "--initial-branch=main", str(bare))
    git(tmp_path, "clone", "--quiet", str(bare), str(work))
    git(work, "checkout", "--quiet", "-B", "main")
    (work / "manifests").mkdir()
    (work / "manifests" / "a.yaml").write_text(TEMPLATE.format(name="a"))
    git(work, "add", ".")
    git(work, "commit", "--quiet", "-m", "one")
    git(work, "push", "--quiet", "origin", "main")
    return bare, work


@pytest.mark.parametrize(
    ("relative", "counts"),
    [
        ("vms.yaml", True),
        ("sub/dir/vms.yml", True),
        ("README.md", False),
        (".vms.yaml.swp", False),
        ("vms.yaml~", False),
        (".#vms.yaml", False),
        ("#vms.yaml#", False),
        ("4913", False),  # vim's probe file
        (".git/config", False),
        (".hidden/vms.yaml", False),
    ],
)
def test_only_files_the_loader_reads_count_as_changes(
    tmp_path: Path, relative: str, counts: bool
) -> None:
    assert sources.is_manifest_path(tmp_path, tmp_path / relative) is counts


@pytest.mark.parametrize(
    ("source", "is_git"),
    [
        ("file:///srv/repo.git", True),
        ("https://example.invalid/r.git", True),
        ("git@example.invalid:org/r.git", True),
        ("/srv/manifests", False),
        ("manifests", False),
    ],
)
def test_git_urls_are_told_from_directories(source: str, is_git: bool) -> None:
    assert sources.is_git_url(source) is is_git


def test_loader_messages_are_made_relative_to_the_checkout(tmp_path: Path) -> None:
    lines = [f"{tmp_path}/vms.yaml:3:5: VirtualMachine/a: spec.memory: bad"]
    assert sources.relative_messages(lines, tmp_path) == [
        "vms.yaml:3:5: VirtualMachine/a: spec.memory: bad"
    ]


def test_directory_revision_follows_content_not_timestamps(tmp_path: Path) -> None:
    (tmp_path / "a.yaml").write_text(TEMPLATE.format(name="a"))
    source = sources.DirectorySource(str(tmp_path))
    first = source.checkout().revision
    assert first is not None and first.startswith("dir@")
    (tmp_path / "a.yaml").write_text(TEMPLATE.format(name="a"))
    (tmp_path / ".a.yaml.swp").write_text("editor noise")
    assert source.checkout().revision == first
    (tmp_path / "b.yaml").write_text(TEMPLATE.format(name="b"))
    assert source.checkout().revision != first


def test_a_missing_directory_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(errors.SourceError, match="does not exist"):
        sources.DirectorySource(str(tmp_path / "nope"))


def test_directory_watch_reports_manifest_writes_and_ignores_editor_files(tmp_path: Path) -> None:
    source = sources.DirectorySource(str(tmp_path), debounce=0.1)
    stop = threading.Event()
    changes: list[float] = []
    watcher = threading.Thread(target=source.watch, args=(stop, lambda: changes.append(1)))
    watcher.start()
    try:
        time.sleep(0.5)  # let the watcher settle in
        (tmp_path / ".a.yaml.swp").write_text("swap")
        (tmp_path / "a.yaml~").write_text("backup")
        time.sleep(1.0)
        assert changes == []
        (tmp_path / "a.yaml").write_text(TEMPLATE.format(name="a"))
        deadline = time.monotonic() + 5
        while not changes and time.monotonic() < deadline:
            time.sleep(0.05)
        assert changes
    finally:
        stop.set()
        watcher.join(timeout=5)
    assert not watcher.is_alive()


def test_git_checkout_is_the_newest_commit_of_the_ref_with_its_revision(
    repo: tuple[Path, Path], tmp_path: Path
) -> None:
    bare, work = repo
    source = sources.GitSource(
        f"file://{bare}", "main", "manifests", cache_dir=str(tmp_path / "cache")
    )
    checkout = source.checkout()
    head = git(work, "rev-parse", "HEAD")
    assert checkout.revision == f"main@sha1:{head}"
    assert (checkout.root / "a.yaml").is_file()

    (work / "manifests" / "a.yaml").unlink()
    (work / "manifests" / "b.yaml").write_text(TEMPLATE.format(name="b"))
    git(work, "add", "-A")
    git(work, "commit", "--quiet", "-m", "two")
    git(work, "push", "--quiet", "origin", "main")
    assert source.checkout().revision == checkout.revision  # not fetched yet
    new = source.fetch()
    assert new == git(work, "rev-parse", "HEAD")
    second = source.checkout()
    assert second.revision == f"main@sha1:{new}"
    assert sorted(p.name for p in second.root.iterdir()) == ["b.yaml"]


def test_git_watch_calls_back_on_a_new_commit(repo: tuple[Path, Path], tmp_path: Path) -> None:
    bare, work = repo
    source = sources.GitSource(
        f"file://{bare}", "main", interval=0.2, cache_dir=str(tmp_path / "cache")
    )
    source.checkout()
    stop = threading.Event()
    changed = threading.Event()
    watcher = threading.Thread(target=source.watch, args=(stop, changed.set))
    watcher.start()
    try:
        time.sleep(0.6)
        assert not changed.is_set()
        (work / "manifests" / "c.yaml").write_text(TEMPLATE.format(name="c"))
        git(work, "add", "-A")
        git(work, "commit", "--quiet", "-m", "three")
        git(work, "push", "--quiet", "origin", "main")
        assert changed.wait(5)
    finally:
        stop.set()
        watcher.join(timeout=5)


def test_an_unreachable_repository_is_a_one_line_source_error(tmp_path: Path) -> None:
    source = sources.GitSource(
        f"file://{tmp_path}/missing.git", "main", cache_dir=str(tmp_path / "cache")
    )
    with pytest.raises(errors.SourceError, match=r"git fetch of file://.*missing\.git") as caught:
        source.checkout()
    assert "\n" not in str(caught.value)
    assert source.last_error == str(caught.value)


def test_a_ref_that_looks_like_an_option_is_refused(tmp_path: Path) -> None:
    with pytest.raises(errors.ConfigError):
        sources.GitSource("file:///x.git", "--upload-pack=evil", cache_dir=str(tmp_path))


def test_two_daemons_on_one_host_share_a_clone_without_tripping_over_each_other(
    repo: tuple[Path, Path], tmp_path: Path
) -> None:
    bare, _ = repo
    cache = str(tmp_path / "cache")
    pair = [sources.GitSource(f"file://{bare}", "main", cache_dir=cache) for _ in range(2)]
    assert pair[0].dir == pair[1].dir
    failures: list[BaseException] = []

    def hammer(source: sources.GitSource) -> None:
        try:
            for _ in range(10):
                source.fetch()
                source.checkout()
        except BaseException as exc:
            failures.append(exc)

    threads = [threading.Thread(target=hammer, args=(s,)) for s in pair]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert failures == []
