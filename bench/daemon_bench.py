"""The daemon scenario: ``infinibay daemon`` over the no-op section's N managed VMs.

It measures the daemon's resident memory after a full resync, the latency from
a new manifest file to the domain being defined, from a managed guest being
destroyed out of band to it running again, and the daemon's CPU seconds for
that one event (which must not grow with the fleet: compare ``--vms 1000`` and
``--vms 5000``), and the latency of one template change reaching the
:data:`TEMPLATE_USERS` VMs made from it. A latency that misses its target is a
failed row, not an error.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import sqlite3
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable
from pathlib import Path

import libvirt
import raw_floor
import yaml
from results import BenchError, Row, Timeout, log
from scenario import Scenario, doc, vm_doc, write_docs

__all__ = ["TEMPLATE_USERS", "Daemon"]

TEMPLATE_USERS = 100


class Daemon:
    """``infinibay daemon --source DIR`` over the no-op section's N managed VMs."""

    def __init__(self, bench: Scenario, db: str, directory: Path) -> None:
        self.bench = bench
        self.db = db
        self.directory = directory
        self.port = _free_port()
        self.process: subprocess.Popen[bytes] | None = None

    def _ready(self) -> bool:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{self.port}/readyz", timeout=1) as r:
                return bool(r.status == 200)
        except OSError:
            return False

    def _wait(self, what: str, check: Callable[[], bool], timeout: float) -> float:
        start = time.perf_counter()
        while time.perf_counter() - start < timeout:
            if self.process is not None and self.process.poll() is not None:
                raise BenchError(f"the daemon exited ({self.process.returncode}) while {what}")
            if check():
                return time.perf_counter() - start
            time.sleep(0.02)
        raise Timeout(f"timed out after {timeout:g} s {what}")

    def _start_floor(self) -> float:
        """The floor of destroy-to-running: libvirt starting the same small guest again.

        Median of three ``create()`` calls on a domain the daemon does not manage,
        timed until it runs, before the daemon starts (so nothing else competes).
        """
        conn, name = self.bench.conn, self.bench.name("d-floor")
        dom = conn.defineXML(raw_floor.domain_xml(name, self.bench.domain_type))
        took = []
        try:
            for _ in range(3):
                start = time.perf_counter()
                dom.create()
                took.append(time.perf_counter() - start)
                dom.destroy()
        finally:
            if dom.isActive():
                dom.destroy()
            dom.undefine()
        return sorted(took)[1]

    def _latency(
        self, measure: str, target: float, check: Callable[[], bool], floor: float | None = None
    ) -> None:
        """Record how long ``check`` takes to hold; a miss is a failed row, not an error."""
        limit = 60.0
        try:
            latency: float | None = self._wait(measure, check, limit)
        except Timeout:
            latency = None
        self.bench.add(
            Row(
                "daemon",
                measure,
                latency,
                floor,
                target=f"<= {target:g} s",
                passed=latency is not None and latency <= target,
                note="" if latency is not None else f"not within {limit:g} s",
            )
        )

    def _finished_runs(self) -> int:
        """Finished reconcile runs in the record, read with sqlite3: cheap enough to poll."""
        path = self.db.removeprefix("sqlite:///")
        with contextlib.closing(sqlite3.connect(path, timeout=30)) as conn:
            row = conn.execute("SELECT count(*) FROM runs WHERE finished_at IS NOT NULL").fetchone()
        return int(row[0])

    def _domain(self, name: str) -> libvirt.virDomain | None:
        try:
            return self.bench.conn.lookupByName(name)
        except libvirt.libvirtError:
            return None

    def measure(self) -> None:
        bench = self.bench
        runs_before = self._finished_runs()
        command = [
            bench.infinibay,
            "--db",
            self.db,
            "-c",
            bench.uri,
            "daemon",
            "--source",
            str(self.directory),
            "--listen",
            f"127.0.0.1:{self.port}",
        ]
        start_floor = self._start_floor()
        log("daemon: starting over the no-op section's VMs")
        self.log_path = bench.workdir / "daemon.log"
        with self.log_path.open("wb") as log_file:
            self.process = subprocess.Popen(
                command, env=bench.env, stdout=log_file, stderr=subprocess.STDOUT
            )
        try:
            self._wait("starting", self._ready, 120)
            self._wait(
                "waiting for the first pass", lambda: self._finished_runs() > runs_before, 300
            )
            os.kill(self.process.pid, signal.SIGHUP)  # a full resync, then measure memory
            settled = self._finished_runs()
            self._wait("waiting for the resync", lambda: self._finished_runs() > settled, 300)
            rss = _rss_mib(self.process.pid)
            bench.add(
                Row(
                    "daemon",
                    f"RSS with {bench.args.vms} managed VMs after a resync",
                    rss,
                    unit="MiB",
                    target="<= 300 MiB",
                    passed=rss <= 300,
                )
            )
            name = bench.name("d-new")
            cpu, settled = _cpu_seconds(self.process.pid), self._finished_runs()
            write_docs(self.directory, [vm_doc(name, "Stopped")])
            self._latency("file-to-define latency", 1, lambda: self._domain(name) is not None)
            self._wait("waiting for that pass", lambda: self._finished_runs() > settled, 120)
            self._cpu_row("one new file (load, plan, define)", cpu)
            name = bench.name("d-run")
            settled = self._finished_runs()
            write_docs(self.directory, [vm_doc(name, "Running")])

            def running() -> bool:
                dom = self._domain(name)
                return dom is not None and dom.state()[0] == libvirt.VIR_DOMAIN_RUNNING

            self._wait("waiting for a Running VM to start", running, 120)
            # Destroy only once the pass that started it has ended: the daemon learns
            # which domains it manages at the end of a pass. On a loaded host a guest can
            # die right after its start (QEMU closing its monitor) and be started again:
            # destroy one that is running, and try again if it went by itself meanwhile.
            self._wait("waiting for that pass", lambda: self._finished_runs() > settled, 120)
            for attempt in range(3):
                self._wait("waiting for the VM to be running", running, 120)
                dom = self._domain(name)
                assert dom is not None
                try:
                    dom.destroy()
                    break
                except libvirt.libvirtError:
                    if attempt == 2 or dom.isActive():
                        raise  # not the guest having just gone by itself
            cpu = _cpu_seconds(self.process.pid)
            settled = self._finished_runs()
            self._latency("destroy-to-running latency", 1, running, start_floor)
            self._wait("waiting for the healing pass", lambda: self._finished_runs() > settled, 60)
            self._cpu_row(
                "one lifecycle event (destroy, heal)",
                cpu,
                target="<= 2x at 1,000 VMs",
                note="compare the --vms 1000 and 5000 runs",
            )
            self._template_change()
        finally:
            self.process.terminate()
            try:
                code = self.process.wait(timeout=60)
            except subprocess.TimeoutExpired:
                self.process.kill()
                code = self.process.wait()
            for short in ("d-new", "d-run"):
                (self.directory / f"virtualmachine-{bench.name(short)}.yaml").unlink(
                    missing_ok=True
                )
            (self.directory / "template-fleet.yaml").unlink(missing_ok=True)
            if code != 0:
                log(f"daemon: exited {code} on SIGTERM (expected 0)")
            if code != 0 or sys.exc_info()[0] is not None:
                tail = self.log_path.read_text(errors="replace").splitlines()[-20:]
                log("daemon: last lines of its log:\n  " + "\n  ".join(tail))

    def _cpu_row(self, what: str, since: float, *, target: str = "", note: str = "") -> None:
        """A row of the daemon's CPU seconds for ``what``, counted from ``since``."""
        assert self.process is not None
        spent = _cpu_seconds(self.process.pid) - since
        self.bench.add(
            Row("daemon", f"CPU seconds of the daemon for {what}", spent, target=target, note=note)
        )

    def _template_change(self) -> None:
        """One template's vCPUs changed: how long until all its VMs are redefined with them."""
        bench = self.bench
        template = bench.name("d-tpl")
        count = min(TEMPLATE_USERS, bench.args.vms)  # the smoke preset has 10 VMs
        users = [bench.name(f"d-u{i:03d}") for i in range(count)]

        def fleet(cpus: int) -> None:
            spec = {"cpus": cpus, "memory": "32MiB"}
            docs = [doc("Template", template, spec)] + [
                doc("VirtualMachine", name, {"template": template, "powerState": "Stopped"})
                for name in users
            ]
            path = self.directory / "template-fleet.yaml"
            path.write_text(yaml.safe_dump_all(docs, sort_keys=False))

        def all_have(cpus: int) -> bool:
            for name in users:
                dom = self._domain(name)
                flags = libvirt.VIR_DOMAIN_VCPU_CONFIG | libvirt.VIR_DOMAIN_VCPU_MAXIMUM
                if dom is None or dom.vcpusFlags(flags) != cpus:
                    return False
            return True

        fleet(1)
        self._wait("defining the template's VMs", lambda: all_have(1), 300)
        fleet(2)
        self._latency(f"one template change reaching its {count} VMs", 5, lambda: all_have(2))


def _cpu_seconds(pid: int) -> float:
    """User and system CPU seconds ``pid`` has used (``/proc/PID/stat``)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _rss_mib(pid: int) -> float:
    """Resident memory of ``pid`` and its children, in MiB."""
    total = 0
    pids = [pid]
    with contextlib.suppress(OSError):
        children = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
        pids += [int(child) for child in children]
    for each in pids:
        with contextlib.suppress(OSError):
            for line in Path(f"/proc/{each}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    total += int(line.split()[1])
    return total / 1024
