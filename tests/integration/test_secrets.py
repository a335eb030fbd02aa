"""No password or token leaks: not in ``ps``, logs, the API, events or files, even in an outage.

A PostgreSQL server of the test's own requires a password (scram) from
:data:`~tests.fixtures.database.PASSWORD_ROLE`; the password has a raw ``@`` in
it. A real daemon is started with the password given three ways — a password
file, a ``?password=`` query parameter, a raw ``@`` in the URL — its record is
stopped with ``pg_ctl stop`` while it runs, and everything it showed or wrote
is searched for the password. The other tests check the files the reconciler
creates under ``umask 000`` and that libpq's ``.pgpass`` is honoured.
"""

from __future__ import annotations

import os
import secrets
import signal
import stat
import subprocess
import sys
import urllib.parse
import uuid
from pathlib import Path

import pytest
import sqlalchemy as sa
import yaml

from reconciler.store import store as store_module
from tests.fixtures import database
from tests.integration.test_daemon import ADMIN_TOKEN, ROOT, free_port, grant, until

pytestmark = pytest.mark.integration

ROLE = database.PASSWORD_ROLE


class Secured:
    """A database owned by :data:`ROLE`, whose password has a raw ``@`` in it."""

    def __init__(self, server: database.PostgresServer) -> None:
        self.server = server
        self.password = f"p@ss-{secrets.token_hex(6)}"
        self.database = f"ib_secret_{uuid.uuid4().hex[:8]}"
        admin = database.admin_engine(server.url)
        try:
            with admin.connect() as conn:
                # A utility statement takes no bound parameters: the server quotes them.
                create = conn.execute(
                    sa.text(
                        "SELECT format('CREATE ROLE %I LOGIN PASSWORD %L',"
                        " CAST(:role AS text), CAST(:pw AS text))"
                    ),
                    {"role": ROLE, "pw": self.password},
                ).scalar_one()
                conn.exec_driver_sql(create)
                conn.exec_driver_sql(f'CREATE DATABASE "{self.database}" OWNER {ROLE}')
        finally:
            admin.dispose()

    def url(self, password: str = "", query: str = "") -> str:
        userinfo = f"{ROLE}:{password}" if password else ROLE
        base = f"postgresql+psycopg://{userinfo}@127.0.0.1:{self.server.port}/{self.database}"
        return f"{base}?{query}" if query else base

    @property
    def forms(self) -> list[str]:
        """The password as it could appear: raw, percent-encoded, and after its ``@``."""
        return [self.password, urllib.parse.quote(self.password, safe=""), self.password[2:]]


@pytest.fixture
def secured(private_postgres: database.PostgresServer) -> Secured:
    return Secured(private_postgres)


def _leaks(text: str, forms: list[str]) -> list[str]:
    return [form for form in forms if form in text]


@pytest.mark.parametrize("given", ["password-file", "query-string", "raw-at-sign"])
def test_no_password_in_ps_logs_api_events_or_files_even_while_the_record_is_down(
    secured: Secured, libvirt_uri: str, tmp_path: Path, given: str
) -> None:
    env = {**os.environ, "XDG_STATE_HOME": str(tmp_path / "state")}
    env["XDG_CACHE_HOME"] = str(tmp_path / "cache")
    if given == "password-file":
        password_file = tmp_path / "db-password"
        password_file.write_text(secured.password + "\n")
        env["INFINIBAY_DATABASE_PASSWORD_FILE"] = str(password_file)
        url = secured.url()
    elif given == "query-string":
        url = secured.url(query=f"password={urllib.parse.quote(secured.password, safe='')}")
    else:
        url = secured.url(password=secured.password)  # the raw "@" as an operator types it
    source = tmp_path / "source"
    source.mkdir()
    template = {"cpus": 1, "memory": "64MiB", "graphics": {"type": "none"}}
    (source / "t.yaml").write_text(
        yaml.safe_dump(
            {
                "apiVersion": "infinibay.io/v1alpha1",
                "kind": "Template",
                "metadata": {"name": f"tpl-{uuid.uuid4().hex[:6]}"},
                "spec": template,
            }
        )
    )
    grant(secured.url(password=secured.password), "integration-admin", ADMIN_TOKEN)
    port = free_port()
    log = tmp_path / "daemon.log"
    argv = [
        sys.executable,
        "-m",
        "reconciler",
        "--db",
        url,
        "-c",
        libvirt_uri,
        "--log-format",
        "json",
        "-v",
        "daemon",
        "--source",
        str(source),
        "--listen",
        f"127.0.0.1:{port}",
        "--interval",
        "1h",
    ]
    shown: list[str] = []

    def get(path: str) -> tuple[int, str]:
        import urllib.error
        import urllib.request

        try:
            request = urllib.request.Request(
                f"http://127.0.0.1:{port}{path}",
                headers={"Authorization": f"Bearer {ADMIN_TOKEN}"},
            )
            with urllib.request.urlopen(request, timeout=15) as resp:
                status, body = resp.status, resp.read().decode()
        except urllib.error.HTTPError as exc:
            with exc:
                status, body = exc.code, exc.read().decode()
        except OSError:
            return 0, ""
        shown.append(body)
        return status, body

    def endpoints() -> list[int]:
        paths = ["/readyz", "/api/v1/resources", "/api/v1/events", "/metrics"]
        return [get(path)[0] for path in paths]

    with log.open("ab") as out:
        daemon = subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT, cwd=ROOT, env=env)
    try:
        until(lambda: get("/readyz")[0] == 200, 60, "the daemon is ready")
        cmdline = Path(f"/proc/{daemon.pid}/cmdline").read_bytes().decode()
        if given == "password-file":
            assert _leaks(cmdline, secured.forms) == []
        assert endpoints()[:3] == [200, 200, 200]

        secured.server.stop("fast")
        daemon.send_signal(signal.SIGHUP)  # a pass now, into the outage
        until(lambda: 503 in endpoints(), 30, "the outage shows in the endpoints")
        during = [body for body in shown if "127.0.0.1" in body]
        assert during, "no endpoint said which record is unreachable"
        if given != "password-file":
            assert any("***" in body for body in during)  # the URL shown, its secret masked
        secured.server.start()
        until(lambda: get("/api/v1/resources")[0] == 200, 60, "the API reads the record again")
        endpoints()
    finally:
        daemon.send_signal(signal.SIGTERM)
        try:
            daemon.wait(60)
        except subprocess.TimeoutExpired:
            daemon.kill()
            daemon.wait(30)

    assert _leaks("\n".join(shown), secured.forms) == []
    assert _leaks(log.read_text(), secured.forms) == []
    admin = database.admin_engine(secured.server.url)
    try:
        events = sa.make_url(secured.server.url).set(database=secured.database)
        engine = sa.create_engine(events, poolclass=sa.NullPool)
        with engine.connect() as conn:
            messages = [row[0] for row in conn.exec_driver_sql("SELECT message FROM events")]
        engine.dispose()
    finally:
        admin.dispose()
    assert _leaks("\n".join(messages), secured.forms) == []
    for path in [*(tmp_path / "state").rglob("*"), *(tmp_path / "cache").rglob("*")]:
        if path.is_file():
            assert _leaks(path.read_text(errors="replace"), secured.forms) == [], path


def test_libpq_pgpass_supplies_the_password_when_the_url_has_none(
    secured: Secured, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    pgpass = tmp_path / "pgpass"
    pgpass.write_text(
        f"127.0.0.1:{secured.server.port}:{secured.database}:{ROLE}:{secured.password}\n"
    )
    pgpass.chmod(0o600)
    monkeypatch.setenv("PGPASSFILE", str(tmp_path / "missing"))
    with pytest.raises(Exception, match="password"):
        store_module.Store.open(secured.url()).close()  # no password at all: refused
    monkeypatch.setenv("PGPASSFILE", str(pgpass))
    with store_module.Store.open(secured.url()) as store:
        assert store.backend == "postgresql" and store.installation_id()


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_the_record_its_locks_and_the_state_directory_are_private_under_umask_000(
    libvirt_uri: str, tmp_path: Path
) -> None:
    state = tmp_path / "state"
    manifests = tmp_path / "manifests"
    manifests.mkdir()
    (manifests / "t.yaml").write_text(
        yaml.safe_dump(
            {
                "apiVersion": "infinibay.io/v1alpha1",
                "kind": "Template",
                "metadata": {"name": "private"},
                "spec": {"cpus": 1, "memory": "64MiB", "graphics": {"type": "none"}},
            }
        )
    )
    env = {**os.environ, "XDG_STATE_HOME": str(state), "INFINIBAY_LIBVIRT_URI": libvirt_uri}
    env.pop("INFINIBAY_DATABASE_URL", None)
    done = subprocess.run(
        [sys.executable, "-m", "reconciler", "apply", "-f", str(manifests)],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
        preexec_fn=lambda: os.umask(0),  # the point of the test
    )
    assert done.returncode == 0, done.stdout + done.stderr
    home = state / "infinibay"
    assert _mode(state) == 0o700 and _mode(home) == 0o700
    files = sorted(p.name for p in home.iterdir() if p.is_file())
    assert {"state.db", "state.db.lock"} <= set(files)
    for name in files:
        assert _mode(home / name) == 0o600, name
    sqlite = store_module.Store.open(f"sqlite:///{home / 'state.db'}")
    try:
        with sqlite.writer_lock():  # the WAL and shared-memory files exist while it is open
            assert _mode(home / "state.db-wal") == 0o600
            assert _mode(home / "state.db-shm") == 0o600
    finally:
        sqlite.close()
    journal_dir = home / "journal"
    assert _mode(journal_dir) == 0o700
    assert all(_mode(p) == 0o600 for p in journal_dir.iterdir())
