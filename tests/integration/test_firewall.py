"""Departments and firewall policies on the real libvirtd: the rules libvirt instantiates.

No packet is sent. The proof is the host's own state: the guest's interface
carries a ``<filterref>``, ``virsh nwfilter-binding-list`` lists its tap, and
``iptables-save`` shows the chains libvirt built for that tap.
"""

from __future__ import annotations

import subprocess
from typing import Any

import pytest
from lxml import etree

from tests.integration.harness import Harness, doc

pytestmark = pytest.mark.integration


def _policy(h: Harness, short: str, default: str = "Drop", port: int = 8080) -> dict[str, Any]:
    return doc(
        "FirewallPolicy",
        h.name(short),
        {
            "defaultAction": default,
            "presets": ["block-ssh"],
            "rules": [
                {
                    "name": "web",
                    "priority": 200,
                    "action": "Accept",
                    "direction": "In",
                    "protocol": "tcp",
                    "ports": str(port),
                }
            ],
        },
    )


def _department(h: Harness, short: str, policy: str) -> dict[str, Any]:
    return doc("Department", h.name(short), {"network": h.name("net"), "firewall": h.name(policy)})


MAC = "52:54:00:f1:00:10"


def _network(h: Harness) -> dict[str, Any]:
    """The test's network, with a static lease for the VM's MAC.

    The lease is what gives libvirt the guest's IP: without one it would wait
    to learn it from traffic (which a guest that boots nothing never sends)
    before it instantiates the iptables rules.
    """
    net = h.network()
    net["spec"]["ipv4"]["hosts"] = [{"mac": MAC, "ip": f"{h.subnet}.10"}]
    return net


def _vm(h: Harness, department: str) -> dict[str, Any]:
    return doc(
        "VirtualMachine",
        h.name("web"),
        {
            "cpus": 1,
            "memory": "64MiB",
            "graphics": {"type": "none"},
            "disks": [],
            "networks": [{"network": h.name("net"), "mac": MAC}],
            "department": h.name(department),
        },
    )


def _tap(h: Harness) -> str:
    live = h.domain_xml("web", inactive=False)
    (target,) = live.findall("devices/interface/target")
    return str(target.get("dev"))


def _host_rules(tap: str) -> list[str]:
    saved = subprocess.run(["iptables-save"], capture_output=True, text=True, check=True).stdout
    return [line for line in saved.splitlines() if tap in line]


def _bindings() -> str:
    return subprocess.run(
        ["virsh", "-c", "qemu:///system", "nwfilter-binding-list"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout


def test_rules_reach_the_host_and_a_policy_change_is_live(h: Harness) -> None:
    net = _network(h)
    h.write(net, _policy(h, "eng"), _department(h, "eng", "eng"), _vm(h, "eng"))
    applied = h.apply()
    assert applied.exit_code == 0, applied.output

    (ref,) = h.domain_xml("web").findall("devices/interface/filterref")
    assert ref.get("filter") == f"ib-vm-{h.name('web')}"
    tap = _tap(h)
    assert tap in _bindings()
    rules = _host_rules(tap)
    assert any("--dport 8080" in r for r in rules), rules
    assert any("--dport 22" in r and "DROP" in r for r in rules), rules
    domain_id = h.domain("web").ID()

    h.write(net, _policy(h, "eng", port=8081), _department(h, "eng", "eng"), _vm(h, "eng"))
    planned = h.plan()
    assert planned.exit_code == 2, planned.output
    assert "live" in planned.output and h.name("web") in planned.output, planned.output
    applied = h.apply()
    assert applied.exit_code == 0, applied.output
    rules = _host_rules(tap)
    assert any("--dport 8081" in r for r in rules), rules
    assert not any("--dport 8080" in r for r in rules), rules
    assert h.domain("web").ID() == domain_id  # not restarted
    assert h.plan().exit_code == 0


def test_moving_to_an_accept_department_is_live_and_pruning_cleans_up(h: Harness) -> None:
    net = _network(h)
    docs = [net, _policy(h, "eng"), _department(h, "eng", "eng")]
    docs += [_policy(h, "open", default="Accept"), _department(h, "open", "open")]
    h.write(*docs, _vm(h, "eng"))
    assert h.apply().exit_code == 0
    tap = _tap(h)
    assert any("DROP" in r for r in _host_rules(tap) if "--dport" not in r)
    domain_id = h.domain("web").ID()

    h.write(*docs, _vm(h, "open"))
    applied = h.apply()
    assert applied.exit_code == 0, applied.output
    assert h.domain("web").ID() == domain_id
    vm_filter = h.conn.nwfilterLookupByName(f"ib-vm-{h.name('web')}")
    refs = etree.fromstring(vm_filter.XMLDesc().encode()).findall("filterref")
    assert f"ib-policy-{h.name('open')}" in {r.get("filter") for r in refs}

    h.write(*docs)
    pruned = h.apply("--prune")
    assert pruned.exit_code == 0, pruned.output
    assert not h.has_domain("web")
    names = {f.name() for f in h.conn.listAllNWFilters()}
    assert f"ib-vm-{h.name('web')}" not in names
    assert _host_rules(tap) == []


def test_drift_in_a_filter_is_healed_and_a_foreign_filter_is_a_conflict(h: Harness) -> None:
    net = _network(h)
    h.write(net, _policy(h, "eng"), _department(h, "eng", "eng"), _vm(h, "eng"))
    assert h.apply().exit_code == 0
    name = f"ib-policy-{h.name('eng')}"
    original = h.conn.nwfilterLookupByName(name).XMLDesc()
    edited = etree.fromstring(original.encode())
    for rule in edited.findall("rule"):
        edited.remove(rule)
    h.conn.nwfilterDefineXML(etree.tostring(edited).decode())

    planned = h.plan()
    assert planned.exit_code == 2 and "!" in planned.output, planned.output
    healed = h.apply()
    assert healed.exit_code == 0, healed.output
    assert "DriftCorrected" in healed.output or h.plan().exit_code == 0
    assert h.plan().exit_code == 0
    second = h.apply()
    assert "Nothing to do" in second.output, second.output

    foreign = f"ib-policy-{h.name('other')}"
    element = etree.Element("filter", name=foreign, chain="root")
    etree.SubElement(etree.SubElement(element, "rule", action="drop", direction="in"), "all")
    h.conn.nwfilterDefineXML(etree.tostring(element).decode())
    before = h.conn.nwfilterLookupByName(foreign).XMLDesc()
    h.write(
        net, _policy(h, "eng"), _department(h, "eng", "eng"), _vm(h, "eng"), _policy(h, "other")
    )
    refused = h.apply()
    assert refused.exit_code == 1, refused.output
    assert f"nwfilter named {foreign!r} exists that this installation does not own" in (
        refused.output
    ), refused.output
    assert h.conn.nwfilterLookupByName(foreign).XMLDesc() == before
