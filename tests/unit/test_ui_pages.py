"""The web UI's pages (reconciler/daemon/ui.py): rendering, escaping, access, headers.

Pages are asked for from the real server on a loopback port over a real
(SQLite) record, as a browser would, with and without the session cookie;
the browser itself drives them in tests/integration/test_web_ui.py.
"""

from __future__ import annotations

import datetime as dt
import http.client as http_client
import json
import ssl
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from reconciler.daemon import auth, http, metrics, ui
from reconciler.models import access, record
from reconciler.store import store as store_module
from tests.fixtures import tls

ADMIN = "ib_unit-ui-admin-token"
VIEWER = "ib_unit-ui-viewer-token"
ALICE = "ib_unit-ui-alice-token"
HOSTILE = "<script>alert(1)</script>"


@pytest.fixture
def store(tmp_path: Path) -> Iterator[store_module.Store]:
    opened = store_module.Store.open(f"sqlite:///{tmp_path / 'state.db'}")
    for name, secret, role, owner in (
        ("ops", ADMIN, access.Role.ADMIN, None),
        ("auditor", VIEWER, access.Role.VIEWER, None),
        ("alice", ALICE, access.Role.USER, "alice"),
    ):
        opened.create_token(name, access.hash_secret(secret), role.value, owner, None)
    try:
        yield opened
    finally:
        opened.close()


class Site:
    """The real server, and a browser's way of asking it: the cookie, no redirects followed."""

    def __init__(self, store: store_module.Store) -> None:
        self.source: dict[str, Any] = {"valid": True, "refusedRevision": None}
        probe = http.Probe(lambda: True, lambda: (True, {"source": self.source}))
        self.server = http.Server(("127.0.0.1", 0), probe, metrics.Metrics(lambda: 0), store)
        self.server.start()

    def get(
        self, path: str, cookie: str | None = None, bearer: str | None = None
    ) -> tuple[int, dict[str, str], str]:
        conn = http_client.HTTPConnection("127.0.0.1", self.server.port, timeout=5)
        headers = {}
        if cookie is not None:
            headers["Cookie"] = f"{auth.COOKIE}={cookie}"
        if bearer is not None:
            headers["Authorization"] = f"Bearer {bearer}"
        try:
            conn.request("GET", path, headers=headers)
            resp = conn.getresponse()
            return resp.status, dict(resp.getheaders()), resp.read().decode()
        finally:
            conn.close()


@pytest.fixture
def site(store: store_module.Store) -> Iterator[Site]:
    served = Site(store)
    try:
        yield served
    finally:
        served.server.close()


def _vm(name: str, owner: str, graphics: str = "vnc", **spec: Any) -> record.SpecWrite:
    document = {"spec": {"template": "t", **spec}, "effective": {"graphics_type": graphics}}
    return record.SpecWrite(
        key=record.ResourceKey("VirtualMachine", name),
        spec=document,
        spec_hash=json.dumps(document, sort_keys=True),
        labels={access.OWNER_LABEL: owner, "team": "qa"},
        annotations={},
        source_file="vms.yaml",
        source_document=0,
        source_revision="main@sha1:abc",
    )


def _status(
    store: store_module.Store,
    name: str,
    *,
    drifted: bool = False,
    phase: str = "Ready",
    ago: dt.timedelta = dt.timedelta(0),
) -> None:
    stamp = (dt.datetime.now(dt.UTC) - ago).isoformat(timespec="seconds")
    drift = {"type": "Drifted", "status": "True" if drifted else "False", "message": "power"}
    store.write_status(
        [
            record.StatusWrite(
                record.ResourceKey("VirtualMachine", name),
                {"phase": phase, "power": "Running", "ips": ["192.0.2.7"],
                 "lastReconciled": stamp, "conditions": [drift]},
            )
        ]
    )  # fmt: skip


def _event(store: store_module.Store, name: str, reason: str, message: str = "m") -> None:
    key = record.ResourceKey("VirtualMachine", name)
    store.record_events([record.NewEvent(key, record.EventType.WARNING, reason, message)])


def _rows(body: str) -> list[str]:
    """The names in the resource table, as the HTML has them (escaped)."""
    table = body.split('<table class="resources">', 1)[1].split("</table>", 1)[0]
    return [part.split('"', 1)[0] for part in table.split('data-name="')[1:]]


def test_a_hostile_name_message_and_source_error_are_text_on_every_page(
    site: Site, store: store_module.Store
) -> None:
    store.apply_specs([_vm(HOSTILE, "alice")])
    _event(store, HOSTILE, "Started", f"started {HOSTILE}")
    site.source = {"refusedRevision": "main@sha1:bad", "errors": [f"x.yaml:3: {HOSTILE}"]}
    for path in ("/", "/ui/vm/%3Cscript%3Ealert(1)%3C%2Fscript%3E", "/ui/fragments/resources"):
        status, _, body = site.get(path, ADMIN)
        assert status == 200, path
        assert HOSTILE not in body and "<script>alert" not in body, path
        assert "&lt;script&gt;alert(1)&lt;/script&gt;" in body, path
    assert "main@sha1:bad was refused" in site.get("/", ADMIN)[2]


def test_pages_redirect_to_the_login_without_a_cookie_and_the_api_keeps_its_401(
    site: Site,
) -> None:
    for path in ("/", "/ui/vm/x", "/ui/fragments/resources"):
        status, headers, _ = site.get(path)
        assert (status, headers["Location"]) == (303, "/login"), path
        assert "Set-Cookie" not in headers  # nothing presented: nothing to clear
    status, headers, _ = site.get("/", "ib_revoked-or-made-up")
    assert (status, headers["Location"]) == (303, "/login")
    assert (
        headers["Set-Cookie"].startswith(f"{auth.COOKIE}=") and "Max-Age=0" in headers["Set-Cookie"]
    )
    assert site.get("/api/v1/resources")[0] == 401
    status, headers, body = site.get("/login")
    assert status == 200 and '<label for="token">API token</label>' in body
    field = body.split('<input id="token"', 1)[1].split(">", 1)[0]
    assert 'type="password"' in field and "name=" not in field  # never sent in a URL


def test_the_session_sets_an_http_only_strict_cookie_and_logout_clears_it(site: Site) -> None:
    status, headers, body = site.get("/api/v1/session", bearer=ADMIN)
    assert (status, json.loads(body)) == (200, {"name": "ops", "role": "admin"})
    cookie = headers["Set-Cookie"]
    assert cookie.startswith(f"{auth.COOKIE}={ADMIN}")
    assert "HttpOnly" in cookie and "SameSite=Strict" in cookie and "Path=/" in cookie
    assert "Secure" not in cookie  # a plain loopback listener; TLS adds it
    assert ADMIN not in body
    assert site.get("/api/v1/session")[0] == 401
    assert site.get("/api/v1/session", bearer="ib_wrong")[0] == 401
    status, headers, _ = site.get("/logout", ADMIN)
    assert (status, headers["Location"]) == (303, "/login")
    assert "Max-Age=0" in headers["Set-Cookie"]


def test_every_ui_answer_has_the_security_headers_and_no_inline_script(
    site: Site, store: store_module.Store
) -> None:
    store.apply_specs([_vm("web", "alice")])
    for path in ("/", "/login", "/ui/vm/web", "/static/ui.js", "/ui/vm/none"):
        _, headers, body = site.get(path, ADMIN)
        for name, value in ui.HEADERS.items():
            assert headers[name] == value, (path, name)
        assert "<script>" not in body and "style=" not in body and "onclick" not in body
    assert headers["Content-Security-Policy"] == (
        "default-src 'self'; img-src 'self' data:; frame-ancestors 'none'"
    )


def test_static_files_are_a_fixed_list(site: Site) -> None:
    status, headers, body = site.get("/static/ui.css")
    assert status == 200 and headers["Content-Type"].startswith("text/css") and ":root" in body
    assert site.get("/static/ui.js")[1]["Content-Type"].startswith("text/javascript")
    for path in ("/static/../ui.py", "/static/%2e%2e/ui.py", "/static/ui.py", "/static/a/ui.css"):
        assert site.get(path)[0] == 404, path


def test_a_user_sees_only_their_vms_and_another_s_page_is_404(
    site: Site, store: store_module.Store
) -> None:
    store.apply_specs([_vm("alice-vm", "alice"), _vm("bob-vm", "bob")])
    _event(store, "bob-vm", "Started", "bob's secret plans")
    _event(store, "alice-vm", "Started", "alice's day begins")
    status, _, body = site.get("/", ALICE)
    assert status == 200 and _rows(body) == ["alice-vm"]
    assert '<a href="/ui/vm/alice-vm">VirtualMachine/alice-vm</a>' in body  # the events' link
    assert "bob" not in body
    assert site.get("/ui/vm/bob-vm", ALICE)[0] == 404
    assert site.get("/ui/fragments/resource/vm/bob-vm", ALICE)[0] == 404
    assert site.get("/ui/vm/alice-vm", ALICE)[0] == 200
    assert set(_rows(site.get("/", ADMIN)[2])) == {"alice-vm", "bob-vm"}


def test_the_console_link_follows_the_graphics_and_who_may_open_it(
    site: Site, store: store_module.Store
) -> None:
    store.apply_specs(
        [_vm("vnc-vm", "alice"), _vm("spice-vm", "alice", "spice"), _vm("bare", "alice", "none")]
    )
    store.apply_specs([_vm("stopped", "alice")])
    for name in ("vnc-vm", "spice-vm", "bare"):
        _status(store, name)
    body = site.get("/ui/vm/vnc-vm", ALICE)[2]
    assert 'href="/console/vnc-vm">Open console</a>' in body
    assert 'href="/console/spice-vm/vv">Download .vv</a>' in site.get("/ui/vm/spice-vm", ADMIN)[2]
    assert "/console/" not in site.get("/ui/vm/bare", ADMIN)[2]
    assert "/console/" not in site.get("/ui/vm/vnc-vm", VIEWER)[2]
    stopped = site.get("/ui/vm/stopped", ADMIN)[2]
    assert "/console/" not in stopped and "The console opens while the VM runs." in stopped


def test_the_resource_page_shows_spec_yaml_conditions_events_with_actor_and_history_diffs(
    site: Site, store: store_module.Store
) -> None:
    store.apply_specs([_vm("web", "alice", cpus=1)])
    store.apply_specs([_vm("web", "alice", cpus=2, memory="1GiB", firmware=None)])
    _status(store, "web")
    key = record.ResourceKey("VirtualMachine", "web")
    store.record_events(
        [record.NewEvent(key, record.EventType.NORMAL, "Updated", "cpus 1 -> 2", actor="git:ann")]
    )
    status, _, body = site.get("/ui/vm/web", ADMIN)
    assert status == 200
    assert "template: t\ncpus: 2\nmemory: 1GiB\n</pre>" in body  # unset fields left out
    assert "<td>Drifted</td><td>False</td>" in body
    assert "cpus 1 -&gt; 2" in body and "<td>git:ann</td>" in body
    assert "<h3>Generation 2</h3>" in body and "<h3>Generation 1</h3>" in body
    assert "<code>spec.cpus</code>: <code>1</code> → <code>2</code>" in body
    assert "<code>spec.memory</code>: added <code>1GiB</code>" in body
    assert "192.0.2.7" in body and "Running" in body


def test_filters_by_kind_phase_label_and_search(site: Site, store: store_module.Store) -> None:
    store.apply_specs([_vm("web", "alice"), _vm("db", "bob")])
    template = record.SpecWrite(
        key=record.ResourceKey("Template", "small"),
        spec={"spec": {"cpus": 1}},
        spec_hash="t",
        labels={"team": "ops"},
        annotations={},
        source_file=None,
        source_document=None,
        source_revision=None,
    )
    store.apply_specs([template])
    _status(store, "web")
    _status(store, "db", phase="Failed")

    def shown(query: str) -> list[str]:
        return sorted(_rows(site.get(f"/{query}", ADMIN)[2]))

    assert shown("") == ["db", "small", "web"]
    assert shown("?kind=vm") == ["db", "web"]
    assert shown("?kind=templates") == ["small"]
    assert shown("?phase=failed") == ["db"]
    assert shown("?label=team%3Dops") == ["small"]
    assert shown("?label=team") == ["db", "small", "web"]
    assert shown("?q=192.0.2") == ["db", "web"]
    assert shown("?q=BOB") == ["db"]
    assert shown("?kind=vm&phase=Ready&q=web") == ["web"]
    body = site.get("/?kind=vm&phase=Ready", ADMIN)[2]
    assert '<option value="vm" selected>' in body and '<option value="Ready" selected>' in body
    assert 'data-live="/ui/fragments/resources?kind=vm&amp;phase=Ready"' in body


def test_drift_shows_as_drifted_then_healed_then_in_sync(
    site: Site, store: store_module.Store
) -> None:
    store.apply_specs([_vm("web", "alice")])
    _status(store, "web")

    def drift() -> str:
        body = site.get("/ui/fragments/resources", ADMIN)[2]
        return body.split('<td class="drift">', 1)[1].split("</td>", 1)[0]

    assert ">In sync<" in drift()
    _status(store, "web", drifted=True)
    assert ">Drifted<" in drift()
    _event(store, "web", "DriftDetected", "out-of-band change: power")
    _event(store, "web", "DriftCorrected", "corrected: power")
    _status(store, "web")
    assert ">Healed<" in drift() and "corrected: power" in drift()
    # Detected by a pass whose status is not written yet: drifted, whatever the old status says.
    _status(store, "web", ago=dt.timedelta(minutes=1))
    _event(store, "web", "DriftDetected", "out-of-band change: vcpus")
    assert ">Drifted<" in drift() and "vcpus" in drift()


def test_no_page_holds_a_token(site: Site, store: store_module.Store) -> None:
    store.apply_specs([_vm("web", "alice")])
    for path in ("/", "/ui/vm/web", "/ui/fragments/resources", "/ui/fragments/resource/vm/web"):
        for secret in (ADMIN, ALICE):
            status, _, body = site.get(path, secret)
            assert status == 200 and secret not in body, path


def _luminance(hex_colour: str) -> float:
    channels = [int(hex_colour[i : i + 2], 16) / 255 for i in (1, 3, 5)]
    linear = [c / 12.92 if c <= 0.04045 else ((c + 0.055) / 1.055) ** 2.4 for c in channels]
    return 0.2126 * linear[0] + 0.7152 * linear[1] + 0.0722 * linear[2]


def _contrast(one: str, other: str) -> float:
    light, dark = sorted((_luminance(one), _luminance(other)), reverse=True)
    return (light + 0.05) / (dark + 0.05)


def test_every_text_colour_of_the_stylesheet_reads_at_4_5_to_1_on_its_background() -> None:
    css = (Path(ui.__file__).parent / "static" / "ui.css").read_text()
    root = css.split(":root {", 1)[1].split("}", 1)[0]
    colour = {
        line.split(":")[0].strip(): line.split(":")[1].strip(" ;")
        for line in root.splitlines()
        if line.strip().startswith("--")
    }
    pairs = [
        ("--text", "--bg"), ("--text", "--panel"), ("--muted", "--bg"), ("--muted", "--panel"),
        ("--link", "--bg"), ("--link", "--panel"), ("--bad-text", "--bad-bg"),
        ("--good-text", "--good-bg"), ("--warn-text", "--warn-bg"), ("--text", "--good-bg"),
    ]  # fmt: skip
    for text, background in pairs:
        assert _contrast(colour[text], colour[background]) >= 4.5, (text, background)
    assert _contrast("#ffffff", colour["--focus"]) >= 4.5  # a button's label
    assert "outline: 3px solid var(--focus)" in css  # focus is always visible


def test_a_tls_listener_marks_the_session_cookie_secure(
    store: store_module.Store, tmp_path: Path
) -> None:
    cert, key = tls.self_signed(tmp_path)
    probe = http.Probe(lambda: True, lambda: (True, {}))
    server = http.Server(
        ("127.0.0.1", 0), probe, metrics.Metrics(lambda: 0), store,
        tls=http.tls_context(str(cert), str(key)),
    )  # fmt: skip
    server.start()
    try:
        context = ssl.create_default_context(cafile=str(cert))
        conn = http_client.HTTPSConnection("127.0.0.1", server.port, timeout=5, context=context)
        conn.request("GET", "/api/v1/session", headers={"Authorization": f"Bearer {ADMIN}"})
        resp = conn.getresponse()
        resp.read()
        conn.close()
    finally:
        server.close()
    assert resp.status == 200
    cookie = resp.headers["Set-Cookie"]
    assert "Secure" in cookie and "HttpOnly" in cookie and "SameSite=Strict" in cookie


def test_the_source_banner_is_for_operators_not_for_users(
    site: Site, store: store_module.Store
) -> None:
    store.apply_specs([_vm("alice-vm", "alice")])
    site.source = {"refusedRevision": "main@sha1:bad", "errors": ["bob.yaml:3: spec.memory"]}
    for secret in (ADMIN, VIEWER):
        body = site.get("/", secret)[2]
        assert "main@sha1:bad was refused" in body and "bob.yaml:3: spec.memory" in body
    assert "main@sha1:bad" not in site.get("/", ALICE)[2]
    site.source = {"unavailable": "git fetch failed: host unreachable", "appliedRevision": "a"}
    assert "The source cannot be read" in site.get("/ui/fragments/resources", ADMIN)[2]


def test_head_asks_for_a_page_without_its_body(site: Site) -> None:
    conn = http_client.HTTPConnection("127.0.0.1", site.server.port, timeout=5)
    conn.request("HEAD", "/login")
    resp = conn.getresponse()
    assert resp.status == 200 and resp.read() == b""
    assert int(resp.headers["Content-Length"]) > 0
    conn.close()
