"""The daemon's HTTP endpoints on ``--listen``: probes, metrics, a read-only API.

* ``GET /healthz`` — 200 ``ok`` while the daemon's threads run (liveness: a
  503 means restart me).
* ``GET /readyz`` — 200 when this daemon is the leader and its last pass
  converged, or a standby that reaches the record; 503 otherwise. The JSON
  body says why: role, leader, last pass (run id, revision, failed resources)
  and source (the revision in force, a refused revision and its first errors).
* ``GET /metrics`` — Prometheus text format (:mod:`reconciler.daemon.metrics`).
* ``GET /api/v1/resources[?kind=vm]`` and ``/api/v1/resources/KIND/NAME`` —
  the record's resources, shaped like ``infinibay get -o json`` without the
  live libvirt overlay (``{"apiVersion", "kind": "List", "items": [...]}``).
* ``GET /api/v1/events[?resource=KIND/NAME][&limit=N]`` — the newest events,
  oldest first, each shaped like a line of ``infinibay events -o json``.

Nothing here writes: the record is only read, so a standby serves the API
too. The server is the standard library's threading server — a handful of
scrapes and probes do not warrant a framework. Every JSON body goes through
:func:`reconciler.settings.redact`: an error may quote a URL or a driver's message.
"""

from __future__ import annotations

import http.server
import json
import logging
import threading
import urllib.parse
from collections.abc import Callable
from typing import Any

import prometheus_client

from reconciler import errors, settings
from reconciler.daemon import loop, metrics
from reconciler.models import documents, kinds, record
from reconciler.store import store as store_module

__all__ = ["Probe", "Server", "event_json", "resource_json"]

_log = logging.getLogger(__name__)
_DEFAULT_EVENTS = 100
_MAX_EVENTS = 1000
_KIND_NAMES = {
    alias: kind for kind in kinds.Kind for alias in (kind.value.lower(), f"{kind.value.lower()}s")
} | {"vm": kinds.Kind.VIRTUAL_MACHINE, "vms": kinds.Kind.VIRTUAL_MACHINE}


class Probe:
    """What the probes report, supplied by the daemon as two callables."""

    def __init__(
        self,
        healthy: Callable[[], bool],
        readiness: Callable[[], tuple[bool, dict[str, Any]]],
    ) -> None:
        self.healthy = healthy
        self.readiness = readiness


def resource_json(rec: record.ResourceRecord) -> dict[str, Any]:
    spec = rec.spec.get("spec")
    return {
        "apiVersion": kinds.API_VERSION,
        "kind": rec.key.kind,
        "metadata": documents.metadata(rec),
        "spec": dict(spec) if isinstance(spec, dict) else {},
        "status": dict(rec.status),
        "source": {
            "file": rec.source_file,
            "document": rec.source_document,
            "revision": rec.source_revision,
        },
    }


def event_json(event: record.EventRecord) -> dict[str, Any]:
    return documents.event(event)


class _NotFound(Exception):
    pass


class _BadRequest(Exception):
    pass


def _kind(text: str) -> kinds.Kind:
    kind = _KIND_NAMES.get(text.lower())
    if kind is None:
        raise _BadRequest(f"unknown kind {text!r}")
    return kind


class _Api:
    def __init__(self, store: store_module.Store) -> None:
        self.store = store

    def resources(self, query: dict[str, list[str]]) -> dict[str, Any]:
        kind = _kind(query["kind"][0]).value if "kind" in query else None
        return {
            "apiVersion": kinds.API_VERSION,
            "kind": "List",
            "items": [resource_json(r) for r in self.store.resources(kind)],
        }

    def resource(self, kind_text: str, name: str) -> dict[str, Any]:
        found = self.store.get(record.ResourceKey(_kind(kind_text).value, name))
        if found is None:
            raise _NotFound(f"{kind_text}/{name} is not in the record")
        return resource_json(found)

    def events(self, query: dict[str, list[str]]) -> dict[str, Any]:
        key = None
        if "resource" in query:
            kind_text, sep, name = query["resource"][0].partition("/")
            if not sep or not name:
                raise _BadRequest("resource must be KIND/NAME, e.g. vm/web-1")
            key = record.ResourceKey(
                kind_text if kind_text == loop.SOURCE_KIND else _kind(kind_text).value, name
            )
        try:
            limit = int(query.get("limit", [str(_DEFAULT_EVENTS)])[0])
        except ValueError as exc:
            raise _BadRequest("limit must be a number") from exc
        limit = max(0, min(limit, _MAX_EVENTS))
        return {"items": [event_json(e) for e in self.store.events(key, limit=limit)]}


class Server:
    """The HTTP server on its own thread; :attr:`port` is the bound port."""

    def __init__(
        self,
        address: tuple[str, int],
        probe: Probe,
        gauges: metrics.Metrics,
        store: store_module.Store,
    ) -> None:
        api = _Api(store)
        handler = _handler(probe, gauges, api)
        try:
            self._server = http.server.ThreadingHTTPServer(address, handler)
        except OSError as exc:
            raise errors.ConfigError(
                f"cannot listen on {address[0]}:{address[1]}: {exc.strerror or exc}"
            ) from exc
        self._server.daemon_threads = True
        self.port = int(self._server.server_address[1])
        self._thread = threading.Thread(
            target=self._server.serve_forever, name="http", kwargs={"poll_interval": 0.2}
        )
        self._thread.daemon = True

    def start(self) -> None:
        self._thread.start()

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()


def _handler(
    probe: Probe, gauges: metrics.Metrics, api: _Api
) -> type[http.server.BaseHTTPRequestHandler]:
    class Handler(http.server.BaseHTTPRequestHandler):
        server_version = "infinibay-daemon"
        protocol_version = "HTTP/1.1"

        def log_message(self, format: str, *args: Any) -> None:
            _log.debug("http: " + format, *args)

        def _send(self, code: int, body: bytes, content_type: str) -> None:
            self.send_response(code)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(body)))
            self.send_header("Cache-Control", "no-store")
            self.end_headers()
            if self.command != "HEAD":
                self.wfile.write(body)

        def _json(self, code: int, document: Any) -> None:
            text = json.dumps(document, indent=2, default=str) + "\n"
            body = settings.redact(text).encode()
            self._send(code, body, "application/json")

        def do_HEAD(self) -> None:
            self.do_GET()

        def do_GET(self) -> None:
            url = urllib.parse.urlsplit(self.path)
            query = urllib.parse.parse_qs(url.query)
            parts = [p for p in url.path.split("/") if p]
            try:
                self._route(parts, query)
            except _NotFound as exc:
                self._json(404, {"error": str(exc)})
            except _BadRequest as exc:
                self._json(400, {"error": str(exc)})
            except errors.InfinibayError as exc:
                self._json(503, {"error": str(exc)})

        def _route(self, parts: list[str], query: dict[str, list[str]]) -> None:
            if parts == ["healthz"]:
                ok = probe.healthy()
                self._send(200 if ok else 503, b"ok\n" if ok else b"unhealthy\n", "text/plain")
            elif parts == ["readyz"]:
                ready, detail = probe.readiness()
                self._json(200 if ready else 503, {"ready": ready, **detail})
            elif parts == ["metrics"]:
                self._send(200, gauges.exposition(), prometheus_client.CONTENT_TYPE_LATEST)
            elif parts == ["api", "v1", "resources"]:
                self._json(200, api.resources(query))
            elif len(parts) == 5 and parts[:3] == ["api", "v1", "resources"]:
                self._json(200, api.resource(parts[3], parts[4]))
            elif parts == ["api", "v1", "events"]:
                self._json(200, api.events(query))
            else:
                raise _NotFound(f"no such endpoint: /{'/'.join(parts)}")

        def _refuse(self) -> None:
            self._json(405, {"error": "read-only: only GET and HEAD are served"})

        do_POST = do_PUT = do_PATCH = do_DELETE = _refuse

    return Handler
