"""Libvirt names that are not DNS labels, and the labels ``export`` makes for them."""

from __future__ import annotations

import pytest

from reconciler.models import kinds, naming


@pytest.mark.parametrize(
    ("libvirt", "label"),
    [
        ("ubuntu22.04", "ubuntu22-04"),
        ("Win11", "win11"),
        ("Win 11 (pro)", "win-11-pro"),
        ("-edge_case-", "edge-case"),
        ("web-1", "web-1"),
        ("...", "x"),
        ("a" * 70, "a" * 63),
        ("A.B..C", "a-b-c"),
    ],
)
def test_a_libvirt_name_becomes_a_dns_label(libvirt: str, label: str) -> None:
    assert naming.dns_label(libvirt) == label
    assert naming.is_dns_label(label)


def test_a_taken_label_gets_the_first_free_suffix() -> None:
    assert naming.dns_label("Win11", {"win11"}) == "win11-2"
    assert naming.dns_label("Win11", {"win11", "win11-2"}) == "win11-3"
    long = "b" * 63
    made = naming.dns_label(long.upper(), {long})
    assert made == "b" * 61 + "-2" and len(made) == 63


def test_an_empty_result_takes_the_fallback() -> None:
    assert naming.dns_label("__", fallback="vm") == "vm"


def test_the_annotation_names_the_libvirt_object() -> None:
    assert naming.libvirt_name("win11", {naming.LIBVIRT_NAME: "Win11"}) == "Win11"
    assert naming.libvirt_name("web-1", {}) == "web-1"
    assert naming.libvirt_name("web-1", {naming.LIBVIRT_NAME: ""}) == "web-1"


def test_labels_are_what_the_manifests_accept() -> None:
    for name in ("ubuntu22.04", "Win11", "x" * 100, "ÄÖ.Ü"):
        label = naming.dns_label(name)
        assert kinds.Metadata(name=label).name == label
