"""nwfilters we render come back from libvirtd as the shape we rendered.

libvirt 9.0 rewrites a filter as it parses it (a uuid, a default priority on a
non-root chain, masks as prefix lengths, ethertypes by name, state flags in
its own order). These tests define real filters with every protocol and
attribute the firewall policies use and check that the projection of
libvirt's XMLDesc is the canonical shape, so a policy's plan is empty right
after it was applied.
"""

from __future__ import annotations

import libvirt
import pytest

from reconciler import errors
from reconciler.hypervisor import adapter, nwfilters
from reconciler.models import observed

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
