"""The daemon process: wire source, queue, leadership, libvirt events and HTTP together.

Threads, and what each may do:

* **main** — leadership: claim it at start-up (a second SQLite daemon stops
  here), then poll every ``lease / 5`` seconds: a standby tries to take over,
  a leader checks that it still leads. Signals are handled here.
* **runner** — the only thread that reconciles: takes every due key from the
  queue and runs one :meth:`~reconciler.daemon.loop.Loop.process` pass for
  them, while this daemon leads. Passes are serial on purpose: each one
  covers the whole desired state, and the engine already runs independent
  resources on ``--workers`` threads within it.
* **source watcher**, **resync timer**, **libvirt events** — only *add keys*
  to the queue; the queue de-duplicates, so a burst costs one pass.
* **http** — reads the record (through a store and engine of its own) and the
  loop's reports, never writes; a bounded pool (:mod:`reconciler.daemon.http`).

Signals: SIGHUP queues a full pass now. SIGTERM and SIGINT stop the queue
(no new pass starts), let the pass in flight finish for up to
``--drain-timeout`` seconds — abandoning it after that is safe, the engine
is crash-safe by design — then resign the leadership, close everything and
return, so the command exits 0.
"""

from __future__ import annotations

import contextlib
import logging
import signal
import threading
import types
from collections.abc import Callable, Iterator
from typing import Any

from reconciler.daemon import config as config_module
from reconciler.daemon import http, leader, loop, metrics, queue, sources
from reconciler.hypervisor import adapter
from reconciler.models import kinds, record
from reconciler.store import store as store_module

__all__ = ["Daemon", "make_source"]

_log = logging.getLogger(__name__)


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
        self._runner: threading.Thread | None = None

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
        def guarded() -> None:
            try:
                target()
            except Exception:
                _log.exception("the %s thread failed", name)

        thread = threading.Thread(target=guarded, name=name, daemon=True)
        thread.start()
        return thread

    def _run_passes(self, work: loop.Loop, leadership: leader.Leadership) -> None:
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

    def _resync_timer(self) -> None:
        while not self.stopping.wait(self.cfg.interval):
            self.queue.add(loop.ALL, record.Trigger.RESYNC)

    def _on_libvirt_event(self, work: loop.Loop) -> Callable[[str, str], None]:
        def on_event(domain: str, event: str) -> None:
            if not work.concerns(domain):
                return
            key = (
                str(record.ResourceKey(kinds.Kind.VIRTUAL_MACHINE.value, domain))
                if domain
                else loop.ALL
            )
            if self.backoff.failures(key):
                return  # failing already: its backoff decides when to try again
            _log.debug("libvirt event: domain %s %s", domain or "*", event)
            self.queue.add(key, record.Trigger.LIBVIRT_EVENT)

        return on_event

    # -- probes --------------------------------------------------------------------

    def _probe(
        self, work: loop.Loop, leadership: leader.Leadership, store: store_module.Store
    ) -> http.Probe:
        def healthy() -> bool:
            runner = self._runner
            return runner is not None and runner.is_alive() and not self.stopping.is_set()

        def readiness() -> tuple[bool, dict[str, Any]]:
            last = work.last_pass
            leading = leadership.leading.is_set()
            if leading:
                ready = last is not None and last.ok
                holder: str | None = "this daemon"
            else:
                ready = leadership.healthy and not self.stopping.is_set()
                holder = store.leader()
            return ready, {
                "role": "leader" if leading else "standby",
                "leader": holder,
                "lastPass": last.as_json() if last else None,
                "source": work.source_report.as_json(),
                "queue": {"depth": self.queue.depth(), "retrying": sorted(self.backoff.retrying())},
            }

        return http.Probe(healthy, readiness)

    # -- the process ---------------------------------------------------------------

    def run(self, on_listening: Callable[[int], None] = lambda _port: None) -> None:
        """Run until :meth:`stop` (or SIGTERM/SIGINT); raises if it cannot start."""
        cfg = self.cfg
        with contextlib.ExitStack() as stack:
            store = stack.enter_context(
                store_module.Store.open(self.database_url, lock_timeout=self.lock_timeout)
            )
            leadership = leader.Leadership(store, cfg.lease)
            leadership.claim()
            stack.callback(leadership.resign)
            source = make_source(cfg)
            hv = stack.enter_context(adapter.Hypervisor(self.libvirt_uri))
            work = loop.Loop(cfg, store, hv, source, self.queue, self.backoff, self.metrics)
            events = adapter.LifecycleEvents(self.libvirt_uri, self._on_libvirt_event(work))
            events.start()
            stack.callback(events.stop)
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
                )
                server.start()
                stack.callback(server.close)
                _log.info("listening on http://%s:%d", cfg.listen[0], server.port)
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
            self._runner = self._thread("runner", lambda: self._run_passes(work, leadership))
            if leadership.leading.is_set():
                self._became_leader(source)
            while not self.stopping.wait(leadership.poll_interval):
                change = leadership.tick()
                if change is True:
                    self._became_leader(source)
                elif change is False:
                    self.metrics.leader.set(0)
            self._drain()

    def _source_changed(self, source: sources.Source) -> Callable[[], None]:
        def changed() -> None:
            self.queue.add(loop.ALL, source.trigger)

        return changed

    def _became_leader(self, source: sources.Source) -> None:
        self.metrics.leader.set(1)
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
