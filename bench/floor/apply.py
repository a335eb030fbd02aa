"""Floor: define N domains, each with a new 16 MiB qcow2 volume, stopped.

The same libvirt work ``infinibay apply`` does for N new VirtualMachines with
one disk each: ``createXML`` of a volume in an active pool, then ``defineXML``
of a domain using it. One process, one connection, one loop.

Usage: ``python apply.py URI POOL PREFIX N DOMAIN_TYPE``; prints JSON on stdout.
"""

from __future__ import annotations

import json
import sys
import time
import xml.etree.ElementTree as ET

import libvirt


def _sub(parent: ET.Element, tag: str, text: str | None = None, **attrs: str) -> ET.Element:
    element = ET.SubElement(parent, tag, attrs)
    element.text = text
    return element


def volume_xml(name: str, size: int) -> str:
    volume = ET.Element("volume")
    _sub(volume, "name", name)
    _sub(volume, "capacity", str(size), unit="bytes")
    _sub(_sub(volume, "target"), "format", type="qcow2")
    return ET.tostring(volume, encoding="unicode")


def domain_xml(name: str, domain_type: str, pool: str, volume: str) -> str:
    """What the project defines for a stopped one-disk VM, give or take its metadata."""
    domain = ET.Element("domain", type=domain_type)
    _sub(domain, "name", name)
    _sub(domain, "memory", "32768", unit="KiB")
    _sub(domain, "currentMemory", "32768", unit="KiB")
    _sub(domain, "vcpu", "1", placement="static")
    os_ = _sub(domain, "os")
    _sub(os_, "type", "hvm", arch="x86_64", machine="q35")
    _sub(os_, "boot", dev="hd")
    features = _sub(domain, "features")
    _sub(features, "acpi")
    _sub(features, "apic")
    _sub(domain, "on_poweroff", "destroy")
    _sub(domain, "on_reboot", "restart")
    _sub(domain, "on_crash", "destroy")
    devices = _sub(domain, "devices")
    disk = _sub(devices, "disk", type="volume", device="disk")
    _sub(disk, "driver", name="qemu", type="qcow2", cache="writeback", discard="unmap")
    _sub(disk, "source", pool=pool, volume=volume)
    _sub(disk, "target", dev="vda", bus="virtio")
    graphics = _sub(devices, "graphics", type="vnc", autoport="yes")
    _sub(graphics, "listen", type="address", address="127.0.0.1")
    _sub(devices, "console", type="pty")
    return ET.tostring(domain, encoding="unicode")


def main() -> None:
    uri, pool_name, prefix, count, domain_type = sys.argv[1:6]
    libvirt.registerErrorHandler(lambda _ctx, _err: None, None)
    start = time.perf_counter()
    conn = libvirt.open(uri)
    pool = conn.storagePoolLookupByName(pool_name)
    for index in range(int(count)):
        name = f"{prefix}{index:05d}"
        pool.createXML(volume_xml(f"{name}.qcow2", 16 << 20), 0)
        conn.defineXML(domain_xml(name, domain_type, pool_name, f"{name}.qcow2"))
    conn.close()
    print(json.dumps({"inner_s": time.perf_counter() - start}))


if __name__ == "__main__":
    main()
