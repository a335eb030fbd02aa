"""Prometheus metrics of one daemon, on a registry of its own.

A private :class:`~prometheus_client.CollectorRegistry` (not the global one)
keeps two daemons in one test process apart and leaves out the client's
process collectors' names from our contract. Names follow Prometheus
conventions: ``_total`` counters, ``_seconds`` units, ``_info`` gauges whose
labels carry the value.
"""

from __future__ import annotations

import threading
from collections.abc import Callable

import prometheus_client as prom

from reconciler.engine import reconcile
from reconciler.models import record

__all__ = ["Metrics"]

_DURATION_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600)


class Metrics:
    def __init__(self, queue_depth: Callable[[], int]) -> None:
        self.registry = prom.CollectorRegistry()
        r = self.registry
        self.runs = prom.Counter(
            "infinibay_reconcile_runs",
            "Reconcile passes by trigger and result (succeeded, failed, error, skipped).",
            ["trigger", "result"],
            registry=r,
        )
        self.actions = prom.Counter(
            "infinibay_reconcile_actions",
            "Changes carried out by resource kind, action and result.",
            ["kind", "action", "result"],
            registry=r,
        )
        self.duration = prom.Histogram(
            "infinibay_reconcile_duration_seconds",
            "Duration of reconcile passes, source read included.",
            ["trigger"],
            buckets=_DURATION_BUCKETS,
            registry=r,
        )
        self.drifted = prom.Gauge(
            "infinibay_drifted_resources",
            "Resources the last pass found drifted from their applied spec.",
            registry=r,
        )
        self.failing = prom.Gauge(
            "infinibay_failing_resources",
            "Resources whose last change failed and that are retried with backoff.",
            registry=r,
        )
        depth = prom.Gauge("infinibay_queue_depth", "Keys waiting in the work queue.", registry=r)
        depth.set_function(lambda: float(queue_depth()))
        self.leader = prom.Gauge(
            "infinibay_leader", "1 while this daemon leads and reconciles.", registry=r
        )
        self.source_valid = prom.Gauge(
            "infinibay_source_valid",
            "1 when the newest source revision validated, 0 when it was refused.",
            registry=r,
        )
        self.applied = prom.Gauge(
            "infinibay_applied_revision_info",
            "The source revision in force (the last good one).",
            ["revision"],
            registry=r,
        )
        self.refused = prom.Gauge(
            "infinibay_refused_revision_info",
            "The newest source revision, when it failed validation.",
            ["revision"],
            registry=r,
        )
        self.last_success = prom.Gauge(
            "infinibay_last_success_timestamp_seconds",
            "When the last pass that converged everything finished.",
            registry=r,
        )
        self.http_connections = prom.Gauge(
            "infinibay_http_connections", "Open connections to the HTTP server.", registry=r
        )
        self.http_dropped = prom.Counter(
            "infinibay_http_dropped_connections",
            "Connections the HTTP server refused or cut, by reason (limit, header_timeout, "
            "head_too_large, write_timeout, accept_failed).",
            ["reason"],
            registry=r,
        )
        self.http_refused = prom.Counter(
            "infinibay_http_refused_requests",
            "Requests the HTTP server refused before answering, by reason (unauthorized, "
            "rate_limited, forbidden, tls_handshake).",
            ["reason"],
            registry=r,
        )
        self.unexpected_errors = prom.Counter(
            "infinibay_unexpected_errors",
            "Exceptions that are not the daemon's own (bugs, exhausted resources), by type; "
            "each failed a pass or a source load, whose traceback is in the log.",
            ["type"],
            registry=r,
        )
        self._guard = threading.Lock()

    def pass_done(self, trigger: record.Trigger, result: reconcile.Result, seconds: float) -> None:
        self.runs.labels(trigger.value, "succeeded" if result.ok else "failed").inc()
        self.duration.labels(trigger.value).observe(seconds)
        for outcome in result.outcomes:
            self.actions.labels(
                outcome.change.key.kind,
                outcome.change.verb.value,
                "succeeded" if outcome.ok else "failed",
            ).inc()
        self.drifted.set(sum(1 for change in result.plan.changes if change.drift))
        if result.ok:
            self.last_success.set_to_current_time()

    def pass_error(self, trigger: record.Trigger, seconds: float) -> None:
        self.runs.labels(trigger.value, "error").inc()
        self.duration.labels(trigger.value).observe(seconds)

    def unexpected(self, kind: str) -> None:
        self.unexpected_errors.labels(kind).inc()

    def revision(self, applied: str | None, refused: str | None) -> None:
        with self._guard:
            self.applied.clear()
            if applied is not None:
                self.applied.labels(applied).set(1)
            self.refused.clear()
            if refused is not None:
                self.refused.labels(refused).set(1)
            self.source_valid.set(0 if refused else 1)

    def exposition(self) -> bytes:
        return bytes(prom.generate_latest(self.registry))
