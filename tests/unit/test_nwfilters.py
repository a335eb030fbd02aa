"""nwfilter rendering and projection agree, and libvirt's spellings project to the same shape.

``project(render(shape)) == canonical(shape)`` (and ``== shape`` for a
canonical one) keeps a policy's plan empty right after an apply. The
hand-written documents are what libvirt 9.0 hands back for filters we defined
(checked against libvirtd in ``tests/integration/test_nwfilters.py``).
"""

from __future__ import annotations

import uuid as uuid_module

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from lxml import etree

from reconciler import errors
from reconciler.hypervisor import nwfilters, xml
from reconciler.models import kinds, observed
from tests.unit import fakes

names = st.from_regex(r"\A[a-z][-a-z0-9]{0,12}\Z")
ports = st.integers(1, 65535).map(str)
ipv4 = st.tuples(*[st.integers(0, 255)] * 4).map(lambda o: ".".join(map(str, o)))
macs = st.lists(st.integers(0, 255), min_size=3, max_size=3).map(
    lambda octets: "52:54:00:" + ":".join(f"{o:02x}" for o in octets)
)
states = st.lists(
    st.sampled_from(["NEW", "ESTABLISHED", "RELATED"]), min_size=1, max_size=3, unique=True
).map(lambda chosen: ",".join(s for s in ("NEW", "ESTABLISHED", "RELATED") if s in chosen))


@st.composite
def attributes(draw: st.DrawFn, protocol: str) -> tuple[tuple[str, str], ...]:
    found: dict[str, str] = {}
    if protocol in ("tcp", "udp") and draw(st.booleans()):
        found["dstportstart"] = draw(ports)
        if draw(st.booleans()):
            found["dstportend"] = draw(ports)
    if protocol in ("tcp", "udp", "icmp", "all", "ip"):
        for side in ("src", "dst"):
            if draw(st.booleans()):
                found[f"{side}ipaddr"] = draw(ipv4)
                found[f"{side}ipmask"] = str(draw(st.integers(0, 32)))
        if protocol != "ip" and draw(st.booleans()):
            found["state"] = draw(states)
    if protocol == "ip" and draw(st.booleans()):
        found["protocol"] = draw(st.sampled_from(["tcp", "udp", "icmp"]))
    if protocol == "mac" and draw(st.booleans()):
        found["protocolid"] = draw(st.sampled_from(["arp", "ipv4", "ipv6", "0x88cc"]))
    if protocol in ("mac", "arp") and draw(st.booleans()):
        found["srcmacaddr"] = draw(macs)
    return tuple(sorted(found.items()))


@st.composite
def rules(draw: st.DrawFn) -> observed.FilterRule:
    protocol = draw(st.sampled_from(["tcp", "udp", "icmp", "all", "mac", "arp", "ip", ""]))
    return observed.FilterRule(
        action=draw(st.sampled_from(["accept", "drop", "reject", "return", "continue"])),
        direction=draw(st.sampled_from(["in", "out", "inout"])),
        priority=draw(st.integers(-1000, 1000)),
        protocol=protocol,
        attributes=draw(attributes(protocol)),
        statematch=draw(st.booleans()),
    )


@st.composite
def references(draw: st.DrawFn) -> observed.FilterRef:
    parameters: list[tuple[str, str]] = []
    if draw(st.booleans()):
        parameters.append(("IP", draw(ipv4)))
    if draw(st.booleans()):
        parameters.append(("MAC", draw(macs)))
    return observed.FilterRef(filter=draw(names), parameters=tuple(parameters))


filter_shapes = st.builds(
    observed.FilterShape,
    chain=st.sampled_from(["root", "ipv4", "mac", "arp"]),
    references=st.lists(references(), max_size=3).map(tuple),
    rules=st.lists(rules(), max_size=6).map(tuple),
)


@given(name=names, shape=filter_shapes, uuid=st.none() | st.uuids().map(str))
@settings(max_examples=200, deadline=None)
def test_projecting_a_rendered_filter_gives_its_shape_back(
    name: str, shape: observed.FilterShape, uuid: str | None
) -> None:
    document = nwfilters.render(name, shape, uuid=uuid)
    assert nwfilters.canonical(shape) == shape
    assert nwfilters.project(document) == shape
    root = etree.fromstring(document.encode())
    assert (root.get("name"), root.findtext("uuid")) == (name, uuid)


def test_references_come_before_rules_and_statematch_is_written_only_when_false() -> None:
    shape = observed.FilterShape(
        rules=(
            observed.FilterRule("accept", "in", 100, "tcp", (("dstportstart", "80"),)),
            observed.FilterRule("drop", "inout", 1000, "all", statematch=False),
        ),
        references=(observed.FilterRef("clean-traffic", (("MAC", "52:54:00:00:00:01"),)),),
    )
    root = etree.fromstring(nwfilters.render("web", shape).encode())
    assert [c.tag for c in root] == ["filterref", "rule", "rule"]
    assert [r.get("statematch") for r in root.iterfind("rule")] == [None, "false"]
    assert [dict(p.attrib) for p in root.iterfind("filterref/parameter")] == [
        {"name": "MAC", "value": "52:54:00:00:00:01"}
    ]
    assert [dict(t.attrib) for t in root.iterfind("rule/tcp")] == [{"dstportstart": "80"}]


LIBVIRT_WROTE = """
<filter name='ibt-web' chain='ipv4' priority='-700'>
  <uuid>9d8acc45-964e-422f-9a63-6704f6a0c416</uuid>
  <filterref filter='clean-traffic'>
    <parameter name='IP' value='10.0.0.5'/>
    <parameter name='MAC' value='52:54:00:aa:bb:01'/>
  </filterref>
  <rule action='accept' direction='in' priority='100'>
    <tcp srcipaddr='10.0.0.0' srcipmask='8' state='NEW,ESTABLISHED' dstportstart='80'/>
  </rule>
  <rule action='drop' direction='inout' priority='-500' statematch='false'>
    <all/>
  </rule>
</filter>
"""


def test_libvirts_own_document_projects_without_uuid_or_chain_priority() -> None:
    assert nwfilters.project(LIBVIRT_WROTE) == observed.FilterShape(
        chain="ipv4",
        references=(
            observed.FilterRef("clean-traffic", (("IP", "10.0.0.5"), ("MAC", "52:54:00:aa:bb:01"))),
        ),
        rules=(
            observed.FilterRule(
                "accept",
                "in",
                100,
                "tcp",
                (
                    ("dstportstart", "80"),
                    ("srcipaddr", "10.0.0.0"),
                    ("srcipmask", "8"),
                    ("state", "NEW,ESTABLISHED"),
                ),
            ),
            observed.FilterRule("drop", "inout", -500, "all", statematch=False),
        ),
    )


@pytest.mark.parametrize(
    ("written", "read"),
    [
        (("srcipmask", "255.255.0.0"), ("srcipmask", "16")),
        (("dstipmask", "0.0.0.0"), ("dstipmask", "0")),
        (("srcipmask", "ffff:ffff::"), ("srcipmask", "32")),
        (("state", "established,new"), ("state", "NEW,ESTABLISHED")),
        (("state", "INVALID,RELATED,NEW"), ("state", "NEW,RELATED,INVALID")),
        (("protocolid", "0x0800"), ("protocolid", "ipv4")),
        (("protocolid", "2054"), ("protocolid", "arp")),
        (("protocolid", "0X86DD"), ("protocolid", "ipv6")),
        (("protocolid", "0x88CC"), ("protocolid", "0x88cc")),
        (("protocol", "6"), ("protocol", "tcp")),
        (("protocol", "47"), ("protocol", "47")),
        (("dstportstart", "0x1F90"), ("dstportstart", "8080")),
        (("dstportstart", "080"), ("dstportstart", "80")),
        (("srcmacaddr", "52:54:00:AB:CD:EF"), ("srcmacaddr", "52:54:00:ab:cd:ef")),
        (("srcipaddr", "FD00:0:0::1"), ("srcipaddr", "fd00::1")),
        (("srcipaddr", "$IP"), ("srcipaddr", "$IP")),
    ],
)
def test_libvirts_spellings_of_a_value_project_onto_one_form(
    written: tuple[str, str], read: tuple[str, str]
) -> None:
    rule = observed.FilterRule("accept", "in", 1, "tcp", (written,))
    document = nwfilters.render("f", observed.FilterShape(rules=(rule,)))
    assert nwfilters.project(document).rules[0].attributes == (read,)


def test_statematch_zero_and_a_missing_priority_project_as_libvirt_reads_them() -> None:
    shape = nwfilters.project(
        "<filter name='f' chain='arp' priority='-500'>"
        "<rule action='accept' direction='inout' priority='500'/>"
        "<rule action='accept' direction='in' statematch='0'><udp/></rule>"
        "<rule action='accept' direction='out'><tcp match='yes' dstportstart='22'/></rule>"
        "</filter>"
    )
    assert shape == observed.FilterShape(
        chain="arp",
        rules=(
            observed.FilterRule("accept", "inout", 500, ""),
            observed.FilterRule("accept", "in", 500, "udp", statematch=False),
            observed.FilterRule("accept", "out", 500, "tcp", (("dstportstart", "22"),)),
        ),
    )


def test_parameters_are_sorted_by_name_keeping_the_order_of_one_names_values() -> None:
    ref = nwfilters.project(
        "<filter name='f'><filterref filter='clean-traffic'>"
        "<parameter name='MAC' value='52:54:00:00:00:01'/><parameter name='IP' value='10.0.0.9'/>"
        "<parameter name='IP' value='10.0.0.5'/></filterref></filter>"
    ).references[0]
    assert ref.parameters == (
        ("IP", "10.0.0.9"),
        ("IP", "10.0.0.5"),
        ("MAC", "52:54:00:00:00:01"),
    )


@pytest.mark.parametrize(
    "document",
    [
        "<filter name='f'><rule direction='in'><all/></rule></filter>",
        "<network><name>n</name></network>",
        "<filter name='f'><filterref/></filter>",
        "<filter name='f'><rule action='accept' direction='in' priority='x'><all/></rule></filter>",
        "not xml",
    ],
)
def test_a_document_that_is_no_filter_we_can_read_raises_value_error(document: str) -> None:
    with pytest.raises(ValueError):
        nwfilters.project(document)


class _Listed:
    """A ``virNWFilter`` as ``listAllNWFilters`` hands it over, with a given document."""

    def __init__(self, name: str, document: str) -> None:
        self._name, self._document = name, document

    def name(self) -> str:
        return self._name

    def XMLDesc(self, _flags: int) -> str:  # noqa: N802 - libvirt's spelling
        return self._document

    def UUIDString(self) -> str:  # noqa: N802 - libvirt's spelling
        return "00000000-0000-0000-0000-00000000000" + str(len(self._name))


class _Connection:
    def __init__(self, *listed: _Listed) -> None:
        self._listed = list(listed)

    def listAllNWFilters(self, _flags: int) -> list[_Listed]:  # noqa: N802 - libvirt's spelling
        return self._listed


def test_observation_skips_a_filter_it_cannot_project_and_says_so(
    caplog: pytest.LogCaptureFixture,
) -> None:
    good = nwfilters.render("ok", observed.FilterShape(references=(observed.FilterRef("x"),)))
    bad = "<filter name='odd'><rule action='accept'><all/></rule></filter>"
    found = nwfilters.observe(_Connection(_Listed("ok", good), _Listed("odd", bad)))
    assert found == {
        "ok": observed.ObservedFilter(
            "ok", "00000000-0000-0000-0000-000000000002", nwfilters.project(good)
        )
    }
    assert "odd" in caplog.text


def _running_domain_with_filter(hv: fakes.FakeHypervisor, name: str, nwfilter: str) -> None:
    nic = observed.NicShape("lab", "52:54:00:00:00:01", observed.FilterRef(nwfilter))
    shape = observed.VmShape(
        cpus=1,
        memory=1 << 30,
        firmware=kinds.Firmware.BIOS,
        machine=kinds.Machine.Q35,
        graphics_type=kinds.GraphicsType.NONE,
        graphics_listen="",
        disks=(),
        nics=(nic,),
        autostart=False,
    )
    owner = observed.Ownership("VirtualMachine", name, fakes.INSTALLATION, "0" * 16)
    hv.define_domain(name, xml.render_domain(name, shape, domain_type="qemu", owner=owner))
    hv.define_network("lab", xml.render_network("lab", NET, owner=owner))
    hv.start_network("lab")
    hv.start_domain(name)


NET = observed.NetworkShape(
    mode=kinds.NetworkMode.ISOLATED,
    bridge="ib-lab",
    address=None,
    dhcp=None,
    hosts=(),
    domain=None,
    mtu=None,
    autostart=False,
)


def test_the_fake_refuses_to_undefine_what_a_running_guest_uses_as_libvirt_does() -> None:
    hv = fakes.FakeHypervisor()
    hv.define_filter("base", nwfilters.render("base", observed.FilterShape()))
    vm_filter = observed.FilterShape(references=(observed.FilterRef("base"),))
    uuid = hv.define_filter("vm", nwfilters.render("vm", vm_filter))
    assert hv.filter_definition("vm") == nwfilters.render("vm", vm_filter, uuid=uuid)
    hv.define_filter("spare", nwfilters.render("spare", vm_filter))
    _running_domain_with_filter(hv, "web", "vm")

    for name in ("vm", "base"):
        with pytest.raises(errors.HypervisorError, match="in use"):
            hv.undefine_filter(name)
    hv.undefine_filter("spare")  # referencing base is no use of it
    hv.stop_domain("web", timeout=0)
    hv.undefine_filter("base")  # a stopped guest's NIC and a filter's reference are no use
    assert set(hv.observe().filters) == {"vm"}
    with pytest.raises(errors.NotFoundError):
        hv.undefine_filter("base")
    for other in (None, str(uuid_module.uuid4())):
        with pytest.raises(errors.HypervisorError, match="already exists with uuid"):
            hv.define_filter("vm", nwfilters.render("vm", vm_filter, uuid=other))
    assert hv.define_filter("vm", nwfilters.render("vm", vm_filter, uuid=uuid)) == uuid


def test_the_fake_changes_a_running_nics_filter_live_and_in_the_config() -> None:
    hv = fakes.FakeHypervisor()
    hv.define_filter("vm", nwfilters.render("vm", observed.FilterShape()))
    hv.define_filter("other", nwfilters.render("other", observed.FilterShape()))
    _running_domain_with_filter(hv, "web", "vm")
    reference = observed.FilterRef("other", (("MAC", "52:54:00:00:00:01"),))

    hv.update_interface_filter("web", "52:54:00:00:00:01", reference)

    seen = hv.observe().domains["web"]
    assert seen.live is not None and seen.live.nics[0].filter == reference
    assert seen.shape.nics[0].filter == reference
    assert seen.power is kinds.PowerState.RUNNING
    hv.undefine_filter("vm")  # no longer in use
    with pytest.raises(errors.NotFoundError):
        hv.update_interface_filter("web", "52:54:00:00:00:02", None)


def test_the_fake_refuses_to_start_a_guest_whose_nic_needs_a_missing_filter() -> None:
    hv = fakes.FakeHypervisor()
    vm_filter = observed.FilterShape(references=(observed.FilterRef("base"),))
    hv.define_filter("vm", nwfilters.render("vm", vm_filter))
    with pytest.raises(errors.HypervisorError, match="referenced filter 'base' is missing"):
        _running_domain_with_filter(hv, "web", "vm")
    hv.define_filter("base", nwfilters.render("base", observed.FilterShape()))
    hv.start_domain("web")
    assert hv.observe().domains["web"].power is kinds.PowerState.RUNNING
