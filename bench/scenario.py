"""What every section sets up: names, databases, manifests, pools, and the clean-up.

Everything created is named ``ibbench-<6 hex>-...`` (:meth:`Scenario.name`) and
removed by :meth:`Scenario.cleanup`; nothing outside that prefix is ever
touched, since other runs share the host's libvirtd. :meth:`Scenario.project`
runs the real ``infinibay`` console script as a whole process and times it.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import secrets
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import libvirt
import yaml
from lxml import etree
from results import BenchError, Row, log

__all__ = ["API", "POOL_ROOT", "Scenario", "doc", "vm_doc", "write_docs", "write_files"]

API = "infinibay.io/v1alpha1"
POOL_ROOT = Path(os.environ.get("INFINIBAY_BENCH_POOL_ROOT", "/var/lib/infinibay-bench"))

_UNDEFINE = (
    libvirt.VIR_DOMAIN_UNDEFINE_MANAGED_SAVE
    | libvirt.VIR_DOMAIN_UNDEFINE_SNAPSHOTS_METADATA
    | libvirt.VIR_DOMAIN_UNDEFINE_NVRAM
)


# --- manifests ----------------------------------------------------------------


def doc(kind: str, name: str, spec: dict[str, Any]) -> dict[str, Any]:
    return {"apiVersion": API, "kind": kind, "metadata": {"name": name}, "spec": spec}


def vm_doc(name: str, power: str, *, pool: str | None = None, **fields: Any) -> dict[str, Any]:
    """A small VM (1 vCPU, 32 MiB); ``fields`` add to or override its spec."""
    spec: dict[str, Any] = {"cpus": 1, "memory": "32MiB", "powerState": power}
    if pool is not None:
        spec["disks"] = [{"name": "root", "size": "16MiB", "pool": pool}]
    return doc("VirtualMachine", name, spec | fields)


def write_docs(directory: Path, docs: list[dict[str, Any]]) -> Path:
    """One file per document, as a GitOps repository usually holds them."""
    directory.mkdir(parents=True, exist_ok=True)
    for item in docs:
        path = directory / f"{item['kind'].lower()}-{item['metadata']['name']}.yaml"
        path.write_text(yaml.safe_dump(item, sort_keys=False))
    return directory


def write_files(directory: Path, files: dict[str, list[dict[str, Any]]]) -> Path:
    """Multi-document files (file name -> its documents), as a fleet repository holds them."""
    directory.mkdir(parents=True, exist_ok=True)
    for name, docs in files.items():
        (directory / name).write_text(yaml.safe_dump_all(docs, sort_keys=False))
    return directory


# --- the scenario ---------------------------------------------------------------


class Scenario:
    """One run's prefix, work directory, libvirt connection and rows of results."""

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

    def add(self, row: Row) -> Row:
        self.rows.append(row)
        return row

    # --- processes ----------------------------------------------------------

    def project(
        self,
        db: str,
        *args: str,
        codes: tuple[int, ...] = (0,),
        uri: str | None = None,
        env: Mapping[str, str] | None = None,
    ) -> tuple[float, subprocess.CompletedProcess[str]]:
        """Run ``infinibay`` against ``uri`` (default ``-c``) with ``env`` (default the bench's)."""
        command = [self.infinibay, "--db", db, "-c", uri or self.uri, *args]
        start = time.perf_counter()
        done = subprocess.run(
            command,
            capture_output=True,
            text=True,
            env=self.env if env is None else env,
            check=False,
        )
        elapsed = time.perf_counter() - start
        if done.returncode not in codes:
            tail = (done.stdout + done.stderr).strip().splitlines()[-15:]
            raise BenchError(
                f"`infinibay {' '.join(args[:2])}` exited {done.returncode}:\n  "
                + "\n  ".join(tail)
            )
        return elapsed, done

    # --- libvirt objects ----------------------------------------------------

    def make_pool(self, name: str, path: Path) -> None:
        path.mkdir(parents=True, exist_ok=True)
        for directory in (POOL_ROOT, self.pool_dir, path):
            if directory.exists():
                directory.chmod(0o755)
        pool = etree.Element("pool", type="dir")
        etree.SubElement(pool, "name").text = name
        etree.SubElement(etree.SubElement(pool, "target"), "path").text = str(path)
        self.conn.storagePoolDefineXML(etree.tostring(pool, encoding="unicode"), 0).create(0)

    def remove(self, start: str, conn: libvirt.virConnect | None = None) -> list[str]:
        """Remove every domain, nwfilter, pool (with volumes) and network of ``start``
        from ``conn`` (default the ``-c`` host)."""
        conn = self.conn if conn is None else conn
        failures: list[str] = []
        for dom in conn.listAllDomains(0):
            if dom.name().startswith(start):
                try:
                    if dom.isActive():
                        dom.destroy()
                    if dom.isPersistent():
                        dom.undefineFlags(_UNDEFINE)
                except libvirt.libvirtError as exc:
                    failures.append(f"domain {dom.name()}: {exc}")
        failures += self._remove_filters(start, conn)
        for net in conn.listAllNetworks(0):
            if net.name().startswith(start):
                try:
                    if net.isActive():
                        net.destroy()
                    net.undefine()
                except libvirt.libvirtError as exc:
                    failures.append(f"network {net.name()}: {exc}")
        for pool in conn.listAllStoragePools(0):
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

    def _remove_filters(self, start: str, conn: libvirt.virConnect) -> list[str]:
        """The nwfilters of ``start*`` (and ``ib-vm-``/``ib-policy-`` ones), referrers first."""
        left = [f for f in conn.listAllNWFilters(0) if start in f.name()]
        for _round in range(8):
            failed = []
            for nwfilter in left:
                try:
                    nwfilter.undefine()
                except libvirt.libvirtError as exc:
                    failed.append((nwfilter, exc))
            if len(failed) in (0, len(left)):
                return [f"nwfilter {f.name()}: {exc}" for f, exc in failed]
            left = [f for f, _exc in failed]
        return [f"nwfilter {f.name()}: still referenced" for f in left]

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
