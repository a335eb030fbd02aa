"""The trust boundary end to end (SPEC §13), against the real libvirtd and the real CLI.

Manifests are untrusted; the operator's environment decides where the
reconciler may act. Each test runs ``infinibay`` through click's runner or as a
real subprocess and asserts what an attacker with commit rights would care
about: the located line the CLI prints, that libvirt holds no object with the
test's prefix afterwards, and that a stand-in secret never appears in output.
"""

from __future__ import annotations

import contextlib
import json
import os
import resource
import shutil
import subprocess
import sys
from pathlib import Path

import libvirt
import pytest
import yaml

from reconciler.models import record
from tests.fixtures.libvirt import POOL_ROOT, qcow2_volume
from tests.integration.harness import Harness

pytestmark = pytest.mark.integration

SECRET = "root:$6$Stand-In-Shadow-Hash$x9:19000:0:99999:7:::"


def _ours(h: Harness) -> dict[str, list[str]]:
    """Every libvirt object carrying this test's prefix, by type."""
    return {
        "domains": [d.name() for d in h.conn.listAllDomains() if d.name().startswith(h.prefix)],
        "pools": [p.name() for p in h.conn.listAllStoragePools() if p.name().startswith(h.prefix)],
        "networks": [n.name() for n in h.conn.listAllNetworks() if n.name().startswith(h.prefix)],
    }


NOTHING: dict[str, list[str]] = {"domains": [], "pools": [], "networks": []}


def _cli(
    h: Harness, *args: str, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    command = [sys.executable, "-m", "reconciler", "--db", h.db_url, "-c", h.uri, *args]
    return subprocess.run(
        command,
        capture_output=True,
        text=True,
        env={**os.environ, **(env or {})},
        timeout=120,
        check=False,
    )


def _line_of(path: Path, needle: str) -> int:
    return next(i for i, line in enumerate(path.read_text().splitlines(), 1) if needle in line)


# --- pools ------------------------------------------------------------------------


def test_a_pool_on_etc_is_refused_at_validate_and_apply_with_its_line_and_nothing_is_created(
    h: Harness,
) -> None:
    h.write(h.pool(path=Path("/etc")), h.network(), h.template(), h.vm("web"))
    manifest = h.workdir / "manifests.yaml"
    where = f"{manifest}:{_line_of(manifest, 'path: /etc')}:9"

    for command in ("validate", "plan", "apply"):
        result = h.run(command, "-f", str(h.workdir))

        assert result.exit_code == 1, result.output
        assert (
            f"{where}: StoragePool/{h.name('pool')}: spec.path: '/etc' is the system path "
            "'/etc' or inside it; pools may not live there"
        ) in result.output
    assert _ours(h) == NOTHING


def test_a_symlink_to_etc_inside_the_roots_is_refused_and_nothing_is_created(h: Harness) -> None:
    link = h.pool_dir / "images"
    link.symlink_to("/etc")
    h.write(h.pool(path=link), h.network(), h.template(), h.vm("web"))
    manifest = h.workdir / "manifests.yaml"

    done = _cli(h, "apply", "-f", str(h.workdir))

    assert done.returncode == 1, done.stdout + done.stderr
    line = _line_of(manifest, f"path: {link}")
    assert (
        f"{manifest}:{line}:9: StoragePool/{h.name('pool')}: spec.path: '{link}' "
        "(resolved to '/etc') is the system path '/etc' or inside it"
    ) in done.stderr
    assert "Traceback" not in done.stderr
    assert _ours(h) == NOTHING


def test_a_pool_outside_the_operators_roots_is_refused_and_one_inside_is_created(
    h: Harness,
) -> None:
    h.write(h.pool())
    outside = _cli(h, "apply", "-f", str(h.workdir), env={"INFINIBAY_POOL_ROOTS": "/srv/pools"})

    assert outside.returncode == 1
    assert "is outside the roots allowed for a pool (INFINIBAY_POOL_ROOTS: /srv/pools)" in (
        outside.stderr
    )
    assert _ours(h) == NOTHING

    inside = _cli(h, "apply", "-f", str(h.workdir), env={"INFINIBAY_POOL_ROOTS": str(h.pool_dir)})

    assert inside.returncode == 0, inside.stdout + inside.stderr
    pool = h.conn.storagePoolLookupByName(h.name("pool"))
    assert pool.isActive()


# --- images -----------------------------------------------------------------------


def test_an_image_from_a_pool_that_is_not_an_image_pool_is_refused(h: Harness) -> None:
    disks = [{"name": "root", "size": "16MiB", "pool": h.name("pool"), "image": "shadow"}]
    h.write(h.pool(), h.network(), h.template(), h.vm("web", disks=disks))

    result = h.plan()

    assert result.exit_code == 1, result.output
    assert (
        f"VirtualMachine/{h.name('web')}: spec.disks[0].image: image 'shadow' must come from "
        f"an image pool; storage pool '{h.name('pool')}' is not marked 'images: true'"
    ) in result.output
    assert _ours(h) == NOTHING


def test_an_image_pool_outside_the_image_roots_is_refused(h: Harness) -> None:
    h.write(h.pool(images=True))

    done = _cli(h, "validate", "-f", str(h.workdir), env={"INFINIBAY_IMAGE_ROOTS": "/srv/img"})

    assert done.returncode == 1
    assert (
        f"StoragePool/{h.name('pool')}: spec.path: '{h.pool_dir}' is outside the roots "
        "allowed for an image pool (INFINIBAY_IMAGE_ROOTS: /srv/img)"
    ) in done.stderr


def test_an_image_volume_that_is_a_symlink_out_of_its_pool_is_refused_at_execution(
    h: Harness, tmp_path: Path
) -> None:
    images = POOL_ROOT / f"{h.prefix}images"  # beside the test's pool directory, not in it
    images.mkdir()
    images.chmod(0o755)
    try:
        _refused_through_a_symlinked_image(h, images, tmp_path)
    finally:  # removed here: the prefix clean-up would delete the symlink's target too
        with contextlib.suppress(libvirt.libvirtError):
            pool = h.conn.storagePoolLookupByName(h.name("images"))
            pool.destroy()
            pool.undefine()
        shutil.rmtree(images)


def _refused_through_a_symlinked_image(h: Harness, images: Path, tmp_path: Path) -> None:
    h.write(h.pool("images", path=images, images=True))
    first = h.apply()
    assert first.exit_code == 0, first.output
    outside = tmp_path / "shadow.qcow2"
    store = h.conn.storagePoolLookupByName(h.name("images"))
    store.createXML(qcow2_volume("real.qcow2", 1), 0)
    outside.write_bytes((images / "real.qcow2").read_bytes())
    before = outside.stat()
    (images / "golden.qcow2").symlink_to(outside)
    store.refresh(0)
    assert "golden.qcow2" in store.listVolumes()
    disks = [
        {
            "name": "root",
            "size": "16MiB",
            "pool": h.name("pool"),
            "image": "golden.qcow2",
            "imagePool": h.name("images"),
        }
    ]
    h.write(
        h.pool(),
        h.pool("images", path=images, images=True),
        h.network(),
        h.template(),
        h.vm("web", powerState="Stopped", disks=disks),
    )

    result = h.apply()

    assert result.exit_code == 1, result.output
    assert (
        f"image golden.qcow2 in pool {h.name('images')} is not a regular file inside the "
        f"pool's directory '{images}' once symlinks are resolved"
    ) in result.output
    assert not (h.pool_dir / f"{h.name('web')}.root.qcow2").exists()
    assert not h.has_domain("web")
    after = outside.stat()
    assert (after.st_uid, after.st_mode, after.st_mtime_ns) == (
        before.st_uid,
        before.st_mode,
        before.st_mtime_ns,
    )


def test_an_image_from_an_image_pool_backs_the_disk(h: Harness) -> None:
    h.write(h.pool(images=True))
    first = h.apply()
    assert first.exit_code == 0, first.output
    pool = h.conn.storagePoolLookupByName(h.name("pool"))
    pool.createXML(qcow2_volume("golden.qcow2", 16), 0)
    disks = [{"name": "root", "size": "16MiB", "pool": h.name("pool"), "image": "golden.qcow2"}]
    h.write(
        h.pool(images=True),
        h.network(),
        h.template(),
        h.vm("web", powerState="Stopped", disks=disks),
    )

    result = h.apply()

    assert result.exit_code == 0, result.output
    pool.refresh(0)
    volume = pool.storageVolLookupByName(f"{h.name('web')}.root.qcow2")
    assert f"<path>{h.pool_dir / 'golden.qcow2'}</path>" in volume.XMLDesc(0)


# --- graphics ---------------------------------------------------------------------


def test_graphics_on_0_0_0_0_are_refused_unless_the_operator_allows_remote_graphics(
    h: Harness,
) -> None:
    template = h.template(graphics={"type": "vnc", "listen": "0.0.0.0"})
    h.write(h.pool(), h.network(), template, h.vm("web"))

    refused = _cli(h, "plan", "-f", str(h.workdir))
    allowed = _cli(h, "plan", "-f", str(h.workdir), env={"INFINIBAY_ALLOW_REMOTE_GRAPHICS": "1"})

    assert refused.returncode == 1
    assert (
        f"Template/{h.name('tpl')}: spec.graphics.listen: 0.0.0.0 is not a loopback address"
    ) in refused.stderr
    assert allowed.returncode == 2, allowed.stdout + allowed.stderr
    assert f"+ virtualmachine/{h.name('web')}" in allowed.stdout
    assert _ours(h) == NOTHING


# --- source files -----------------------------------------------------------------


def test_a_symlinked_manifest_to_a_file_outside_the_source_is_refused_and_never_echoed(
    h: Harness, tmp_path: Path
) -> None:
    secret = tmp_path / "shadow"
    secret.write_text(f"{SECRET}\nkind: [{SECRET}\n")
    h.write(h.pool())
    (h.workdir / "shadow.yaml").symlink_to(secret)
    expected = (
        f"{h.workdir}/shadow.yaml:1:1: ?/?: a symlink leading outside the source root "
        f"{h.workdir}; not read"
    )

    runner = h.run("validate", "-f", str(h.workdir))
    done = _cli(h, "-v", "apply", "-f", str(h.workdir))

    assert runner.exit_code == 1 and expected in runner.output
    assert done.returncode == 1 and expected in done.stderr
    for text in (runner.output, done.stdout, done.stderr):
        assert "Stand-In-Shadow" not in text
    assert _ours(h) == NOTHING


@pytest.mark.parametrize(
    ("content", "expected"),
    [
        (
            b'apiVersion: x\nkind: "a\x00b"\n',
            ":2:9: ?/?: YAML error: unacceptable character #x0000",
        ),
        (b"[" * 100_000, ":1:65: ?/?: YAML error: nesting deeper than 64 levels"),
        (b"a: 1\nb: caf\xe9\n", ":2:7: ?/?: not UTF-8 text (invalid continuation byte at byte 11)"),
        (b"---\na: 1\n" * 100_000, ":40002:1: ?/?: more than 20000 documents in this run"),
        (b"#" * (9 << 20), ":1:1: ?/?: the file is larger than 8388608 bytes"),
    ],
    ids=["nul", "deep", "utf8", "documents", "size"],
)
def test_hostile_input_is_one_located_line_quickly(
    h: Harness, content: bytes, expected: str
) -> None:
    path = h.workdir / "hostile.yaml"
    path.write_bytes(content)

    # CPU seconds of the child, not wall time: on a loaded CI host a process can wait
    # for a core far longer than it computes.
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    done = _cli(h, "validate", "-f", str(path))
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    elapsed = (after.ru_utime + after.ru_stime) - (before.ru_utime + before.ru_stime)

    assert done.returncode == 1
    assert done.stderr.splitlines()[0] == f"{path}{expected}" or any(
        line.startswith(f"{path}{expected}") for line in done.stderr.splitlines()
    ), done.stderr
    assert "Traceback" not in done.stderr
    assert elapsed < 15


# --- output -----------------------------------------------------------------------


def test_describe_get_and_events_escape_control_characters_and_json_stays_json(
    h: Harness,
) -> None:
    pool = h.pool()
    pool["metadata"]["labels"] = {"note": "\x1b]0;owned\x07"}
    pool["metadata"]["annotations"] = {"say": "\x1b[2J\x1b[31mred"}
    h.write(pool, filename="evil\x1b[5m.yaml")
    assert h.apply().exit_code == 0
    key = record.ResourceKey("StoragePool", h.name("pool"))
    with h.store() as store:
        store.record_events(
            [record.NewEvent(key, record.EventType.WARNING, "Probe", "bell\x07 and \x1b[1mbold")]
        )

    described = h.run("describe", "storagepool", h.name("pool"))
    listed = h.run("get", "storagepools", "-o", "wide")
    events = h.run("events", f"storagepool/{h.name('pool')}")
    as_json = h.run("events", f"storagepool/{h.name('pool')}", "-o", "json")

    for result in (described, listed, events):
        assert result.exit_code == 0, result.output
        assert "\x1b" not in result.output and "\x07" not in result.output
    assert "note=\\x1b]0;owned\\x07" in described.output
    assert "say=\\x1b[2J\\x1b[31mred" in described.output
    assert "evil\\x1b[5m.yaml" in described.output
    assert "evil\\x1b[5m.yaml" in listed.output
    assert "bell\\x07 and \\x1b[1mbold" in events.output
    messages = [json.loads(line)["message"] for line in as_json.output.splitlines()]
    assert "bell\x07 and \x1b[1mbold" in messages
    assert yaml.safe_load(h.run("get", "storagepool", h.name("pool"), "-o", "yaml").output)
