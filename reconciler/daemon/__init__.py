"""The long-running controller of SPEC §5: follow a source, converge, heal drift.

A daemon is the engine's :class:`~reconciler.engine.reconcile.Reconciler`
driven by triggers instead of a person. Modules, each owning one concern:

* :mod:`~reconciler.daemon.config` — the daemon's options (durations, listen address);
* :mod:`~reconciler.daemon.sources` — a directory (watched) or a git branch (polled),
  each yielding a checkout and its revision;
* :mod:`~reconciler.daemon.queue` — the de-duplicating work queue and per-key backoff;
* :mod:`~reconciler.daemon.leader` — exactly one daemon per record reconciles;
* :mod:`~reconciler.daemon.loop` — one pass: read the source (or keep the last
  good revision), apply, account for failures;
* :mod:`~reconciler.daemon.metrics` and :mod:`~reconciler.daemon.http` — what an
  operator and Prometheus see;
* :mod:`~reconciler.daemon.logs` — text or JSON log lines;
* :mod:`~reconciler.daemon.daemon` — the process: threads, signals, shutdown.
"""
