"""``infinibay daemon`` as a real process against the real libvirtd, git and both records.

Every test starts ``python -m reconciler daemon`` as a subprocess, exactly as
an operator (or systemd) would, and watches what it does from the outside:
libvirt objects, the record, the HTTP endpoints, the exit code. Sources are a
real bare git repository on disk (``file://``) fed by a work clone, or a plain
directory. Daemons are always stopped before the libvirt clean-up runs, so
none can recreate what the clean-up removes.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any, TypeVar

import libvirt
import pytest
import yaml

from reconciler.models import access, record
from reconciler.store import store as store_module
from tests.fixtures.git import git
from tests.integration.harness import Harness, doc

# Timed against the daemon's reaction bounds: run after the parallel phase, alone (scripts/test).
pytestmark = [pytest.mark.integration, pytest.mark.timing]

T = TypeVar("T")
ROOT = Path(__file__).resolve().parents[2]


ADMIN_TOKEN = "ib_integration-test-admin-token"
"""The admin token every :class:`Daemon`'s record holds (by hash), sent by :meth:`Daemon.http`."""


def grant(
    db_url: str,
    name: str,
    secret: str,
    role: access.Role = access.Role.ADMIN,
    owner: str | None = None,
) -> str:
    """Give the record at ``db_url`` a token ``name`` of secret ``secret`` unless it has one."""
    with store_module.Store.open(db_url) as store:
        if name not in {t.name for t in store.tokens()}:
            store.create_token(name, access.hash_secret(secret), role.value, owner, None)
    return secret


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


class Daemon:
    """One ``infinibay daemon`` subprocess with its log file and HTTP port.

    ``entry`` is what the interpreter runs: ``-m reconciler``, or ``-c CODE`` for a
    test that injects a fault into the real process before it starts the CLI.
    """

    def __init__(
        self,
        db_url: str,
        uri: str,
        log: Path,
        *args: str,
        entry: Sequence[str] = ("-m", "reconciler"),
    ) -> None:
        grant(db_url, "integration-admin", ADMIN_TOKEN)
        self.port = free_port()
        self.log = log
        self.argv = [
            sys.executable,
            *entry,
            "--db",
            db_url,
            "-c",
            uri,
            "--log-format",
            "json",
            "daemon",
            "--listen",
            f"127.0.0.1:{self.port}",
            "--shutdown-timeout",
            "1s",
            *args,
        ]
        with log.open("ab") as out:
            self.proc = subprocess.Popen(
                self.argv, stdout=out, stderr=subprocess.STDOUT, cwd=ROOT, env=dict(os.environ)
            )

    def http(self, path: str, token: str | None = ADMIN_TOKEN) -> tuple[int, str]:
        headers = {"Authorization": f"Bearer {token}"} if token is not None else {}
        request = urllib.request.Request(f"http://127.0.0.1:{self.port}{path}", headers=headers)
        try:
            with urllib.request.urlopen(request, timeout=5) as resp:
                return resp.status, resp.read().decode()
        except urllib.error.HTTPError as exc:
            with exc:
                return exc.code, exc.read().decode()

    def readyz(self) -> dict[str, Any]:
        """The /readyz document; ``{"ready": False}`` while nothing listens yet."""
        try:
            status, body = self.http("/readyz")
        except OSError:
            return {"ready": False, "role": None}
        document: dict[str, Any] = json.loads(body)
        assert document["ready"] is (status == 200)
        return document

    def answering(self) -> bool:
        with contextlib.suppress(OSError):
            return self.http("/healthz")[0] in (200, 503)
        return False

    def lines(self) -> list[dict[str, Any]]:
        found = []
        for line in self.log.read_text().splitlines():
            with contextlib.suppress(ValueError):
                found.append(json.loads(line))
        return found

    def tail(self) -> str:
        return "\n".join(self.log.read_text().splitlines()[-40:])

    def terminate(self, timeout: float = 90) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        return self.proc.wait(timeout)

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait(30)


def until(predicate: Callable[[], T], timeout: float, what: str, daemon: Daemon | None = None) -> T:
    """Poll ``predicate`` until it returns something truthy, or fail saying ``what``."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            log = f"\n--- daemon log ---\n{daemon.tail()}" if daemon else ""
            pytest.fail(f"not within {timeout:g}s: {what}{log}", pytrace=False)
        if daemon is not None and daemon.proc.poll() is not None:
            pytest.fail(
                f"the daemon exited ({daemon.proc.returncode}) before: {what}\n{daemon.tail()}"
            )
        time.sleep(0.1)


class Repo:
    """A bare repository on disk and a work clone that commits manifests to ``main``."""

    def __init__(self, base: Path) -> None:
        self.bare = base / "origin.git"
        self.work = base / "work"
        git(base, "init", "--quiet", "--bare", "--initial-branch=main", str(self.bare))
        git(base, "clone", "--quiet", str(self.bare), str(self.work))
        git(self.work, "checkout", "--quiet", "-B", "main")
        self.manifests = self.work / "manifests"
        self.manifests.mkdir()

    @property
    def url(self) -> str:
        return f"file://{self.bare}"

    def commit(self, text: str, message: str) -> str:
        (self.manifests / "manifests.yaml").write_text(text)
        git(self.work, "add", "-A")
        git(self.work, "commit", "--quiet", "-m", message)
        git(self.work, "push", "--quiet", "origin", "main")
        return git(self.work, "rev-parse", "HEAD")


@pytest.fixture
def spawn(
    db_url: str, libvirt_uri: str, libvirt_cleanup: None, tmp_path: Path
) -> Iterator[Callable[..., Daemon]]:
    """Start daemons on the test's record; all are stopped before the libvirt clean-up."""
    started: list[Daemon] = []

    def start(*args: str) -> Daemon:
        log = tmp_path / f"daemon-{len(started)}.log"
        daemon = Daemon(db_url, libvirt_uri, log, *args)
        started.append(daemon)
        return daemon

    yield start
    for daemon in started:
        try:
            daemon.terminate(timeout=60)
        except subprocess.TimeoutExpired:
            daemon.kill()


def dump(*docs: dict[str, Any]) -> str:
    return yaml.safe_dump_all(docs, sort_keys=False)


def vcpus(h: Harness, vm: str) -> int:
    return int(h.domain_xml(vm).findtext("vcpu") or 0)


def running(h: Harness, vm: str) -> bool:
    return h.has_domain(vm) and h.state(vm) == libvirt.VIR_DOMAIN_RUNNING


def source_revision(h: Harness, vm: str) -> str | None:
    with h.store() as store:
        found = store.get(record.ResourceKey("VirtualMachine", h.name(vm)))
    return found.source_revision if found else None


def source_events(h: Harness, reason: str) -> list[record.EventRecord]:
    with h.store() as store:
        return [e for e in store.events() if e.key.kind == "Source" and e.reason == reason]


def metric(daemon: Daemon, name: str) -> float | None:
    status, body = daemon.http("/metrics")
    assert status == 200
    for line in body.splitlines():
        if line.startswith(name + " ") or line.startswith(name + "{"):
            return float(line.rsplit(" ", 1)[1])
    return None


# --- git ---------------------------------------------------------------------------


def test_git_daemon_applies_commits_refuses_an_invalid_one_and_converges_back_on_revert(
    h: Harness, spawn: Callable[..., Daemon], tmp_path: Path
) -> None:
    repo = Repo(tmp_path)
    base = [h.pool(), h.network(), h.template()]
    first = repo.commit(dump(*base, h.vm("web")), "web-1")
    daemon = spawn(
        "--source", repo.url, "--ref", "main", "--path", "manifests",
        "--git-interval", "1s", "--interval", "10m", "--cache-dir", str(tmp_path / "cache"),
    )  # fmt: skip

    until(lambda: running(h, "web"), 120, "the committed VM runs", daemon)
    assert vcpus(h, "web") == 1
    assert until(lambda: source_revision(h, "web"), 10, "revision recorded") == f"main@sha1:{first}"
    with h.store() as store:
        assert any(r.trigger is record.Trigger.GIT for r in store.runs())

    second = repo.commit(dump(*base, h.vm("web", cpus=2)), "more cpus")
    until(lambda: vcpus(h, "web") == 2, 60, "the change converges", daemon)
    until(lambda: source_revision(h, "web") == f"main@sha1:{second}", 30, "new revision recorded")

    bad = repo.commit(dump(*base, h.vm("web", cpus=3, memory="64")), "broken")
    (event,) = until(lambda: source_events(h, "InvalidRevision"), 60, "a Warning event", daemon)
    assert event.type is record.EventType.WARNING
    assert event.revision == f"main@sha1:{bad}"
    assert bad in event.message and f"main@sha1:{second}" in event.message
    assert "manifests/manifests.yaml:" in event.message and "spec.memory" in event.message
    ready = daemon.readyz()
    assert ready["source"]["refusedRevision"] == f"main@sha1:{bad}"
    assert ready["source"]["appliedRevision"] == f"main@sha1:{second}"
    assert metric(daemon, "infinibay_source_valid") == 0.0
    time.sleep(3)  # a few polls of the broken commit: nothing may change
    assert vcpus(h, "web") == 2
    assert source_revision(h, "web") == f"main@sha1:{second}"

    git(repo.work, "revert", "--no-edit", "HEAD", "HEAD~1")
    git(repo.work, "push", "--quiet", "origin", "main")
    reverted = git(repo.work, "rev-parse", "HEAD")
    until(lambda: vcpus(h, "web") == 1, 60, "the revert converges back", daemon)
    until(lambda: source_revision(h, "web") == f"main@sha1:{reverted}", 30, "revert recorded")
    until(lambda: metric(daemon, "infinibay_source_valid") == 1.0, 10, "source valid again")
    assert daemon.terminate() == 0


# --- libvirt events ----------------------------------------------------------------


@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
def test_vm_destroyed_out_of_band_runs_again_within_10s(
    h: Harness, spawn: Callable[..., Daemon]
) -> None:
    source = h.workdir
    (source / "all.yaml").write_text(dump(h.pool(), h.network(), h.template(), h.vm("web")))
    daemon = spawn("--source", str(source), "--interval", "10m")
    until(lambda: running(h, "web"), 120, "the VM runs", daemon)
    until(lambda: daemon.readyz()["ready"], 30, "the daemon is ready", daemon)

    h.domain("web").destroy()
    destroyed = time.monotonic()
    until(lambda: running(h, "web"), 10, "the destroyed VM runs again", daemon)
    assert time.monotonic() - destroyed < 10
    with h.store() as store:
        reasons = {
            e.reason for e in store.events(record.ResourceKey("VirtualMachine", h.name("web")))
        }
        triggers = {r.trigger for r in store.runs()}
    assert "DriftCorrected" in reasons or "Started" in reasons
    assert record.Trigger.LIBVIRT_EVENT in triggers
    assert daemon.terminate() == 0


# --- directory ---------------------------------------------------------------------


def template_doc(h: Harness, short: str) -> dict[str, Any]:
    return doc("Template", h.name(short), {"cpus": 1, "memory": "64MiB"})


def has_template(h: Harness, short: str) -> bool:
    with h.store() as store:
        return store.get(record.ResourceKey("Template", h.name(short))) is not None


@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
def test_directory_source_applies_a_new_file_within_5s(
    h: Harness, spawn: Callable[..., Daemon]
) -> None:
    source = h.workdir
    (source / "a.yaml").write_text(dump(template_doc(h, "a")))
    daemon = spawn("--source", str(source), "--interval", "10m", "--debounce", "200ms")
    until(lambda: daemon.readyz()["ready"], 60, "the first pass converges", daemon)
    assert has_template(h, "a")

    (source / ".b.yaml.swp").write_text("editor noise is never loaded")
    (source / "b.yaml").write_text(dump(template_doc(h, "b")))
    written = time.monotonic()
    until(lambda: has_template(h, "b"), 5, "the new file is applied", daemon)
    assert time.monotonic() - written < 5
    with h.store() as store:
        run = store.last_run()
    assert run is not None and run.trigger is record.Trigger.WATCH
    assert run.revision is not None and run.revision.startswith("dir@")
    assert daemon.terminate() == 0


# --- endpoints and signals -----------------------------------------------------------


@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
def test_endpoints_answer_sighup_resyncs_and_sigterm_exits_zero(
    h: Harness, spawn: Callable[..., Daemon]
) -> None:
    source = h.workdir
    (source / "a.yaml").write_text(dump(template_doc(h, "a")))
    daemon = spawn("--source", str(source), "--interval", "10m")
    until(daemon.answering, 30, "the daemon listens", daemon)
    assert daemon.http("/healthz") == (200, "ok\n")
    ready = until(lambda: (r := daemon.readyz())["ready"] and r, 60, "ready", daemon)
    assert ready["role"] == "leader" and ready["lastPass"]["ok"] is True

    status, body = daemon.http("/metrics")
    assert status == 200
    for name in (
        'infinibay_reconcile_runs_total{result="succeeded",trigger="watch"} 1.0',
        'infinibay_reconcile_actions_total{action="create",kind="Template",result="succeeded"}',
        "infinibay_reconcile_duration_seconds_count",
        "infinibay_drifted_resources",
        "infinibay_queue_depth",
        "infinibay_leader 1.0",
        "infinibay_applied_revision_info{revision=",
    ):
        assert name in body

    status, body = daemon.http("/api/v1/resources?kind=template")
    assert status == 200
    names = [item["metadata"]["name"] for item in json.loads(body)["items"]]
    assert h.name("a") in names
    status, body = daemon.http(f"/api/v1/resources/template/{h.name('a')}")
    assert status == 200 and json.loads(body)["spec"]["cpus"] == 1
    assert daemon.http("/api/v1/resources/template/missing")[0] == 404
    status, body = daemon.http(f"/api/v1/events?resource=template/{h.name('a')}")
    assert status == 200
    assert [e["reason"] for e in json.loads(body)["items"]] == ["Created"]
    assert daemon.http("/nope")[0] == 404

    daemon.proc.send_signal(signal.SIGHUP)

    def resynced() -> bool:
        with h.store() as store:
            return any(r.trigger is record.Trigger.RESYNC for r in store.runs())

    until(resynced, 30, "SIGHUP runs a full pass", daemon)
    assert daemon.terminate() == 0
    messages = [line["message"] for line in daemon.lines()]
    assert "stopped cleanly" in messages
    logged = [line for line in daemon.lines() if line.get("resource") == f"template/{h.name('a')}"]
    assert logged and {"time", "level", "message", "run_id", "revision"} <= logged[0].keys()


# --- leadership ----------------------------------------------------------------------


@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
def test_a_second_daemon_on_one_sqlite_record_refuses_to_start(
    db_url: str, libvirt_uri: str, spawn: Callable[..., Daemon], tmp_path: Path
) -> None:
    source = tmp_path / "empty"
    source.mkdir()
    first = spawn("--source", str(source), "--interval", "10m")
    until(first.answering, 30, "the first daemon listens", first)
    second = subprocess.run(
        [
            sys.executable, "-m", "reconciler", "--db", db_url, "-c", libvirt_uri,
            "daemon", "--source", str(source), "--listen", f"127.0.0.1:{free_port()}",
        ],
        capture_output=True, text=True, timeout=60, cwd=ROOT, check=False,
    )  # fmt: skip
    assert second.returncode == 1
    assert "another infinibay daemon already runs" in second.stderr
    assert f"pid {first.proc.pid}" in second.stderr
    assert "Traceback" not in second.stderr
    assert first.proc.poll() is None
    assert first.terminate() == 0


@pytest.mark.parametrize("db_url", ["postgresql"], indirect=True)
def test_standby_takes_over_when_the_postgres_leader_is_killed(
    h: Harness, spawn: Callable[..., Daemon]
) -> None:
    source = h.workdir
    (source / "a.yaml").write_text(dump(template_doc(h, "a")))
    args = ("--source", str(source), "--interval", "10m", "--lease", "3s")
    leader = spawn(*args)
    until(lambda: leader.answering() and leader.readyz()["ready"], 60, "leader ready", leader)
    assert leader.readyz()["role"] == "leader"
    standby = spawn(*args)
    until(standby.answering, 30, "the standby listens", standby)
    ready = until(lambda: (r := standby.readyz())["ready"] and r, 30, "standby ready", standby)
    assert ready["role"] == "standby"
    assert f"pid {leader.proc.pid}" in (ready["leader"] or "")
    assert metric(standby, "infinibay_leader") == 0.0

    leader.proc.send_signal(signal.SIGKILL)
    leader.proc.wait(10)
    killed = time.monotonic()
    until(lambda: standby.readyz()["role"] == "leader", 3 + 2, "the standby leads", standby)
    assert time.monotonic() - killed < 5

    (source / "b.yaml").write_text(dump(template_doc(h, "b")))
    until(lambda: has_template(h, "b"), 30, "the new leader reconciles", standby)
    until(lambda: standby.readyz()["ready"], 30, "the new leader is ready", standby)
    assert standby.terminate() == 0
