"""A small harness for end-to-end tests: manifests on disk, the real CLI, real libvirt.

Tests build manifests with the helpers below (names carry the test's prefix),
write them into a directory and run ``infinibay`` through click's runner with
``--db`` and ``-c`` pointing at the test's record and the real libvirtd. Every
assertion then reads libvirt, the pool directory or the record back.
"""

from __future__ import annotations

import dataclasses
import os
import secrets
import subprocess
import sys
from pathlib import Path
from typing import Any

import libvirt
import yaml
from click.testing import CliRunner, Result
from lxml import etree

from reconciler.cli import main
from reconciler.store import store as store_module

API = "infinibay.io/v1alpha1"
INFINIBAY = Path(sys.executable).with_name("infinibay")
"""The virtualenv's console script, run as a subprocess by :meth:`Harness.cli`."""
_CONNECTION_VARIABLES = ("INFINIBAY_DATABASE_URL", "INFINIBAY_LIBVIRT_URI")


def doc(kind: str, name: str, spec: dict[str, Any], **metadata: Any) -> dict[str, Any]:
    return {"apiVersion": API, "kind": kind, "metadata": {"name": name, **metadata}, "spec": spec}


def _random_subnet() -> str:
    """A random ``10.X.Y`` /24 base in this test worker's own range of ``X``.

    Test files run in parallel workers (pytest-xdist sets ``PYTEST_XDIST_WORKER``
    to ``gw0``, ``gw1``... of ``PYTEST_XDIST_WORKER_COUNT``). Each worker draws
    from its own share of the second octets 200-247, so two tests running at
    once never pick the same subnet (libvirt
    refuses to start a network whose subnet is in use); within a worker tests run
    one after another and clean up, and the random third octet keeps a leftover
    of a killed run out of the way.
    """
    worker = os.environ.get("PYTEST_XDIST_WORKER", "gw0").removeprefix("gw")
    count = int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1"))
    width = 48 // max(1, min(count, 48))
    first = 200 + width * (int(worker) % count if worker.isdigit() and count else 0)
    return f"10.{first + secrets.randbelow(width)}.{secrets.randbelow(250)}"


@dataclasses.dataclass(frozen=True)
class Ran:
    """What a real ``infinibay`` process did: its exit code and its output (stdout, stderr)."""

    exit_code: int
    stdout: str
    stderr: str

    @property
    def output(self) -> str:
        return self.stdout + self.stderr


@dataclasses.dataclass
class Harness:
    prefix: str
    db_url: str
    uri: str
    conn: libvirt.virConnect
    pool_dir: Path
    workdir: Path
    subnet: str = dataclasses.field(default_factory=lambda: _random_subnet())

    def name(self, short: str) -> str:
        return f"{self.prefix}{short}"

    def subnet_of(self, n: int) -> str:
        """The first three octets of this test's n-th /24 (n = 0 is :attr:`subnet`)."""
        first, second, third = self.subnet.split(".")
        return f"{first}.{second}.{(int(third) + n) % 250}"

    def bridge(self, n: int = 0) -> str:
        return f"ib{self.prefix[4:8]}{n}"

    def mac(self, n: int) -> str:
        """This test's n-th MAC: tools such as virt-install refuse one another domain has."""
        tag = self.prefix[4:8]
        return f"52:54:00:{tag[:2]}:{tag[2:]}:{n:02x}"

    # --- manifests ----------------------------------------------------------

    def pool(
        self, short: str = "pool", path: Path | None = None, *, images: bool = False
    ) -> dict[str, Any]:
        """A dir pool on ``path`` (default: this test's pool directory), an image pool if asked."""
        spec: dict[str, Any] = {"path": str(path or self.pool_dir)}
        if images:
            spec["images"] = True
        return doc("StoragePool", self.name(short), spec)

    def network(self, short: str = "net", n: int = 0) -> dict[str, Any]:
        base = self.subnet_of(n)
        return doc(
            "Network",
            self.name(short),
            {
                "mode": "nat",
                "bridge": self.bridge(n),
                "ipv4": {
                    "address": f"{base}.1/24",
                    "dhcp": {"start": f"{base}.100", "end": f"{base}.150"},
                },
            },
        )

    def template(self, short: str = "tpl", **spec: Any) -> dict[str, Any]:
        base = {
            "cpus": 1,
            "memory": "64MiB",
            "graphics": {"type": "vnc", "listen": "127.0.0.1"},
            "disks": [{"name": "root", "size": "16MiB", "pool": self.name("pool")}],
            "networks": [{"network": self.name("net")}],
        }
        return doc("Template", self.name(short), {**base, **spec})

    def vm(self, short: str, **spec: Any) -> dict[str, Any]:
        return doc("VirtualMachine", self.name(short), {"template": self.name("tpl"), **spec})

    def write(self, *docs: dict[str, Any], filename: str = "manifests.yaml") -> Path:
        path = self.workdir / filename
        path.write_text(yaml.safe_dump_all(docs, sort_keys=False))
        return self.workdir

    # --- running ------------------------------------------------------------

    def run(self, *args: str) -> Result:
        runner = CliRunner()
        return runner.invoke(
            main.cli, ["--db", self.db_url, "-c", self.uri, *args], catch_exceptions=False
        )

    def cli(
        self, *args: str, db: str | None = None, timeout: float = 120, stdin: str | None = None
    ) -> subprocess.CompletedProcess[str]:
        """The installed ``infinibay`` console script as a real process, on this test's record."""
        command = [str(INFINIBAY), "--db", db or self.db_url, "-c", self.uri, *args]
        env = {k: v for k, v in os.environ.items() if k not in _CONNECTION_VARIABLES}
        return subprocess.run(
            command,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
            env=env,
            input=stdin,
        )

    def sh(self, *args: str, stdin: str | None = None) -> Ran:
        """:meth:`cli` read like :meth:`run`: the real process, its exit code and output."""
        done = self.cli(*args, stdin=stdin)
        return Ran(done.returncode, done.stdout, done.stderr)

    def apply(self, *extra: str) -> Result:
        return self.run("apply", "-f", str(self.workdir), "--shutdown-timeout", "1", *extra)

    def plan(self, *extra: str) -> Result:
        return self.run("plan", "-f", str(self.workdir), *extra)

    # --- reading back -------------------------------------------------------

    def domain(self, short: str) -> libvirt.virDomain:
        return self.conn.lookupByName(self.name(short))

    def domain_xml(self, short: str, *, inactive: bool = True) -> etree._Element:
        flags = libvirt.VIR_DOMAIN_XML_INACTIVE if inactive else 0
        return etree.fromstring(self.domain(short).XMLDesc(flags).encode())

    def state(self, short: str) -> int:
        return int(self.domain(short).state()[0])

    def has_domain(self, short: str) -> bool:
        return self.name(short) in {d.name() for d in self.conn.listAllDomains()}

    def store(self) -> store_module.Store:
        return store_module.Store.open(self.db_url)
