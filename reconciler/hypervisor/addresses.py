"""Reading guest addresses: the networks' DHCP leases and the guest agents' reports.

Neither source may fail a pass: a driver without lease support (libvirt's test
driver) reports no leases, and an agent that is absent, not connected or slow
reports nothing. The agent is asked only of domains whose live XML says its
channel is connected (:func:`agent_connected`, read during observation), so a
host of guests without agents costs no round trip per domain. The two are
merged by :func:`reconciler.models.addresses.merge`.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from typing import Any

import libvirt
from lxml import etree

from reconciler.hypervisor import connection, xml
from reconciler.models import addresses

__all__ = ["agent", "agent_connected", "leases"]

log = logging.getLogger(__name__)


def agent_connected(devices: etree._Element | None) -> bool:
    """Whether a running domain's ``<devices>`` say a guest agent is connected to its channel."""
    if devices is None:
        return False
    return any(
        target.get("state") == "connected"
        for target in devices.iterfind(f"channel/target[@name='{xml.AGENT_CHANNEL}']")
    )


def leases(conn: Any, uri: str) -> dict[str, tuple[str, ...]]:
    """MAC -> IPv4 addresses from the DHCP leases of every active network.

    A network whose driver cannot report leases reports none.
    """
    found: dict[str, list[str]] = {}
    with connection.calling("read DHCP leases on", uri):
        for net in conn.listAllNetworks(libvirt.VIR_CONNECT_LIST_NETWORKS_ACTIVE):
            try:
                listed = net.DHCPLeases()
            except libvirt.libvirtError as exc:
                if exc.get_error_code() in (libvirt.VIR_ERR_NO_NETWORK, libvirt.VIR_ERR_NO_SUPPORT):
                    continue  # undefined since the listing, or a driver without leases
                raise
            for lease in listed:
                if lease.get("type") == libvirt.VIR_IP_ADDR_TYPE_IPV4:
                    found.setdefault(str(lease["mac"]).lower(), []).append(str(lease["ipaddr"]))
    return addresses.merge(found)


def agent(conn: Any, domains: Iterable[str]) -> dict[str, tuple[str, ...]]:
    """MAC -> addresses the guest agent of each of ``domains`` reports; a silent one adds none."""
    found: list[dict[str, tuple[str, ...]]] = []
    for name in domains:
        try:
            reported = conn.lookupByName(name).interfaceAddresses(
                libvirt.VIR_DOMAIN_INTERFACE_ADDRESSES_SRC_AGENT
            )
        except libvirt.libvirtError as exc:
            # Stopped since, agent gone or too slow: this pass shows the leases only.
            log.debug("no addresses from the guest agent of %s: %s", name, exc)
            continue
        found.append(addresses.from_interfaces(reported))
    return addresses.merge(*found)
