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

import libvirt

VOLUME = """<volume><name>{name}.qcow2</name><capacity unit="bytes">{size}</capacity>
<target><format type="qcow2"/></target></volume>"""

DOMAIN = """<domain type="{type}"><name>{name}</name>
<memory unit="KiB">32768</memory><currentMemory unit="KiB">32768</currentMemory>
<vcpu placement="static">1</vcpu>
<os><type arch="x86_64" machine="q35">hvm</type><boot dev="hd"/></os>
<features><acpi/><apic/></features>
<on_poweroff>destroy</on_poweroff><on_reboot>restart</on_reboot><on_crash>destroy</on_crash>
<devices>
<disk type="volume" device="disk">
<driver name="qemu" type="qcow2" cache="writeback" discard="unmap"/>
<source pool="{pool}" volume="{name}.qcow2"/><target dev="vda" bus="virtio"/></disk>
<graphics type="vnc" autoport="yes"><listen type="address" address="127.0.0.1"/></graphics>
<console type="pty"/></devices></domain>"""


def main() -> None:
    uri, pool_name, prefix, count, domain_type = sys.argv[1:6]
    libvirt.registerErrorHandler(lambda _ctx, _err: None, None)
    start = time.perf_counter()
    conn = libvirt.open(uri)
    pool = conn.storagePoolLookupByName(pool_name)
    for index in range(int(count)):
        name = f"{prefix}{index:05d}"
        pool.createXML(VOLUME.format(name=name, size=16 << 20), 0)
        conn.defineXML(DOMAIN.format(type=domain_type, name=name, pool=pool_name))
    conn.close()
    print(json.dumps({"inner_s": time.perf_counter() - start}))


if __name__ == "__main__":
    main()
