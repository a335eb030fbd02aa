"""The hypervisor host: the CPU modes it can give guests and its PCI devices.

The CPU modes come from the host's domain capabilities for the domain type in
use (TCG cannot pass the host CPU through; KVM can), and whether the host is
itself a guest from its capabilities (the ``hypervisor`` CPU flag): see
:meth:`reconciler.models.observed.Host.default_cpu`. Neither changes while a
connection is open, so :class:`reconciler.hypervisor.adapter.Hypervisor`
reads them once. The PCI devices (``listAllDevices``) are read on every
observation: a device can be added or removed while the daemon runs. A driver
that offers neither (libvirt's test driver) gives the defaults, and ``None``
for the devices: unknown, so nothing is refused for them.
"""

from __future__ import annotations

import re
from typing import Any

import libvirt
from lxml import etree

from reconciler.hypervisor import connection
from reconciler.models import observed

__all__ = ["cpu", "pci_devices"]

_ARCH = "x86_64"
_PCI_NAME = re.compile(r"^pci_([0-9a-f]{4})_([0-9a-f]{2})_([0-9a-f]{2})_([0-7])$")
_UNSUPPORTED = (libvirt.VIR_ERR_NO_SUPPORT, libvirt.VIR_ERR_OPERATION_UNSUPPORTED)


def cpu(conn: Any, uri: str, domain_type: str) -> observed.Host:
    """The CPU modes the host supports for ``domain_type``, whether it is nested, its size."""
    with connection.calling("read capabilities of", uri):
        info = conn.getInfo()  # [model, memory MiB, cpus, ...]
        cpus, memory_mib = int(info[2]), int(info[1])
        try:
            document = conn.getDomainCapabilities(None, _ARCH, None, domain_type, 0)
        except libvirt.libvirtError as exc:
            if exc.get_error_code() not in _UNSUPPORTED:
                raise
            return observed.Host(domain_type=domain_type, cpus=cpus, memory_mib=memory_mib)
        caps = etree.fromstring(conn.getCapabilities().encode())
    modes = etree.fromstring(document.encode()).findall("cpu/mode[@supported='yes']")
    nested = bool(caps.xpath("host/cpu/feature[@name='hypervisor']"))
    return observed.Host(
        domain_type=domain_type,
        cpu_modes=tuple(m.get("name", "") for m in modes),
        nested=nested,
        cpus=cpus,
        memory_mib=memory_mib,
    )


def pci_devices(conn: Any, uri: str) -> frozenset[str] | None:
    """The host's PCI addresses (``0000:01:00.0``); ``None`` when the driver cannot list them."""
    with connection.calling("list the node devices of", uri):
        try:
            devices = conn.listAllDevices(libvirt.VIR_CONNECT_LIST_NODE_DEVICES_CAP_PCI_DEV)
        except libvirt.libvirtError as exc:
            if exc.get_error_code() not in _UNSUPPORTED:
                raise
            return None
    # libvirt names a PCI node device pci_DDDD_BB_SS_F: the address, without a read each.
    found = set()
    for device in devices:
        match = _PCI_NAME.match(device.name())
        if match is not None:
            found.add("{}:{}:{}.{}".format(*match.groups()))
    return frozenset(found)
