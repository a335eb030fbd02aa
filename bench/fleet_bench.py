"""The fleet scenario: a no-op ``infinibay plan`` over two real hosts vs observing both.

Two ``Host`` manifests name the ``-c`` libvirtd and a second one, and N stopped,
diskless VMs without graphics are pinned to each (2 x 500 at the default
size). The floor is ``floor/observe.py`` given both URIs: one process that
observes both hosts at once, as the reconciler does.

The second host is ``INFINIBAY_BENCH_LIBVIRT_URI2`` (else the tests'
``INFINIBAY_TEST_LIBVIRT_URI2``) when set; otherwise, as root,
:func:`second_host` starts a libvirtd of its own in private namespaces with
``scripts/lib/second-libvirtd.sh`` and stops it at the end, also on failure
or Ctrl-C. Without either the section is skipped (:class:`Unavailable`).

Placement counts a stopped VM's vCPUs against its host (``getInfo``'s CPUs
times at most 64), so on a small machine 500 VMs of 1 vCPU cannot be placed on
one host; a VM already defined on its host stays there whatever the capacity
says. So the setup applies each host's VMs through that host alone (``-c`` its
URI, no ``Host`` manifest), then once with both ``Host`` manifests and the pins,
which records the hosts and the pins and must move nothing; only the ``plan``
after that is timed, and it must be empty.
"""

from __future__ import annotations

import contextlib
import glob
import os
import shlex
import shutil
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import libvirt
import raw_floor
from results import BenchError, Row, log
from scenario import Scenario, doc, vm_doc, write_files

__all__ = ["SECOND_URI_ENV", "Fleet", "Unavailable", "second_host"]

SECOND_URI_ENV = "INFINIBAY_BENCH_LIBVIRT_URI2"
SCRIPT = Path(__file__).resolve().parents[1] / "scripts" / "lib" / "second-libvirtd.sh"
_MARKER = ".infinibay-second-libvirtd"  # what the script leaves in a root it owns


class Unavailable(Exception):
    """The section cannot run here (no second host); the message says why."""


def _tail(done: subprocess.CompletedProcess[str]) -> str:
    return "\n  ".join((done.stdout + done.stderr).strip().splitlines()[-10:])


@contextlib.contextmanager
def second_host(prefix: str) -> Iterator[str]:
    """The second host's URI: the given one, or a libvirtd started (and stopped) here."""
    given = os.environ.get(SECOND_URI_ENV, "") or os.environ.get("INFINIBAY_TEST_LIBVIRT_URI2", "")
    if given:
        yield given
        return
    if os.geteuid() != 0:
        raise Unavailable(f"no second host: set {SECOND_URI_ENV}, or run as root to start one")
    root = Path(tempfile.mkdtemp(prefix=f"{prefix}hv2-"))
    try:
        log(f"fleet: starting a second libvirtd under {root} (setup)")
        done = subprocess.run(
            [str(SCRIPT), "start", str(root)], capture_output=True, text=True, check=False
        )
        if done.returncode != 0:
            raise BenchError(f"the second libvirtd did not start:\n  {_tail(done)}")
        exported: dict[str, str] = {}
        for line in done.stdout.splitlines():
            words = shlex.split(line)
            if words[:1] == ["export"]:
                exported |= dict(word.split("=", 1) for word in words[1:])
        uri = exported.get("INFINIBAY_TEST_LIBVIRT_URI2", "")
        if not uri:
            raise BenchError(f"the second libvirtd named no URI:\n  {_tail(done)}")
        yield uri
    finally:
        log("fleet: stopping the second libvirtd")
        stopped = subprocess.run(
            [str(SCRIPT), "stop", str(root)], capture_output=True, text=True, check=False
        )
        if stopped.returncode != 0 or (root / _MARKER).exists():
            log(f"fleet: the second libvirtd under {root} did not stop:\n  {_tail(stopped)}")
        else:
            shutil.rmtree(root, ignore_errors=True)  # what a failed start left, if anything


class Fleet:
    """N stopped VMs pinned to each of two hosts, the ``-c`` one and ``uri2``."""

    def __init__(self, bench: Scenario, uri2: str) -> None:
        self.bench = bench
        self.uris = (bench.uri, uri2)
        self.count = bench.args.fleet
        self.start = bench.name("h")  # every domain of the section
        self.hosts = [bench.name(f"hv{k + 1}") for k in range(len(self.uris))]
        self.db = bench.db("fleet")
        self.directory = bench.workdir / "fleet"
        self.env = {
            **bench.env,
            # Exactly these two URIs, whatever pattern characters they hold (a '?').
            "INFINIBAY_HOST_URIS": " ".join(glob.escape(uri) for uri in self.uris),
        }

    def _vms(self, k: int, *, pinned: bool) -> list[dict[str, Any]]:
        pin = {"host": self.hosts[k]} if pinned else {}
        return [
            vm_doc(
                f"{self.start}{k + 1}-{i:05d}",
                "Stopped",
                memory="16MiB",
                graphics={"type": "none"},
                **pin,
            )
            for i in range(self.count)
        ]

    def setup(self) -> float:
        """Each host's VMs through that host alone, then once over both; the seconds it took."""
        bench, total = self.bench, 0.0
        for k, uri in enumerate(self.uris):
            log(f"fleet: applying {self.count} VMs on host {k + 1} alone (setup)")
            alone = write_files(
                bench.workdir / f"fleet-host{k + 1}", {"vms.yaml": self._vms(k, pinned=False)}
            )
            elapsed, _ = bench.project(self.db, "apply", "-f", str(alone), uri=uri)
            total += elapsed
        hosts = [
            doc("Host", name, {"uri": uri}) for name, uri in zip(self.hosts, self.uris, strict=True)
        ]
        files = {"hosts.yaml": hosts} | {
            f"vms-{name}.yaml": self._vms(k, pinned=True) for k, name in enumerate(self.hosts)
        }
        write_files(self.directory, files)
        log(f"fleet: applying the 2 Host manifests and the {2 * self.count} pins (setup)")
        elapsed, _ = bench.project(self.db, "apply", "-f", str(self.directory), env=self.env)
        return total + elapsed

    def measure(self) -> tuple[list[float], list[float]]:
        """Set up, then the no-op plan's and the floor's seconds, ``--repeat`` times each."""
        bench, repeat, expected = self.bench, self.bench.args.repeat, 2 * self.count
        try:
            conn2 = libvirt.open(self.uris[1])
        except libvirt.libvirtError as exc:
            raise BenchError(f"the second host {self.uris[1]} does not answer: {exc}") from exc
        try:
            took = self.setup()
            for k, conn in enumerate((bench.conn, conn2)):
                mine = f"{self.start}{k + 1}-"
                on = [d.name() for d in conn.listAllDomains(0) if d.name().startswith(self.start)]
                if len(on) != self.count or not all(n.startswith(mine) for n in on):
                    raise BenchError(f"host {k + 1} holds {len(on)} VMs, not its {self.count}")
            bench.add(
                Row(
                    "fleet",
                    f"apply {self.count} VMs on each host alone, then both Hosts (untimed setup)",
                    took,
                )
            )
            project: list[float] = []
            floor: list[float] = []
            for rep in range(repeat):
                log(f"fleet: repetition {rep + 1}/{repeat}")
                elapsed, result = raw_floor.run("observe.py", self.start, *self.uris)
                if result["matched"] != expected:
                    raise BenchError(f"floor saw {result['matched']} of {expected} domains")
                floor.append(elapsed)
                elapsed, done = bench.project(
                    self.db, "plan", "-f", str(self.directory), codes=(0, 2), env=self.env
                )
                if done.returncode != 0:
                    raise BenchError(
                        "the plan over converged VMs is not empty:\n" + done.stdout[-2000:]
                    )
                project.append(elapsed)
            return project, floor
        finally:
            started = time.perf_counter()
            failures = bench.remove(self.start) + bench.remove(self.start, conn2)
            with contextlib.suppress(libvirt.libvirtError):
                conn2.close()
            log(f"fleet: removed the section's domains in {time.perf_counter() - started:.1f} s")
            if failures:
                log("fleet: clean-up left objects behind:\n  " + "\n  ".join(failures))
