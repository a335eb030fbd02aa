"""Git credentials reach git through a credential helper, never the clone's ``.git/config``.

The repository is served over smart HTTP on loopback by the host's own
``git http-backend`` behind a tiny server that demands HTTP Basic
authentication, so a fetch succeeds only if the credentials really reach git.
The host's credential store is switched on (``credential.helper store`` in a
global config of the test's own) to prove the token is not saved there either.
"""

from __future__ import annotations

import base64
import http.server
import os
import stat
import subprocess
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from reconciler import errors
from reconciler.daemon import sources
from tests.fixtures.git import git

USER = "ci"
TOKEN = "glpat-0123456789abcdef"  # a test token, which must never leak
TEMPLATE = """apiVersion: infinibay.io/v1alpha1
kind: Template
metadata: {name: from-http}
spec: {cpus: 1, memory: 64MiB}
"""


def _handler(root: Path) -> type[http.server.BaseHTTPRequestHandler]:
    expected = "Basic " + base64.b64encode(f"{USER}:{TOKEN}".encode()).decode()

    class GitHttp(http.server.BaseHTTPRequestHandler):
        def log_message(self, format: str, *args: Any) -> None:
            pass

        def do_GET(self) -> None:
            self._serve()

        def do_POST(self) -> None:
            self._serve()

        def _serve(self) -> None:
            if self.headers.get("Authorization") != expected:
                self.send_response(401)
                self.send_header("WWW-Authenticate", 'Basic realm="test"')
                self.send_header("Content-Length", "0")
                self.end_headers()
                return
            path, _, query = self.path.partition("?")
            body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
            env = {
                "PATH": os.environ["PATH"],
                "GIT_PROJECT_ROOT": str(root),
                "GIT_HTTP_EXPORT_ALL": "1",
                "REQUEST_METHOD": self.command,
                "PATH_INFO": path,
                "QUERY_STRING": query,
                "CONTENT_TYPE": self.headers.get("Content-Type", ""),
                "CONTENT_LENGTH": str(len(body)),
                "REMOTE_USER": USER,
                "REMOTE_ADDR": "127.0.0.1",
                "HTTP_CONTENT_ENCODING": self.headers.get("Content-Encoding", ""),
                "HTTP_GIT_PROTOCOL": self.headers.get("Git-Protocol", ""),
            }
            done = subprocess.run(
                ["git", "http-backend"], input=body, env=env, capture_output=True, check=True
            )
            head, _, payload = done.stdout.partition(b"\r\n\r\n")
            headers = [line.split(": ", 1) for line in head.decode().split("\r\n") if line]
            status = next((int(v.split()[0]) for k, v in headers if k == "Status"), 200)
            self.send_response(status)
            for key, value in headers:
                if key != "Status":
                    self.send_header(key, value)
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            self.wfile.write(payload)

    return GitHttp


@pytest.fixture
def served(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """``http://127.0.0.1:PORT/origin.git`` with one commit on main, behind Basic auth."""
    root = tmp_path / "served"
    root.mkdir()
    bare = root / "origin.git"
    work = tmp_path / "work"
    git(tmp_path, "init", "--quiet", "--bare", "--initial-branch=main", str(bare))
    git(tmp_path, "clone", "--quiet", str(bare), str(work))
    git(work, "checkout", "--quiet", "-B", "main")
    (work / "a.yaml").write_text(TEMPLATE)
    git(work, "add", ".")
    git(work, "commit", "--quiet", "-m", "one")
    git(work, "push", "--quiet", "origin", "main")
    # The host's own helper would store what git sends: it must never be asked.
    global_config = tmp_path / "gitconfig"
    global_config.write_text("[credential]\n\thelper = store\n")
    monkeypatch.setenv("GIT_CONFIG_GLOBAL", str(global_config))
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _handler(root))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/origin.git"
    finally:
        server.shutdown()
        server.server_close()


def _files_under(path: Path) -> str:
    return "\n".join(p.read_text(errors="replace") for p in path.rglob("*") if p.is_file())


def test_a_token_in_the_url_fetches_but_never_lands_in_git_config_or_messages(
    served: str, tmp_path: Path
) -> None:
    with_token = served.replace("http://", f"http://{USER}:{TOKEN}@")
    source = sources.GitSource(with_token, "main", cache_dir=str(tmp_path / "cache"))
    checkout = source.checkout()
    assert (checkout.root / "a.yaml").read_text() == TEMPLATE
    config = (source.dir / ".git" / "config").read_text()
    assert TOKEN not in config and f"url = {served}" in config
    assert TOKEN not in source.name
    assert TOKEN not in _files_under(tmp_path / "cache")
    assert not (tmp_path / "home" / ".git-credentials").exists()
    assert stat.S_IMODE((tmp_path / "cache").stat().st_mode) == 0o700
    assert stat.S_IMODE(source.dir.with_name(source.dir.name + ".lock").stat().st_mode) == 0o600


def test_without_the_token_the_server_refuses_and_with_a_password_file_it_fetches(
    served: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    bare = sources.GitSource(served, "main", cache_dir=str(tmp_path / "cache-a"))
    with pytest.raises(errors.SourceError):
        bare.fetch()  # proves the server demands the credentials

    wrong = sources.GitSource(
        served.replace("http://", f"http://{USER}:wrong-{TOKEN}@"),
        "main",
        cache_dir=str(tmp_path / "cache-b"),
    )
    with pytest.raises(errors.SourceError) as refused:
        wrong.fetch()
    assert TOKEN not in str(refused.value)

    token_file = tmp_path / "git-token"
    token_file.write_text(TOKEN + "\n")
    monkeypatch.setenv(sources.GIT_PASSWORD_FILE_ENV, str(token_file))
    from_file = sources.GitSource(
        served.replace("http://", f"http://{USER}@"), "main", cache_dir=str(tmp_path / "cache-c")
    )
    assert (from_file.checkout().root / "a.yaml").is_file()
    assert TOKEN not in (from_file.dir / ".git" / "config").read_text()


@pytest.mark.parametrize(
    ("url", "bare", "user", "password"),
    [
        ("https://ci:tok@host/x.git", "https://host/x.git", "ci", "tok"),
        ("https://tok@host/x.git", "https://host/x.git", "tok", None),
        ("https://ci:p%40ss@host/x.git", "https://host/x.git", "ci", "p@ss"),
        ("file://u:tok@/srv/x.git", "file:///srv/x.git", "u", "tok"),
        ("ssh://git@host/x.git", "ssh://git@host/x.git", None, None),
        ("git@host:x.git", "git@host:x.git", None, None),
        ("https://host/x.git", "https://host/x.git", None, None),
    ],
)
def test_credentials_are_cut_from_the_url_but_an_ssh_login_stays(
    url: str, bare: str, user: str | None, password: str | None
) -> None:
    assert sources.split_credentials(url) == (bare, user, password)
