"""Audit that survives: what a pass did is recorded even if the record was down or the pass killed.

* A real PostgreSQL record is stopped (``pg_ctl stop``) right after the first
  change of a pass ends, while the others are still running against the real
  libvirtd: a VM waiting out its shutdown timeout, VMs being created. Their
  outcomes are kept in the audit journal under ``$XDG_STATE_HOME`` and are in
  the record, with the right objects and run, once it is back and the next
  pass runs.
* A real ``infinibay apply`` process is SIGKILLed once three domains are
  defined: its intents (``Creating``) are in the record and its journal, and
  the next apply closes each with what it observes.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import libvirt
import pytest
import sqlalchemy as sa

from reconciler import errors
from reconciler.engine import execute, journal, reconcile
from reconciler.hypervisor import adapter
from reconciler.manifests import loader
from reconciler.models import record
from reconciler.store import store as store_module
from tests.fixtures import database
from tests.integration import test_daemon
from tests.integration.harness import Harness

pytestmark = pytest.mark.integration

NEW = [f"new{i}" for i in range(3)]


def _journal(state: Path, store: store_module.Store) -> Path:
    return state / "infinibay" / "journal" / f"{store.installation_id()}.jsonl"


def _events(h: Harness, short: str) -> list[record.EventRecord]:
    with h.store() as store:
        return store.events(record.ResourceKey("VirtualMachine", h.name(short)))


@pytest.fixture
def on_private_postgres(
    private_postgres: database.PostgresServer,
    libvirt_uri: str,
    libvirt_conn: libvirt.virConnect,
    prefix: str,
    pool_dir: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> Iterator[Harness]:
    """The harness on a record in a PostgreSQL server of this test's own."""
    name = f"ib_audit_{uuid.uuid4().hex[:8]}"
    admin = database.admin_engine(private_postgres.url)
    try:
        with admin.connect() as conn:
            conn.exec_driver_sql(f'CREATE DATABASE "{name}"')
    finally:
        admin.dispose()
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path / "state"))
    workdir = tmp_path / "manifests"
    workdir.mkdir()
    url = sa.make_url(private_postgres.url).set(database=name)
    yield Harness(
        prefix,
        url.render_as_string(hide_password=False),
        libvirt_uri,
        libvirt_conn,
        pool_dir,
        workdir,
    )


def test_actions_done_while_the_record_is_down_are_recorded_when_it_returns(
    on_private_postgres: Harness, private_postgres: database.PostgresServer, tmp_path: Path
) -> None:
    h = on_private_postgres
    base = [h.pool(), h.network(), h.template()]
    h.write(*base, h.vm("old"))
    assert h.apply().exit_code == 0
    h.write(*base, h.vm("old", powerState="Stopped"), *(h.vm(vm) for vm in NEW))

    first: list[record.ResourceKey] = []

    def record_goes_down(outcome: execute.Outcome) -> None:
        if not first:  # the first change is recorded; everything after it ends in the outage
            first.append(outcome.change.key)
            # "fast", not "immediate": the test server commits asynchronously, and an
            # immediate stop would lose what it had already acknowledged.
            private_postgres.stop("fast")

    with store_module.Store.open(h.db_url) as store, adapter.Hypervisor(h.uri) as hv:
        state = loader.load_against([str(h.workdir)], store.resources())
        journal_file = _journal(tmp_path / "state", store)
        request = reconcile.Pass(options=execute.Options(shutdown_timeout=3))
        with pytest.raises(errors.StoreError):
            reconcile.Reconciler(store, hv).apply(lambda _records: state, request, record_goes_down)
        kept = [json.loads(line) for line in journal_file.read_text().splitlines()]
    assert len(first) == 1
    # Done in libvirt, and the outcomes that ended after the first kept on disk meanwhile.
    assert h.state("old") == libvirt.VIR_DOMAIN_SHUTOFF
    assert all(h.state(vm) == libvirt.VIR_DOMAIN_RUNNING for vm in NEW)
    kept_reasons = {
        (e["name"], e["reason"]) for line in kept if line["op"] == "queued" for e in line["events"]
    }
    during = {("old", "Stopped"), *((vm, "Created") for vm in NEW)}
    during -= {(first[0].name.removeprefix(h.prefix), r) for r in ("Stopped", "Created")}
    assert len(during) == len(NEW)  # three changes ended in the outage
    assert {(h.name(short), reason) for short, reason in during} <= kept_reasons

    private_postgres.start()
    assert h.apply().exit_code == 0  # the next pass writes what the journal kept

    with h.store() as store:
        outage = [r for r in store.runs() if r.result == "aborted"]
        assert len(outage) == 1  # the pass the outage broke, closed by the next one
        run_id = outage[0].id
    stopped = [e for e in _events(h, "old") if e.reason == "Stopped"]
    assert len(stopped) == 1 and stopped[0].run_id == run_id
    assert stopped[0].message.startswith(f"virtualmachine/{h.name('old')} ")
    assert stopped[0].uid is not None  # tied to the VM's record, not only its name
    for vm in NEW:
        reasons = {e.reason: e for e in _events(h, vm)}
        assert {"Creating", "Created", "Started"} <= set(reasons), (vm, sorted(reasons))
        assert reasons["Created"].run_id == run_id
    assert journal_file.read_text() == ""  # all of it is in the record now


def _apply_argv(h: Harness) -> list[str]:
    return [
        sys.executable,
        "-m",
        "reconciler",
        "apply",
        "-f",
        str(h.workdir),
        "--shutdown-timeout",
        "1",
    ]


@pytest.mark.timing  # killed at a point in its pass: the parallel workers' load moves it
@pytest.mark.parametrize("next_on", ["same-host", "other-host"])
def test_a_killed_apply_leaves_intents_that_the_next_apply_closes_with_what_it_observes(
    h: Harness, tmp_path: Path, next_on: str
) -> None:
    """``other-host``: the next pass has a state directory of its own, as a standby
    daemon on another host has, so it finds the intents in the record only."""
    vms = [f"vm{i}" for i in range(6)]
    h.write(h.pool(), h.network(), h.template(), *(h.vm(vm) for vm in vms))
    state = tmp_path / "state"
    env = {
        **os.environ,
        "INFINIBAY_DATABASE_URL": h.db_url,
        "INFINIBAY_LIBVIRT_URI": h.uri,
        "XDG_STATE_HOME": str(state),
    }
    process = subprocess.Popen(
        _apply_argv(h), env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    started = time.monotonic()
    try:
        while sum(1 for d in h.conn.listAllDomains() if d.name().startswith(h.prefix)) < 3:
            assert process.poll() is None, "the apply finished before the kill point"
            assert time.monotonic() - started < 120, "the kill point was never reached"
            time.sleep(0.01)
        process.send_signal(signal.SIGKILL)
    finally:
        process.wait(timeout=30)

    with h.store() as store:
        journal_file = _journal(state, store)
        left = journal.Journal(journal_file).open_intents
        intents = {e.key.name for e in store.events() if e.reason == "Creating"}
        created = {e.key.name for e in store.events() if e.reason == "Created"}
    assert left, "the killed pass left no open intent"
    assert {h.name(vm) for vm in vms} <= intents  # written before the first libvirt call
    assert not {h.name(vm) for vm in vms} <= created  # some outcomes were never recorded

    # libvirtd finishes a start the killed client asked for (a domain starts paused, then
    # runs): let it, so the next pass does not race it.
    deadline = time.monotonic() + 30
    while any(
        d.state()[0] == libvirt.VIR_DOMAIN_PAUSED
        for d in h.conn.listAllDomains()
        if d.name().startswith(h.prefix)
    ):
        assert time.monotonic() < deadline, "a domain stayed paused after the kill"
        time.sleep(0.1)
    if next_on == "other-host":
        env["XDG_STATE_HOME"] = str(tmp_path / "elsewhere")
    done = subprocess.run(
        _apply_argv(h), env=env, capture_output=True, text=True, timeout=300, check=False
    )
    assert done.returncode == 0, done.stdout + done.stderr

    closing = {
        e.key.name: e
        for vm in vms
        for e in _events(h, vm)
        if e.reason == journal.INTERRUPTED or journal.OBSERVED in e.message
    }
    for intent in left:  # each closed, by the next pass, with what it saw
        if intent.key.kind == "VirtualMachine":
            event = closing[intent.key.name]
            assert event.reason in {"Created", journal.INTERRUPTED}
            assert event.run_id == intent.run_id  # the killed pass's run
    # The last domain defined had not been started when the pass was killed: seen created.
    assert any(e.reason == "Created" for e in closing.values())
    for vm in vms:
        assert "Created" in {e.reason for e in _events(h, vm)}
        assert h.state(vm) == libvirt.VIR_DOMAIN_RUNNING
    if next_on == "same-host":
        assert journal.Journal(journal_file).open_intents == []
        assert journal_file.read_text() == ""


def test_a_daemon_records_a_stop_it_finished_while_postgres_was_down(
    on_private_postgres: Harness, private_postgres: database.PostgresServer, tmp_path: Path
) -> None:
    """The daemon as a real process: the record goes away while it waits out a shutdown."""
    h = on_private_postgres
    base = [h.pool(), h.network(), h.template()]
    h.write(*base, h.vm("web"))
    log = tmp_path / "daemon.log"
    daemon = test_daemon.Daemon(
        h.db_url, h.uri, log, "--source", str(h.workdir), "--shutdown-timeout", "8s"
    )
    try:
        test_daemon.until(
            lambda: test_daemon.running(h, "web") and daemon.readyz()["ready"],
            120,
            "the VM runs and the daemon is ready",
            daemon,
        )
        h.write(*base, h.vm("web", powerState="Stopped"))
        test_daemon.until(
            lambda: "Stopping" in {e.reason for e in _events(h, "web")},
            30,
            "the daemon is stopping the VM",
            daemon,
        )
        private_postgres.stop("fast")  # the VM is still waiting out its ACPI shutdown
        test_daemon.until(
            lambda: h.state("web") == libvirt.VIR_DOMAIN_SHUTOFF,
            30,
            "the VM is forced off during the outage",
            daemon,
        )
        private_postgres.start()
        stopped = test_daemon.until(
            lambda: [e for e in _events(h, "web") if e.reason == "Stopped"],
            90,
            "the Stopped event reaches the record after the outage",
            daemon,
        )
    finally:
        daemon.terminate(timeout=60)
    assert len(stopped) == 1
    assert stopped[0].message == f"virtualmachine/{h.name('web')} forced off after 8s"
    assert stopped[0].uid is not None
    with h.store() as store:
        runs: dict[int | None, record.RunRecord] = {r.id: r for r in store.runs()}
    assert runs[stopped[0].run_id].trigger is record.Trigger.WATCH  # the pass that did it
