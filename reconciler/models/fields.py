"""Constrained scalar types used by the manifest kinds.

Sizes are written with a binary unit (``512MiB``, ``2GiB``, ``1Ti``) and held as
an ``int`` of bytes, so arithmetic and comparison never touch strings. A bare
number is refused with a hint: a forgotten unit is the classic way to ask for a
2-byte disk. Names are DNS labels because they become libvirt object names,
volume file names and bridge suffixes; anything else (``../x``, ``Web_1``) could
escape a directory or be rewritten by libvirt.
"""

from __future__ import annotations

import re
from typing import Annotated, Any

from pydantic import AfterValidator, BeforeValidator, PlainSerializer, WithJsonSchema

__all__ = [
    "DNS_LABEL",
    "BridgeName",
    "DnsLabel",
    "Mac",
    "Size",
    "format_size",
    "parse_duration",
    "parse_size",
]

DNS_LABEL = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$"
_DNS_LABEL_RE = re.compile(DNS_LABEL)
_SIZE_RE = re.compile(r"^\s*(\d+)\s*(KiB|Ki|MiB|Mi|GiB|Gi|TiB|Ti)\s*$")
_SIZE_PATTERN = r"^[0-9]+ *(KiB|Ki|MiB|Mi|GiB|Gi|TiB|Ti)$"
_UNITS = {"K": 1 << 10, "M": 1 << 20, "G": 1 << 30, "T": 1 << 40}
_MAC_RE = re.compile(r"^([0-9a-f]{2}:){5}[0-9a-f]{2}$")
_BRIDGE_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")
_DURATION_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0, "w": 604800.0}
_DURATION_PART = re.compile(r"(\d+(?:\.\d+)?)(ms|s|m|h|d|w)")
DURATION_EXAMPLES = "30s, 5m, 1h or 1h30m"


def parse_size(value: Any) -> int:
    """Parse ``'2GiB'`` into bytes; reject bare numbers and unknown units."""
    if isinstance(value, bool):
        raise ValueError("a size must be a string with a binary unit, e.g. 2GiB")
    if isinstance(value, int | float):
        raise ValueError(f"give a unit, e.g. {value}GiB or {value}MiB (bare numbers are ambiguous)")
    if not isinstance(value, str):
        raise ValueError("a size must be a string with a binary unit, e.g. 2GiB")
    match = _SIZE_RE.match(value)
    if match is None:
        raise ValueError(f"{value!r} is not a size; use a binary unit: 512MiB, 2GiB, 1TiB")
    number, unit = match.groups()
    size = int(number) * _UNITS[unit[0]]
    if size <= 0:
        raise ValueError("a size must be greater than zero")
    return size


def parse_duration(text: str, *, bare_seconds: bool = True) -> float:
    """Seconds in ``text``, written the way Flux and systemd take them.

    ``30s``, ``5m``, ``1h``, ``1h30m``, ``500ms``, ``1.5s``, ``2d``, ``1w``;
    case and surrounding blanks do not matter. A bare number means seconds
    unless ``bare_seconds`` is False (``--since 20240501`` is not a duration).
    Raises :class:`ValueError` when unreadable or negative.
    """
    value = text.strip().lower()
    if bare_seconds:
        try:
            seconds = float(value)
        except ValueError:
            pass
        else:
            if seconds < 0:
                raise ValueError(f"the duration {text!r} is negative")
            return seconds
    position = 0
    total = 0.0
    for match in _DURATION_PART.finditer(value):
        if match.start() != position:
            break
        total += float(match.group(1)) * _DURATION_UNITS[match.group(2)]
        position = match.end()
    if position == 0 or position != len(value):
        raise ValueError(f"cannot read the duration {text!r}: write it like {DURATION_EXAMPLES}")
    return total


def format_size(size: int) -> str:
    """Render bytes with the largest binary unit that divides them exactly."""
    for unit in ("Ti", "Gi", "Mi"):
        factor = _UNITS[unit[0]]
        if size % factor == 0:
            return f"{size // factor}{unit}B"
    return f"{size // _UNITS['K']}KiB"


def _check_label(value: str) -> str:
    if len(value) > 63:
        raise ValueError("a name has at most 63 characters")
    if not _DNS_LABEL_RE.match(value):
        raise ValueError(
            f"{value!r} is not a DNS label: use lowercase letters, digits and '-', "
            "starting and ending with a letter or digit"
        )
    return value


def _check_mac(value: str) -> str:
    lowered = value.lower()
    if not _MAC_RE.match(lowered):
        raise ValueError(f"{value!r} is not a MAC address like 52:54:00:12:34:56")
    if int(lowered[:2], 16) & 1:
        raise ValueError(f"{value!r} is a multicast MAC address; the first octet must be even")
    return lowered


def _check_bridge(value: str) -> str:
    if len(value) > 15:
        raise ValueError(
            f"bridge name {value!r} is {len(value)} characters; Linux allows at most 15"
        )
    if not _BRIDGE_RE.match(value):
        raise ValueError(f"{value!r} is not a valid interface name")
    return value


Size = Annotated[
    int,
    BeforeValidator(parse_size),
    PlainSerializer(format_size, return_type=str, when_used="json"),
    WithJsonSchema({"type": "string", "pattern": _SIZE_PATTERN, "examples": ["512MiB", "2GiB"]}),
]
DnsLabel = Annotated[
    str,
    AfterValidator(_check_label),
    WithJsonSchema({"type": "string", "pattern": DNS_LABEL, "maxLength": 63}),
]
Mac = Annotated[
    str,
    AfterValidator(_check_mac),
    WithJsonSchema({"type": "string", "pattern": "^([0-9a-fA-F]{2}:){5}[0-9a-fA-F]{2}$"}),
]
BridgeName = Annotated[
    str,
    AfterValidator(_check_bridge),
    WithJsonSchema({"type": "string", "maxLength": 15, "pattern": "^[A-Za-z0-9][A-Za-z0-9_.-]*$"}),
]
