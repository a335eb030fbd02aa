"""The trust boundary at load time (SPEC §13): what a manifest may make the reconciler touch.

Each test writes manifests into a temporary directory, runs the loader with an
explicit :class:`~reconciler.settings.Boundary` or :class:`~reconciler.settings.Limits`
(the operator's settings, never the manifest's) and asserts the exact located
lines. Hostile input (a NUL byte, 100,000 nested ``[``, bad UTF-8, an oversize
file, 100,000 documents) must become one located line within seconds, never an
exception that escapes the loader.
"""

from __future__ import annotations

import textwrap
import time
from collections.abc import Sequence
from pathlib import Path

import pytest

from reconciler import errors, settings
from reconciler.cli import output
from reconciler.engine import execute
from reconciler.manifests import loader
from tests.unit import fakes

SECRET = "s3cr3t-Hunter2-do-not-print"


@pytest.fixture
def roots(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A pool root and an image root under ``tmp_path``; messages relative to ``tmp_path``."""
    monkeypatch.chdir(tmp_path)
    (tmp_path / "pools").mkdir()
    (tmp_path / "images").mkdir()
    return tmp_path


def _boundary(root: Path, *, remote: bool = False) -> settings.Boundary:
    return settings.Boundary(
        pool_roots=(str(root / "pools"),),
        image_roots=(str(root / "images"),),
        allow_remote_graphics=remote,
    )


def _write(directory: Path, name: str, text: str) -> str:
    path = directory / name
    path.write_text(textwrap.dedent(text))
    return name


def _errors(paths: Sequence[str], **options: object) -> list[str]:
    with pytest.raises(errors.ManifestError) as info:
        loader.load(list(paths), **options)  # type: ignore[arg-type]
    return info.value.messages


def _pool(name: str, path: str, images: bool = False) -> str:
    extra = "\n  images: true" if images else ""
    return (
        f"apiVersion: infinibay.io/v1alpha1\nkind: StoragePool\nmetadata: {{name: {name}}}\n"
        f"spec:\n  path: {path}{extra}\n"
    )


NETWORK = """\
apiVersion: infinibay.io/v1alpha1
kind: Network
metadata: {name: lab}
spec: {mode: isolated}
"""


def _vm(disk: str, graphics: str = "") -> str:
    return (
        "apiVersion: infinibay.io/v1alpha1\nkind: VirtualMachine\nmetadata: {name: web}\n"
        f"spec:\n  memory: 64MiB\n{graphics}  disks:\n  - {disk}\n  networks: [{{network: lab}}]\n"
    )


# --- pool paths -------------------------------------------------------------------


def test_a_pool_on_etc_is_refused_at_its_path_node(roots: Path) -> None:
    name = _write(roots, "pool.yaml", _pool("host", "/etc"))

    assert _errors([name], boundary=_boundary(roots)) == [
        "pool.yaml:5:9: StoragePool/host: spec.path: '/etc' is the system path '/etc' or "
        "inside it; pools may not live there"
    ]


def test_a_symlink_inside_the_roots_that_leads_to_etc_is_refused(roots: Path) -> None:
    (roots / "pools" / "sneaky").symlink_to("/etc")
    name = _write(roots, "pool.yaml", _pool("sneaky", f"{roots}/pools/sneaky/ssl"))

    (message,) = _errors([name], boundary=_boundary(roots))

    assert message.startswith("pool.yaml:5:9: StoragePool/sneaky: spec.path: ")
    assert "resolved to '/etc/ssl'" in message
    assert "system path '/etc'" in message


@pytest.mark.parametrize("path", ["/", "/root", "/proc/1", "/boot", "/var/lib/libvirt/qemu"])
def test_system_paths_are_refused_whatever_the_roots_say(path: str) -> None:
    boundary = settings.Boundary(pool_roots=("/",), image_roots=("/",))

    problem = boundary.pool_problem(path)

    assert problem is not None and "system path" in problem


def test_a_root_that_is_a_system_path_allows_nothing() -> None:
    boundary = settings.Boundary(pool_roots=("/etc",))

    assert boundary.pool_problem("/etc/pools") == (
        "'/etc/pools' is the system path '/etc' or inside it; pools may not live there"
    )
    assert boundary.pool_problem("/srv/pools") == (
        "'/srv/pools' is outside the roots allowed for a pool (INFINIBAY_POOL_ROOTS: none usable)"
    )


def test_the_default_roots_allow_libvirts_image_directory_and_the_infinibay_pools() -> None:
    boundary = settings.Boundary.from_environ({})

    assert boundary.pool_problem("/var/lib/libvirt/images") is None
    assert boundary.pool_problem("/var/lib/infinibay/pools/fast") is None
    assert boundary.pool_problem("/var/lib/infinibay/images", images=True) is None
    assert boundary.pool_problem("/var/lib/infinibay/images") is not None
    assert boundary.pool_problem("/var/lib/infinibay/pools/x", images=True) is not None


def test_a_pool_that_does_not_exist_yet_resolves_through_its_existing_ancestors(
    roots: Path,
) -> None:
    (roots / "pools" / "link").symlink_to(roots / "elsewhere")
    boundary = _boundary(roots)

    assert boundary.pool_problem(f"{roots}/pools/new/deeper") is None
    problem = boundary.pool_problem(f"{roots}/pools/link/new")
    assert problem is not None and f"resolved to '{roots}/elsewhere/new'" in problem


def test_pool_roots_come_from_the_environment_colon_separated(tmp_path: Path) -> None:
    boundary = settings.Boundary.from_environ(
        {"INFINIBAY_POOL_ROOTS": f"{tmp_path}/a:{tmp_path}/b", "INFINIBAY_IMAGE_ROOTS": "/srv/i"}
    )

    assert boundary.pool_roots == (f"{tmp_path}/a", f"{tmp_path}/b")
    assert boundary.image_roots == ("/srv/i",)
    assert boundary.pool_problem(f"{tmp_path}/b/pool") is None


def test_a_pool_under_the_roots_loads(roots: Path) -> None:
    name = _write(roots, "pool.yaml", _pool("fast", f"{roots}/pools/fast"))

    state = loader.load([name], boundary=_boundary(roots))

    assert list(state.pools) == ["fast"]


def test_the_executor_refuses_a_pool_path_swapped_to_a_symlink_after_validation(
    roots: Path,
) -> None:
    target = roots / "pools" / "later"
    pool = {"kind": "StoragePool", "metadata": {"name": "p"}, "spec": {"path": str(target)}}
    state = fakes.state_of([pool])
    hv, rec = fakes.FakeHypervisor(), fakes.FakeRecord()
    plan = rec.plan(state, hv)
    target.symlink_to("/etc")  # swapped in between validation and execution

    (outcome,) = execute.execute(
        hv, plan.changes, execute.Options(boundary=_boundary(roots)), lambda _o: None
    )

    assert not outcome.ok
    assert outcome.error == (
        f"storage pool p: '{target}' (resolved to '/etc') is the system path '/etc' or "
        "inside it; pools may not live there"
    )
    assert hv.pools == {}
    assert [e.reason for e in outcome.events] == ["ApplyRefused"]


# --- images -----------------------------------------------------------------------


def test_an_image_from_a_pool_that_is_not_an_image_pool_is_refused_at_the_image_node(
    roots: Path,
) -> None:
    text = _pool("default", f"{roots}/pools/d") + "---\n" + NETWORK + "---\n"
    text += _vm("{name: root, size: 1GiB, image: shadow}")
    name = _write(roots, "all.yaml", text)

    assert _errors([name], boundary=_boundary(roots)) == [
        "all.yaml:18:37: VirtualMachine/web: spec.disks[0].image: image 'shadow' must come "
        "from an image pool; storage pool 'default' is not marked 'images: true' (set it on "
        "a pool under INFINIBAY_IMAGE_ROOTS, or name one with 'imagePool')"
    ]


def test_an_image_pool_outside_the_image_roots_is_refused(roots: Path) -> None:
    name = _write(roots, "pool.yaml", _pool("golden", f"{roots}/pools/golden", images=True))

    (message,) = _errors([name], boundary=_boundary(roots))

    assert message.startswith("pool.yaml:5:9: StoragePool/golden: spec.path: ")
    assert "outside the roots allowed for an image pool (INFINIBAY_IMAGE_ROOTS:" in message


def test_an_image_from_an_image_pool_loads_in_its_own_pool_or_through_image_pool(
    roots: Path,
) -> None:
    text = _pool("default", f"{roots}/images/d", images=True) + "---\n"
    text += _pool("fast", f"{roots}/pools/fast") + "---\n" + NETWORK + "---\n"
    text += _vm("{name: root, size: 1GiB, image: golden.qcow2}")
    text = text.replace(
        "  - {name: root",
        "  - {name: data, size: 1GiB, pool: fast, "
        "image: golden.qcow2, imagePool: default}\n  - {name: root",
    )
    name = _write(roots, "all.yaml", text)

    state = loader.load([name], boundary=_boundary(roots))

    disks = {d.name: (d.pool, d.image_source) for d in state.effective_vms["web"].disks}
    assert disks == {"root": ("default", "default"), "data": ("fast", "default")}


def test_an_image_pool_that_is_not_an_image_pool_is_refused_at_image_pool(roots: Path) -> None:
    text = _pool("default", f"{roots}/pools/d") + "---\n" + NETWORK + "---\n"
    text += _vm("{name: root, size: 1GiB, image: g, imagePool: default}")
    name = _write(roots, "all.yaml", text)

    (message,) = _errors([name], boundary=_boundary(roots))

    assert message.startswith("all.yaml:18:51: VirtualMachine/web: spec.disks[0].imagePool: ")


# --- graphics ---------------------------------------------------------------------


def test_graphics_listening_beyond_loopback_is_refused_unless_the_operator_allows_it(
    roots: Path,
) -> None:
    text = _pool("default", f"{roots}/pools/d") + "---\n" + NETWORK + "---\n"
    text += _vm("{name: root, size: 1GiB}", graphics="  graphics: {listen: 0.0.0.0}\n")
    name = _write(roots, "all.yaml", text)

    assert _errors([name], boundary=_boundary(roots)) == [
        "all.yaml:17:22: VirtualMachine/web: spec.graphics.listen: 0.0.0.0 is not a loopback "
        "address; the console has no password, so listening beyond 127.0.0.0/8 needs "
        "INFINIBAY_ALLOW_REMOTE_GRAPHICS=1"
    ]
    state = loader.load([name], boundary=_boundary(roots, remote=True))
    assert state.effective_vms["web"].graphics_listen == "0.0.0.0"
    assert settings.Boundary.from_environ({"INFINIBAY_ALLOW_REMOTE_GRAPHICS": "1"}) == (
        settings.Boundary(allow_remote_graphics=True)
    )


def test_any_address_in_127_0_0_0_8_is_loopback(roots: Path) -> None:
    text = _pool("default", f"{roots}/pools/d") + "---\n" + NETWORK + "---\n"
    text += _vm("{name: root, size: 1GiB}", graphics="  graphics: {listen: 127.3.2.1}\n")
    name = _write(roots, "all.yaml", text)

    assert loader.load([name], boundary=_boundary(roots)).effective_vms["web"]


# --- source files -----------------------------------------------------------------


def test_a_symlinked_manifest_leading_outside_the_source_is_refused_unread(
    roots: Path,
) -> None:
    secret = roots / "outside" / "shadow.yaml"
    secret.parent.mkdir()
    secret.write_text(f"root: {SECRET}\n{SECRET}: [\n")
    source = roots / "source"
    source.mkdir()
    (source / "shadow.yaml").symlink_to(secret)
    _write(source, "pool.yaml", _pool("fast", f"{roots}/pools/fast"))

    messages = _errors(["source"], boundary=_boundary(roots))

    assert messages == [
        "source/shadow.yaml:1:1: ?/?: a symlink leading outside the source root "
        f"{roots}/source; not read"
    ]
    assert SECRET not in "".join(messages)


def test_a_symlink_inside_the_source_is_read_once(roots: Path) -> None:
    source = roots / "source"
    source.mkdir()
    _write(source, "pool.yaml", _pool("fast", f"{roots}/pools/fast"))
    (source / "again.yaml").symlink_to(source / "pool.yaml")

    assert list(loader.load(["source"], boundary=_boundary(roots)).pools) == ["fast"]


def test_a_named_file_that_is_a_symlink_out_of_its_directory_is_refused(roots: Path) -> None:
    secret = roots / "secret.yaml"
    secret.write_text(f"{SECRET}\n")
    (roots / "source").mkdir()
    (roots / "source" / "link.yaml").symlink_to(secret)

    messages = _errors(["source/link.yaml"], boundary=_boundary(roots))

    assert messages == [
        "source/link.yaml:1:1: ?/?: a symlink leading outside the source root "
        f"{roots}/source; not read"
    ]


def test_yaml_messages_never_echo_the_offending_line(roots: Path) -> None:
    name = _write(roots, "bad.yaml", f"a: 1\n\tpassword: {SECRET}\n")

    messages = _errors([name])

    assert messages == [
        "bad.yaml:2:1: ?/?: YAML syntax error: found character '\\t' that cannot start any token"
    ]


# --- hostile input ----------------------------------------------------------------


def _quick(paths: Sequence[str], **options: object) -> list[str]:
    started = time.process_time()  # CPU time: a loaded machine cannot fail it
    messages = _errors(paths, **options)
    assert time.process_time() - started < 10
    return messages


def test_a_nul_byte_is_a_located_error(roots: Path) -> None:
    (roots / "nul.yaml").write_bytes(b'apiVersion: v1\nkind: "Storage\x00Pool"\n')

    assert _quick(["nul.yaml"]) == [
        "nul.yaml:2:15: ?/?: YAML error: unacceptable character #x0000: "
        "special characters are not allowed"
    ]


def test_100000_nested_brackets_are_a_located_error(roots: Path) -> None:
    (roots / "deep.yaml").write_text("[" * 100_000)

    assert _quick(["deep.yaml"]) == [
        "deep.yaml:1:65: ?/?: YAML error: nesting deeper than 64 levels "
        "(INFINIBAY_MAX_DEPTH); refusing to load it"
    ]


def test_nesting_within_the_libyaml_limit_is_capped_too(roots: Path) -> None:
    (roots / "deep.yaml").write_text("a: " + "[" * 70 + "]" * 70 + "\n")

    assert _quick(["deep.yaml"], limits=settings.Limits(depth=8)) == [
        "deep.yaml:1:11: ?/?: YAML error: nesting deeper than 8 levels "
        "(INFINIBAY_MAX_DEPTH); refusing to load it"
    ]


def test_bad_utf8_is_located_at_its_byte(roots: Path) -> None:
    (roots / "latin.yaml").write_bytes(b"a: 1\nb: caf\xe9\n")

    assert _quick(["latin.yaml"]) == [
        "latin.yaml:2:7: ?/?: not UTF-8 text (invalid continuation byte at byte 11)"
    ]


def test_a_value_its_tag_cannot_construct_is_located_without_its_text(roots: Path) -> None:
    _write(roots, "tag.yaml", f"a: 1\nb: !!int {SECRET}\n")

    assert _quick(["tag.yaml"]) == [
        "tag.yaml:2:4: ?/?: YAML error: a value tagged 'int' cannot be constructed (ValueError)"
    ]


def test_an_oversize_file_is_refused_unread(roots: Path) -> None:
    (roots / "big.yaml").write_text("a: 1\n" * 1000)

    assert _quick(["big.yaml"], limits=settings.Limits(file_bytes=4096)) == [
        "big.yaml:1:1: ?/?: the file is larger than 4096 bytes (INFINIBAY_MAX_FILE_BYTES); not read"
    ]


def test_100000_documents_fail_fast_at_the_first_over_the_cap(roots: Path) -> None:
    (roots / "many.yaml").write_text("---\na: 1\n" * 100_000)

    assert _quick(["many.yaml"]) == [
        "many.yaml:40002:1: ?/?: more than 20000 documents in this run "
        "(INFINIBAY_MAX_DOCUMENTS); refusing to load any of them"
    ]


def test_the_document_cap_counts_across_files(roots: Path) -> None:
    for name in ("a.yaml", "b.yaml"):
        (roots / name).write_text("---\nx: 1\n" * 3)

    assert _quick(["a.yaml", "b.yaml"], limits=settings.Limits(documents=4)) == [
        "b.yaml:4:1: ?/?: more than 4 documents in this run "
        "(INFINIBAY_MAX_DOCUMENTS); refusing to load any of them"
    ]


def test_limits_come_from_the_environment_and_must_be_positive() -> None:
    assert settings.Limits.from_environ(
        {
            "INFINIBAY_MAX_FILE_BYTES": "10",
            "INFINIBAY_MAX_DOCUMENTS": "2",
            "INFINIBAY_MAX_DEPTH": "3",
        }
    ) == settings.Limits(file_bytes=10, documents=2, depth=3)
    assert settings.Limits.from_environ({}) == settings.Limits(8 << 20, 20_000, 64)
    with pytest.raises(errors.ConfigError, match="INFINIBAY_MAX_DEPTH='0'"):
        settings.Limits.from_environ({"INFINIBAY_MAX_DEPTH": "0"})


# --- output -----------------------------------------------------------------------


def test_control_characters_are_escaped_in_tables() -> None:
    table = output.table(["name", "message"], [["a", "red \x1b[31mtext\x07\nnext\u202e"]])

    assert "\x1b" not in table and "\x07" not in table and "\u202e" not in table
    assert table.splitlines()[1] == "a      red \\x1b[31mtext\\x07\\nnext\\u202e"


def test_escape_leaves_printable_text_alone() -> None:
    assert output.escape("café [b] ~ \\x1b") == "café [b] ~ \\x1b"
