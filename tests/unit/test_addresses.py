"""Guest addresses: DHCP leases merged with the guest agent's report, by MAC."""

from __future__ import annotations

from lxml import etree

from reconciler.hypervisor import addresses as reading
from reconciler.hypervisor import xml
from reconciler.models import addresses

MAC = "52:54:00:aa:bb:01"
OTHER = "52:54:00:aa:bb:02"

# What libvirt's interfaceAddresses(SRC_AGENT) returns for a guest with two NICs.
AGENT = {
    "lo": {
        "hwaddr": "00:00:00:00:00:00",
        "addrs": [{"type": 0, "addr": "127.0.0.1", "prefix": 8}, {"type": 1, "addr": "::1"}],
    },
    "enp1s0": {
        "hwaddr": MAC.upper(),
        "addrs": [
            {"type": 1, "addr": "fe80::5054:ff:feaa:bb01", "prefix": 64},
            {"type": 1, "addr": "fd00::10", "prefix": 64},
            {"type": 0, "addr": "10.20.0.10", "prefix": 24},
        ],
    },
    "enp2s0": {"hwaddr": OTHER, "addrs": [{"type": 0, "addr": "192.168.5.7", "prefix": 24}]},
}


def test_the_agent_report_is_keyed_by_mac_without_loopback_or_link_local() -> None:
    assert addresses.from_interfaces(AGENT) == {
        MAC: ("10.20.0.10", "fd00::10"),
        OTHER: ("192.168.5.7",),
    }


def test_merge_is_the_union_per_mac_ipv4_first_each_once() -> None:
    leases = {MAC: ("10.20.0.150",), "52:54:00:aa:bb:03": ("10.20.0.151",)}
    agent = {MAC.upper(): ("fd00::10", "10.20.0.10", "10.20.0.150")}

    merged = addresses.merge(leases, agent)

    assert merged == {
        MAC: ("10.20.0.10", "10.20.0.150", "fd00::10"),
        "52:54:00:aa:bb:03": ("10.20.0.151",),
    }


def test_a_guest_without_an_agent_shows_its_lease_and_one_without_a_lease_its_agent() -> None:
    assert addresses.merge({MAC: ("10.20.0.150",)}, {}) == {MAC: ("10.20.0.150",)}
    assert addresses.merge({}, {MAC: ("10.20.0.10",)}) == {MAC: ("10.20.0.10",)}
    assert addresses.merge({}, {}) == {}


def test_addresses_are_ordered_numerically_not_as_text() -> None:
    assert addresses.ordered(["10.0.0.10", "10.0.0.9", "::1", "bogus", "0.0.0.0"]) == (
        "10.0.0.9",
        "10.0.0.10",
    )


def test_a_vm_shows_the_addresses_of_all_its_macs() -> None:
    found = {MAC: ("10.20.0.10",), OTHER: ("192.168.5.7", "fd00::7")}

    assert addresses.of_macs([OTHER.upper(), MAC, "52:54:00:00:00:99"], found) == [
        "10.20.0.10",
        "192.168.5.7",
        "fd00::7",
    ]


def _devices(state: str | None) -> etree._Element:
    devices = etree.Element("devices")
    channel = etree.SubElement(devices, "channel", type="unix")
    target = etree.SubElement(channel, "target", type="virtio", name=xml.AGENT_CHANNEL)
    if state is not None:
        target.set("state", state)
    return devices


def test_only_a_connected_agent_channel_is_asked_for_addresses() -> None:
    assert reading.agent_connected(_devices("connected"))
    assert not reading.agent_connected(_devices("disconnected"))
    assert not reading.agent_connected(_devices(None))
    assert not reading.agent_connected(etree.Element("devices"))
    assert not reading.agent_connected(None)
