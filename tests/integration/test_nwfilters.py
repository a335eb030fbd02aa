"""nwfilters we render come back from libvirtd as the shape we rendered.

libvirt 9.0 rewrites a filter as it parses it (a uuid, a default priority on a
non-root chain, masks as prefix lengths, ethertypes by name, state flags in
its own order). These tests define real filters with every protocol and
attribute the firewall policies use and check that the projection of
libvirt's XMLDesc is the canonical shape, so a policy's plan is empty right
after it was applied.
"""

from __future__ import annotations

import subprocess

import libvirt
import pytest
from lxml import etree

from reconciler import errors
from reconciler.hypervisor import adapter, nwfilters, projection, xml
from reconciler.models import observed
from tests.fixtures.libvirt import bridge_name, firmware_only_domain, isolated_network

pytestmark = pytest.mark.integration

MAC = "52:54:00:4e:57:01"


def _rule(
    action: str, direction: str, priority: int, element: str, **attributes: str
) -> observed.FilterRule:
    return observed.FilterRule(
        action, direction, priority, element, tuple(sorted(attributes.items()))
    )


def _policy_shape(base: str) -> observed.FilterShape:
    return observed.FilterShape(
        references=(observed.FilterRef(base),),
        rules=(
            _rule("accept", "inout", -900, "mac", protocolid="arp"),
            _rule("accept", "out", -800, "udp", srcportstart="68", dstportstart="67"),
            _rule("accept", "in", -790, "udp", srcportstart="67", dstportstart="68"),
            _rule("drop", "in", 100, "tcp", dstportstart="22"),
            _rule(
                "accept",
                "in",
                200,
                "tcp",
                dstportstart="8000",
                dstportend="8080",
                srcipaddr="10.0.0.0",
                srcipmask="8",
                state="NEW,ESTABLISHED",
            ),
            _rule("accept", "out", 300, "udp", dstipaddr="192.168.1.0", dstipmask="24"),
            _rule("reject", "in", 400, "icmp", state="NEW,ESTABLISHED,RELATED"),
            _rule("accept", "out", 500, "ip", protocol="tcp", dstipaddr="1.1.1.1", dstipmask="32"),
            _rule("accept", "inout", 600, "arp"),
            _rule("accept", "inout", 610, "mac", protocolid="ipv4"),
            observed.FilterRule("drop", "inout", 1000, "all", statematch=False),
        ),
    )


def test_filters_defined_in_libvirt_project_onto_the_shape_they_were_rendered_from(
    libvirt_conn: libvirt.virConnect, libvirt_cleanup: None, prefix: str
) -> None:
    base = observed.FilterShape(
        references=(observed.FilterRef("clean-traffic", (("MAC", MAC),)),),
        rules=(_rule("accept", "out", 900, "all", state="NEW,ESTABLISHED"),),
    )
    policy = _policy_shape(f"{prefix}base")
    chained = observed.FilterShape(
        chain="ipv4", rules=(_rule("accept", "in", 10, "tcp", dstportstart="443"),)
    )
    shapes = {f"{prefix}base": base, f"{prefix}policy": policy, f"{prefix}chain": chained}
    for name, shape in shapes.items():
        libvirt_conn.nwfilterDefineXML(nwfilters.render(name, shape))

    for name, shape in shapes.items():
        nwfilter = libvirt_conn.nwfilterLookupByName(name)
        assert nwfilters.project(nwfilter.XMLDesc(0)) == shape, name


def test_libvirts_rewrites_of_other_spellings_project_onto_the_canonical_shape(
    libvirt_conn: libvirt.virConnect, libvirt_cleanup: None, prefix: str
) -> None:
    written = observed.FilterShape(
        references=(
            observed.FilterRef("clean-traffic", (("MAC", "52:54:00:4E:57:01"), ("IP", "10.0.0.7"))),
        ),
        rules=(
            _rule("accept", "in", 1, "tcp", dstportstart="080", state="established,new"),
            _rule("accept", "in", 2, "icmp", srcipaddr="192.168.0.0", srcipmask="255.255.0.0"),
            _rule("accept", "inout", 3, "mac", protocolid="0x0800"),
            _rule("accept", "inout", 4, "ip", protocol="17"),
            _rule("accept", "inout", 5, "mac", srcmacaddr="52:54:00:AB:CD:EF", protocolid="2054"),
        ),
    )
    name = f"{prefix}spelled"
    libvirt_conn.nwfilterDefineXML(nwfilters.render(name, written))

    seen = nwfilters.project(libvirt_conn.nwfilterLookupByName(name).XMLDesc(0))
    assert seen == nwfilters.canonical(written)
    assert seen != written


def test_the_builtin_clean_traffic_filter_projects_with_its_references_in_order(
    libvirt_conn: libvirt.virConnect,
) -> None:
    shape = nwfilters.project(libvirt_conn.nwfilterLookupByName("clean-traffic").XMLDesc(0))
    assert shape.chain == "root"
    assert [r.filter for r in shape.references][:2] == ["no-mac-spoofing", "no-ip-spoofing"]
    assert observed.FilterRule("accept", "out", -650, "mac", (("protocolid", "ipv4"),)) in (
        shape.rules
    )


def test_the_facade_defines_observes_reads_and_undefines_filters(
    libvirt_conn: libvirt.virConnect, libvirt_uri: str, libvirt_cleanup: None, prefix: str
) -> None:
    base, policy = f"{prefix}base", f"{prefix}policy"
    base_shape = observed.FilterShape(
        references=(observed.FilterRef("clean-traffic", (("MAC", MAC),)),)
    )
    policy_shape = _policy_shape(base)
    hv = adapter.Hypervisor(libvirt_uri)
    try:
        base_uuid = hv.define_filter(base, nwfilters.render(base, base_shape))
        policy_uuid = hv.define_filter(policy, nwfilters.render(policy, policy_shape))
        assert base_uuid == libvirt_conn.nwfilterLookupByName(base).UUIDString()

        world = hv.observe()
        assert world.filters[base] == observed.ObservedFilter(base, base_uuid, base_shape)
        assert world.filters[policy] == observed.ObservedFilter(policy, policy_uuid, policy_shape)
        assert "clean-traffic" in world.filters
        assert nwfilters.project(hv.filter_definition(policy)) == policy_shape

        changed = observed.FilterShape(rules=policy_shape.rules[:1])
        with pytest.raises(errors.HypervisorError, match="already exists with uuid"):
            hv.define_filter(policy, nwfilters.render(policy, changed))  # a redefine needs it
        redefined = nwfilters.render(policy, changed, uuid=policy_uuid)
        assert hv.define_filter(policy, redefined) == policy_uuid
        assert hv.observe().filters[policy].shape == changed

        hv.undefine_filter(policy)
        hv.undefine_filter(base)
        assert not {base, policy} & set(hv.observe().filters)
        with pytest.raises(errors.NotFoundError):
            hv.undefine_filter(base)
        with pytest.raises(errors.NotFoundError):
            hv.filter_definition(base)
    finally:
        hv.close()


def _tap_rules(tap: str) -> str:
    """The iptables rules libvirt instantiated for ``tap`` (its FI-/FO-/HI- chains)."""
    saved = subprocess.run(["iptables-save"], capture_output=True, text=True, check=True).stdout
    return "\n".join(line for line in saved.splitlines() if f"-{tap} " in line)


def _running_guest_with_nic(
    conn: libvirt.virConnect, prefix: str, domain_type: str, reference: observed.FilterRef
) -> libvirt.virDomain:
    network = conn.networkDefineXML(isolated_network(f"{prefix}net", bridge_name(prefix)))
    network.create()
    root = etree.fromstring(firmware_only_domain(f"{prefix}vm", domain_type).encode())
    nic = observed.NicShape(network=f"{prefix}net", mac=MAC, filter=reference)
    etree.SubElement(root, "devices").append(etree.fromstring(xml.render_interface(nic)))
    dom = conn.defineXML(etree.tostring(root, encoding="unicode"))
    dom.create()
    return dom


def _interface(dom: libvirt.virDomain, flags: int) -> observed.NicShape:
    nics = projection.parse_domain(dom.XMLDesc(flags), autostart=False)[2].nics
    return next(n for n in nics if n.mac == MAC)


def test_a_running_guests_nic_changes_filter_in_place_and_its_host_rules_follow(
    libvirt_conn: libvirt.virConnect,
    libvirt_uri: str,
    libvirt_cleanup: None,
    prefix: str,
    domain_type: str,
) -> None:
    old, new = f"{prefix}old", f"{prefix}new"
    for name, port in ((old, "8080"), (new, "8081")):
        shape = observed.FilterShape(rules=(_rule("accept", "in", 100, "tcp", dstportstart=port),))
        libvirt_conn.nwfilterDefineXML(nwfilters.render(name, shape))
    first = observed.FilterRef(old, (("MAC", MAC),))
    dom = _running_guest_with_nic(libvirt_conn, prefix, domain_type, first)
    domain_id = dom.ID()
    tap = etree.fromstring(dom.XMLDesc(0).encode()).xpath("string(devices/interface/target/@dev)")
    assert isinstance(tap, str) and tap
    assert "--dport 8080" in _tap_rules(tap)

    hv = adapter.Hypervisor(libvirt_uri)
    try:
        with pytest.raises(errors.HypervisorError, match="in use") as refused:
            hv.undefine_filter(old)  # a running guest's rules are built from it
        assert refused.value.retryable

        second = observed.FilterRef(new, (("IP", "10.0.0.5"), ("MAC", MAC)))
        hv.update_interface_filter(f"{prefix}vm", MAC.upper(), second)
        assert _interface(dom, 0).filter == second
        assert _interface(dom, libvirt.VIR_DOMAIN_XML_INACTIVE).filter == second
        config = etree.fromstring(dom.XMLDesc(libvirt.VIR_DOMAIN_XML_INACTIVE).encode())
        source = config.find("devices/interface/source")
        assert source is not None and sorted(source.attrib.items()) == [("network", f"{prefix}net")]
        assert config.find("devices/interface/target") is None  # nothing live in the config
        assert dom.ID() == domain_id  # not restarted
        bindings = {b.portDev(): b.filterName() for b in libvirt_conn.listAllNWFilterBindings(0)}
        assert bindings[tap] == new
        rules = _tap_rules(tap)
        assert "--dport 8081" in rules and "8080" not in rules
        hv.undefine_filter(old)  # no longer in use

        hv.update_interface_filter(f"{prefix}vm", MAC, None)
        assert _interface(dom, 0).filter is None
        assert _interface(dom, libvirt.VIR_DOMAIN_XML_INACTIVE).filter is None
        assert tap not in {b.portDev() for b in libvirt_conn.listAllNWFilterBindings(0)}
        assert _tap_rules(tap) == ""
        with pytest.raises(errors.NotFoundError):
            hv.update_interface_filter(f"{prefix}vm", "52:54:00:ff:ff:ff", second)
    finally:
        hv.close()
