"""The daemon process: wire source, queue, leadership, libvirt events and HTTP together.

Threads, and what each may do:

* **main** — leadership: claim it at start-up (a second SQLite daemon stops
  here), then poll every ``lease / 5`` seconds: a standby tries to take over,
  a leader checks that it still leads; each poll also checks that the
  components' threads still run. Signals are handled here.
* **runner** — the only thread that reconciles: takes every due key from the
  queue and runs one :meth:`~reconciler.daemon.loop.Loop.process` pass for
  them, while this daemon leads. Passes are serial on purpose: each one
  covers the whole desired state, and the engine already runs independent
  resources on ``--workers`` threads within it.
* **source watcher**, **resync timer**, **libvirt events** — only *add keys*
  to the queue; the queue de-duplicates, so a burst costs one pass.
* **http** — reads the record (through a store and engine of its own) and the
  loop's reports, and writes only when a token was last used; a bounded pool
  (:mod:`reconciler.daemon.http`), whose one feeder thread reads the record
  for the event streams.

None of them may stop silently. A pass cannot kill the runner (every
exception is a failed pass). If a thread dies anyway, or a component's
thread (lease heartbeat, http, libvirt events) is found dead, the daemon is unhealthy at
once — ``/healthz`` and ``/readyz`` answer 503 — then stops as on SIGTERM and
exits 1, so that systemd restarts it and a standby takes over meanwhile.
While libvirt is away the connection is reopened with backoff, by the next
pass or by the **libvirt reconnect** thread (:meth:`Daemon._keep_connected`),
and a full pass follows since events were missed; ``/healthz`` turns 503
only once libvirt or the record has been unreachable for longer than
``--unhealthy-after`` (:mod:`reconciler.daemon.health`).

Signals: SIGHUP queues a full pass now. SIGTERM and SIGINT stop the queue
(no new pass starts), let the pass in flight finish for up to
``--drain-timeout`` seconds — abandoning it after that is safe, the engine
is crash-safe by design — then resign the leadership, close everything and
return, so the command exits 0.
"""

from __future__ import annotations

import contextlib
import gc
import logging
import os
import pathlib
import signal
import socket
import threading
import types
from collections.abc import Callable, Iterator
from typing import Any

from reconciler import errors
from reconciler.daemon import config as config_module
from reconciler.daemon import console, health, http, leader, loop, metrics, queue, sources
from reconciler.engine import hosts
from reconciler.hypervisor import adapter
from reconciler.models import access, kinds, record
from reconciler.models import console as console_model
from reconciler.store import store as store_module

__all__ = ["Daemon", "make_source"]

_log = logging.getLogger(__name__)
RECONNECT_BASE = 0.5  # seconds between attempts to reopen libvirt, doubling up to:
RECONNECT_CAP = 2.0


def make_source(cfg: config_module.Config) -> sources.Source:
    if sources.is_git_url(cfg.source):
        return sources.GitSource(
            cfg.source,
            cfg.ref,
            cfg.path,
            interval=cfg.git_interval,
            cache_dir=cfg.cache_dir,
        )
    return sources.DirectorySource(cfg.source, cfg.path, debounce=cfg.debounce)


def _settle_memory(*, resync: bool) -> None:
    """Keep the cycle collector off the desired state and the caches between passes.

    What a daemon holds between passes (the manifests, their YAML nodes, the
    caches of the loader and the record) is long-lived, and at 5,000 VMs it is
    millions of objects: every full collection walked them all, some 0.3 s that
    landed inside whichever pass allocated enough to trigger it, a VM's
    narrowed pass included. So after each pass everything alive is frozen out of
    the collector's sight (:func:`gc.freeze`), and each resync, a full pass
    anyway, thaws and collects once, so that cyclic garbage is reclaimed at
    least once per ``--interval``; acyclic garbage goes by reference counting
    whenever it is dropped.
    """
    if resync:
        gc.unfreeze()
        gc.collect()
    gc.freeze()


class Daemon:
    def __init__(
        self,
        cfg: config_module.Config,
        *,
        database_url: str,
        libvirt_uri: str,
        lock_timeout: float = 60.0,
    ) -> None:
        self.cfg = cfg
        self.database_url = database_url
        self.libvirt_uri = libvirt_uri
        self.lock_timeout = lock_timeout
        self.stopping = threading.Event()
        self.queue = queue.WorkQueue()
        self.backoff = queue.Backoff()
        self.metrics = metrics.Metrics(self.queue.depth)
        self.health = health.Health(cfg.unhealthy_after)
        self._runner: threading.Thread | None = None
        self._components: list[tuple[str, Callable[[], bool]]] = []  # name, alive()
        self._followed: dict[str, adapter.LifecycleEvents] = {}  # other hosts' events, by URI

    # -- signals -------------------------------------------------------------------

    def stop(self) -> None:
        """Stop taking work; :meth:`run` drains, resigns and returns."""
        self.stopping.set()
        self.queue.shutdown()

    def resync(self) -> None:
        self.queue.add(loop.ALL, record.Trigger.RESYNC)

    @contextlib.contextmanager
    def _signals(self) -> Iterator[None]:
        def on_stop(signum: int, _frame: types.FrameType | None) -> None:
            _log.info("%s: finishing the pass in flight, then exiting", signal.Signals(signum).name)
            self.stop()

        def on_hup(_signum: int, _frame: types.FrameType | None) -> None:
            _log.info("SIGHUP: full reconcile now")
            self.resync()

        if threading.current_thread() is not threading.main_thread():
            yield  # embedded (tests): the caller stops the daemon itself
            return
        wanted: dict[signal.Signals, Callable[[int, types.FrameType | None], Any]] = {
            signal.SIGTERM: on_stop,
            signal.SIGINT: on_stop,
            signal.SIGHUP: on_hup,
        }
        previous = {signum: signal.signal(signum, handler) for signum, handler in wanted.items()}
        try:
            yield
        finally:
            for signum, handler in previous.items():
                signal.signal(signum, handler)

    # -- threads -------------------------------------------------------------------

    def _thread(self, name: str, target: Callable[[], None]) -> threading.Thread:
        """Start a thread the daemon depends on: if it ends before :meth:`stop`, the daemon does."""

        def supervised() -> None:
            try:
                target()
            except BaseException as exc:
                _log.exception("the %s thread died", name)
                self._die(f"the {name} thread died ({type(exc).__name__})")
                return
            if not self.stopping.is_set():
                _log.error("the %s thread ended unexpectedly", name)
                self._die(f"the {name} thread ended")

        thread = threading.Thread(target=supervised, name=name, daemon=True)
        thread.start()
        return thread

    def _die(self, reason: str) -> None:
        """Unhealthy from now on (the probes say 503), then stop: :meth:`run` raises."""
        self.health.thread_died(reason)
        _log.error("%s: stopping, to be restarted", reason)
        self.stop()

    def _supervise(self) -> None:
        """Poll the components' own threads (lease heartbeat, http, libvirt events)."""
        for name, alive in self._components:
            if not alive() and not self.stopping.is_set():
                _log.error("the %s thread is gone", name)
                self._die(f"the {name} thread died")

    def _keep_connected(self, hv: adapter.Hypervisor) -> None:
        """Reopen a dead libvirt connection with backoff, whether or not passes run.

        A standby runs no pass, and an idle leader none until the next trigger.
        The backoff stays short (:data:`RECONNECT_CAP`): an attempt on a socket
        nobody listens on costs nothing, and libvirt's return must be seen within
        seconds. Once reconnected a full pass follows: events were missed meanwhile.
        """
        reconnects = queue.Backoff(base=RECONNECT_BASE, cap=RECONNECT_CAP)
        delay = RECONNECT_BASE
        while not self.stopping.wait(delay):
            delay = RECONNECT_BASE
            if hv.down_since is None:
                continue
            try:
                hv.ensure_alive()
            except errors.HypervisorError as exc:
                delay = reconnects.next("libvirt")
                _log.debug("%s; trying again in %.1fs", exc, delay)
                continue
            reconnects.forget("libvirt")
            self.queue.add(loop.ALL, record.Trigger.LIBVIRT_EVENT)

    def _follow_hosts(
        self, work: loop.Loop, leadership: leader.Leadership | leader.Sharding
    ) -> None:
        """One lifecycle-event subscription per declared host (a sharded daemon: its own).

        The ``-c`` URI has its subscription from the start. Each other host's is
        opened when the host appears, retried on the next poll while the host
        cannot be reached, reconnects on its own once open (a ``reconnected``
        event queues a full pass), and is closed when the host goes or is
        handed over.
        """
        try:
            declared = work.declared_hosts()
        except errors.StoreError:
            return  # the record is away: keep what is followed
        held = leadership.held if isinstance(leadership, leader.Sharding) else None
        wanted = {
            uri
            for name, uri in declared.items()
            if uri and uri != self.libvirt_uri and (held is None or name in held)
        }
        for uri in sorted(set(self._followed) - wanted):
            self._followed.pop(uri).stop()
        for uri in sorted(wanted - set(self._followed)):
            events = adapter.LifecycleEvents(uri, self._on_libvirt_event(work), retry=RECONNECT_CAP)
            try:
                events.start()
            except errors.HypervisorError as exc:
                _log.debug("not following %s yet: %s", uri, exc)
                continue
            self._followed[uri] = events
        for uri, events in list(self._followed.items()):
            if not events.alive() and not self.stopping.is_set():
                _log.error("the libvirt events thread of %s is gone", uri)
                self._die(f"the libvirt events thread of {uri} died")

    def _unfollow_hosts(self) -> None:
        for uri in list(self._followed):
            self._followed.pop(uri).stop()

    def _check_record(
        self,
        leadership: leader.Leadership | leader.Sharding,
        work: loop.Loop,
        store: store_module.Store,
    ) -> None:
        """The record's reachability as the leadership poll sees it.

        A failed poll counts for anyone. A good one ends the outage when it was a
        round trip to the server (PostgreSQL: taking or renewing the lease); a
        SQLite leader's poll only looks at its own lock file, so its passes judge.
        """
        if not leadership.healthy:
            work.record_outage.down()
        elif store.backend == "postgresql":
            work.record_outage.up()

    def _run_passes(self, work: loop.Loop, leadership: leader.Leadership | leader.Sharding) -> None:
        while not self.stopping.is_set():
            if not leadership.leading.wait(0.5):
                continue
            items = self.queue.get(timeout=1.0)
            if not items:
                continue
            try:
                if leadership.leading.is_set():
                    work.process(items)
                else:  # lost the leadership while waiting: whoever leads now does it
                    _log.debug("not leading; dropping %s", [i.key for i in items])
            finally:
                self.queue.done(items)
                _settle_memory(resync=any(i.trigger is record.Trigger.RESYNC for i in items))

    def _resync_timer(self) -> None:
        while not self.stopping.wait(self.cfg.interval):
            self.queue.add(loop.ALL, record.Trigger.RESYNC)

    def _on_libvirt_event(self, work: loop.Loop) -> Callable[[str, str], None]:
        def on_event(domain: str, event: str) -> None:
            if not work.concerns(domain):
                return
            key = (
                str(record.ResourceKey(kinds.Kind.VIRTUAL_MACHINE.value, work.vm_of(domain)))
                if domain
                else loop.ALL
            )
            if self.backoff.failures(key) and event != "reconnected":
                return  # failing already: its backoff decides when to try again
            _log.debug("libvirt event: domain %s %s", domain or "*", event)
            self.queue.add(key, record.Trigger.LIBVIRT_EVENT)

        return on_event

    # -- probes --------------------------------------------------------------------

    def _probe(
        self,
        work: loop.Loop,
        leadership: leader.Leadership | leader.Sharding,
        store: store_module.Store,
    ) -> http.Probe:
        def healthy() -> bool:
            # The HTTP server answers a moment before the runner thread starts: a
            # daemon starting up is alive (a 503 would have it restarted for nothing).
            runner = self._runner
            return (
                (runner is None or runner.is_alive())
                and not self.stopping.is_set()
                and not self.health.problems()
            )

        def readiness() -> tuple[bool, dict[str, Any]]:
            last = work.last_pass
            fenced = leadership.fenced
            leading = leadership.leading.is_set() and fenced is None
            problems = self.health.problems()
            if isinstance(leadership, leader.Sharding):
                role = "fenced" if fenced else "shard" if leading else "standby"
            else:
                role = "fenced" if fenced else "leader" if leading else "standby"
            if leading:
                ready = last is not None and last.ok
                holder: str | None = "this daemon"
            else:
                ready = fenced is None and leadership.healthy and not self.stopping.is_set()
                try:
                    holder = store.leader()
                except errors.StoreError:  # the record is away: say so, with the problems
                    ready, holder = False, None
            return ready and not problems, {
                "role": role,
                "hosts": sorted(leadership.held)
                if isinstance(leadership, leader.Sharding)
                else None,
                "fenced": fenced,
                "problems": problems,
                "leader": holder,
                "lastPass": last.as_json() if last else None,
                "source": work.source_report.as_json(),
                "queue": {"depth": self.queue.depth(), "retrying": sorted(self.backoff.retrying())},
            }

        return http.Probe(healthy, readiness)

    def _display(self, domain: str) -> console_model.Console:
        """A running domain's display, for a browser console: read on a connection of its own.

        One connection per console opened keeps the consoles off the pass's
        connection, and a console is opened far less often than a pass runs.
        """
        with adapter.Hypervisor(self.libvirt_uri) as hv:
            return hv.console(domain)

    # -- the process ---------------------------------------------------------------

    def run(self, on_listening: Callable[[int], None] = lambda _port: None) -> None:
        """Run until :meth:`stop` (or SIGTERM/SIGINT); raises if it cannot start, and
        :class:`~reconciler.errors.InfinibayError` when a thread it depends on died."""
        cfg = self.cfg
        tls = None
        if cfg.listen is not None:  # refused before anything starts: one line, exit 1
            http.require_tls_off_loopback(cfg.listen, cfg.tls_cert is not None)
            if cfg.tls_cert is not None and cfg.tls_key is not None:
                tls = http.tls_context(cfg.tls_cert, cfg.tls_key)
        with contextlib.ExitStack() as stack:
            store = stack.enter_context(
                store_module.Store.open(
                    self.database_url,
                    lock_timeout=self.lock_timeout,
                    lease=cfg.lease,
                    actor=access.local_actor("daemon"),
                )
            )
            self._components.append(("lease heartbeat", store.heartbeat_alive))
            source = make_source(cfg)
            hv = stack.enter_context(adapter.Hypervisor(self.libvirt_uri, keepalive=True))
            fleet = hosts.Hosts(hv, connect=lambda uri: adapter.Hypervisor(uri, keepalive=True))
            stack.callback(fleet.close)
            work = loop.Loop(
                cfg,
                store,
                hv,
                source,
                self.queue,
                self.backoff,
                self.metrics,
                fleet=fleet,
                shard=store.acting_hosts if cfg.shard else None,
                holder=f"pid {os.getpid()} on {socket.gethostname()}" if cfg.shard else None,
            )
            leadership: leader.Leadership | leader.Sharding
            if cfg.shard:
                leadership = leader.Sharding(store, cfg.lease, lambda: list(work.declared_hosts()))
            else:
                leadership = leader.Leadership(store, cfg.lease)
            leadership.claim()
            stack.callback(leadership.resign)
            stack.callback(self._unfollow_hosts)
            self.health.watch("libvirt", lambda: hv.down_since)
            self.health.watch("the record", lambda: work.record_outage.since)
            events = adapter.LifecycleEvents(
                self.libvirt_uri, self._on_libvirt_event(work), retry=RECONNECT_CAP
            )
            events.start()
            stack.callback(events.stop)
            self._components.append(("libvirt events", events.alive))
            if cfg.listen is not None:
                # The API reads through a record of its own, so its readers never hold
                # a connection that a pass waits for.
                api_store = stack.enter_context(
                    store_module.Store.open(self.database_url, lock_timeout=self.lock_timeout)
                )
                server = http.Server(
                    cfg.listen,
                    self._probe(work, leadership, store),
                    self.metrics,
                    api_store,
                    cfg.http,
                    tls=tls,
                    metrics_public=cfg.metrics_public,
                    consoles=console.Service(
                        self._display,
                        self.libvirt_uri,
                        console.Tickets(cfg.console_ticket_ttl),
                        novnc=pathlib.Path(cfg.novnc_path),
                    ),
                )
                server.start()
                stack.callback(server.close)
                self._components.append(("http", lambda: server.alive))
                scheme = "https" if tls is not None else "http"
                _log.info("listening on %s://%s:%d", scheme, cfg.listen[0], server.port)
                on_listening(server.port)
            stack.enter_context(self._signals())
            _log.info(
                "following %s (%s); resync every %gs; %s",
                source.name,
                f"ref {cfg.ref}" if isinstance(source, sources.GitSource) else "directory",
                cfg.interval,
                "leading" if leadership.leading.is_set() else "standing by",
            )
            self._thread(
                "source", lambda: source.watch(self.stopping, self._source_changed(source))
            )
            self._thread("resync", self._resync_timer)
            self._thread("libvirt reconnect", lambda: self._keep_connected(hv))
            self._runner = self._thread("runner", lambda: self._run_passes(work, leadership))
            if leadership.leading.is_set():
                self._became_leader(source, work)
            while not self.stopping.wait(leadership.poll_interval):
                change = leadership.tick()
                if change is True:
                    self._became_leader(source, work)
                elif change is False:
                    self.metrics.leader.set(0)
                self._check_record(leadership, work, store)
                self._follow_hosts(work, leadership)
                self._supervise()
            self._drain()
        fatal = self.health.fatal
        if fatal is not None:
            raise errors.InfinibayError(
                f"{fatal}; the daemon stopped so that its service manager restarts it "
                "(the log has the traceback)"
            )

    def _source_changed(self, source: sources.Source) -> Callable[[], None]:
        def changed() -> None:
            self.queue.add(loop.ALL, source.trigger)

        return changed

    def _became_leader(self, source: sources.Source, work: loop.Loop) -> None:
        self.metrics.leader.set(1)
        work.widen()
        self.queue.add(loop.ALL, source.trigger)

    def _drain(self) -> None:
        runner = self._runner
        if runner is None:
            return
        runner.join(self.cfg.drain_timeout)
        if runner.is_alive():
            _log.warning(
                "the pass in flight did not finish within %gs; abandoning it "
                "(the next pass converges what it left)",
                self.cfg.drain_timeout,
            )
        else:
            _log.info("stopped cleanly")
