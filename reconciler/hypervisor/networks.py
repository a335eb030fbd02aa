"""Networks (kind Network): observe, define, start and stop, autostart, undefine.

Each function takes the connection to use now (``conn``, a ``virConnect``);
every libvirt call runs inside :func:`reconciler.hypervisor.connection.calling`.
"""

from __future__ import annotations

from typing import Any

import libvirt

from reconciler.hypervisor import connection, projection
from reconciler.models import observed

__all__ = [
    "define",
    "definition",
    "lookup",
    "observe",
    "set_autostart",
    "start",
    "stop",
    "undefine",
]


def _network_xml(net: Any) -> str:
    """The persistent definition; drivers without that flag (test:///default) give the live one."""
    try:
        return str(net.XMLDesc(libvirt.VIR_NETWORK_XML_INACTIVE))
    except libvirt.libvirtError as exc:
        if exc.get_error_code() != libvirt.VIR_ERR_INVALID_ARG:
            raise
        return str(net.XMLDesc(0))


# --- observation -------------------------------------------------------------


def _observe_network(net: Any, *, active: bool, autostart: bool) -> observed.ObservedNetwork | None:
    try:
        document = _network_xml(net)
        uuid, owner, shape = projection.parse_network(document, autostart=autostart)
    except libvirt.libvirtError as exc:
        if exc.get_error_code() == libvirt.VIR_ERR_NO_NETWORK:
            return None  # undefined between the listing and the read (a shared host)
        raise
    return observed.ObservedNetwork(
        name=net.name(),
        uuid=uuid,
        owner=owner,
        shape=shape,
        active=active,
        unmodelled=projection.unmodelled_network(document),
    )


def observe(conn: Any) -> dict[str, observed.ObservedNetwork]:
    """Every network, projected. Raises ``libvirtError``: the caller translates it."""
    list_networks = conn.listAllNetworks
    active = connection.names(list_networks, libvirt.VIR_CONNECT_LIST_NETWORKS_ACTIVE)
    autostart = connection.names(list_networks, libvirt.VIR_CONNECT_LIST_NETWORKS_AUTOSTART)
    found = (
        _observe_network(net, active=net.name() in active, autostart=net.name() in autostart)
        for net in list_networks(0)
    )
    return {n.name: n for n in found if n is not None}


# --- the kind's handler: definition, define, undefine --------------------------


def lookup(conn: Any, name: str) -> Any:
    with connection.calling("look up", f"network {name}"):
        return conn.networkLookupByName(name)


def definition(conn: Any, name: str) -> str:
    net = lookup(conn, name)
    with connection.calling("read the definition of", f"network {name}"):
        return _network_xml(net)


def define(conn: Any, name: str, document: str) -> str:
    with connection.calling("define", f"network {name}"):
        return str(conn.networkDefineXML(document).UUIDString())


def undefine(conn: Any, name: str) -> None:
    net = lookup(conn, name)
    with connection.calling("undefine", f"network {name}"):
        if net.isActive():
            net.destroy()
        net.undefine()


# --- state and autostart --------------------------------------------------------


def start(conn: Any, name: str) -> None:
    net = lookup(conn, name)
    with connection.calling("start", f"network {name}"):
        if not net.isActive():
            net.create()


def stop(conn: Any, name: str) -> None:
    net = lookup(conn, name)
    with connection.calling("stop", f"network {name}"):
        if net.isActive():
            net.destroy()


def set_autostart(conn: Any, name: str, autostart: bool) -> None:
    net = lookup(conn, name)
    with connection.calling("set autostart of", f"network {name}"):
        net.setAutostart(int(autostart))
