"""Network filters (kind FirewallPolicy): render, project, observe, define, undefine.

A filter is rendered from a :class:`~reconciler.models.observed.FilterShape`
with lxml (:func:`render`): references first, then rules, each in the order
given. :func:`project` maps libvirt's XML back onto the shape, leaving out
what libvirt adds (the ``<uuid>``, the filter's default ``priority`` on a
non-root chain) and mapping its spellings onto one canonical form, so that
``project(XMLDesc(render(shape))) == shape`` for a canonical shape.

libvirt 9.0 rewrites values as it parses them; the canonical form is what it
writes back (checked against libvirtd, see ``tests/integration/test_nwfilters.py``):

* masks as prefix lengths (``255.255.0.0`` becomes ``16``), IP addresses in
  their compressed form, MAC addresses in lower case;
* ``state`` in upper case and libvirt's order (NEW, ESTABLISHED, RELATED,
  INVALID), whatever order it was written in;
* the ethertypes and IP protocols libvirt knows by name (``0x0800`` is
  ``ipv4``, ``6`` is ``tcp``); numbers it keeps as written (a port as ``0x50``
  or ``080``) are decimal here;
* ``statematch`` only when false, ``match='yes'`` (the default) not at all;
  parameters sorted by name, values of one name in the order given.

:func:`canonical` puts a shape into that form; ``project(render(shape)) ==
canonical(shape)`` is a tested property. A document that cannot be projected
raises :class:`ValueError`; observation skips such a filter with a log line.

nwfilters have no ``<metadata>``: who owns one is kept in the record.
"""

from __future__ import annotations

import ipaddress
import logging
from typing import Any

import libvirt
from lxml import etree

from reconciler.hypervisor import connection
from reconciler.models import observed

__all__ = [
    "canonical",
    "define",
    "definition",
    "lookup",
    "observe",
    "project",
    "project_reference",
    "render",
    "render_reference",
    "undefine",
]

log = logging.getLogger(__name__)

_PARSER = etree.XMLParser(resolve_entities=False, no_network=True)
_DEFAULT_PRIORITY = 500  # a rule's, when the document gives none
_MAC_ATTRIBUTES = frozenset(
    {"srcmacaddr", "srcmacmask", "dstmacaddr", "dstmacmask", "arpsrcmacaddr", "arpdstmacaddr"}
)
_IP_ATTRIBUTES = frozenset(
    {
        "srcipaddr",
        "dstipaddr",
        "srcipfrom",
        "srcipto",
        "dstipfrom",
        "dstipto",
        "arpsrcipaddr",
        "arpdstipaddr",
    }
)
_MASK_ATTRIBUTES = frozenset({"srcipmask", "dstipmask", "arpsrcipmask", "arpdstipmask"})
_NUMBER_ATTRIBUTES = frozenset(
    {
        "srcportstart",
        "srcportend",
        "dstportstart",
        "dstportend",
        "type",
        "code",
        "dscp",
        "connlimit-above",
        "vlanid",
    }
)
_STATES = ("NEW", "ESTABLISHED", "RELATED", "INVALID", "NONE")
_ETHERTYPES = {0x0800: "ipv4", 0x0806: "arp", 0x8035: "rarp", 0x86DD: "ipv6", 0x8100: "vlan"}
_IP_PROTOCOLS = {
    1: "icmp",
    2: "igmp",
    6: "tcp",
    17: "udp",
    50: "esp",
    51: "ah",
    58: "icmpv6",
    132: "sctp",
    136: "udplite",
}


# --- canonical values ------------------------------------------------------------


def _number(value: str) -> int | None:
    text = value.strip().lower()
    try:
        return int(text, 16) if text.startswith("0x") else int(text, 10)
    except ValueError:
        return None


def _mask(value: str) -> str:
    if "." in value or ":" in value:  # a netmask: its prefix length, when it is contiguous
        try:
            mask = ipaddress.ip_address(value)
        except ValueError:
            return value
        bits = int(mask)
        width = mask.max_prefixlen
        length = width - (~bits & ((1 << width) - 1)).bit_length()
        contiguous = bits == ((1 << width) - 1) ^ ((1 << (width - length)) - 1)
        return str(length) if contiguous else value
    number = _number(value)
    return value if number is None else str(number)


def _state(value: str) -> str:
    given = {part.strip().upper() for part in value.split(",") if part.strip()}
    known = [s for s in _STATES if s in given]
    return ",".join(known + sorted(given - set(_STATES)))


def _value(name: str, value: str) -> str:
    """One attribute's value as libvirt writes it back, numbers in decimal."""
    if value.startswith("$"):
        return value  # a variable, filled in per interface
    if name in _MAC_ATTRIBUTES:
        return value.lower()
    if name in _IP_ATTRIBUTES:
        try:
            return str(ipaddress.ip_address(value))
        except ValueError:
            return value
    if name in _MASK_ATTRIBUTES:
        return _mask(value)
    if name == "state":
        return _state(value)
    if name in ("protocolid", "encap-protocol"):
        number = _number(value)
        if number is None:
            return value.lower()
        return _ETHERTYPES.get(number, f"0x{number:04x}")
    if name == "protocol":
        number = _number(value)
        if number is None:
            return value.lower()
        return _IP_PROTOCOLS.get(number, str(number))
    if name in _NUMBER_ATTRIBUTES:
        number = _number(value)
        return value if number is None else str(number)
    return value


def _attributes(pairs: Any) -> tuple[tuple[str, str], ...]:
    return tuple(
        sorted(
            (name, _value(name, value))
            for name, value in pairs
            if not (name == "match" and value == "yes")
        )
    )


def _parameters(pairs: Any) -> tuple[tuple[str, str], ...]:
    return tuple(sorted(pairs, key=lambda pair: pair[0]))  # stable: one name's values in order


def canonical(shape: observed.FilterShape) -> observed.FilterShape:
    """``shape`` in the form :func:`project` reads back (see the module docstring)."""
    return observed.FilterShape(
        chain=shape.chain,
        references=tuple(
            observed.FilterRef(r.filter, _parameters(r.parameters)) for r in shape.references
        ),
        rules=tuple(
            observed.FilterRule(
                action=r.action,
                direction=r.direction,
                priority=r.priority,
                protocol=r.protocol,
                attributes=_attributes(r.attributes),
                statematch=r.statematch,
            )
            for r in shape.rules
        ),
    )


# --- render and project -----------------------------------------------------------


def render_reference(reference: observed.FilterRef) -> etree._Element:
    """A ``<filterref>`` element, as a filter or an interface holds it."""
    element = etree.Element("filterref", filter=reference.filter)
    for name, value in reference.parameters:
        etree.SubElement(element, "parameter", name=name, value=value)
    return element


def render(name: str, shape: observed.FilterShape, uuid: str | None = None) -> str:
    """The ``<filter>`` document of ``shape``: references first, then rules, as given."""
    root = etree.Element("filter", name=name, chain=shape.chain)
    if uuid is not None:
        etree.SubElement(root, "uuid").text = uuid
    for reference in shape.references:
        root.append(render_reference(reference))
    for rule in shape.rules:
        element = etree.SubElement(
            root,
            "rule",
            action=rule.action,
            direction=rule.direction,
            priority=str(rule.priority),
        )
        if not rule.statematch:
            element.set("statematch", "false")
        if rule.protocol:
            etree.SubElement(element, rule.protocol, dict(rule.attributes))
    return etree.tostring(root, encoding="unicode", pretty_print=True)


def project_reference(element: etree._Element) -> observed.FilterRef:
    """The shape of a ``<filterref>`` element (of a filter or an interface)."""
    name = element.get("filter")
    if not name:
        raise ValueError("a <filterref> without a filter name")
    return observed.FilterRef(
        filter=name,
        parameters=_parameters(
            (p.get("name", ""), p.get("value", "")) for p in element.iterfind("parameter")
        ),
    )


def _rule(element: etree._Element) -> observed.FilterRule:
    protocols = [child for child in element if isinstance(child.tag, str)]
    protocol = protocols[0] if protocols else None  # none: all traffic of the filter's chain
    priority = element.get("priority")
    action, direction = element.get("action"), element.get("direction")
    if not action or not direction:
        raise ValueError("a <rule> without an action or a direction")
    return observed.FilterRule(
        action=action,
        direction=direction,
        priority=int(priority) if priority is not None else _DEFAULT_PRIORITY,
        protocol=str(protocol.tag) if protocol is not None else "",
        attributes=_attributes(protocol.attrib.items()) if protocol is not None else (),
        statematch=element.get("statematch", "true").lower() not in ("false", "0"),
    )


def project(document: str) -> observed.FilterShape:
    """The shape of a ``<filter>`` document; :class:`ValueError` when it is not one."""
    try:
        root = etree.fromstring(document.encode(), parser=_PARSER)
    except etree.XMLSyntaxError as exc:
        raise ValueError(f"not XML: {exc}") from exc
    if root.tag != "filter":
        raise ValueError(f"a <{root.tag}> document, not a <filter>")
    return observed.FilterShape(
        chain=root.get("chain", "root"),
        references=tuple(project_reference(e) for e in root.iterfind("filterref")),
        rules=tuple(_rule(e) for e in root.iterfind("rule")),
    )


# --- observation -------------------------------------------------------------------


def _observe_filter(nwfilter: Any) -> observed.ObservedFilter | None:
    try:
        name, document, uuid = nwfilter.name(), nwfilter.XMLDesc(0), nwfilter.UUIDString()
    except libvirt.libvirtError as exc:
        if exc.get_error_code() == libvirt.VIR_ERR_NO_NWFILTER:
            return None  # undefined between the listing and the read (a shared host)
        raise
    try:
        shape = project(document)
    except ValueError as exc:
        log.warning("nwfilter %s is left out of the observation: %s", name, exc)
        return None
    return observed.ObservedFilter(name=name, uuid=str(uuid), shape=shape)


def observe(conn: Any) -> dict[str, observed.ObservedFilter]:
    """Every nwfilter, projected. Raises ``libvirtError``: the caller translates it.

    A driver without nwfilters (libvirt's test driver) has none to report.
    """
    try:
        listed = conn.listAllNWFilters(0)
    except libvirt.libvirtError as exc:
        if exc.get_error_code() != libvirt.VIR_ERR_NO_SUPPORT:
            raise
        return {}
    found = (_observe_filter(f) for f in listed)
    return {f.name: f for f in found if f is not None}


# --- the kind's handler: definition, define, undefine --------------------------------


def lookup(conn: Any, name: str) -> Any:
    with connection.calling("look up", f"nwfilter {name}"):
        return conn.nwfilterLookupByName(name)


def definition(conn: Any, name: str) -> str:
    nwfilter = lookup(conn, name)
    with connection.calling("read the definition of", f"nwfilter {name}"):
        return str(nwfilter.XMLDesc(0))


def define(conn: Any, name: str, document: str) -> str:
    """Define (or replace) the filter; libvirt re-instantiates it on running guests.

    A replacement must carry the filter's ``<uuid>``: libvirt gives a document
    without one a new uuid and refuses it ("already exists with uuid").
    """
    with connection.calling("define", f"nwfilter {name}"):
        return str(conn.nwfilterDefineXML(document).UUIDString())


def undefine(conn: Any, name: str) -> None:
    """Undefine; libvirt refuses while a running guest's rules need it ("in use")."""
    nwfilter = lookup(conn, name)
    with connection.calling("undefine", f"nwfilter {name}"):
        nwfilter.undefine()
