"""The data-loss gate: a volume is destroyed only when the operator says so.

Changing a disk's ``image`` recreates its volume on the new backing file: the
plan marks it ``data-loss``, ``apply`` refuses it (exit 1, the volume file the
very same inode with the same mtime) until ``--allow-data-loss``. Shrinking a
disk is never possible: it is rejected before anything is touched, with a
located ``FILE:LINE:COL: VirtualMachine/NAME: spec.disks[0].size: ...`` line.
"""

from __future__ import annotations

import re

import libvirt
import pytest
from lxml import etree

from reconciler.models import record
from tests.fixtures.libvirt import qcow2_volume
from tests.integration.harness import Harness

pytestmark = pytest.mark.integration

MiB = 1 << 20


def _disk(h: Harness, size: str = "16MiB", **extra: str) -> list[dict[str, str]]:
    return [{"name": "root", "size": size, "pool": h.name("pool"), **extra}]


def _events(h: Harness, short: str) -> list[record.EventRecord]:
    with h.store() as store:
        return store.events(record.ResourceKey("VirtualMachine", h.name(short)))


def _backing(h: Harness, volume: str) -> str | None:
    pool = h.conn.storagePoolLookupByName(h.name("pool"))
    pool.refresh(0)
    root = etree.fromstring(pool.storageVolLookupByName(volume).XMLDesc(0).encode())
    return root.findtext("backingStore/path")


def test_changing_a_disk_image_is_refused_without_allow_data_loss(h: Harness) -> None:
    base = [h.pool(images=True), h.network(), h.template()]
    h.write(*base, h.vm("web", disks=_disk(h)))
    result = h.apply()
    assert result.exit_code == 0, result.output
    image = f"{h.name('golden')}.qcow2"
    pool = h.conn.storagePoolLookupByName(h.name("pool"))
    pool.createXML(qcow2_volume(image, 16), 0)
    volume = h.pool_dir / f"{h.name('web')}.root.qcow2"
    before = volume.stat()
    h.write(*base, h.vm("web", disks=_disk(h, image=image)))

    plan = h.plan()
    assert plan.exit_code == 2, plan.output
    assert f"~ virtualmachine/{h.name('web')} (update, data-loss)" in plan.output
    assert f"    disks[root].image: (none) -> {image} (data-loss)" in plan.output

    result = h.apply()
    assert result.exit_code == 1, result.output
    assert "--allow-data-loss" in result.output
    after = volume.stat()
    assert (after.st_ino, after.st_mtime_ns, after.st_size) == (
        before.st_ino,
        before.st_mtime_ns,
        before.st_size,
    )
    assert _backing(h, volume.name) is None
    assert h.state("web") == libvirt.VIR_DOMAIN_RUNNING  # not even stopped
    assert "ApplyRefused" in [e.reason for e in _events(h, "web")]
    assert "VolumeDeleted" not in [e.reason for e in _events(h, "web")]

    result = h.apply("--allow-data-loss")
    assert result.exit_code == 0, result.output
    assert _backing(h, volume.name) == str(h.pool_dir / image)
    assert volume.stat().st_ino != before.st_ino or volume.stat().st_mtime_ns != (
        before.st_mtime_ns
    )
    assert h.state("web") == libvirt.VIR_DOMAIN_RUNNING  # back as declared
    reasons = [e.reason for e in _events(h, "web")]
    assert "VolumeDeleted" in reasons
    assert h.plan().exit_code == 0


def test_disk_shrink_is_rejected_before_anything_is_touched_with_a_located_error(
    h: Harness,
) -> None:
    base = [h.pool(), h.network(), h.template()]
    h.write(*base, h.vm("web", disks=_disk(h, "32MiB")), h.vm("other", powerState="Stopped"))
    result = h.apply()
    assert result.exit_code == 0, result.output
    volume = h.pool_dir / f"{h.name('web')}.root.qcow2"
    before = volume.stat()
    path = h.write(
        *base,
        h.vm("web", disks=_disk(h, "16MiB")),
        h.vm("other", powerState="Stopped", cpus=2),  # a harmless change that must not run
    )
    manifest = path / "manifests.yaml"
    lines = manifest.read_text().splitlines()
    web = next(i for i, text in enumerate(lines) if text.endswith(f"name: {h.name('web')}"))
    line = next(i for i, text in enumerate(lines, 1) if i > web and "size: 16MiB" in text)
    column = lines[line - 1].index("16MiB") + 1
    located = re.compile(
        rf"^{re.escape(str(manifest))}:{line}:{column}: VirtualMachine/{h.name('web')}: "
        r"spec\.disks\[0\]\.size: .*32MiB.*16MiB",
        re.M,
    )

    for command in (h.plan, h.apply):
        result = command()
        assert result.exit_code == 1, result.output
        assert located.search(result.output), result.output
        assert "Traceback" not in result.output
    assert h.domain_xml("other").findtext("vcpu") == "1"
    after = volume.stat()
    assert (after.st_ino, after.st_mtime_ns) == (before.st_ino, before.st_mtime_ns)
    capacity = h.conn.storagePoolLookupByName(h.name("pool"))
    assert capacity.storageVolLookupByName(volume.name).info()[1] == 32 * MiB
    with h.store() as store:
        assert len(store.runs()) == 1  # the rejected apply never started a pass
        other = store.get(record.ResourceKey("VirtualMachine", h.name("other")))
        assert other is not None and other.generation == 1  # nor recorded the new spec
