"""Floor: one observation pass over every domain of each host with libvirt-python, nothing else.

What the reconciler's observation must do at the least: list all domains, then
read each one's persistent XML, its state and its autostart flag. Run as its
own process so the figure includes interpreter start-up and ``import libvirt``,
like the project's whole-process ``infinibay plan``. Given several URIs, it
observes the hosts at once, one thread and one connection per host (libvirt's
calls release the GIL), as the reconciler observes its declared hosts.

Usage: ``python observe.py PREFIX URI [URI...]``; prints JSON on stdout: the
totals, and per URI its ``domains`` and ``matched`` (names starting with PREFIX).
"""

from __future__ import annotations

import concurrent.futures as cf
import json
import sys
import time

import libvirt


def observe(uri: str, prefix: str) -> dict[str, int]:
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
    return {"domains": total, "matched": matched}


def main() -> None:
    prefix, uris = sys.argv[1], sys.argv[2:]
    if not uris:
        sys.exit("usage: observe.py PREFIX URI [URI...]")
    libvirt.registerErrorHandler(lambda _ctx, _err: None, None)
    start = time.perf_counter()
    if len(uris) == 1:
        hosts = {uris[0]: observe(uris[0], prefix)}
    else:
        with cf.ThreadPoolExecutor(len(uris)) as pool:
            futures = {uri: pool.submit(observe, uri, prefix) for uri in uris}
            hosts = {uri: future.result() for uri, future in futures.items()}
    elapsed = time.perf_counter() - start
    totals = {k: sum(h[k] for h in hosts.values()) for k in ("domains", "matched")}
    print(json.dumps({**totals, "hosts": hosts, "inner_s": elapsed}))


if __name__ == "__main__":
    main()
