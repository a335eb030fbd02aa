"""The one home of kind words: aliases, display names and ``KIND/NAME`` parsing."""

from __future__ import annotations

import pytest

from reconciler import errors
from reconciler.models import catalog, kinds

K = kinds.Kind


@pytest.mark.parametrize(
    ("text", "kind"),
    [
        # the CLI's words
        ("vm", K.VIRTUAL_MACHINE),
        ("vms", K.VIRTUAL_MACHINE),
        ("virtualmachine", K.VIRTUAL_MACHINE),
        ("VirtualMachines", K.VIRTUAL_MACHINE),
        ("tpl", K.TEMPLATE),
        ("tpls", K.TEMPLATE),
        ("template", K.TEMPLATE),
        ("net", K.NETWORK),
        ("nets", K.NETWORK),
        ("network", K.NETWORK),
        ("pool", K.STORAGE_POOL),
        ("pools", K.STORAGE_POOL),
        ("storagepool", K.STORAGE_POOL),
        # the HTTP API's words: each kind's name, lower case, and its plural
        ("StoragePool", K.STORAGE_POOL),
        ("storagepools", K.STORAGE_POOL),
        ("networks", K.NETWORK),
        ("templates", K.TEMPLATE),
        ("virtualmachines", K.VIRTUAL_MACHINE),
    ],
)
def test_every_alias_names_its_kind(text: str, kind: kinds.Kind) -> None:
    assert catalog.parse_kind(text) is kind


def test_every_kind_has_words() -> None:
    for kind in kinds.Kind:
        assert kind.value.lower() in catalog.aliases(kind)
        assert catalog.short(kind) in catalog.aliases(kind)
        assert catalog.display(kind) and catalog.libvirt_what(kind)
        assert catalog.display(kind, plural=True).endswith("s")


def test_an_unknown_kind_is_a_usage_error_with_a_hint() -> None:
    with pytest.raises(errors.UsageError, match=r"unknown kind 'vmz'; did you mean 'vm'\?"):
        catalog.parse_kind("vmz")
    with pytest.raises(errors.UsageError, match=r"\(vm, template, network, pool\)"):
        catalog.parse_kind("gadget")


def test_a_reference_is_kind_slash_name() -> None:
    assert catalog.parse_ref("vm/web-1") == (K.VIRTUAL_MACHINE, "web-1")
    assert catalog.parse_ref("Pools/default") == (K.STORAGE_POOL, "default")
    for text in ("web-1", "vm/", "vm"):
        with pytest.raises(errors.UsageError, match="KIND/NAME"):
            catalog.parse_ref(text)
    with pytest.raises(errors.UsageError, match="did you mean 'net'"):
        catalog.parse_ref("nt/lab")


def test_display_names_read_as_before() -> None:
    assert catalog.display(K.STORAGE_POOL, plural=True) == "storage pools"
    assert catalog.display(K.VIRTUAL_MACHINE, plural=True) == "virtual machines"
    assert catalog.libvirt_what(K.VIRTUAL_MACHINE) == "domain"
