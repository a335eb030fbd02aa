"""The sections: each does the same libvirt work with the project and with the floor.

``noop`` (plan over N managed, stopped VMs vs one observation pass), ``apply``
(N new VMs with a 16 MiB volume each), ``power`` (start and force off N guests
that boot nothing), ``planner`` (pure ``planner.plan`` on synthetic states) and
``daemon`` (see :mod:`daemon_bench`), ``firewall`` (one policy change reaching
N stopped VMs of a department vs the one nwfilter define it comes down to),
``placement`` (pure placement of 10,000 VMs over 100 simulated hosts) and
``fleet`` (a no-op plan over N VMs on each of two real hosts vs observing both,
see :mod:`fleet_bench`). Each records its :class:`results.Row` s.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

import daemon_bench
import fleet_bench
import placement_bench
import planner_bench
import raw_floor
from results import BenchError, Row, log, median
from scenario import POOL_ROOT, Scenario, doc, vm_doc, write_docs, write_files

__all__ = ["Bench"]


class Bench(Scenario):
    """A scenario with the sections to run in it."""

    def versus_floor(
        self, section: str, measure: str, project: list[float], floor: list[float], *, limit: float
    ) -> None:
        """A row of medians against the floor, passed when the ratio is at most ``limit``."""
        row = self.add(
            Row(
                section,
                measure,
                median(project),
                median(floor),
                target=f"<= {limit:g}x floor",
                samples={"project": project, "floor": floor},
            )
        )
        assert row.ratio is not None
        row.passed = row.ratio <= limit

    def _noop_sizes(self) -> tuple[int, int]:
        """Diskless VMs and VMs with a volume: 1,000 and 200 for ``--vms 1000``."""
        return self.args.vms, self.args.vms // 5

    def noop_setup(self) -> tuple[str, Path]:
        """Managed VMs as a fleet repository holds them: two multi-document files."""
        diskless, with_volumes = self._noop_sizes()
        db = self.db("noop")
        pool_name, pool_path = self.name("npool"), self.pool_dir / "noop"
        pool_path.mkdir(parents=True, exist_ok=True)
        for folder in (POOL_ROOT, self.pool_dir, pool_path):
            folder.chmod(0o755)
        files = {
            "diskless.yaml": [vm_doc(self.name(f"n{i:05d}"), "Stopped") for i in range(diskless)],
            "volumes.yaml": [doc("StoragePool", pool_name, {"path": str(pool_path)})]
            + [
                vm_doc(self.name(f"nv{i:05d}"), "Stopped", pool=pool_name)
                for i in range(with_volumes)
            ],
        }
        directory = write_files(self.workdir / "noop", files)
        log(f"noop: applying {diskless} diskless VMs and {with_volumes} with a volume (setup)")
        elapsed, _ = self.project(db, "apply", "-f", str(directory))
        self.add(
            Row(
                "setup",
                f"apply {diskless} diskless VMs and {with_volumes} with a volume (untimed setup)",
                elapsed,
            )
        )
        return db, directory

    def noop(self, db: str, directory: Path) -> None:
        diskless, with_volumes = self._noop_sizes()
        count, repeat = diskless + with_volumes, self.args.repeat
        project: list[float] = []
        floor: list[float] = []
        for rep in range(repeat):
            log(f"noop: repetition {rep + 1}/{repeat}")
            elapsed, result = raw_floor.run("observe.py", self.name("n"), self.uri)
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
                f"plan, {count} managed stopped VMs ({diskless} diskless, {with_volumes} with a "
                "volume; two multi-document files)",
                median(project),
                median(floor),
                target="<= 2x floor",
                samples={"project": project, "floor": floor},
            )
        )
        assert row.ratio is not None
        row.passed = row.ratio <= 2

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
            elapsed, _ = raw_floor.run(
                "apply.py", self.uri, floor_pool, floor_start, str(count), self.domain_type
            )
            floor.append(elapsed)
            for prefix in (start, floor_start):
                if failures := self.remove(prefix):
                    raise BenchError("clean-up between repetitions failed: " + "; ".join(failures))
            self.remove_volumes(pool_name, start)
            self.remove_volumes(floor_pool, floor_start)
        self.versus_floor(
            "apply", f"apply {count} new VMs, 16 MiB volume each", project, floor, limit=1.2
        )

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
            self.conn.defineXML(raw_floor.domain_xml(f"{floor_start}{index:05d}", self.domain_type))
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
            elapsed, _ = raw_floor.run("power.py", self.uri, floor_start, str(count), "serial")
            serial.append(elapsed)
            elapsed, _ = raw_floor.run(
                "power.py", self.uri, floor_start, str(count), "threads", "5"
            )
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
            if size == 10_000:  # the target; other sizes are context
                row.target = "<= 0.5 s at 10,000"
                assert row.project is not None
                row.passed = row.project <= 0.5
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

    def placement(self) -> None:
        vms, hosts, repeat = self.args.placement, self.args.placement_hosts, self.args.repeat
        log(f"placement: {vms:,} VMs over {hosts} simulated hosts (in process, no libvirt)")
        try:
            timings = placement_bench.measure(vms, hosts, repeat)
        except AssertionError as exc:
            raise BenchError(str(exc)[:2000]) from exc
        for strategy, samples in timings.items():
            row = self.add(
                Row(
                    "placement",
                    f"place {vms:,} VMs over {hosts} hosts ({strategy})",
                    median(samples),
                    target="<= 2 s",
                    samples={"project": samples},
                )
            )
            assert row.project is not None
            row.passed = row.project <= 2

    def fleet(self) -> None:
        count = self.args.fleet
        measure = f"plan, 2 x {count} managed stopped VMs on two hosts (pinned, one file per host)"
        try:
            with fleet_bench.second_host(self.prefix) as uri2:
                log(f"fleet: 2 x {count} VMs, the second host at {uri2}")
                project, floor = fleet_bench.Fleet(self, uri2).measure()
        except fleet_bench.Unavailable as exc:
            log(f"fleet: skipped: {exc}")
            self.add(Row("fleet", f"{measure}: skipped", note=str(exc)))
            return
        self.versus_floor("fleet", measure, project, floor, limit=2)

    def daemon(self, db: str, directory: Path) -> None:
        probe = subprocess.run(
            [self.infinibay, "daemon", "--help"], capture_output=True, env=self.env, check=False
        )
        if probe.returncode != 0:
            log("daemon: not available")
            self.add(Row("daemon", "daemon: not available", note="no `infinibay daemon` yet"))
            return
        daemon_bench.Daemon(self, db, directory).measure()

    def firewall(self) -> None:
        count, repeat = self.args.firewall, self.args.repeat
        db, directory = self.db("firewall"), self.workdir / "firewall"
        network = doc(
            "Network",
            self.name("fwnet"),
            {"mode": "isolated", "bridge": f"ibb{self.prefix[8:14]}", "autostart": False},
        )
        department = doc(
            "Department",
            self.name("dept"),
            {"network": self.name("fwnet"), "firewall": self.name("pol")},
        )
        vms = []
        for i in range(count):
            vm = vm_doc(self.name(f"f{i:05d}"), "Stopped")
            vm["spec"]["department"] = self.name("dept")  # and so its network and firewall
            vms.append(vm)

        def policy(port: int) -> dict[str, object]:
            rule = {
                "name": "web",
                "action": "Accept",
                "direction": "In",
                "protocol": "tcp",
                "ports": str(port),
            }
            return doc(
                "FirewallPolicy",
                self.name("pol"),
                {"defaultAction": "Drop", "presets": ["allow-outbound"], "rules": [rule]},
            )

        log(f"firewall: applying a department of {count} stopped VMs (setup)")
        write_docs(directory, [network, department, policy(8000), *vms])
        self.project(db, "apply", "-f", str(directory))
        filter_name = f"ib-policy-{self.name('pol')}"
        project: list[float] = []
        floor: list[float] = []
        for rep in range(repeat):
            log(f"firewall: repetition {rep + 1}/{repeat}")
            write_docs(directory, [policy(8001 + 2 * rep)])
            elapsed, _ = self.project(db, "apply", "-f", str(directory))
            project.append(elapsed)
            elapsed, _ = raw_floor.run("nwfilter.py", self.uri, filter_name, str(8002 + 2 * rep))
            floor.append(elapsed)
        self.versus_floor(
            "firewall",
            f"apply a policy change reaching {count} stopped VMs",
            project,
            floor,
            limit=1.5,
        )
        if failures := self.remove(self.prefix + "f"):
            raise BenchError("clean-up failed: " + "; ".join(failures))
