"""Benchmark the reconciler against the raw libvirt floor, in one run.

Each section does the same libvirt work twice: once with the project (the real
``infinibay`` console script, timed as a whole process, start-up included) and
once with the least libvirt-python code that does it (``bench/floor/*.py``,
also whole processes), then prints medians over ``--repeat``, the ratio
project / floor and the target each figure is held to (see bench/README.md).

Sections: ``noop`` (plan over N managed, stopped VMs vs one observation pass),
``apply`` (N new VMs with a 16 MiB volume each), ``power`` (start and force
off N guests that boot nothing), ``planner`` (pure ``planner.plan`` on
synthetic states of 1,000 and 10,000 resources), ``daemon`` (RSS and
latencies of ``infinibay daemon``), ``firewall`` (a policy change reaching a
department's VMs), ``placement`` (pure placement of 10,000 VMs over 100
simulated hosts) and ``fleet`` (plan over N stopped VMs on each of two real
hosts vs one process observing both; the second host is
``INFINIBAY_BENCH_LIBVIRT_URI2`` or, as root, a libvirtd the section starts).

Everything created is named ``ibbench-<6 hex>-...`` and removed at the end,
also on failure or Ctrl-C; nothing outside that prefix is ever touched, since
other runs share the host's libvirtd.

This module is the entry point (options, the order of sections, the report);
the work is in ``scenario`` (names, manifests, pools, clean-up, the project's
processes), ``raw_floor`` (the floor scripts), ``sections`` (noop, apply,
power, planner, firewall, placement, fleet), ``daemon_bench`` (the daemon),
``fleet_bench`` (the second host, the fleet's setup) and ``results`` (rows, the
table, the machine).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import signal
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from results import BenchError, Row, log, machine, table
from sections import Bench

SECTIONS = ("noop", "apply", "power", "planner", "daemon", "firewall", "placement", "fleet")


# --- command line ---------------------------------------------------------------


def _sizes(text: str) -> list[int]:
    return sorted(int(part) for part in text.split(",") if part.strip())


def parse(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--vms", type=int, default=1000, help="managed VMs for no-op plan/daemon")
    parser.add_argument("--apply", type=int, default=200, help="VMs created by the apply section")
    parser.add_argument("--power", type=int, default=20, help="guests started and stopped")
    parser.add_argument(
        "--firewall", type=int, default=100, help="stopped VMs a policy change reaches"
    )
    parser.add_argument("--planner", type=_sizes, default=[1000, 10000], help="e.g. 1000,10000")
    parser.add_argument("--placement", type=int, default=10_000, help="VMs to place")
    parser.add_argument("--placement-hosts", type=int, default=100, help="simulated hosts")
    parser.add_argument("--fleet", type=int, default=500, help="VMs on each of the two hosts")
    parser.add_argument("--repeat", type=int, default=3, help="repetitions; medians are quoted")
    parser.add_argument(
        "--tiny", action="store_true", help="CI smoke preset (10/5/2, 100,1000, 2 x 10, 1)"
    )
    parser.add_argument(
        "--only", default=",".join(SECTIONS), help=f"comma-separated subset of {SECTIONS}"
    )
    parser.add_argument(
        "-c", "--connect", default=os.environ.get("INFINIBAY_LIBVIRT_URI", "qemu:///system")
    )
    parser.add_argument("--json", type=Path, help="also write the results as JSON to this file")
    parser.add_argument("-o", "--output", choices=["text", "json"], default="text")
    args = parser.parse_args(argv)
    if args.tiny:
        args.vms, args.apply, args.power, args.planner, args.repeat = 10, 5, 2, [100, 1000], 1
        args.firewall = 5
        args.placement, args.placement_hosts = 1000, 10
        args.fleet = 10
    args.only = [s.strip() for s in args.only.split(",") if s.strip()]
    unknown = set(args.only) - set(SECTIONS)
    if unknown:
        parser.error(f"unknown sections {sorted(unknown)}; choose from {SECTIONS}")
    return args


@contextlib.contextmanager
def _sigterm_as_interrupt() -> Iterator[None]:
    def interrupt(_signum: int, _frame: Any) -> None:
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGTERM, interrupt)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def main(argv: list[str] | None = None) -> int:
    args = parse(argv)
    bench = Bench(args)
    info = machine(bench.conn, bench.domain_type)
    errors: list[str] = []

    def section(name: str, run: Callable[[], None]) -> None:
        """Run one section; a failure is reported and the next section still runs."""
        try:
            run()
        except BenchError as exc:
            errors.append(f"{name}: {exc}")
            log(f"{name}: failed: {exc}")
            bench.add(Row(name, "did not complete", passed=False, note=str(exc).splitlines()[0]))

    def noop_and_daemon() -> None:
        db, directory = bench.noop_setup()
        try:
            if "noop" in args.only:
                section("noop", lambda: bench.noop(db, directory))
            if "daemon" in args.only:
                section("daemon", lambda: bench.daemon(db, directory))
        finally:
            bench.remove(bench.name("n"))

    try:
        with _sigterm_as_interrupt():
            if "noop" in args.only or "daemon" in args.only:
                section("setup", noop_and_daemon)
            if "apply" in args.only:
                section("apply", bench.apply)
            if "power" in args.only:
                section("power", bench.power)
            if "planner" in args.only:
                section("planner", bench.planner)
            if "firewall" in args.only:
                section("firewall", bench.firewall)
            if "placement" in args.only:
                section("placement", bench.placement)
            if "fleet" in args.only:
                section("fleet", bench.fleet)
    except KeyboardInterrupt:
        errors.append("interrupted")
        log("interrupted; cleaning up")
    finally:
        log(f"removing everything named {bench.prefix}*")
        bench.cleanup()
    info["load_after"] = round(os.getloadavg()[0], 2)
    order = {name: index for index, name in enumerate(("setup", *SECTIONS))}
    rows = sorted(bench.rows, key=lambda r: order[r.section])
    sizes = {
        k: getattr(args, k)
        for k in ("vms", "apply", "power", "planner", "firewall", "placement", "fleet", "repeat")
    }
    report = {
        "machine": info,
        "sizes": sizes,
        "prefix": bench.prefix,
        "results": [r.as_json() for r in rows],
    }
    if errors:
        report["error"] = "; ".join(errors)
    if args.json is not None:
        args.json.write_text(json.dumps(report, indent=2) + "\n")
    if args.output == "json":
        print(json.dumps(report, indent=2))
    else:
        header = (
            f"infinibay bench {info['date']}: {info['nproc']} cores, {info['accel']}, "
            f"libvirt {info['libvirt']}, QEMU {info['qemu']}; "
            f"vms={args.vms} apply={args.apply} power={args.power} "
            f"planner={','.join(map(str, args.planner))} fleet=2x{args.fleet}; "
            f"medians of {args.repeat}; "
            f"load {info['load_before']} -> {info['load_after']}"
        )
        print(table(rows, header))
        for error in errors:
            print(f"error: {error}")
    return 1 if errors else 0


if __name__ == "__main__":
    sys.exit(main())
