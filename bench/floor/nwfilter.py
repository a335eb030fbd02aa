"""Floor: redefine one nwfilter, the libvirt work a FirewallPolicy change comes down to.

The filter keeps its UUID (libvirt redefines a filter under it) and gets the
policy's rules with one port changed; libvirt re-instantiates it wherever it is
referenced. One process, one connection, one define.

Usage: ``python nwfilter.py URI NAME PORT``; prints JSON on stdout.
"""

from __future__ import annotations

import json
import sys
import time
import xml.etree.ElementTree as ET

import libvirt


def main() -> None:
    uri, name, port = sys.argv[1:4]
    start = time.perf_counter()
    conn = libvirt.open(uri)
    current = conn.nwfilterLookupByName(name)
    document = ET.fromstring(current.XMLDesc(0))
    for element in document.iter("tcp"):
        if element.get("dstportstart") is not None:
            element.set("dstportstart", port)
    conn.nwfilterDefineXML(ET.tostring(document, encoding="unicode"))
    conn.close()
    print(json.dumps({"seconds": time.perf_counter() - start}))


if __name__ == "__main__":
    main()
