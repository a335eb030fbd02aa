"""Access to a real ``infinibay daemon`` (SPEC §11): tokens, roles, TLS, and who acted.

Every daemon is a subprocess over the real libvirtd and record; tokens are made
with ``infinibay token create`` as a real process, exactly as an operator would,
and the HTTP endpoints are asked from outside with and without them. The
secrets are then looked for in the daemon's log, the record's tables and every
answer: only ``token create`` may ever print one.
"""

from __future__ import annotations

import contextlib
import getpass
import json
import socket
import ssl
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from reconciler.daemon import auth
from tests.fixtures import tls
from tests.integration.harness import Harness, doc
from tests.integration.test_daemon import ROOT, Daemon, Repo, dump, free_port, spawn, until

pytestmark = pytest.mark.integration
__all__ = ["spawn"]  # a fixture shared with test_daemon

OWNER = "infinibay.io/owner"


def token(h: Harness, name: str, *args: str) -> str:
    done = h.cli("token", "create", name, *args)
    assert done.returncode == 0, done.stderr
    secret = done.stdout.strip()
    assert secret.startswith("ib_") and len(secret) > 40 and "\n" not in secret
    return secret


def ask(
    port: int,
    path: str,
    secret: str | None = None,
    *,
    cookie: str | None = None,
    scheme: str = "http",
    context: ssl.SSLContext | None = None,
) -> tuple[int, dict[str, str], str]:
    headers = {"Authorization": f"Bearer {secret}"} if secret is not None else {}
    if cookie is not None:
        headers["Cookie"] = f"{auth.COOKIE}={cookie}"
    request = urllib.request.Request(f"{scheme}://127.0.0.1:{port}{path}", headers=headers)
    try:
        with urllib.request.urlopen(request, timeout=10, context=context) as resp:
            return resp.status, dict(resp.headers), resp.read().decode()
    except urllib.error.HTTPError as exc:
        with exc:
            return exc.code, dict(exc.headers), exc.read().decode()


@contextlib.contextmanager
def stream(port: int, secret: str) -> Iterator[socket.socket]:
    """``/api/v1/stream`` as ``secret`` sees it, once its head is read (see :func:`read_until`)."""
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(
            b"GET /api/v1/stream HTTP/1.1\r\nHost: t\r\n"
            + f"Authorization: Bearer {secret}\r\n\r\n".encode()
        )
        head = read_until(sock, b": connected\n\n")
        assert head.startswith(b"HTTP/1.1 200 ") and b"text/event-stream" in head
        yield sock


def read_until(sock: socket.socket, wanted: bytes, seconds: float = 10, times: int = 1) -> bytes:
    """What ``sock`` receives until ``wanted`` came ``times`` (or its close, or ``seconds``)."""
    received = b""
    deadline = time.monotonic() + seconds
    while received.count(wanted) < times and time.monotonic() < deadline:
        sock.settimeout(max(0.01, deadline - time.monotonic()))
        try:
            chunk = sock.recv(65536)
        except TimeoutError:
            break
        if not chunk:
            break
        received += chunk
    return received


def names(body: str) -> set[str]:
    return {item["metadata"]["name"] for item in json.loads(body)["items"]}


def event_objects(body: str) -> set[str]:
    return {e["object"]["name"] for e in json.loads(body)["items"]}


def _owned_vms(h: Harness) -> list[dict[str, Any]]:
    def vm(short: str, owner: str) -> dict[str, Any]:
        return doc(
            "VirtualMachine",
            h.name(short),
            {"template": h.name("tpl"), "powerState": "Stopped"},
            labels={OWNER: owner},
        )

    return [h.pool(), h.network(), h.template(), vm("alice-vm", "alice"), vm("bob-vm", "bob")]


def _converged(h: Harness, spawn: Callable[..., Daemon], *args: str) -> Daemon:
    (h.workdir / "all.yaml").write_text(dump(*_owned_vms(h)))
    daemon = spawn("--source", str(h.workdir), "--interval", "10m", *args)
    until(lambda: daemon.readyz()["ready"], 120, "the daemon converged", daemon)
    return daemon


@pytest.mark.parametrize("db_url", ["sqlite", "postgresql"], indirect=True)
def test_roles_decide_what_the_api_and_metrics_show_and_bad_tokens_get_401_then_429(
    h: Harness, spawn: Callable[..., Daemon]
) -> None:
    daemon = _converged(h, spawn)
    port = daemon.port
    admin = token(h, "ops", "--role", "admin")
    viewer = token(h, "auditor", "--role", "viewer", "--ttl", "30d")
    alice = token(h, "alice", "--role", "user", "--owner", "alice")
    mine, theirs = h.name("alice-vm"), h.name("bob-vm")

    # The probes stay open; everything else needs a valid token, and says nothing more.
    assert ask(port, "/healthz")[::2] == (200, "ok\n")
    assert ask(port, "/readyz")[0] == 200
    for path in ("/api/v1/resources", "/api/v1/events", "/metrics", "/api/v1/resources/vm/x"):
        for presented in (None, "ib_not-a-token", admin + "x"):
            status, headers, body = ask(port, path, presented)
            assert (status, json.loads(body)) == (401, {"error": "unauthorized"}), path
            assert headers["WWW-Authenticate"] == "Bearer"

    # admin and viewer read everything, /metrics included.
    everything = {h.name(n) for n in ("pool", "net", "tpl", "alice-vm", "bob-vm")}
    for secret in (admin, viewer):
        status, _, body = ask(port, "/api/v1/resources", secret)
        assert status == 200 and everything <= names(body)
        status, _, body = ask(port, "/api/v1/events?limit=1000", secret)
        assert {mine, theirs} <= event_objects(body)
        status, _, body = ask(port, "/metrics", secret)
        assert status == 200 and "infinibay_leader 1.0" in body

    # A user sees their VM and its events only; another's VM is as if absent.
    status, _, body = ask(port, "/api/v1/resources", alice)
    assert (status, names(body)) == (200, {mine})
    assert names(ask(port, "/api/v1/resources?kind=vm", alice)[2]) == {mine}
    assert names(ask(port, "/api/v1/resources?kind=template", alice)[2]) == set()
    assert ask(port, f"/api/v1/resources/vm/{mine}", alice)[0] == 200
    assert ask(port, f"/api/v1/resources/vm/{theirs}", alice)[0] == 404
    assert ask(port, f"/api/v1/resources/template/{h.name('tpl')}", alice)[0] == 404
    status, _, body = ask(port, "/api/v1/events?limit=1000", alice)
    assert status == 200 and event_objects(body) == {mine}
    assert "Created" in {e["reason"] for e in json.loads(body)["items"]}
    assert json.loads(ask(port, f"/api/v1/events?resource=vm/{theirs}", alice)[2]) == {"items": []}
    assert ask(port, "/metrics", alice)[0] == 403
    # The web UI's session cookie lets in like the header does.
    assert names(ask(port, "/api/v1/resources", cookie=alice)[2]) == {mine}

    # The live stream pushes what each token may see, with who acted; a revoked
    # token is refused from the next request on, and its stream is cut.
    with stream(port, alice) as alices, stream(port, viewer) as viewers:
        for vm in (theirs, mine):
            assert h.cli("suspend", f"vm/{vm}").returncode == 0
        seen_by_alice = read_until(alices, b'"reason": "Suspended"')
        seen_by_viewer = read_until(viewers, b'"reason": "Suspended"', times=2)
        pushed = [
            json.loads(line[6:]) for line in seen_by_alice.splitlines() if line[:6] == b"data: "
        ]
        assert {e["object"]["name"] for e in pushed} == {mine}  # never bob's
        (suspended,) = pushed  # nothing from before the stream opened
        assert suspended["actor"] == f"cli:{getpass.getuser()}@{socket.gethostname()}"
        assert theirs.encode() in seen_by_viewer
        assert h.cli("token", "revoke", "auditor").returncode == 0
        assert ask(port, "/api/v1/resources", viewer)[0] == 401
        read_until(viewers, b"never sent")  # returns once the daemon closes it
        assert viewers.recv(1) == b""
    for vm in (theirs, mine):
        assert h.cli("resume", f"vm/{vm}").returncode == 0

    # token list shows who used what, never a secret.
    listed = h.cli("token", "list", "-o", "json")
    assert listed.returncode == 0, listed.stderr
    used = {t["name"]: t["lastUsed"] for t in json.loads(listed.stdout)["items"]}
    assert set(used) == {"ops", "alice", "integration-admin"}
    assert used["ops"] is not None and used["alice"] is not None
    table = h.cli("token", "list").stdout
    assert table.splitlines()[0].split() == [
        "NAME", "ROLE", "OWNER", "CREATED", "EXPIRES", "LAST", "USED",
    ]  # fmt: skip

    # The wrong tokens so far plus these make 10 failures: then 429, even for a good token.
    failures = 4 * 2 + 1  # two wrong tokens on four paths, the revoked one
    for _ in range(auth.MAX_FAILURES - failures):
        assert ask(port, "/api/v1/resources", "ib_guess")[0] == 401
    status, headers, _ = ask(port, "/api/v1/resources", admin)
    assert status == 429 and int(headers["Retry-After"]) >= 1
    assert ask(port, "/healthz")[0] == 200  # the probes are never rate-limited

    # No secret anywhere but in what token create printed.
    secrets = [admin, viewer, alice]
    with h.store() as store:
        recorded = json.dumps([e.__dict__ for e in store.events()], default=str)
        recorded += json.dumps([t.__dict__ for t in store.tokens()], default=str)
    assert daemon.terminate() == 0
    for text in (daemon.log.read_text(), recorded, listed.stdout, table):
        assert not [s for s in secrets if s in text]


@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
def test_tls_on_loopback_answers_over_https_and_metrics_public_needs_no_token(
    h: Harness, spawn: Callable[..., Daemon], tmp_path: Path
) -> None:
    cert, key = tls.self_signed(tmp_path)
    (h.workdir / "t.yaml").write_text(dump(h.pool(), h.network(), h.template()))
    daemon = spawn(
        "--source", str(h.workdir), "--interval", "10m",
        "--tls-cert", str(cert), "--tls-key", str(key), "--metrics-public",
    )  # fmt: skip
    trusted = ssl.create_default_context(cafile=str(cert))
    https: dict[str, Any] = {"scheme": "https", "context": trusted}
    until(lambda: _answers(daemon.port, trusted), 60, "HTTPS answers", daemon)
    admin = token(h, "ops", "--role", "admin")

    assert ask(daemon.port, "/healthz", **https)[::2] == (200, "ok\n")
    status, _, body = ask(daemon.port, "/metrics", **https)
    assert status == 200 and "infinibay_queue_depth" in body
    assert ask(daemon.port, "/api/v1/resources", **https)[0] == 401
    until(
        lambda: h.name("tpl") in names(ask(daemon.port, "/api/v1/resources", admin, **https)[2]),
        60,
        "the template is listed over HTTPS",
        daemon,
    )
    # Plain HTTP on the TLS port gets no answer, only the close: it is no TLS handshake.
    with socket.create_connection(("127.0.0.1", daemon.port), timeout=10) as plain:
        plain.sendall(b"GET /healthz HTTP/1.1\r\nHost: t\r\n\r\n")
        try:
            answer = plain.recv(65536)
        except ConnectionResetError:  # closed with the request unread
            answer = b""
        assert b"200 OK" not in answer
    # Nor does a client that cannot verify the certificate.
    with pytest.raises(urllib.error.URLError):
        urllib.request.urlopen(f"https://127.0.0.1:{daemon.port}/healthz", timeout=10)
    (line,) = [r for r in daemon.lines() if r["message"].startswith("listening on")]
    assert line["message"] == f"listening on https://127.0.0.1:{daemon.port}"
    assert daemon.terminate() == 0


def _answers(port: int, context: ssl.SSLContext) -> bool:
    try:
        return ask(port, "/healthz", scheme="https", context=context)[0] == 200
    except OSError:
        return False


@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
def test_listening_off_loopback_without_tls_exits_1_with_one_line(h: Harness) -> None:
    port = free_port()
    done = subprocess.run(
        [
            sys.executable, "-m", "reconciler", "--db", h.db_url, "-c", h.uri,
            "daemon", "--source", str(h.workdir), "--listen", f"0.0.0.0:{port}",
        ],
        capture_output=True, text=True, timeout=60, cwd=ROOT, check=False,
    )  # fmt: skip
    assert done.returncode == 1
    assert done.stdout == ""
    assert done.stderr.splitlines() == [
        f"error: --listen 0.0.0.0:{port} is not a loopback address: serving tokens there "
        "needs TLS; pass --tls-cert and --tls-key, or listen on 127.0.0.1"
    ]


@pytest.mark.parametrize("db_url", ["postgresql"], indirect=True)
def test_events_show_the_commit_author_for_git_and_cli_user_at_host_for_the_cli(
    h: Harness, spawn: Callable[..., Daemon], tmp_path: Path
) -> None:
    repo = Repo(tmp_path)
    repo.commit(dump(h.pool(), h.network(), h.template("from-git")), "a template")
    daemon = spawn(
        "--source", repo.url, "--ref", "main", "--path", "manifests",
        "--git-interval", "1s", "--interval", "10m", "--cache-dir", str(tmp_path / "cache"),
    )  # fmt: skip
    until(lambda: daemon.readyz()["ready"], 60, "the daemon applied the commit", daemon)
    _, body = daemon.http(f"/api/v1/events?resource=template/{h.name('from-git')}")
    (created,) = json.loads(body)["items"]
    assert (created["reason"], created["actor"]) == ("Created", "Test <test@example.invalid>")
    assert daemon.terminate() == 0

    h.write(h.pool(), h.network(), h.template("from-git"), h.template("from-cli"))
    applied = h.cli("apply", "-f", str(h.workdir))
    assert applied.returncode == 0, applied.stderr
    user_at_host = f"cli:{getpass.getuser()}@{socket.gethostname()}"
    shown = h.cli("events", "-o", "json", f"template/{h.name('from-cli')}")
    assert shown.returncode == 0, shown.stderr
    (line,) = [json.loads(raw) for raw in shown.stdout.splitlines()]
    assert (line["reason"], line["actor"]) == ("Created", user_at_host)
    table = h.cli("events", f"template/{h.name('from-cli')}").stdout.splitlines()
    assert table[0].split()[:7] == ["LAST", "SEEN", "TYPE", "REASON", "OBJECT", "COUNT", "ACTOR"]
    assert user_at_host in table[1]
    history = h.cli("history", f"template/{h.name('from-git')}", "-o", "json")
    assert json.loads(history.stdout)["revisions"][0]["actor"] == "Test <test@example.invalid>"
