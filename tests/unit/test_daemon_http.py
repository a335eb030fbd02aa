"""The daemon's HTTP endpoints, JSON log lines and SQLite leadership, in one process.

The endpoints are served by the real server on a loopback port over a real
(SQLite) record; the integration suite runs them in the daemon process.
"""

from __future__ import annotations

import io
import json
import logging
import socket
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from reconciler import errors
from reconciler.daemon import config, daemon, http, leader, logs, metrics
from reconciler.models import access, record
from reconciler.store import store as store_module

ADMIN_SECRET = "ib_unit-test-admin-token"
"""An admin token every :class:`Endpoints` grants in its record (hash only, as always)."""


@pytest.fixture
def store(tmp_path: Path) -> Iterator[store_module.Store]:
    opened = store_module.Store.open(f"sqlite:///{tmp_path / 'state.db'}")
    try:
        yield opened
    finally:
        opened.close()


def grant(
    store: store_module.Store,
    name: str,
    secret: str,
    role: access.Role = access.Role.ADMIN,
    owner: str | None = None,
) -> str:
    """A token ``name`` whose secret is ``secret``, unless the record has it already."""
    if name not in {t.name for t in store.tokens()}:
        store.create_token(name, access.hash_secret(secret), role.value, owner, None)
    return secret


class Endpoints:
    def __init__(self, store: store_module.Store, limits: config.HttpLimits | None = None) -> None:
        grant(store, "unit-admin", ADMIN_SECRET)
        self.ready = False
        self.metrics = metrics.Metrics(lambda: 3)
        probe = http.Probe(lambda: True, lambda: (self.ready, {"role": "leader"}))
        self.server = http.Server(("127.0.0.1", 0), probe, self.metrics, store, limits)
        self.server.start()

    def get(self, path: str, token: str | None = ADMIN_SECRET) -> tuple[int, str, str]:
        url = f"http://127.0.0.1:{self.server.port}{path}"
        headers = {"Authorization": f"Bearer {token}"} if token is not None else {}
        try:
            with urllib.request.urlopen(
                urllib.request.Request(url, headers=headers), timeout=5
            ) as resp:
                return resp.status, resp.headers["Content-Type"], resp.read().decode()
        except urllib.error.HTTPError as exc:
            with exc:
                return exc.code, exc.headers["Content-Type"], exc.read().decode()


@pytest.fixture
def endpoints(store: store_module.Store) -> Iterator[Endpoints]:
    served = Endpoints(store)
    try:
        yield served
    finally:
        served.server.close()


def _spec_write(name: str) -> record.SpecWrite:
    return record.SpecWrite(
        key=record.ResourceKey("Template", name),
        spec={"spec": {"cpus": 1, "memory": "64MiB"}},
        spec_hash=f"h-{name}",
        labels={"team": "qa"},
        annotations={},
        source_file="t.yaml",
        source_document=0,
        source_revision="main@sha1:abc",
    )


def test_probes_answer_with_status_codes_an_orchestrator_understands(
    endpoints: Endpoints,
) -> None:
    assert endpoints.get("/healthz")[::2] == (200, "ok\n")
    status, kind, body = endpoints.get("/readyz")
    assert (status, kind, json.loads(body)) == (
        503,
        "application/json",
        {"ready": False, "role": "leader"},
    )
    endpoints.ready = True
    assert endpoints.get("/readyz")[0] == 200


def test_metrics_are_in_prometheus_text_format(endpoints: Endpoints) -> None:
    endpoints.metrics.revision("main@sha1:abc", "main@sha1:def")
    status, kind, body = endpoints.get("/metrics")
    assert status == 200 and kind.startswith("text/plain")
    assert "infinibay_queue_depth 3.0" in body
    assert 'infinibay_applied_revision_info{revision="main@sha1:abc"} 1.0' in body
    assert 'infinibay_refused_revision_info{revision="main@sha1:def"} 1.0' in body
    assert "infinibay_source_valid 0.0" in body


def test_the_api_lists_resources_and_events_from_the_record(
    endpoints: Endpoints, store: store_module.Store
) -> None:
    store.apply_specs([_spec_write("small"), _spec_write("large")])
    store.record_events(
        [record.NewEvent(record.ResourceKey("Template", "small"), record.EventType.NORMAL,
                         "Created", "template/small created", revision="main@sha1:abc")]
    )  # fmt: skip
    status, _, body = endpoints.get("/api/v1/resources?kind=templates")
    items = json.loads(body)["items"]
    assert status == 200
    assert [i["metadata"]["name"] for i in items] == ["large", "small"]
    assert items[1]["spec"] == {"cpus": 1, "memory": "64MiB"}
    assert items[1]["source"]["revision"] == "main@sha1:abc"

    status, _, body = endpoints.get("/api/v1/resources/template/small")
    assert status == 200 and json.loads(body)["metadata"]["labels"] == {"team": "qa"}
    assert endpoints.get("/api/v1/resources/template/none")[0] == 404
    assert endpoints.get("/api/v1/resources?kind=gadget")[0] == 400

    status, _, body = endpoints.get("/api/v1/events?resource=template/small&limit=5")
    (event,) = json.loads(body)["items"]
    assert (event["reason"], event["revision"]) == ("Created", "main@sha1:abc")
    assert endpoints.get("/api/v1/events?limit=many")[0] == 400


def test_the_api_is_read_only(endpoints: Endpoints) -> None:
    request = urllib.request.Request(
        f"http://127.0.0.1:{endpoints.server.port}/api/v1/resources", method="DELETE"
    )
    with pytest.raises(urllib.error.HTTPError) as caught:
        urllib.request.urlopen(request, timeout=5)
    caught.value.close()
    assert caught.value.code == 405


def test_listening_on_a_taken_port_is_a_clear_error(
    endpoints: Endpoints, store: store_module.Store
) -> None:
    probe = http.Probe(lambda: True, lambda: (True, {}))
    with pytest.raises(errors.ConfigError, match=r"cannot listen on 127\.0\.0\.1"):
        http.Server(("127.0.0.1", endpoints.server.port), probe, endpoints.metrics, store)


def _json_line(**extra: Any) -> dict[str, Any]:
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(logs.JsonFormatter())
    log = logging.getLogger("test.daemon.json")
    log.addHandler(handler)
    log.propagate = False
    try:
        with logs.bound(revision="main@sha1:abc", run_id=7):
            log.warning("vm %s failed", "web-1", extra=extra)
    finally:
        log.removeHandler(handler)
    line: dict[str, Any] = json.loads(stream.getvalue())
    return line


def test_json_log_lines_carry_time_level_message_run_resource_and_revision() -> None:
    line = _json_line(resource="virtualmachine/web-1")
    assert line["message"] == "vm web-1 failed"
    assert line["level"] == "warning"
    assert line["time"].endswith("+00:00")
    assert (line["run_id"], line["resource"], line["revision"]) == (
        7, "virtualmachine/web-1", "main@sha1:abc",
    )  # fmt: skip


def test_a_second_daemon_on_a_sqlite_record_is_refused_naming_the_first(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'state.db'}"
    with store_module.Store.open(url) as first, store_module.Store.open(url) as second:
        assert leader.Leadership(first, lease=5).claim()
        with pytest.raises(errors.RefusedError, match=r"already runs .*\(pid \d+ on host"):
            leader.Leadership(second, lease=5).claim()
        assert (tmp_path / "state.db.daemon.lock").exists()
        first.resign()
        assert leader.Leadership(second, lease=5).claim()


def _vm(name: str, owner: str) -> record.SpecWrite:
    return record.SpecWrite(
        key=record.ResourceKey("VirtualMachine", name),
        spec={"spec": {"template": "t"}},
        spec_hash=f"h-{name}",
        labels={access.OWNER_LABEL: owner},
        annotations={},
        source_file=None,
        source_document=None,
        source_revision=None,
    )


def _read_until(sock: socket.socket, wanted: bytes, seconds: float) -> bytes:
    received = b""
    deadline = time.monotonic() + seconds
    while wanted not in received and time.monotonic() < deadline:
        sock.settimeout(max(0.01, deadline - time.monotonic()))
        try:
            chunk = sock.recv(65536)
        except TimeoutError:
            break
        if not chunk:
            break
        received += chunk
    return received


def test_the_event_stream_pushes_a_users_own_events_holds_no_worker_and_ends_on_revoke(
    store: store_module.Store,
) -> None:
    store.apply_specs([_vm("mine", "alice"), _vm("theirs", "bob")])
    alice = grant(store, "alice", "ib_alice-secret", access.Role.USER, "alice")
    endpoints = Endpoints(store, config.HttpLimits(workers=1))
    try:
        with socket.create_connection(("127.0.0.1", endpoints.server.port), timeout=5) as sock:
            assert endpoints.get("/api/v1/stream", token=None)[0] == 401
            sock.sendall(
                b"GET /api/v1/stream HTTP/1.1\r\nHost: t\r\n"
                + f"Authorization: Bearer {alice}\r\n\r\n".encode()
            )
            head = _read_until(sock, b": connected\n\n", 5)
            assert head.startswith(b"HTTP/1.1 200 ") and b"text/event-stream" in head
            assert endpoints.get("/api/v1/resources")[0] == 200  # the one worker is free
            store.record_events(
                [
                    record.NewEvent(record.ResourceKey("VirtualMachine", name),
                                    record.EventType.WARNING, "DriftDetected", f"{name} drifted")
                    for name in ("theirs", "mine")
                ]
            )  # fmt: skip
            pushed = _read_until(sock, b"mine drifted", 5)
            (line,) = [raw for raw in pushed.split(b"\n") if raw.startswith(b"data: ")]
            event = json.loads(line[len(b"data: ") :])
            assert (event["object"]["name"], event["reason"]) == ("mine", "DriftDetected")
            assert b"theirs" not in pushed
            store.revoke_token("alice")
            assert _read_until(sock, b"never", 5) == b""  # closed, with nothing more
    finally:
        endpoints.server.close()


def test_a_daemon_starting_up_is_alive_and_one_whose_runner_died_is_not() -> None:
    """/healthz answers before the runner thread starts: that moment is not a failure."""
    d = daemon.Daemon(config.Config(source="."), database_url="sqlite://", libvirt_uri="test:///")
    probe = d._probe(None, None, None)  # type: ignore[arg-type]  # healthy() reads neither
    assert probe.healthy()  # no runner yet: starting
    finished = threading.Thread(target=lambda: None)
    finished.start()
    finished.join()
    d._runner = finished
    assert not probe.healthy()  # the runner ended: restart me
    d._runner = None
    d.stopping.set()
    assert not probe.healthy()
