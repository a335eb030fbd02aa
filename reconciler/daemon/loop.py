"""One reconcile pass of the daemon, and what it learns for the next.

Level-based (controller-runtime): whatever woke us — a commit, a file, a
libvirt event, the resync timer, a retry — a pass re-reads the source and
hands the desired state to the engine, which re-observes libvirt and orders
and parallelises the changes itself. The queue's keys decide *when* a pass
runs: ``all`` for triggers that concern everything, a resource key
(``virtualmachine/web-1``) for a libvirt event or a retry of that resource.

After a good pass, they also decide what the next one reads: a pass for
libvirt events about VMs, or for a new revision that changed only VMs (and
templates), is narrowed to those VMs (:func:`changed_vms`,
:func:`reconciler.engine.reconcile.narrow`); the source's files are parsed
again only where their text changed (:class:`reconciler.manifests.loader.Cache`).
A resync, a retry, a failed pass before it or a new leadership makes a full pass.

Failures are sorted in one place, :func:`reconciler.engine.decision.decide`,
from the typed error each change ended with:

* *transient* (and *waiting*, a dependency that failed) — a change failed in a
  way the next attempt may not (libvirt unreachable, an error code we do not
  know): the resource is retried after its own backoff (1 s doubling to
  5 min, with jitter), cleared by the first pass in which it does not fail.
  Every pass still converges every other resource, so a failing VM never
  delays its neighbours;
* *terminal* — libvirt refused the definition itself (invalid XML, an
  unsupported setting), a conflict with an object we do not own, or a change
  that would destroy data without ``--allow-data-loss``: retrying the same
  spec cannot help, so it is not retried and its status says ``Stalled``;
  the next source change or resync tries again;
* *flapping* — a resource whose drift had to be corrected
  :data:`FLAP_LIMIT` times within :data:`FLAP_WINDOW` seconds (a guest that
  dies right after each start): its own libvirt events no longer wake the
  daemon; its corrections follow its backoff, like a crash-looping pod,
  until it stays put for a whole window;
* a pass that could not run at all (record or libvirt unreachable, lock held
  too long) backs off the key ``all``, decided the same way: a pass refused
  outright (``--prune`` of an empty desired state) is not retried.

The run of a pass records what woke it (the strongest of its keys' triggers,
:data:`reconciler.daemon.queue.PRIORITY`), except the first pass to load a new
source revision: that one records the source's trigger (``watch``, ``git``)
whatever woke it. The pass re-reads the source, so a libvirt event or a resync
that runs just after a change of the source, before the watcher's pass, applies
the new revision itself; recording it as ``libvirt-event`` would name the wrong
cause of its changes.

A source revision that does not validate is never applied: a ``Warning``
event ``InvalidRevision`` names the commit and the first error lines, and the
last good desired state stays in force — kept in memory, or after a restart
rebuilt from the record (:func:`reconciler.engine.recorded.desired_from_record`).
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import logging
import threading
import time
from collections.abc import Callable, Iterable
from typing import Any

from reconciler import errors
from reconciler.daemon import config as config_module
from reconciler.daemon import health, logs, metrics, queue, sources
from reconciler.engine import decision, execute, hosts, ports, reconcile, recorded
from reconciler.manifests import loader
from reconciler.models import access, desired, kinds, naming, record
from reconciler.store import store as store_module

__all__ = ["ALL", "FLAP_LIMIT", "FLAP_WINDOW", "SOURCE_KIND", "Loop", "PassReport", "SourceReport"]

ALL = "all"
_VM_KEY = f"{kinds.Kind.VIRTUAL_MACHINE.value.lower()}/"  # a VM's queue key, before its name
SOURCE_KIND = "Source"
FLAP_LIMIT = 3
FLAP_WINDOW = 60.0
_RELOADS = 3  # times a source written to while it is read is read again
_ERROR_LINES = 3
_log = logging.getLogger(__name__)
_State = desired.DesiredState  # (the name ``desired`` is a method of the loop's too)
_InForce = tuple[desired.DesiredState, str | None]  # a desired state, and its revision


@dataclasses.dataclass(frozen=True)
class PassReport:
    """How the last pass ended, for ``/readyz``."""

    finished_at: dt.datetime
    trigger: record.Trigger
    revision: str | None
    run_id: int | None
    ok: bool
    failed: tuple[str, ...] = ()
    error: str | None = None

    def as_json(self) -> dict[str, Any]:
        return {
            "finishedAt": self.finished_at.isoformat(),
            "trigger": self.trigger.value,
            "revision": self.revision,
            "runId": self.run_id,
            "ok": self.ok,
            "failed": list(self.failed),
            "error": self.error,
        }


@dataclasses.dataclass(frozen=True)
class SourceReport:
    """The source as the last pass saw it, for ``/readyz``."""

    name: str
    applied: str | None = None  # the revision in force (the last good one)
    refused: str | None = None  # the newest revision, when it failed validation
    errors: tuple[str, ...] = ()
    unavailable: str | None = None  # why the source could not be read

    def as_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "valid": self.refused is None and self.unavailable is None,
            "appliedRevision": self.applied,
            "refusedRevision": self.refused,
            "errors": list(self.errors),
            "unavailable": self.unavailable,
        }


def _corrected(outcome: execute.Outcome) -> bool:
    return outcome.ok and any(e.reason == "DriftCorrected" for e in outcome.events)


def _outcome_line(outcome: execute.Outcome) -> str:
    if outcome.ok:
        return f"{outcome.change.key} {', '.join(outcome.steps) or 'unchanged'}"
    return f"{outcome.change.key} failed: {outcome.error}"


class Loop:
    """Runs passes for a :class:`~reconciler.daemon.queue.WorkQueue` consumer."""

    def __init__(
        self,
        cfg: config_module.Config,
        store: store_module.Store,
        hv: ports.Hypervisor,
        source: sources.Source,
        work: queue.WorkQueue,
        backoff: queue.Backoff,
        gauges: metrics.Metrics,
        *,
        fleet: hosts.Hosts | None = None,
        shard: Callable[[], frozenset[str] | None] | None = None,
        holder: str | None = None,
    ) -> None:
        self.cfg = cfg
        self.store = store
        self.hv = hv
        # The declared hosts' connections, kept across passes (SPEC §10); and, for a
        # sharded daemon, the hosts its passes may act on, and who it is.
        self.fleet = fleet if fleet is not None else hosts.Hosts(hv)
        self.shard = shard
        self.holder = holder
        self.strategy = hosts.placement_strategy()
        self.source = source
        self.queue = work
        self.backoff = backoff
        self.metrics = gauges
        self.options = execute.Options(
            workers=cfg.workers,
            shutdown_timeout=cfg.shutdown_timeout,
            allow_data_loss=cfg.allow_data_loss,
        )
        self._good: tuple[desired.DesiredState, str | None] | None = None
        self._parsed = loader.Cache()  # what the last load of the source read
        self._guard = threading.Lock()
        self._vm_names: dict[str, str] = {}  # libvirt domain name -> VM
        self._corrections: dict[str, list[float]] = {}  # key -> monotonic times
        self._last_pass: PassReport | None = None
        self._widen = threading.Event()  # set: the next pass is a full one (see widen())
        self._source = SourceReport(source.name)
        self.record_outage = health.Outage()  # the record unreachable, as passes see it
        self._actor = store.actor or access.local_actor("daemon")  # of a revision by nobody

    # -- what the HTTP endpoints and the event filter read --------------------------

    @property
    def last_pass(self) -> PassReport | None:
        with self._guard:
            return self._last_pass

    @property
    def source_report(self) -> SourceReport:
        with self._guard:
            return self._source

    def concerns(self, domain: str) -> bool:
        """Whether a libvirt event about ``domain`` may need a pass (a VM we manage)."""
        return not domain or domain in self._vm_names

    def declared_hosts(self) -> dict[str, str]:
        """Host name -> URI of the hosts in force: the last good state's, else the record's."""
        good = self._good
        if good is not None:
            return self.fleet.of(good[0])
        return {
            r.key.name: str(r.spec.get("uri", ""))
            for r in self.store.resources(kinds.Kind.HOST.value)
            if r.deleted_at is None
        }

    def vm_of(self, domain: str) -> str:
        """The VM whose libvirt domain is named ``domain`` (its own name, or its annotation's)."""
        return self._vm_names.get(domain, domain)

    # -- the source ----------------------------------------------------------------

    def _load(self, checkout: sources.Checkout) -> desired.DesiredState:
        # References resolve to every kind but VMs; VMs matter for their MACs alone.
        records = self.store.resources(vms=frozenset())
        macs = loader.recorded_macs(self.store.vm_nics())
        try:
            return loader.load_against(
                [str(checkout.root)],
                records,
                revision=checkout.revision,
                cache=self._parsed,
                macs=macs,
            )
        except errors.InfinibayError:
            raise
        except Exception as exc:
            # The loader broke on this input (a bug): refused like invalid manifests, so
            # the last good revision stays in force instead of every pass failing.
            _log.exception(
                "loading revision %s failed unexpectedly",
                checkout.revision,
                extra={"revision": checkout.revision},
            )
            self.metrics.unexpected(type(exc).__name__)
            raise errors.ManifestError(
                [f"the manifests could not be loaded: {_unexpected(exc)}"]
            ) from exc

    def _warn(self, reason: str, message: str, revision: str | None) -> None:
        _log.warning(message, extra={"revision": revision})
        self.store.record_events(
            [
                record.NewEvent(
                    key=record.ResourceKey(SOURCE_KIND, self.source.name),
                    type=record.EventType.WARNING,
                    reason=reason,
                    message=message,
                    revision=revision,
                )
            ]
        )

    def _fallback(self) -> tuple[desired.DesiredState, str | None] | None:
        """The last good desired state: from memory, else as last applied in the record."""
        if self._good is not None:
            return self._good
        records = self.store.resources()
        if not records:
            return None
        newest = max(records, key=lambda r: r.updated_at)
        return recorded.desired_from_record(records), newest.source_revision

    def desired(self, reuse: bool = False) -> tuple[desired.DesiredState, str | None] | None:
        """The desired state this pass applies, and its revision; ``None``: nothing to apply.

        With ``reuse``, a revision already loaded is not parsed again: a pass for
        a libvirt event applies the state of the revision in force, which a full
        pass (every resync among them) has loaded and validated.
        """
        current = self.source_report
        self.store.actor = self._actor
        try:
            checkout = self.source.checkout()
            # Who made the revision is who acts, in the events and history it causes.
            self.store.actor = checkout.actor or self._actor
            good = self._good
            if reuse and good is not None and good[1] == checkout.revision:
                return good
        except errors.SourceError as exc:
            if current.unavailable != str(exc):
                self._warn("SourceUnavailable", f"{exc}; the last good revision stays", None)
            self._set_source(dataclasses.replace(current, unavailable=str(exc)))
            return self._fallback()
        try:
            state = self._load(checkout)
            for _again in range(_RELOADS):
                if self.source.holds(checkout):
                    break
                # Written to while it was read: the state must be of the revision it is
                # recorded under (a run names the revision and trigger that caused it).
                checkout = self.source.checkout()
                state = self._load(checkout)
        except errors.ManifestError as exc:
            lines = sources.relative_messages(exc.messages, checkout.base)
            good = self._fallback()
            if checkout.revision != current.refused:
                in_force = (good[1] if good else None) or "nothing"
                more = len(lines) - _ERROR_LINES
                self._warn(
                    "InvalidRevision",
                    f"revision {checkout.revision} of {self.source.name} is invalid and was "
                    f"not applied ({in_force} stays in force): "
                    + "; ".join(lines[:_ERROR_LINES])
                    + (f"; and {more} more" if more > 0 else ""),
                    checkout.revision,
                )
            self._set_source(
                dataclasses.replace(
                    current,
                    applied=good[1] if good else None,
                    refused=checkout.revision,
                    errors=tuple(lines[:_ERROR_LINES]),
                    unavailable=None,
                )
            )
            return good
        self._good = (state, checkout.revision)
        self._set_source(
            dataclasses.replace(
                current, applied=checkout.revision, refused=None, errors=(), unavailable=None
            )
        )
        return self._good

    def _set_source(self, report: SourceReport) -> None:
        with self._guard:
            self._source = report
        self.metrics.revision(report.applied, report.refused)

    # -- one pass ------------------------------------------------------------------

    def process(self, items: list[queue.Item]) -> None:
        """Run one pass for the due ``items`` and schedule what must be retried.

        Never raises: whatever goes wrong is a failed pass, retried with backoff.
        """
        trigger = max((i.trigger for i in items), key=lambda t: queue.PRIORITY.get(t, 0))
        keys = sorted(i.key for i in items)
        vms = self._vms_alone(items)
        started = time.monotonic()
        revision: str | None = None
        _log.debug("pass for %s (%s)", ", ".join(keys), trigger.value)
        try:
            self.hv.ensure_alive()
            before = self._good
            wanted = self.desired(reuse=vms is not None)
            if wanted is None:
                _log.info("nothing to apply yet: the source is unusable and the record empty")
                self._finish(PassReport(_now(), trigger, None, None, ok=True))
                return
            state, revision = wanted
            revised = wanted is self._good and (before is None or before[1] != revision)
            if revised:
                trigger = self._first_of_revision(trigger, revision)
                # A new revision: what it changed is planned, or everything.
                vms = self._revised(items, before, state)
            elif vms is None and wanted is self._good:
                # The source woke us, yet its revision is the one in force (a file
                # touched, a second event for one write): only what libvirt reported.
                vms = self._revised(items, before, state)
            if vms is not None:
                _log.debug("pass for %s alone", ", ".join(sorted(vms)) or "no VM")
            # Known before the pass, not only after it: a VM this pass creates and starts
            # may be stopped out of band before the pass ends, and that event must count.
            self._vm_names = {**self._vm_names, **_domains(state.vms.values())}
            with logs.bound(revision=revision):
                result = reconcile.Reconciler(
                    self.store,
                    self.hv,
                    hosts=self.fleet,
                    strategy=self.strategy,
                    shard=self.shard,
                    holder=self.holder,
                ).apply(
                    lambda _records: state,
                    reconcile.Pass(
                        prune=self.cfg.prune,
                        adopt=self.cfg.adopt,
                        trigger=trigger,
                        revision=revision,
                        options=self.options,
                        vms=vms,
                        revised=revised,
                    ),
                )
            self.record_outage.up()
            if vms is None and result.ok:
                self._widen.clear()
            self.backoff.forget(ALL)
            self.metrics.pass_done(trigger, result, time.monotonic() - started)
            self._account(result, revision, vms)
            if vms is None:  # a pass for a few VMs neither adds VMs nor removes any
                self._vm_names = {
                    **{
                        naming.libvirt_name(r.key.name, r.annotations): r.key.name
                        for r in self.store.resources(kinds.Kind.VIRTUAL_MACHINE.value)
                    },
                    **_domains(state.vms.values()),
                }
        except errors.InfinibayError as exc:
            if isinstance(exc, errors.StoreError) and not isinstance(
                exc, errors.LockTimeout | errors.RecordCorrupt
            ):
                self.record_outage.down()
            self._failed(trigger, revision, started, str(exc), decision.decide(exc))
            return
        except Exception as exc:
            # Not one of ours: a bug, or the process out of something (file descriptors,
            # memory). The traceback goes to the log; the daemon goes on.
            _log.exception("pass failed unexpectedly", extra={"revision": revision})
            self.metrics.unexpected(type(exc).__name__)
            self._failed(trigger, revision, started, _unexpected(exc), decision.decide(exc))
            return
        self._finish(
            PassReport(
                _now(),
                trigger,
                revision,
                result.run_id,
                ok=result.ok,
                failed=tuple(str(o.change.key) for o in result.failed),
            )
        )

    def _first_of_revision(self, trigger: record.Trigger, revision: str | None) -> record.Trigger:
        """The trigger of the first pass to load ``revision``: the source's, whatever woke it.

        The pass re-reads the source whatever woke it, so a libvirt event or a resync
        that runs just after a write or a commit, before the watcher's own pass, applies
        the new revision itself: its changes are that revision's, and the run says so.
        """
        stronger = max((trigger, self.source.trigger), key=lambda t: queue.PRIORITY.get(t, 0))
        if stronger is not trigger:
            _log.debug(
                "revision %s is new: a %s pass",
                revision,
                stronger.value,
                extra={"revision": revision},
            )
        return stronger

    def _failed(
        self,
        trigger: record.Trigger,
        revision: str | None,
        started: float,
        error: str,
        verdict: decision.Decision,
    ) -> None:
        """A pass that could not run (or broke off): back off the whole pass.

        Unless retrying cannot help (a refusal such as an empty desired state with
        prune): then the next source change or resync tries again.
        """
        self.metrics.pass_error(trigger, time.monotonic() - started)
        self.queue.forget(ALL)
        if isinstance(verdict, decision.Terminal):
            self.backoff.forget(ALL)
            _log.error(
                "pass failed: %s (%s: not retried)",
                error,
                verdict.reason,
                extra={"revision": revision},
            )
        elif isinstance(verdict, decision.Requeue):
            # Another reconciler's pass holds the lock: it ends soon, so no growing backoff.
            _log.warning(
                "pass not run: %s; trying again in %.1fs",
                error,
                verdict.after,
                extra={"revision": revision},
            )
            self.queue.add_after(ALL, verdict.after, record.Trigger.RESYNC)
        else:
            delay = self.backoff.next(ALL)
            _log.error(
                "pass failed: %s; retrying in %.1fs", error, delay, extra={"revision": revision}
            )
            self.queue.add_after(ALL, delay, record.Trigger.RESYNC)
        self._finish(PassReport(_now(), trigger, revision, None, ok=False, error=error))

    def widen(self) -> None:
        """Make the next pass a full one, whatever wakes it.

        For a daemon that has just taken the leadership: while it stood by,
        another may have died mid-pass, and only a full pass closes what that
        pass left open.
        """
        self._widen.set()

    def _vms_alone(self, items: list[queue.Item]) -> frozenset[str] | None:
        """The VMs a pass may be narrowed to: those of libvirt events, after a good pass.

        Only libvirt events about VMs, when the last pass converged in this
        process (so nothing is left half-done, and no pass of an earlier process
        has intents open), make a pass for those VMs alone; anything else, and
        every resync, is a full pass (:meth:`reconcile.Reconciler.apply` widens
        a narrowed pass that would act on more than its VMs).
        """
        last = self.last_pass
        if last is None or not last.ok or self._good is None or self._widen.is_set():
            return None
        if any(
            i.trigger is not record.Trigger.LIBVIRT_EVENT or not i.key.startswith(_VM_KEY)
            for i in items
        ):
            return None
        return frozenset(i.key.removeprefix(_VM_KEY) for i in items)

    def _revised(
        self,
        items: list[queue.Item],
        before: _InForce | None,
        state: _State,
    ) -> frozenset[str] | None:
        """The VMs a pass for a new revision may be narrowed to; ``None``: plan everything.

        Narrowed only after a good pass of this process (whose state is
        ``before``) and only for what the source and libvirt events asked: a
        resync or a retry is a full pass. The pass is then for the VMs whose
        documents the revision changed (:func:`changed_vms`) and those of the
        events.
        """
        last = self.last_pass
        if (
            before is None
            or last is None
            or not last.ok
            or self._widen.is_set()
            or not all(
                (i.key == ALL and i.trigger is self.source.trigger)
                or (i.trigger is record.Trigger.LIBVIRT_EVENT and i.key.startswith(_VM_KEY))
                for i in items
            )
        ):
            return None
        changed = changed_vms(before[0], state)
        if changed is None:
            return None
        return changed | {i.key.removeprefix(_VM_KEY) for i in items if i.key != ALL}

    def _account(
        self, result: reconcile.Result, revision: str | None, vms: frozenset[str] | None = None
    ) -> None:
        """Log each outcome; back off what failed transiently; clear what now succeeds.

        After a pass for ``vms`` alone, only their keys are cleared: the others were
        not tried.
        """
        tried = None if vms is None else {_VM_KEY + name for name in vms}
        failing: set[str] = set()
        now = time.monotonic()
        for key, times in list(self._corrections.items()):
            self._corrections[key] = [t for t in times if now - t < FLAP_WINDOW]
            if not self._corrections[key]:
                del self._corrections[key]
        for outcome in result.outcomes:
            key = str(outcome.change.key)
            extra = {"run_id": result.run_id, "resource": key, "revision": revision}
            if outcome.ok:
                _log.info(_outcome_line(outcome), extra=extra)
                if _corrected(outcome):
                    self._corrections.setdefault(key, []).append(now)
                    if len(self._corrections[key]) >= FLAP_LIMIT:
                        delay = self.backoff.next(key)
                        _log.warning(
                            "%s keeps drifting (%d corrections within %gs); "
                            "next correction in %.1fs at the earliest",
                            key,
                            len(self._corrections[key]),
                            FLAP_WINDOW,
                            delay,
                            extra=extra,
                        )
                        self.queue.forget(key)
                        self.queue.add_after(key, delay, record.Trigger.RESYNC)
                continue
            verdict = decision.decide(outcome)
            if isinstance(verdict, decision.Terminal):
                _log.error(
                    "%s (%s: not retried)", _outcome_line(outcome), verdict.reason, extra=extra
                )
                continue
            failing.add(key)
            delay = self.backoff.next(key)
            _log.warning("%s; retrying in %.1fs", _outcome_line(outcome), delay, extra=extra)
            # This pass was a retry of every pending key: the new delay replaces the old.
            self.queue.forget(key)
            self.queue.add_after(key, delay, record.Trigger.RESYNC)
        flapping = {k for k, times in self._corrections.items() if len(times) >= FLAP_LIMIT}
        for key in self.backoff.retrying():
            if key == ALL or key in failing or key in flapping:
                continue
            if tried is None or key in tried:
                self.backoff.forget(key)
                self.queue.forget(key)
        self.metrics.failing.set(len(failing))
        if result.outcomes or result.run_id is not None:
            _log.info(
                "pass %s: %d changed, %d failed",
                "converged" if result.ok else "failed",
                sum(1 for o in result.outcomes if o.ok),
                len(result.failed),
                extra={"run_id": result.run_id, "revision": revision},
            )

    def _finish(self, report: PassReport) -> None:
        with self._guard:
            self._last_pass = report


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def _unexpected(exc: BaseException) -> str:
    """An unexpected exception for reports and events: its type only.

    Its text may quote the input (a manifest's content), which the API must not
    serve; the traceback with the text is in the daemon's log.
    """
    return f"unexpected {type(exc).__name__} (the daemon's log has the traceback)"


def _same(old: desired.Loaded, new: desired.Loaded) -> bool:
    """Whether ``new`` declares what ``old`` did, from the same place (the revision aside)."""
    return (
        (old.manifest is new.manifest or old.manifest == new.manifest)
        and old.source.file == new.source.file
        and old.source.document == new.source.document
    )


def changed_vms(old: desired.DesiredState, new: desired.DesiredState) -> frozenset[str] | None:
    """The VMs whose documents ``new`` changed from ``old``; ``None``: it changed more.

    A VM is changed when it was added, removed, declared differently or
    elsewhere, when its merge came out differently, or when its template
    changed (a template's change reaches every VM made from it). A change of
    any other kind (a pool, a network, a policy, a department), or a template
    removed, needs a full pass: what it means for the VMs is the planner's to
    find, over all of them.
    """
    templates: set[str] = set()
    for kind in kinds.Kind:
        if kind is kinds.Kind.VIRTUAL_MACHINE:
            continue
        was, now = old.by_kind(kind), new.by_kind(kind)
        if was.keys() - now.keys() or (
            kind is not kinds.Kind.TEMPLATE and was.keys() != now.keys()
        ):
            return None
        for name, loaded in now.items():
            previous = was.get(name)
            if previous is not None and _same(previous, loaded):
                continue
            if kind is not kinds.Kind.TEMPLATE:
                return None
            templates.add(name)
    if old.virtio_win != new.virtio_win:
        return None
    changed = set(old.vms.keys() ^ new.vms.keys())
    for name, loaded in new.vms.items():
        previous = old.vms.get(name)
        if previous is None or name in changed:
            continue
        was_vm, now_vm = old.effective_vms.get(name), new.effective_vms.get(name)
        manifest = loaded.manifest
        if (
            not _same(previous, loaded)
            or not (was_vm is now_vm or was_vm == now_vm)
            or (isinstance(manifest, kinds.VirtualMachine) and manifest.spec.template in templates)
        ):
            changed.add(name)
    return frozenset(changed)


def _domains(vms: Iterable[desired.Loaded]) -> dict[str, str]:
    """Libvirt domain name -> VM, for the VMs ``vms``."""
    return {naming.libvirt_name(vm.name, vm.manifest.metadata.annotations): vm.name for vm in vms}
