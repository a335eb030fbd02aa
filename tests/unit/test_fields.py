"""Sizes, names, MAC addresses and bridge names parse strictly and explain refusals."""

from __future__ import annotations

from typing import Any

import pydantic
import pytest

from reconciler.models import fields

SIZE = pydantic.TypeAdapter(fields.Size)
LABEL = pydantic.TypeAdapter(fields.DnsLabel)
MAC = pydantic.TypeAdapter(fields.Mac)
BRIDGE = pydantic.TypeAdapter(fields.BridgeName)


def _message(adapter: pydantic.TypeAdapter[Any], value: object) -> str:
    with pytest.raises(pydantic.ValidationError) as info:
        adapter.validate_python(value)
    (error,) = info.value.errors(include_url=False)
    return str(error["msg"]).removeprefix("Value error, ")


@pytest.mark.parametrize(
    ("text", "size"),
    [
        ("512MiB", 512 << 20),
        ("512Mi", 512 << 20),
        ("2GiB", 2 << 30),
        ("2Gi", 2 << 30),
        ("1TiB", 1 << 40),
        ("1Ti", 1 << 40),
        ("64KiB", 64 << 10),
        (" 2 GiB ", 2 << 30),
    ],
)
def test_size_accepts_binary_units(text: str, size: int) -> None:
    assert SIZE.validate_python(text) == size


@pytest.mark.parametrize("bare", [2, 2.5])
def test_size_refuses_a_bare_number_with_a_hint(bare: float) -> None:
    assert (
        _message(SIZE, bare)
        == f"give a unit, e.g. {bare}GiB or {bare}MiB (bare numbers are ambiguous)"
    )


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("2GB", "'2GB' is not a size; use a binary unit: 512MiB, 2GiB, 1TiB"),
        ("2.5GiB", "'2.5GiB' is not a size; use a binary unit: 512MiB, 2GiB, 1TiB"),
        ("0GiB", "a size must be greater than zero"),
        (True, "a size must be a string with a binary unit, e.g. 2GiB"),
        (None, "a size must be a string with a binary unit, e.g. 2GiB"),
    ],
)
def test_size_refuses_other_spellings(value: object, message: str) -> None:
    assert _message(SIZE, value) == message


@pytest.mark.parametrize(
    ("size", "text"),
    [(2 << 30, "2GiB"), (1536 << 20, "1536MiB"), (3 << 40, "3TiB"), (64 << 10, "64KiB")],
)
def test_format_size_uses_the_largest_exact_unit_and_round_trips(size: int, text: str) -> None:
    assert fields.format_size(size) == text
    assert fields.parse_size(text) == size
    assert SIZE.dump_python(size, mode="json") == text


@pytest.mark.parametrize("name", ["web-1", "a", "0", "a" * 63, "db-01-x"])
def test_dns_labels_are_accepted(name: str) -> None:
    assert LABEL.validate_python(name) == name


@pytest.mark.parametrize("name", ["../x", "Web_1", "-web", "web-", "web.1", "", "wéb"])
def test_names_that_are_not_dns_labels_are_refused(name: str) -> None:
    assert _message(LABEL, name) == (
        f"{name!r} is not a DNS label: use lowercase letters, digits and '-', "
        "starting and ending with a letter or digit"
    )


def test_names_longer_than_63_characters_are_refused() -> None:
    assert _message(LABEL, "a" * 64) == "a name has at most 63 characters"


def test_mac_is_normalised_to_lowercase() -> None:
    assert MAC.validate_python("52:54:00:AB:cd:EF") == "52:54:00:ab:cd:ef"


@pytest.mark.parametrize("mac", ["52:54:00:12:34", "52-54-00-12-34-56", "52:54:00:12:34:5g"])
def test_malformed_macs_are_refused(mac: str) -> None:
    assert _message(MAC, mac) == f"{mac!r} is not a MAC address like 52:54:00:12:34:56"


def test_multicast_macs_are_refused() -> None:
    assert _message(MAC, "01:00:5e:00:00:01") == (
        "'01:00:5e:00:00:01' is a multicast MAC address; the first octet must be even"
    )


def test_bridge_names_up_to_15_characters_are_accepted() -> None:
    assert BRIDGE.validate_python("ib-lab0-0123456") == "ib-lab0-0123456"


def test_bridge_names_over_15_characters_are_refused() -> None:
    assert _message(BRIDGE, "ib-lab0-01234567") == (
        "bridge name 'ib-lab0-01234567' is 16 characters; Linux allows at most 15"
    )


@pytest.mark.parametrize("name", ["-br0", "br 0", "br/0"])
def test_bridge_names_must_be_interface_names(name: str) -> None:
    assert _message(BRIDGE, name) == f"{name!r} is not a valid interface name"


# --- durations: one parser for the daemon's options and --since ----------------------


@pytest.mark.parametrize(
    ("text", "seconds"),
    [("30s", 30.0), ("1h30m", 5400.0), ("500ms", 0.5), ("2d", 172800.0), ("1w", 604800.0)],
)
def test_duration_reads_units(text: str, seconds: float) -> None:
    assert fields.parse_duration(text) == seconds
    assert fields.parse_duration(text, bare_seconds=False) == seconds


def test_duration_bare_seconds_only_when_allowed() -> None:
    assert fields.parse_duration("45") == 45.0
    with pytest.raises(ValueError, match="30s, 5m, 1h"):
        fields.parse_duration("45", bare_seconds=False)
    with pytest.raises(ValueError, match="negative"):
        fields.parse_duration("-5")


@pytest.mark.parametrize("text", ["", "s", "5x", "m5", "5m junk", "1h-3m", "5 minutes"])
def test_duration_refuses_what_it_cannot_read(text: str) -> None:
    with pytest.raises(ValueError, match="cannot read the duration"):
        fields.parse_duration(text)
