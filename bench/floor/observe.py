"""Floor: one observation pass over every domain with libvirt-python, nothing else.

What the reconciler's observation must do at the least: list all domains, then
read each one's persistent XML, its state and its autostart flag. Run as its
own process so the figure includes interpreter start-up and ``import libvirt``,
like the project's whole-process ``infinibay plan``.

Usage: ``python observe.py URI PREFIX``; prints JSON on stdout.
"""

from __future__ import annotations

import json
import sys
import time

import libvirt


def main() -> None:
    uri, prefix = sys.argv[1], sys.argv[2]
    libvirt.registerErrorHandler(lambda _ctx, _err: None, None)
    start = time.perf_counter()
    conn = libvirt.open(uri)
    total = matched = 0
    for dom in conn.listAllDomains(0):
        try:
            dom.XMLDesc(libvirt.VIR_DOMAIN_XML_INACTIVE)
            dom.state()
            dom.autostart()
        except libvirt.libvirtError as exc:
            if exc.get_error_code() != libvirt.VIR_ERR_NO_DOMAIN:
                raise
            continue  # undefined by someone else since the listing, as the project allows
        total += 1
        matched += dom.name().startswith(prefix)
    conn.close()
    elapsed = time.perf_counter() - start
    print(json.dumps({"domains": total, "matched": matched, "inner_s": elapsed}))


if __name__ == "__main__":
    main()
