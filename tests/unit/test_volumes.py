"""Volume names are made and read back in one place."""

from __future__ import annotations

import pytest

from reconciler.models import observed, volumes


def test_a_generated_name_joins_vm_and_disk_with_a_dot() -> None:
    assert volumes.generated("web-1", "root") == "web-1.root.qcow2"
    assert volumes.generated("a", "b-root") != volumes.generated("a-b", "root")


def test_the_named_volume_wins_then_the_known_one_then_the_generated_one() -> None:
    assert volumes.volume_name("web", "root", named="web.qcow2", known="web-root.qcow2") == (
        "web.qcow2"
    )
    assert volumes.volume_name("web", "root", known="web-root.qcow2") == "web-root.qcow2"
    assert volumes.volume_name("web", "root") == "web.root.qcow2"


@pytest.mark.parametrize(
    ("volume", "disk"),
    [
        ("web.root.qcow2", "root"),
        ("web-root.qcow2", "root"),  # made by installations from before
        ("web.qcow2", "web.qcow2"),  # a named volume stands for itself
        ("web.a.b.qcow2", "web.a.b.qcow2"),
        ("other.root.qcow2", "other.root.qcow2"),
        ("web.root.img", "web.root.img"),
    ],
)
def test_a_volume_reads_back_as_its_disk(volume: str, disk: str) -> None:
    assert volumes.disk_of("web", volume) == disk
    assert observed.disk_name("web", volume) == disk


def test_generated_names_read_back() -> None:
    for vm, disk in (("web-1", "root"), ("a", "b-root"), ("a-b", "root")):
        assert volumes.disk_of(vm, volumes.generated(vm, disk)) == disk
