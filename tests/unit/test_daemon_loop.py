"""One daemon pass, on the in-memory fake hypervisor and a real (in-memory SQLite) record.

What is proved here is the loop's own logic — the last good revision stays
in force, failures are retried per resource with backoff, success clears it;
the integration suite proves the same against the real libvirtd.
"""

from __future__ import annotations

import logging
from collections.abc import Collection, Iterator
from pathlib import Path

import pytest

from reconciler import errors
from reconciler.daemon import config, loop, metrics, queue, sources
from reconciler.manifests import loader
from reconciler.models import desired, kinds, observed, record
from reconciler.store import store as store_module
from tests.unit import fakes

MANIFESTS = """apiVersion: infinibay.io/v1alpha1
kind: StoragePool
metadata: {name: p}
spec: {path: /fake/pool}
---
apiVersion: infinibay.io/v1alpha1
kind: Network
metadata: {name: n}
spec: {mode: isolated, bridge: ibfake0}
---
apiVersion: infinibay.io/v1alpha1
kind: Template
metadata: {name: t}
spec:
  cpus: 1
  memory: 64MiB
  disks: [{name: root, size: 16MiB, pool: p}]
  networks: [{network: n}]
"""
VM = """---
apiVersion: infinibay.io/v1alpha1
kind: VirtualMachine
metadata: {{name: {name}}}
spec: {{template: t, cpus: {cpus}}}
"""


class Harness:
    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.store = store_module.Store.open("sqlite://")
        self.hv = fakes.FakeHypervisor()
        self.queue = queue.WorkQueue()
        self.backoff = queue.Backoff(rng=lambda low, high: high)
        self.metrics = metrics.Metrics(self.queue.depth)
        self.source = sources.DirectorySource(str(directory))
        cfg = config.Config(source=str(directory), shutdown_timeout=0)
        self.loop = loop.Loop(
            cfg, self.store, self.hv, self.source, self.queue, self.backoff, self.metrics
        )

    def write(self, text: str) -> None:
        (self.directory / "all.yaml").write_text(text)

    def run(self, trigger: record.Trigger = record.Trigger.WATCH) -> None:
        self.loop.process([queue.Item(loop.ALL, trigger)])

    def source_events(self) -> list[record.EventRecord]:
        return self.store.events(record.ResourceKey(loop.SOURCE_KIND, self.source.name))


@pytest.fixture
def h(tmp_path: Path) -> Iterator[Harness]:
    harness = Harness(tmp_path)
    try:
        yield harness
    finally:
        harness.store.close()


def test_a_pass_applies_the_source_and_records_its_revision(h: Harness) -> None:
    h.write(MANIFESTS + VM.format(name="a", cpus=1))
    h.run()
    assert h.hv.domains["a"].power is kinds.PowerState.RUNNING
    run = h.store.last_run()
    assert run is not None and run.trigger is record.Trigger.WATCH
    assert run.revision == h.source.checkout().revision
    last = h.loop.last_pass
    assert last is not None and last.ok and last.run_id == run.id
    assert h.loop.source_report.applied == run.revision


def test_the_first_pass_to_load_a_new_revision_records_the_source_as_its_trigger(
    h: Harness,
) -> None:
    """A libvirt event's pass that starts just before the watcher's applies the new
    revision itself: its run names the source change, not the libvirt event."""
    h.write(MANIFESTS + VM.format(name="a", cpus=1))
    h.run()
    h.write(MANIFESTS + VM.format(name="a", cpus=2))
    new = h.source.checkout().revision
    h.run(record.Trigger.LIBVIRT_EVENT)
    assert h.hv.domains["a"].shape.cpus == 2
    applied = h.store.last_run()
    assert applied is not None and applied.revision == new
    assert applied.trigger is record.Trigger.WATCH
    last = h.loop.last_pass
    assert last is not None and last.trigger is record.Trigger.WATCH
    h.run(record.Trigger.LIBVIRT_EVENT)  # the same revision again: what woke it
    h.write("kind: [broken")
    h.run(record.Trigger.RESYNC)  # refused: the revision in force is not new either
    later = [r for r in h.store.runs() if r.id > applied.id]  # newest first
    assert [(r.trigger, r.revision) for r in later] == [
        (record.Trigger.RESYNC, new),
        (record.Trigger.LIBVIRT_EVENT, new),
    ]
    exposition = h.metrics.exposition().decode()
    assert 'infinibay_reconcile_runs_total{result="succeeded",trigger="watch"} 2.0' in exposition


def test_an_invalid_revision_is_not_applied_and_the_last_good_one_stays_in_force(
    h: Harness,
) -> None:
    h.write(MANIFESTS + VM.format(name="a", cpus=1))
    h.run()
    good = h.loop.source_report.applied
    assert good is not None
    h.write(MANIFESTS + VM.format(name="a", cpus="lots"))
    bad = h.source.checkout().revision
    assert bad is not None
    h.run()
    h.hv.domains["a"].power = kinds.PowerState.STOPPED  # drift while the source is broken
    h.run(record.Trigger.RESYNC)

    assert h.hv.domains["a"].power is kinds.PowerState.RUNNING  # healed with the good state
    report = h.loop.source_report
    assert (report.applied, report.refused) == (good, bad)
    assert report.errors and report.errors[0].startswith("all.yaml:")
    (event,) = h.source_events()
    assert event.type is record.EventType.WARNING and event.reason == "InvalidRevision"
    assert bad in event.message and "all.yaml:" in event.message and good in event.message
    assert event.count == 1  # a resync of the same bad revision does not repeat it
    assert h.store.last_run().revision == good  # type: ignore[union-attr]


def test_after_a_restart_the_record_supplies_the_last_good_state(tmp_path: Path) -> None:
    first = Harness(tmp_path)
    first.write(MANIFESTS + VM.format(name="a", cpus=1))
    first.run()
    good = first.loop.source_report.applied
    second = loop.Loop(
        config.Config(source=str(tmp_path), shutdown_timeout=0),
        first.store,
        first.hv,
        first.source,
        first.queue,
        first.backoff,
        first.metrics,
    )
    first.write("kind: [broken")
    first.hv.domains["a"].power = kinds.PowerState.STOPPED
    second.process([queue.Item(loop.ALL, record.Trigger.RESYNC)])
    assert first.hv.domains["a"].power is kinds.PowerState.RUNNING
    assert second.source_report.applied == good
    first.store.close()


def test_a_failing_vm_is_retried_with_backoff_and_never_holds_up_the_others(h: Harness) -> None:
    h.write(MANIFESTS + VM.format(name="bad", cpus=1) + VM.format(name="good", cpus=1))
    h.hv.fail[("start_domain", "bad")] = errors.HypervisorError("start", "domain bad", "boom")
    h.run()
    assert h.hv.domains["good"].power is kinds.PowerState.RUNNING
    assert h.queue.delayed() == {"virtualmachine/bad": pytest.approx(1.0, abs=0.1)}
    assert h.backoff.failures("virtualmachine/bad") == 1

    h.run(record.Trigger.RESYNC)  # the retry fails again: the delay doubles
    assert h.queue.delayed()["virtualmachine/bad"] == pytest.approx(2.0, abs=0.1)

    del h.hv.fail[("start_domain", "bad")]
    h.run(record.Trigger.RESYNC)
    assert h.hv.domains["bad"].power is kinds.PowerState.RUNNING
    assert h.backoff.retrying() == []
    assert h.queue.delayed() == {}


def test_a_pass_that_cannot_run_backs_off_the_whole_pass(h: Harness) -> None:
    h.write(MANIFESTS + VM.format(name="a", cpus=1))

    def broken(
        *,
        refresh: Collection[str] = (),
        domains: Collection[str] | None = None,
        volumes: Collection[str] | None = None,
    ) -> observed.World:
        raise errors.HypervisorError("observe", "qemu:///system", "connection reset")

    h.hv.observe = broken  # type: ignore[method-assign]
    h.run()
    last = h.loop.last_pass
    assert last is not None and not last.ok and "connection reset" in (last.error or "")
    assert h.queue.delayed() == {loop.ALL: pytest.approx(1.0, abs=0.1)}


def test_libvirt_events_concern_only_vms_the_daemon_manages(h: Harness) -> None:
    h.write(MANIFESTS + VM.format(name="a", cpus=1))
    h.run()
    assert h.loop.concerns("a")
    assert not h.loop.concerns("someone-elses-vm")


def test_a_libvirt_event_names_the_vm_of_an_annotated_domain(h: Harness) -> None:
    annotated = VM.format(name="a", cpus=1).replace(
        "metadata: {name: a}",
        "metadata: {name: a, annotations: {infinibay.io/libvirt-name: Win11}}",
    )
    h.write(MANIFESTS + annotated)
    h.run()
    assert "Win11" in h.hv.domains
    assert h.loop.concerns("Win11") and h.loop.vm_of("Win11") == "a"
    assert not h.loop.concerns("a")


def test_a_vm_that_keeps_dying_is_corrected_on_its_backoff_not_on_its_own_events(
    h: Harness,
) -> None:
    h.write(MANIFESTS + VM.format(name="a", cpus=1))
    h.run()
    key = "virtualmachine/a"
    for _ in range(loop.FLAP_LIMIT - 1):
        h.hv.domains["a"].power = kinds.PowerState.STOPPED  # the guest died again
        h.loop.process([queue.Item(key, record.Trigger.LIBVIRT_EVENT)])
        assert h.backoff.failures(key) == 0
    h.hv.domains["a"].power = kinds.PowerState.STOPPED
    h.loop.process([queue.Item(key, record.Trigger.LIBVIRT_EVENT)])
    assert h.hv.domains["a"].power is kinds.PowerState.RUNNING  # still corrected, but:
    assert h.backoff.failures(key) == 1  # its own events are ignored from now on
    assert h.queue.delayed() == {key: pytest.approx(1.0, abs=0.1)}
    h.run(record.Trigger.RESYNC)  # a quiet pass does not end it: only a quiet window does
    assert h.backoff.failures(key) == 1


@pytest.mark.parametrize(
    ("hostile", "located"),
    [
        (b'kind: "a\x00b"\n', "hostile.yaml:1:9: ?/?: YAML error: unacceptable character #x0000"),
        (b"[" * 100_000, "hostile.yaml:1:65: ?/?: YAML error: nesting deeper than 64 levels"),
        (b"a: caf\xe9\n", "hostile.yaml:1:7: ?/?: not UTF-8 text"),
    ],
    ids=["nul", "deep", "utf8"],
)
def test_hostile_yaml_is_an_invalid_revision_and_the_loop_keeps_healing(
    h: Harness, hostile: bytes, located: str
) -> None:
    h.write(MANIFESTS + VM.format(name="a", cpus=1))
    h.run()
    (h.directory / "hostile.yaml").write_bytes(hostile)
    h.run()
    h.hv.domains["a"].power = kinds.PowerState.STOPPED
    h.run(record.Trigger.RESYNC)

    assert h.hv.domains["a"].power is kinds.PowerState.RUNNING
    assert h.loop.source_report.errors[0].startswith(located)
    (event,) = h.source_events()
    assert event.reason == "InvalidRevision" and located in event.message


def test_a_symlinked_secret_in_the_source_is_refused_and_never_reaches_an_event(
    h: Harness, tmp_path_factory: pytest.TempPathFactory
) -> None:
    secret = tmp_path_factory.mktemp("outside") / "shadow"
    secret.write_text("root:$6$Stand-In-Shadow-Hash:19000::\nkind: [root:$6$Stand-In\n")
    h.write(MANIFESTS + VM.format(name="a", cpus=1))
    (h.directory / "shadow.yaml").symlink_to(secret)
    h.run()

    assert "a" not in h.hv.domains
    assert list(h.loop.source_report.errors) == [
        f"shadow.yaml:1:1: ?/?: a symlink leading outside the source root {h.directory}; not read"
    ]
    (event,) = h.source_events()
    assert "Stand-In" not in event.message and "shadow.yaml:1:1" in event.message


def test_an_unexpected_exception_fails_the_pass_with_its_traceback_and_the_next_one_runs(
    h: Harness, caplog: pytest.LogCaptureFixture
) -> None:
    h.write(MANIFESTS + VM.format(name="a", cpus=1))
    observe = h.hv.observe

    def broken(
        *,
        refresh: Collection[str] = (),
        domains: Collection[str] | None = None,
        volumes: Collection[str] | None = None,
    ) -> observed.World:
        raise RuntimeError("a bug in the adapter")

    h.hv.observe = broken  # type: ignore[method-assign]
    with caplog.at_level(logging.ERROR, logger="reconciler.daemon.loop"):
        h.run()  # does not raise: the runner thread would die of it
    (logged,) = [r for r in caplog.records if r.getMessage() == "pass failed unexpectedly"]
    assert logged.exc_info is not None and logged.exc_info[0] is RuntimeError
    last = h.loop.last_pass
    assert last is not None and not last.ok
    assert last.error == "unexpected RuntimeError (the daemon's log has the traceback)"
    exposition = h.metrics.exposition().decode()
    assert 'infinibay_unexpected_errors_total{type="RuntimeError"} 1.0' in exposition
    assert 'infinibay_reconcile_runs_total{result="error",trigger="watch"} 1.0' in exposition
    assert h.queue.delayed() == {loop.ALL: pytest.approx(1.0, abs=0.1)}
    assert h.backoff.failures(loop.ALL) == 1

    h.hv.observe = observe  # type: ignore[method-assign]
    h.run(record.Trigger.RESYNC)  # the retry
    assert h.hv.domains["a"].power is kinds.PowerState.RUNNING
    last = h.loop.last_pass
    assert last is not None and last.ok
    assert h.backoff.failures(loop.ALL) == 0


def test_a_loader_bug_is_refused_like_an_invalid_revision_and_counted(
    h: Harness, monkeypatch: pytest.MonkeyPatch
) -> None:
    h.write(MANIFESTS + VM.format(name="a", cpus=1))
    h.run()
    good = h.loop.source_report.applied
    h.write(MANIFESTS + VM.format(name="a", cpus=2))

    def broken(*_args: object, **_kwargs: object) -> None:
        raise KeyError("secret: hunter2")

    monkeypatch.setattr(loader, "load_against", broken)
    h.run()
    report = h.loop.source_report
    assert report.applied == good and report.refused == h.source.checkout().revision
    assert report.errors == (
        "the manifests could not be loaded: unexpected KeyError "
        "(the daemon's log has the traceback)",
    )
    (event,) = h.source_events()
    assert event.reason == "InvalidRevision" and "hunter2" not in event.message
    exposition = h.metrics.exposition().decode()
    assert 'infinibay_unexpected_errors_total{type="KeyError"} 1.0' in exposition
    last = h.loop.last_pass
    assert last is not None and last.ok and last.revision == good  # the good state, applied


def test_a_pass_first_reopens_libvirt_and_fails_while_it_stays_away(h: Harness) -> None:
    h.write(MANIFESTS + VM.format(name="a", cpus=1))
    reopened: list[bool] = []

    def away() -> None:
        reopened.append(False)
        raise errors.HypervisorError("reconnect to", "qemu:///system", "no such file")

    h.hv.ensure_alive = away  # type: ignore[method-assign]
    h.run()
    assert reopened == [False] and "a" not in h.hv.domains
    last = h.loop.last_pass
    assert last is not None and not last.ok and "reconnect to" in (last.error or "")
    assert h.queue.delayed() == {loop.ALL: pytest.approx(1.0, abs=0.1)}
    assert h.loop.record_outage.since is None  # libvirt's outage, not the record's

    h.hv.ensure_alive = lambda: reopened.append(True)  # type: ignore[method-assign]
    h.run(record.Trigger.RESYNC)
    assert reopened == [False, True]
    assert h.hv.domains["a"].power is kinds.PowerState.RUNNING


def test_a_record_outage_is_dated_from_the_first_failed_pass_and_ends_with_a_good_one(
    h: Harness,
) -> None:
    h.write(MANIFESTS + VM.format(name="a", cpus=1))
    resources = h.store.resources

    def unreachable(
        kind: str | None = None,
        *,
        include_deleted: bool = False,
        vms: Collection[str] | None = None,
    ) -> list[record.ResourceRecord]:
        raise errors.StoreError("cannot reach the record: connection refused")

    h.store.resources = unreachable  # type: ignore[method-assign]
    h.run()
    since = h.loop.record_outage.since
    assert since is not None
    h.run(record.Trigger.RESYNC)
    assert h.loop.record_outage.since == since  # still the first failure

    h.store.resources = resources  # type: ignore[method-assign]
    h.run(record.Trigger.RESYNC)
    assert h.loop.record_outage.since is None


def _progress(h: Harness, name: str) -> dict[str, tuple[str, str]]:
    """VM ``name``'s ``Stalled``/``Reconciling`` conditions (present only while True)."""
    rec = h.store.get(record.ResourceKey("VirtualMachine", name))
    assert rec is not None
    return {
        c["type"]: (c["status"], c["reason"])
        for c in rec.status["conditions"]
        if c["type"] in ("Stalled", "Reconciling")
    }


def test_a_permanent_libvirt_error_stalls_the_vm_and_is_not_retried(h: Harness) -> None:
    h.write(MANIFESTS + VM.format(name="bad", cpus=1) + VM.format(name="good", cpus=1))
    h.hv.fail[("define_domain", "bad")] = errors.HypervisorError(
        "define", "domain bad", "XML error: bad value", retryable=False
    )
    h.run()

    assert "bad" not in h.hv.domains
    assert h.queue.delayed() == {}  # no retry scheduled: the same spec fails the same way
    assert h.backoff.failures("virtualmachine/bad") == 0
    assert _progress(h, "bad") == {"Stalled": ("True", "InvalidConfiguration")}
    assert _progress(h, "good") == {}


def test_a_transient_error_backs_off_reconciling_and_recovery_clears_both(h: Harness) -> None:
    h.write(MANIFESTS + VM.format(name="bad", cpus=1))
    h.hv.fail[("start_domain", "bad")] = errors.HypervisorError(
        "start", "domain bad", "cannot connect to the monitor"
    )
    h.run()
    assert h.queue.delayed() == {"virtualmachine/bad": pytest.approx(1.0, abs=0.1)}
    assert _progress(h, "bad") == {"Reconciling": ("True", "ApplyFailed")}

    del h.hv.fail[("start_domain", "bad")]
    h.run(record.Trigger.RESYNC)
    assert h.hv.domains["bad"].power is kinds.PowerState.RUNNING
    assert h.queue.delayed() == {}
    assert _progress(h, "bad") == {}  # converged: neither condition


IMAGED_VM = """---
apiVersion: infinibay.io/v1alpha1
kind: StoragePool
metadata: {{name: img}}
spec: {{path: /var/lib/infinibay/images/fake, images: true}}
---
apiVersion: infinibay.io/v1alpha1
kind: VirtualMachine
metadata: {{name: {name}}}
spec:
  template: t
  disks: [{{name: root, size: 16MiB, pool: p{image}}}]
"""


def test_a_refused_data_loss_change_stalls_with_reason_data_loss_refused(h: Harness) -> None:
    h.hv.images = {"golden.qcow2": 1 << 20}
    h.write(MANIFESTS + IMAGED_VM.format(name="a", image=""))
    h.run()
    assert _progress(h, "a") == {}

    h.write(MANIFESTS + IMAGED_VM.format(name="a", image=", image: golden.qcow2, imagePool: img"))
    h.run()

    last = h.loop.last_pass
    assert last is not None and last.failed == ("virtualmachine/a",)
    assert h.queue.delayed() == {}  # refused, not retried
    assert _progress(h, "a") == {"Stalled": ("True", "DataLossRefused")}


def test_a_pass_refused_outright_is_not_retried(tmp_path: Path) -> None:
    h = Harness(tmp_path)
    h.loop.cfg = config.Config(source=str(tmp_path), shutdown_timeout=0, prune=True)
    h.write("")  # an empty desired state with prune: refused, retrying cannot help
    h.run()
    last = h.loop.last_pass
    assert last is not None and not last.ok and "--allow-empty" in (last.error or "")
    assert h.queue.delayed() == {}
    assert h.backoff.retrying() == []
    h.store.close()


def test_a_pass_that_finds_the_writer_lock_taken_is_requeued_without_growing_backoff(
    h: Harness,
) -> None:
    h.write(MANIFESTS + VM.format(name="a", cpus=1))
    observe = h.hv.observe

    def locked(**_kwargs: object) -> None:
        raise errors.LockTimeout("the writer lock is held by pid 4242 on host-b")

    h.hv.observe = locked  # type: ignore[method-assign,assignment]
    h.run()
    h.run(record.Trigger.RESYNC)

    assert h.queue.delayed() == {loop.ALL: pytest.approx(5.0, abs=0.1)}
    assert h.backoff.failures(loop.ALL) == 0
    h.hv.observe = observe  # type: ignore[method-assign]
    h.run(record.Trigger.RESYNC)
    assert h.hv.domains["a"].power is kinds.PowerState.RUNNING


def test_a_source_written_to_while_it_is_read_is_read_again_under_its_new_revision(
    h: Harness,
) -> None:
    """The revision is a hash of the files taken before they are read: a write in
    between gave the new state under the old revision, so the run named the wrong cause."""
    h.write(MANIFESTS + VM.format(name="a", cpus=1))
    h.run()
    load = h.loop._load

    def written_meanwhile(checkout: sources.Checkout) -> desired.DesiredState:
        if not getattr(written_meanwhile, "done", False):
            written_meanwhile.done = True  # type: ignore[attr-defined]
            h.write(MANIFESTS + VM.format(name="a", cpus=2))
        return load(checkout)

    h.loop._load = written_meanwhile  # type: ignore[method-assign]
    h.run(record.Trigger.LIBVIRT_EVENT)

    assert h.hv.domains["a"].shape.cpus == 2
    applied = h.store.last_run()
    assert applied is not None and applied.revision == h.source.checkout().revision
    assert applied.trigger is record.Trigger.WATCH


def test_a_directory_checkout_knows_when_it_no_longer_holds_its_revision(h: Harness) -> None:
    h.write(MANIFESTS)
    checkout = h.source.checkout()
    assert h.source.holds(checkout)
    h.write(MANIFESTS + VM.format(name="a", cpus=1))
    assert not h.source.holds(checkout)


def _power(h: Harness, name: str) -> kinds.PowerState:
    return h.hv.domains[name].power


def test_a_libvirt_event_after_a_good_pass_is_answered_by_a_pass_for_its_vm_alone(
    h: Harness,
) -> None:
    h.write(MANIFESTS + VM.format(name="a", cpus=1) + VM.format(name="b", cpus=1))
    event = [queue.Item("virtualmachine/a", record.Trigger.LIBVIRT_EVENT)]
    h.loop.process(event)  # the first pass of a process is a full one, whatever woke it
    assert h.hv.observed_domains == [None, None]
    for name in ("a", "b"):
        h.hv.domains[name].power, h.hv.domains[name].live = kinds.PowerState.STOPPED, None
    h.hv.observed_domains.clear()

    h.loop.process(event)

    assert h.hv.observed_domains == [frozenset({"a"}), frozenset({"a"})]  # plan, status
    assert _power(h, "a") is kinds.PowerState.RUNNING
    assert _power(h, "b") is kinds.PowerState.STOPPED  # no event for it yet
    last = h.loop.last_pass
    assert last is not None and last.ok
    h.hv.observed_domains.clear()
    h.run(record.Trigger.RESYNC)  # the safety net: every domain, and b heals
    assert h.hv.observed_domains == [None, None]
    assert _power(h, "b") is kinds.PowerState.RUNNING


def test_a_libvirt_event_in_a_revision_of_more_than_vms_or_after_a_failed_pass_plans_everything(
    h: Harness,
) -> None:
    h.write(MANIFESTS + VM.format(name="a", cpus=1))
    h.run()
    event = [queue.Item("virtualmachine/a", record.Trigger.LIBVIRT_EVENT)]
    # A network changed too, not yet seen by the watcher: what that means for the VMs
    # is for a full pass to find.
    h.write(MANIFESTS.replace("ibfake0", "ibfake1") + VM.format(name="a", cpus=2))
    h.hv.observed_domains.clear()
    h.loop.process(event)
    assert h.hv.observed_domains[0] is None and h.hv.domains["a"].shape.cpus == 2

    observe = h.hv.observe

    def broken(
        *,
        refresh: Collection[str] = (),
        domains: Collection[str] | None = None,
        volumes: Collection[str] | None = None,
    ) -> observed.World:
        raise errors.HypervisorError("observe", "qemu:///system", "connection reset")

    h.hv.observe = broken  # type: ignore[method-assign]
    h.run()
    h.hv.observe = observe  # type: ignore[method-assign]
    h.hv.observed_domains.clear()
    h.loop.process(event)
    assert h.hv.observed_domains[0] is None  # after a failed pass: everything


def test_after_taking_the_leadership_the_first_pass_is_a_full_one(h: Harness) -> None:
    h.write(MANIFESTS + VM.format(name="a", cpus=1))
    h.run()
    event = [queue.Item("virtualmachine/a", record.Trigger.LIBVIRT_EVENT)]
    h.loop.widen()  # what the daemon does when it becomes the leader
    h.hv.observed_domains.clear()
    h.loop.process(event)
    h.loop.process(event)
    assert h.hv.observed_domains == [None, None, frozenset({"a"}), frozenset({"a"})]


def _scope(h: Harness) -> tuple[str, ...] | None:
    last = h.loop.last_pass
    assert last is not None and last.ok and last.run_id is not None
    run = h.store.last_run()
    assert run is not None and run.id == last.run_id
    return run.scope


def test_a_new_revision_is_planned_for_the_vms_it_changed_and_stamps_the_rest(
    h: Harness,
) -> None:
    vms = {name: VM.format(name=name, cpus=1) for name in ("a", "b", "c")}
    h.write(MANIFESTS + "".join(vms.values()))
    h.run()
    first = h.loop.source_report.applied
    assert _scope(h) is None  # the first pass of a process is a full one

    vms["b"] = VM.format(name="b", cpus=2)
    h.write(MANIFESTS + "".join(vms.values()))
    h.hv.observed_domains.clear()
    h.run()
    revision = h.loop.source_report.applied
    assert revision != first
    assert h.hv.observed_domains[0] == frozenset({"b"})  # b's domain alone was read
    assert _scope(h) == ("virtualmachine/b",)
    assert h.hv.domains["b"].shape.cpus == 2 and h.hv.domains["a"].shape.cpus == 1
    # The VMs it carried unchanged, and the pool, network and template, name it too.
    assert {r.source_revision for r in h.store.resources()} == {revision}
    assert [r.generation for r in h.store.resources("VirtualMachine")] == [1, 2, 1]

    # A template's change reaches every VM made from it.
    shapes = {name: h.hv.domains[name].shape for name in vms}
    bigger = MANIFESTS.replace("memory: 64MiB", "memory: 128MiB")
    h.write(bigger + "".join(vms.values()))
    h.run()
    assert _scope(h) == ("virtualmachine/a", "virtualmachine/b", "virtualmachine/c")
    assert all(h.hv.domains[name].shape != shapes[name] for name in vms)

    # A VM added, then one dropped: each is its own pass.
    h.write(bigger + "".join(vms.values()) + VM.format(name="d", cpus=1))
    h.run()
    assert _scope(h) == ("virtualmachine/d",) and "d" in h.hv.domains

    # A pool's or network's change, and every resync, plans everything.
    h.write(MANIFESTS.replace("ibfake0", "ibfake1") + "".join(vms.values()))
    h.run()
    assert _scope(h) is None
    h.run(record.Trigger.RESYNC)
    assert _scope(h) is None


def test_a_revision_that_changes_no_document_is_a_pass_that_plans_no_vm(h: Harness) -> None:
    h.write(MANIFESTS + VM.format(name="a", cpus=1))
    h.run()
    h.write("# a comment\n" + MANIFESTS + VM.format(name="a", cpus=1))
    h.hv.observed_domains.clear()
    h.run()
    assert _scope(h) == () and h.hv.observed_domains[0] == frozenset()
    revision = h.loop.source_report.applied
    assert {r.source_revision for r in h.store.resources()} == {revision}


def test_a_source_event_without_a_new_revision_plans_no_vm(h: Harness) -> None:
    h.write(MANIFESTS + VM.format(name="a", cpus=1))
    h.run()
    h.hv.observed_domains.clear()
    h.run()  # a file touched, or a second event for the same write
    assert _scope(h) == () and h.hv.observed_domains[0] == frozenset()
    h.run(record.Trigger.RESYNC)
    assert _scope(h) is None
