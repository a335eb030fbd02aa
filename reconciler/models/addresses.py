"""Guest addresses by MAC: the merge of DHCP leases and the guest agent's report.

Both sources are keyed by MAC. A lease says which IPv4 address libvirt's
dnsmasq handed a NIC; the guest agent, when it runs in the guest and answers,
reports every address of every interface (static ones and IPv6 too). The merge
is their union per MAC, so a guest without an agent still shows its lease and
one with a static address and an agent shows that address. Loopback,
link-local and unspecified addresses are left out: they say nothing about
where a guest can be reached. Pure, so the planner's status and the CLI's
views share it.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable, Mapping
from typing import Any

__all__ = ["Addresses", "from_interfaces", "merge", "of_macs", "ordered"]

Addresses = Mapping[str, tuple[str, ...]]
"""MAC (lower case) -> the guest's addresses on that NIC, IPv4 first."""


def _usable(address: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    try:
        ip = ipaddress.ip_address(address.split("%", 1)[0])
    except ValueError:
        return None
    if ip.is_loopback or ip.is_link_local or ip.is_unspecified:
        return None
    return ip


def ordered(addresses: Iterable[str]) -> tuple[str, ...]:
    """IPv4 before IPv6, each in address order, each once; unusable ones left out."""
    unique = {ip for a in addresses if (ip := _usable(a)) is not None}
    return tuple(str(ip) for ip in sorted(unique, key=lambda ip: (ip.version, int(ip))))


def from_interfaces(reported: Mapping[str, Any]) -> dict[str, tuple[str, ...]]:
    """MAC -> addresses from one libvirt ``interfaceAddresses`` answer (the agent's)."""
    found: dict[str, list[str]] = {}
    for interface in reported.values():
        mac = str(interface.get("hwaddr") or "").lower()
        if not mac or mac == "00:00:00:00:00:00":
            continue  # loopback
        listed = interface.get("addrs") or ()
        found.setdefault(mac, []).extend(str(a.get("addr", "")) for a in listed)
    return {mac: ordered(ips) for mac, ips in found.items()}


def merge(*sources: Mapping[str, Iterable[str]]) -> dict[str, tuple[str, ...]]:
    """The union of several MAC -> addresses maps (leases, agent), each MAC's in order."""
    merged: dict[str, list[str]] = {}
    for source in sources:
        for mac, found in source.items():
            merged.setdefault(mac.lower(), []).extend(found)
    return {mac: ips for mac, found in merged.items() if (ips := ordered(found))}


def of_macs(macs: Iterable[str], addresses: Mapping[str, Iterable[str]]) -> list[str]:
    """The addresses of a guest's NICs (by MAC), IPv4 first, each once."""
    return list(ordered(ip for mac in macs for ip in addresses.get(mac.lower(), ())))
