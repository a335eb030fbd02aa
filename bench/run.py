"""Benchmark the reconciler against the raw libvirt floor, in one run.

Each section does the same libvirt work twice: once with the project (the real
``infinibay`` console script, timed as a whole process, start-up included) and
once with the least libvirt-python code that does it (``bench/floor/*.py``,
also whole processes), then prints medians over ``--repeat``, the ratio
project / floor and the target each figure is held to (see bench/README.md).

Sections: ``noop`` (plan over N managed, stopped VMs vs one observation pass),
``apply`` (N new VMs with a 16 MiB volume each), ``power`` (start and force
off N guests that boot nothing), ``planner`` (pure ``planner.plan`` on
synthetic states of 1,000 and 10,000 resources) and ``daemon`` (RSS and
latencies of ``infinibay daemon`` when it exists).

Everything created is named ``ibbench-<6 hex>-...`` and removed at the end,
also on failure or Ctrl-C; nothing outside that prefix is ever touched, since
other runs share the host's libvirtd.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import datetime as dt
import json
import os
import secrets
import shutil
import signal
import socket
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import libvirt
import planner_bench
import yaml
from lxml import etree

HERE = Path(__file__).resolve().parent
FLOOR = HERE / "floor"
API = "infinibay.io/v1alpha1"
POOL_ROOT = Path(os.environ.get("INFINIBAY_BENCH_POOL_ROOT", "/var/lib/infinibay-bench"))
SECTIONS = ("noop", "apply", "power", "planner", "daemon")
MiB = 1 << 20

_UNDEFINE = (
    libvirt.VIR_DOMAIN_UNDEFINE_MANAGED_SAVE
    | libvirt.VIR_DOMAIN_UNDEFINE_SNAPSHOTS_METADATA
    | libvirt.VIR_DOMAIN_UNDEFINE_NVRAM
)


class BenchError(Exception):
    """A step of the benchmark did not do what it must (a command failed, a plan not empty)."""


class Timeout(BenchError):
    """Something awaited did not happen in time."""


# --- results ------------------------------------------------------------------


@dataclasses.dataclass
class Row:
    section: str
    measure: str
    project: float | None = None  # seconds, or MiB for RSS
    floor: float | None = None
    unit: str = "s"
    target: str = ""
    passed: bool | None = None
    samples: dict[str, list[float]] = dataclasses.field(default_factory=dict)
    note: str = ""

    @property
    def ratio(self) -> float | None:
        if self.project is None or not self.floor:
            return None
        return self.project / self.floor

    def as_json(self) -> dict[str, Any]:
        return {
            "section": self.section,
            "measure": self.measure,
            "unit": self.unit,
            "project": self.project,
            "floor": self.floor,
            "ratio": self.ratio,
            "target": self.target,
            "pass": self.passed,
            "note": self.note,
            "samples": self.samples,
        }


def median(values: list[float]) -> float:
    return statistics.median(values)


def _fmt(value: float | None, unit: str) -> str:
    if value is None:
        return "-"
    if unit == "s":
        return f"{value * 1000:.1f} ms" if value < 1 else f"{value:.2f} s"
    if unit == "x":
        return f"{value:.1f}x"
    return f"{value:.1f} {unit}"


def table(rows: list[Row], header: str) -> str:
    cells = [("section", "measure", "project", "floor", "ratio", "target", "result")]
    for row in rows:
        result = {True: "pass", False: "FAIL", None: ""}[row.passed]
        if row.note:
            result = f"{result} ({row.note})" if result else row.note
        cells.append(
            (
                row.section,
                row.measure,
                _fmt(row.project, row.unit),
                _fmt(row.floor, row.unit),
                f"{row.ratio:.2f}x" if row.ratio is not None else "-",
                row.target,
                result,
            )
        )
    widths = [max(len(line[i]) for line in cells) for i in range(len(cells[0]))]
    lines = [header]
    for index, line in enumerate(cells):
        lines.append("  ".join(c.ljust(w) for c, w in zip(line, widths, strict=True)).rstrip())
        if index == 0:
            lines.append("  ".join("-" * w for w in widths))
    return "\n".join(lines)


def log(message: str) -> None:
    print(f"[bench {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


# --- manifests ----------------------------------------------------------------


def doc(kind: str, name: str, spec: dict[str, Any]) -> dict[str, Any]:
    return {"apiVersion": API, "kind": kind, "metadata": {"name": name}, "spec": spec}


def vm_doc(name: str, power: str, *, pool: str | None = None) -> dict[str, Any]:
    spec: dict[str, Any] = {"cpus": 1, "memory": "32MiB", "powerState": power}
    if pool is not None:
        spec["disks"] = [{"name": "root", "size": "16MiB", "pool": pool}]
    return doc("VirtualMachine", name, spec)


def write_docs(directory: Path, docs: list[dict[str, Any]]) -> Path:
    """One file per document, as a GitOps repository usually holds them."""
    directory.mkdir(parents=True, exist_ok=True)
    for item in docs:
        path = directory / f"{item['kind'].lower()}-{item['metadata']['name']}.yaml"
        path.write_text(yaml.safe_dump(item, sort_keys=False))
    return directory


# --- the bench ----------------------------------------------------------------


class Bench:
    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.uri: str = args.connect
        self.prefix = f"ibbench-{secrets.token_hex(3)}-"
        self.workdir = Path(tempfile.mkdtemp(prefix=self.prefix))
        self.pool_dir = POOL_ROOT / self.prefix.rstrip("-")
        libvirt.registerErrorHandler(lambda _ctx, _err: None, None)
        self.conn = libvirt.open(self.uri)
        self.infinibay = self._console_script()
        self.domain_type = self._domain_type()
        self.rows: list[Row] = []
        self.env = {
            **os.environ,
            "XDG_STATE_HOME": str(self.workdir / "state"),
            # The bench's pools live under POOL_ROOT, which the operator's roots must name.
            "INFINIBAY_POOL_ROOTS": str(POOL_ROOT),
        }
        self.env.pop("INFINIBAY_DATABASE_URL", None)

    @staticmethod
    def _console_script() -> str:
        beside = Path(sys.executable).with_name("infinibay")
        found = str(beside) if beside.exists() else shutil.which("infinibay")
        if found is None:
            raise BenchError("the infinibay console script was not found (pip install -e .)")
        return found

    def _domain_type(self) -> str:
        caps = self.conn.getCapabilities()
        kvm = os.access("/dev/kvm", os.R_OK | os.W_OK) and "domain type='kvm'" in caps
        return "kvm" if kvm else "qemu"

    def name(self, short: str) -> str:
        return f"{self.prefix}{short}"

    def db(self, section: str) -> str:
        return f"sqlite:///{self.workdir / (section + '.db')}"

    # --- processes ----------------------------------------------------------

    def project(
        self, db: str, *args: str, codes: tuple[int, ...] = (0,)
    ) -> tuple[float, subprocess.CompletedProcess[str]]:
        command = [self.infinibay, "--db", db, "-c", self.uri, *args]
        start = time.perf_counter()
        done = subprocess.run(command, capture_output=True, text=True, env=self.env, check=False)
        elapsed = time.perf_counter() - start
        if done.returncode not in codes:
            tail = (done.stdout + done.stderr).strip().splitlines()[-15:]
            raise BenchError(
                f"`infinibay {' '.join(args[:2])}` exited {done.returncode}:\n  "
                + "\n  ".join(tail)
            )
        return elapsed, done

    def floor(self, script: str, *args: str) -> tuple[float, dict[str, Any]]:
        command = [sys.executable, str(FLOOR / script), *args]
        start = time.perf_counter()
        done = subprocess.run(command, capture_output=True, text=True, check=False)
        elapsed = time.perf_counter() - start
        if done.returncode != 0:
            raise BenchError(f"floor {script} failed: {done.stderr.strip()[-2000:]}")
        return elapsed, json.loads(done.stdout)

    # --- libvirt objects ----------------------------------------------------

    def floor_domain_xml(self, name: str) -> str:
        """A small q35 guest with a loopback VNC display and no disk, as the floor defines."""
        domain = etree.Element("domain", type=self.domain_type)
        etree.SubElement(domain, "name").text = name
        etree.SubElement(domain, "memory", unit="KiB").text = "32768"
        etree.SubElement(domain, "vcpu").text = "1"
        os_ = etree.SubElement(domain, "os")
        etree.SubElement(os_, "type", arch="x86_64", machine="q35").text = "hvm"
        etree.SubElement(os_, "boot", dev="hd")
        features = etree.SubElement(domain, "features")
        etree.SubElement(features, "acpi")
        etree.SubElement(features, "apic")
        devices = etree.SubElement(domain, "devices")
        graphics = etree.SubElement(devices, "graphics", type="vnc", autoport="yes")
        etree.SubElement(graphics, "listen", type="address", address="127.0.0.1")
        etree.SubElement(devices, "console", type="pty")
        return etree.tostring(domain, encoding="unicode")

    def make_pool(self, name: str, path: Path) -> None:
        path.mkdir(parents=True, exist_ok=True)
        for directory in (POOL_ROOT, self.pool_dir, path):
            if directory.exists():
                directory.chmod(0o755)
        pool = etree.Element("pool", type="dir")
        etree.SubElement(pool, "name").text = name
        etree.SubElement(etree.SubElement(pool, "target"), "path").text = str(path)
        self.conn.storagePoolDefineXML(etree.tostring(pool, encoding="unicode"), 0).create(0)

    def remove(self, start: str) -> list[str]:
        """Remove every domain, pool (with volumes) and network named ``start*``."""
        failures: list[str] = []
        for dom in self.conn.listAllDomains(0):
            if dom.name().startswith(start):
                try:
                    if dom.isActive():
                        dom.destroy()
                    if dom.isPersistent():
                        dom.undefineFlags(_UNDEFINE)
                except libvirt.libvirtError as exc:
                    failures.append(f"domain {dom.name()}: {exc}")
        for net in self.conn.listAllNetworks(0):
            if net.name().startswith(start):
                try:
                    if net.isActive():
                        net.destroy()
                    net.undefine()
                except libvirt.libvirtError as exc:
                    failures.append(f"network {net.name()}: {exc}")
        for pool in self.conn.listAllStoragePools(0):
            if pool.name().startswith(start):
                try:
                    if not pool.isActive():
                        pool.create(0)
                    pool.refresh(0)
                    for vol in pool.listAllVolumes(0):
                        vol.delete(0)
                    pool.destroy()
                    pool.undefine()
                except libvirt.libvirtError as exc:
                    failures.append(f"pool {pool.name()}: {exc}")
        return failures

    def remove_volumes(self, pool_name: str, start: str) -> None:
        pool = self.conn.storagePoolLookupByName(pool_name)
        pool.refresh(0)
        for vol in pool.listAllVolumes(0):
            if vol.name().startswith(start):
                vol.delete(0)

    def cleanup(self) -> None:
        failures = self.remove(self.prefix)
        shutil.rmtree(self.pool_dir, ignore_errors=True)
        shutil.rmtree(self.workdir, ignore_errors=True)
        with contextlib.suppress(libvirt.libvirtError):
            self.conn.close()
        if failures:
            log("clean-up left objects behind:\n  " + "\n  ".join(failures))

    # --- sections -----------------------------------------------------------

    def add(self, row: Row) -> Row:
        self.rows.append(row)
        return row

    def noop_setup(self) -> tuple[str, Path]:
        count = self.args.vms
        db, directory = self.db("noop"), self.workdir / "noop"
        write_docs(directory, [vm_doc(self.name(f"n{i:05d}"), "Stopped") for i in range(count)])
        log(f"noop: applying {count} stopped VMs without disks (setup)")
        elapsed, _ = self.project(db, "apply", "-f", str(directory))
        self.add(Row("setup", f"apply {count} diskless VMs (untimed setup)", elapsed))
        return db, directory

    def noop(self, db: str, directory: Path) -> None:
        count, repeat = self.args.vms, self.args.repeat
        project: list[float] = []
        floor: list[float] = []
        for rep in range(repeat):
            log(f"noop: repetition {rep + 1}/{repeat}")
            elapsed, result = self.floor("observe.py", self.uri, self.name("n"))
            if result["matched"] != count:
                raise BenchError(f"floor saw {result['matched']} of {count} domains")
            floor.append(elapsed)
            elapsed, done = self.project(db, "plan", "-f", str(directory), codes=(0, 2))
            if done.returncode != 0:
                raise BenchError(
                    "the plan over converged VMs is not empty:\n" + done.stdout[-2000:]
                )
            project.append(elapsed)
        row = self.add(
            Row(
                "noop",
                f"plan, {count} managed stopped VMs",
                median(project),
                median(floor),
                target="<= 1.5 s and <= 3x floor",
                samples={"project": project, "floor": floor},
            )
        )
        assert row.ratio is not None and row.project is not None
        row.passed = row.project <= 1.5 and row.ratio <= 3

    def apply(self) -> None:
        count, repeat = self.args.apply, self.args.repeat
        db = self.db("apply")
        pool_name, floor_pool = self.name("pool"), self.name("floorpool")
        pool_doc = doc("StoragePool", pool_name, {"path": str(self.pool_dir / "project")})
        self.pool_dir.mkdir(parents=True, exist_ok=True)
        (self.pool_dir / "project").mkdir(exist_ok=True)
        for directory in (POOL_ROOT, self.pool_dir, self.pool_dir / "project"):
            directory.chmod(0o755)
        log("apply: creating the pools (setup)")
        self.project(db, "apply", "-f", str(write_docs(self.workdir / "apply-pool", [pool_doc])))
        self.make_pool(floor_pool, self.pool_dir / "floor")
        project: list[float] = []
        floor: list[float] = []
        for rep in range(repeat):
            log(f"apply: repetition {rep + 1}/{repeat}")
            start = self.name(f"a{rep}-")
            docs = [pool_doc] + [
                vm_doc(f"{start}{i:05d}", "Stopped", pool=pool_name) for i in range(count)
            ]
            directory = write_docs(self.workdir / f"apply-{rep}", docs)
            elapsed, _ = self.project(db, "apply", "-f", str(directory))
            project.append(elapsed)
            floor_start = self.name(f"fa{rep}-")
            elapsed, _ = self.floor(
                "apply.py", self.uri, floor_pool, floor_start, str(count), self.domain_type
            )
            floor.append(elapsed)
            for prefix in (start, floor_start):
                if failures := self.remove(prefix):
                    raise BenchError("clean-up between repetitions failed: " + "; ".join(failures))
            self.remove_volumes(pool_name, start)
            self.remove_volumes(floor_pool, floor_start)
        row = self.add(
            Row(
                "apply",
                f"apply {count} new VMs, 16 MiB volume each",
                median(project),
                median(floor),
                target="<= 1.5x floor",
                samples={"project": project, "floor": floor},
            )
        )
        assert row.ratio is not None
        row.passed = row.ratio <= 1.5

    def power(self) -> None:
        count, repeat = self.args.power, self.args.repeat
        db = self.db("power")
        names = [self.name(f"p{i:05d}") for i in range(count)]
        floor_start = self.name("fp")
        directory = self.workdir / "power"
        log(f"power: defining {count} + {count} guests that boot nothing (setup)")
        self.project(
            db, "apply", "-f", str(write_docs(directory, [vm_doc(n, "Stopped") for n in names]))
        )
        for index in range(count):
            self.conn.defineXML(self.floor_domain_xml(f"{floor_start}{index:05d}"))
        project: list[float] = []
        serial: list[float] = []
        threads: list[float] = []
        stop = ("--shutdown-timeout", "0")
        for rep in range(repeat):
            log(f"power: repetition {rep + 1}/{repeat}")
            write_docs(directory, [vm_doc(n, "Running") for n in names])
            started, _ = self.project(db, "apply", "-f", str(directory), *stop)
            running = sum(self.conn.lookupByName(n).isActive() for n in names)
            if running != count:
                raise BenchError(f"apply Running left {count - running} of {count} guests off")
            write_docs(directory, [vm_doc(n, "Stopped") for n in names])
            stopped, _ = self.project(db, "apply", "-f", str(directory), *stop)
            project.append(started + stopped)
            elapsed, _ = self.floor("power.py", self.uri, floor_start, str(count), "serial")
            serial.append(elapsed)
            elapsed, _ = self.floor("power.py", self.uri, floor_start, str(count), "threads", "5")
            threads.append(elapsed)
        measure = f"{count} starts + {count} stops"
        row = self.add(
            Row(
                "power",
                f"{measure} vs serial floor",
                median(project),
                median(serial),
                target="<= 1/3 of serial (0.33x)",
                samples={"project": project, "floor": serial},
            )
        )
        assert row.ratio is not None
        row.passed = row.ratio <= 1 / 3
        self.add(
            Row(
                "power",
                f"{measure} vs threaded floor (5)",
                median(project),
                median(threads),
                samples={"project": project, "floor": threads},
            )
        )

    def planner(self) -> None:
        sizes = self.args.planner
        repeat = self.args.repeat
        log(f"planner: sizes {sizes} (in process, no libvirt)")
        noop_medians: list[float] = []
        for size in sizes:
            try:
                timings = planner_bench.measure(size, repeat)
            except AssertionError as exc:
                raise BenchError(str(exc)[:2000]) from exc
            noop_medians.append(median(timings["noop"]))
            self.add(
                Row(
                    "planner",
                    f"create plan, {size:,} resources",
                    median(timings["create"]),
                    samples={"project": timings["create"]},
                )
            )
            row = self.add(
                Row(
                    "planner",
                    f"no-op plan, {size:,} resources",
                    median(timings["noop"]),
                    samples={"project": timings["noop"]},
                )
            )
            if size == max(sizes):
                row.target = f"<= 2 s at {size:,}"
                assert row.project is not None
                row.passed = row.project <= 2
        if len(sizes) > 1:
            growth = noop_medians[-1] / noop_medians[0]
            self.add(
                Row(
                    "planner",
                    f"growth {sizes[0]:,} -> {sizes[-1]:,} (no-op)",
                    growth,
                    unit="x",
                    target=f"<= {1.2 * sizes[-1] / sizes[0]:g}x",
                    passed=growth <= 1.2 * sizes[-1] / sizes[0],
                )
            )

    def daemon(self, db: str, directory: Path) -> None:
        probe = subprocess.run(
            [self.infinibay, "daemon", "--help"], capture_output=True, env=self.env, check=False
        )
        if probe.returncode != 0:
            log("daemon: not available")
            self.add(Row("daemon", "daemon: not available", note="no `infinibay daemon` yet"))
            return
        Daemon(self, db, directory).measure()


class Daemon:
    """``infinibay daemon --source DIR`` over the no-op section's N managed VMs."""

    def __init__(self, bench: Bench, db: str, directory: Path) -> None:
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

    def _latency(self, measure: str, target: float, check: Callable[[], bool]) -> None:
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
                    target="<= 200 MiB",
                    passed=rss <= 200,
                )
            )
            name = bench.name("d-new")
            write_docs(self.directory, [vm_doc(name, "Stopped")])
            self._latency("file-to-define latency", 2, lambda: self._domain(name) is not None)
            name = bench.name("d-run")
            settled = self._finished_runs()
            write_docs(self.directory, [vm_doc(name, "Running")])

            def running() -> bool:
                dom = self._domain(name)
                return dom is not None and dom.state()[0] == libvirt.VIR_DOMAIN_RUNNING

            self._wait("waiting for a Running VM to start", running, 120)
            # Destroy only once the pass that started it has ended: the daemon learns
            # which domains it manages at the end of a pass.
            self._wait("waiting for that pass", lambda: self._finished_runs() > settled, 120)
            dom = self._domain(name)
            assert dom is not None
            dom.destroy()
            self._latency("destroy-to-running latency", 3, running)
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
            if code != 0:
                log(f"daemon: exited {code} on SIGTERM (expected 0)")
            if code != 0 or sys.exc_info()[0] is not None:
                tail = self.log_path.read_text(errors="replace").splitlines()[-20:]
                log("daemon: last lines of its log:\n  " + "\n  ".join(tail))


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


# --- the machine ----------------------------------------------------------------


def machine(conn: libvirt.virConnect, domain_type: str) -> dict[str, Any]:
    def version(number: int) -> str:
        return f"{number // 1_000_000}.{number // 1000 % 1000}.{number % 1000}"

    return {
        "date": dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "nproc": os.cpu_count(),
        "accel": domain_type,
        "libvirt": version(conn.getLibVersion()),
        "qemu": version(conn.getVersion()),
        "python": sys.version.split()[0],
        "load_before": round(os.getloadavg()[0], 2),
    }


# --- command line ---------------------------------------------------------------


def _sizes(text: str) -> list[int]:
    return sorted(int(part) for part in text.split(",") if part.strip())


def parse(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--vms", type=int, default=1000, help="managed VMs for no-op plan/daemon")
    parser.add_argument("--apply", type=int, default=200, help="VMs created by the apply section")
    parser.add_argument("--power", type=int, default=20, help="guests started and stopped")
    parser.add_argument("--planner", type=_sizes, default=[1000, 10000], help="e.g. 1000,10000")
    parser.add_argument("--repeat", type=int, default=3, help="repetitions; medians are quoted")
    parser.add_argument("--tiny", action="store_true", help="CI smoke preset (10/5/2, 100,1000, 1)")
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
    except KeyboardInterrupt:
        errors.append("interrupted")
        log("interrupted; cleaning up")
    finally:
        log(f"removing everything named {bench.prefix}*")
        bench.cleanup()
    info["load_after"] = round(os.getloadavg()[0], 2)
    order = {name: index for index, name in enumerate(("setup", *SECTIONS))}
    rows = sorted(bench.rows, key=lambda r: order[r.section])
    sizes = {k: getattr(args, k) for k in ("vms", "apply", "power", "planner", "repeat")}
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
            f"planner={','.join(map(str, args.planner))}; medians of {args.repeat}; "
            f"load {info['load_before']} -> {info['load_after']}"
        )
        print(table(rows, header))
        for error in errors:
            print(f"error: {error}")
    return 1 if errors else 0


if __name__ == "__main__":
    sys.exit(main())
