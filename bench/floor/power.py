"""Floor: start N defined domains, then force them off, with libvirt-python.

``serial`` calls ``create()`` on each domain one after another, then
``destroy()`` on each; ``threads`` does the same with a pool of worker threads
(the binding releases the GIL around each call, and one connection is shared,
as the reconciler's executor shares it).

Usage: ``python power.py URI PREFIX N serial|threads [WORKERS]``; prints JSON.
"""

from __future__ import annotations

import concurrent.futures as cf
import json
import sys
import time

import libvirt


def main() -> None:
    uri, prefix, count, mode = sys.argv[1:5]
    workers = int(sys.argv[5]) if len(sys.argv) > 5 else 5
    libvirt.registerErrorHandler(lambda _ctx, _err: None, None)
    start = time.perf_counter()
    conn = libvirt.open(uri)
    domains = [conn.lookupByName(f"{prefix}{index:05d}") for index in range(int(count))]
    if mode == "serial":
        for dom in domains:
            dom.create()
        started = time.perf_counter()
        for dom in domains:
            dom.destroy()
    else:
        with cf.ThreadPoolExecutor(max_workers=workers) as pool:
            list(pool.map(lambda dom: dom.create(), domains))
            started = time.perf_counter()
            list(pool.map(lambda dom: dom.destroy(), domains))
    end = time.perf_counter()
    conn.close()
    print(json.dumps({"inner_s": end - start, "start_s": started - start, "stop_s": end - started}))


if __name__ == "__main__":
    main()
