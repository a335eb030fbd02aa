"""Where the daemon's desired state comes from: a directory or a git branch.

Both kinds of :class:`Source` answer two questions:

* :meth:`Source.checkout` — where the manifests are *now*, and under which
  revision. Called by the pass itself, so every pass re-reads the source
  (level-based: a missed notification costs latency, never correctness);
* :meth:`Source.watch` — block until stopped, calling ``changed()`` whenever
  the source may have changed. It only wakes the controller up.

:class:`DirectorySource` watches with ``watchfiles`` (debounced, one call per
burst of writes). Only ``*.yaml`` / ``*.yml`` files outside hidden directories
count — the files the loader reads — so editor swap, backup and lock files
(``.x.yaml.swp``, ``x.yaml~``, ``.#x.yaml``, ``#x.yaml#``) never trigger a
pass. Its revision is ``dir@<hash>`` of the manifests' names and contents:
saving a file unchanged yields the same revision.

:class:`GitSource` keeps a clone in a cache directory and polls with the host's
``git`` (any URL it can reach, ``file://`` included), run as an argument list,
never through a shell, without prompts and with a timeout. Fetching (the
poller's thread) and checking out (the pass's thread) share one lock, so a
pass never reads a half-written working tree; the lock is also an ``flock``
on ``<clone>.lock``, because a leader and a standby on one host share the
clone of the same URL. The revision is ``REF@sha1:HASH``.

Credentials never land on disk or in a log: the user and password (or token)
of a URL such as ``https://ci:TOKEN@git.example.org/infra.git`` are cut from
the URL before git sees it, so the clone's ``.git/config`` names the bare
URL. The password may instead come from the file named by
``INFINIBAY_GIT_PASSWORD_FILE``, which keeps it out of ``ps`` as well. git
gets them through a credential helper given per command
(``-c credential.helper=...``) that echoes two environment variables set only
in that git child's environment; the host's own helpers are switched off for
those commands, so none of them stores the token either. The cache
directories are 0700 and the lock files 0600, whatever the umask.
"""

from __future__ import annotations

import contextlib
import dataclasses
import fcntl
import hashlib
import logging
import os
import subprocess
import threading
import urllib.parse
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Protocol

import watchfiles

from reconciler import errors, manifests, settings
from reconciler.models import record

__all__ = [
    "Checkout",
    "DirectorySource",
    "GitSource",
    "Source",
    "is_git_url",
    "is_manifest_path",
    "relative_messages",
]

_log = logging.getLogger(__name__)
_GIT_TIMEOUT_S = 300.0
_GIT_ENV = {"GIT_TERMINAL_PROMPT": "0", "GIT_ASKPASS": "true", "LC_ALL": "C"}
_REF_NAME = "refs/infinibay/source"
GIT_PASSWORD_FILE_ENV = "INFINIBAY_GIT_PASSWORD_FILE"
_USER_ENV = "IB_GIT_USER"
_PASSWORD_ENV = "IB_GIT_PASSWORD"
# Answers git's "get" with the two variables of its own environment; ignores "store"/"erase".
_HELPER = (
    f'!f() {{ test "$1" = get || return 0; echo "username=${_USER_ENV}"; '
    f'echo "password=${_PASSWORD_ENV}"; }}; f'
)


@dataclasses.dataclass(frozen=True)
class Checkout:
    """The manifests of one revision: load ``root``; messages are relative to ``base``."""

    root: Path
    revision: str | None
    base: Path
    actor: str | None = None
    """Who made the revision: a commit's author (``Name <email>``); ``None``: unknown."""


class Source(Protocol):
    name: str
    """The source as the operator gave it (path or URL, password redacted)."""

    trigger: record.Trigger
    """The trigger recorded on runs caused by a change of this source."""

    def checkout(self) -> Checkout: ...

    def holds(self, checkout: Checkout) -> bool:
        """Whether ``checkout`` still holds the revision it names (read after loading it)."""
        ...

    def watch(self, stop: threading.Event, changed: Callable[[], None]) -> None: ...


def is_git_url(source: str) -> bool:
    """A URL or scp-like address (``host:path``) for git rather than a local directory."""
    if "://" in source:
        return True
    head, sep, _ = source.partition(":")
    return bool(sep) and "/" not in head and not Path(source).exists() and len(head) > 1


def is_manifest_path(root: Path, path: Path) -> bool:
    """Whether a change of ``path`` can change what the loader reads under ``root``.

    The loader's own rule (:func:`reconciler.manifests.is_manifest`), on ``path``
    relative to ``root``.
    """
    try:
        relative = path.relative_to(root)
    except ValueError:
        return False
    return manifests.is_manifest(relative)


def split_credentials(url: str) -> tuple[str, str | None, str | None]:
    """``https://u:pw@host/x`` -> (``https://host/x``, ``"u"``, ``"pw"``).

    An ssh login (``ssh://git@host/x``) is not a secret and stays in the URL,
    which ssh needs; only its password, if any, is cut. scp-like addresses
    (``git@host:x``) are returned as they are.
    """
    scheme, sep, rest = url.partition("://")
    end = min((i for i in (rest.find("/"), rest.find("?"), rest.find("#")) if i >= 0), default=-1)
    at = rest.rfind("@", 0, len(rest) if end < 0 else end)
    if not sep or at < 0:
        return url, None, None
    user, colon, password = rest[:at].partition(":")
    host = rest[at + 1 :]
    if "ssh" in scheme.lower().split("+"):
        if not colon:
            return url, None, None
        return f"{scheme}{sep}{user}@{host}", None, urllib.parse.unquote(password)
    return (
        f"{scheme}{sep}{host}",
        urllib.parse.unquote(user) or None,
        urllib.parse.unquote(password) if colon else None,
    )


def relative_messages(messages: Sequence[str], base: Path) -> list[str]:
    """Loader messages with the checkout's directory cut off: ``vms.yaml:3:5: ...``."""
    prefix = f"{base}{os.sep}"
    return [line.replace(prefix, "") for line in messages]


class _ManifestFilter(watchfiles.DefaultFilter):
    def __init__(self, root: Path) -> None:
        super().__init__()
        self._root = root

    def __call__(self, change: watchfiles.Change, path: str) -> bool:
        return bool(super().__call__(change, path)) and is_manifest_path(self._root, Path(path))


def _tree_hash(root: Path) -> str:
    digest = hashlib.sha256()
    if root.is_file():
        digest.update(root.read_bytes())
        return digest.hexdigest()[:12]
    real_root = os.path.realpath(root)
    for path in sorted(root.rglob("*")):
        if path.is_file() and is_manifest_path(root, path):
            digest.update(str(path.relative_to(root)).encode() + b"\0")
            try:
                if settings.inside(os.path.realpath(path), real_root):
                    digest.update(path.read_bytes())
                else:  # a symlink out of the source: the loader refuses it, never read it
                    digest.update(os.readlink(path).encode())
            except OSError:
                continue  # removed meanwhile: the watcher reports that change too
            digest.update(b"\0")
    return digest.hexdigest()[:12]


class DirectorySource:
    """A local directory (or a single file), watched for changes."""

    trigger = record.Trigger.WATCH

    def __init__(self, path: str, subdir: str = "", *, debounce: float = 0.5) -> None:
        self.base = Path(path).expanduser().absolute()
        self.root = self.base / subdir if subdir else self.base
        self.name = str(self.base)
        self._debounce_ms = max(int(debounce * 1000), 1)
        if not self.root.exists():
            raise errors.SourceError(f"the source directory {self.root} does not exist")

    def checkout(self) -> Checkout:
        try:
            revision = f"dir@{_tree_hash(self.root)}"
        except OSError as exc:  # e.g. out of file descriptors: the last good state stays
            raise errors.SourceError(
                f"cannot read the source directory {self.root}: {exc.strerror or exc}"
            ) from exc
        return Checkout(self.root, revision, self.base)

    def holds(self, checkout: Checkout) -> bool:
        """A directory can change while it is read: its hash again, after loading."""
        try:
            return f"dir@{_tree_hash(self.root)}" == checkout.revision
        except OSError:
            return False

    def watch(self, stop: threading.Event, changed: Callable[[], None]) -> None:
        watched = self.root if self.root.is_dir() else self.root.parent
        for batch in watchfiles.watch(
            watched,
            watch_filter=_ManifestFilter(watched),
            debounce=self._debounce_ms,
            stop_event=stop,
            rust_timeout=1000,
            raise_interrupt=False,
        ):
            _log.debug("source changed: %s", sorted(path for _, path in batch))
            changed()


def _default_cache() -> Path:
    cache = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(cache) / "infinibay" / "git"


class GitSource:
    """A branch (or tag) of a git repository, cloned into a cache directory and polled."""

    trigger = record.Trigger.GIT

    def __init__(
        self,
        url: str,
        ref: str = "main",
        subdir: str = "",
        *,
        interval: float = 30.0,
        cache_dir: str | None = None,
    ) -> None:
        if url.startswith("-") or ref.startswith("-") or not ref:
            raise errors.ConfigError(
                settings.redact(
                    f"refusing the git source {split_credentials(url)[0]!r} at ref {ref!r}"
                )
            )
        self.url, user, password = split_credentials(url)
        settings.remember_secret(password)
        password = settings.secret_from_file(GIT_PASSWORD_FILE_ENV) or password
        if password is None:
            settings.remember_secret(user)  # a token given as the user name (GitHub's way)
        self._credentials: dict[str, str] = {}
        if user is not None or password is not None:
            self._credentials = {_USER_ENV: user or "git", _PASSWORD_ENV: password or ""}
        self.ref = ref
        self.name = settings.redact(self.url)
        self.interval = interval
        key = hashlib.sha256(f"{self.url}\0{ref}".encode()).hexdigest()[:16]
        self.dir = (Path(cache_dir) if cache_dir else _default_cache()) / key
        self.root = self.dir / subdir if subdir else self.dir
        self._lock = threading.Lock()
        self._fetched: str | None = None
        self._checked_out: str | None = None
        self._author: str | None = None  # of the commit checked out
        self.last_error: str | None = None

    # -- git ---------------------------------------------------------------------

    def _git(self, *args: str) -> str:
        helper = ["-c", "credential.helper=", "-c", f"credential.helper={_HELPER}"]
        argv = ["git", "-C", str(self.dir), *(helper if self._credentials else []), *args]
        try:
            done = subprocess.run(
                argv,
                capture_output=True,
                text=True,
                timeout=_GIT_TIMEOUT_S,
                env={**os.environ, **_GIT_ENV, **self._credentials},
                check=False,
            )
        except (OSError, subprocess.TimeoutExpired) as exc:
            raise errors.SourceError(
                settings.redact(f"git {args[0]} of {self.url} failed: {exc}")
            ) from exc
        if done.returncode != 0:
            lines = [line for line in done.stderr.splitlines() if line.strip()]
            detail = lines[-1].strip() if lines else f"exit {done.returncode}"
            raise errors.SourceError(settings.redact(f"git {args[0]} of {self.url}: {detail}"))
        return done.stdout.strip()

    @contextlib.contextmanager
    def _locked(self) -> Iterator[None]:
        """This process's threads, then other processes on this host, one at a time."""
        with self._lock:
            lock_file = self.dir.with_name(self.dir.name + ".lock")
            try:
                settings.private_dir(self.dir.parent)
                fd = os.open(lock_file, os.O_RDWR | os.O_CREAT, 0o600)
            except OSError as exc:
                raise errors.SourceError(
                    f"cannot open the lock file {lock_file}: {exc.strerror}"
                ) from exc
            try:
                fcntl.flock(fd, fcntl.LOCK_EX)
                yield
            finally:
                os.close(fd)  # drops the flock

    def _ensure_clone(self) -> None:
        if (self.dir / ".git").is_dir():
            self._git("remote", "set-url", "origin", self.url)
            return
        settings.private_dir(self.dir)
        self._git("init", "--quiet")
        self._git("remote", "add", "origin", self.url)

    def fetch(self) -> str:
        """Fetch ``ref`` and return its commit hash."""
        with self._locked():
            try:
                self._ensure_clone()
                self._git(
                    "fetch", "--quiet", "--no-tags", "--force", "origin", f"+{self.ref}:{_REF_NAME}"
                )
                sha = self._git("rev-parse", "--verify", f"{_REF_NAME}^{{commit}}")
            except errors.SourceError as exc:
                self.last_error = str(exc)
                raise
            self.last_error = None
            self._fetched = sha
            return sha

    def revision(self, sha: str) -> str:
        return f"{self.ref}@sha1:{sha}"

    # -- Source ------------------------------------------------------------------

    def checkout(self) -> Checkout:
        sha = self._fetched or self.fetch()
        with self._locked():
            if self._checked_out != sha:
                self._git("checkout", "--quiet", "--force", "--detach", sha)
                self._git("clean", "--quiet", "-ffdx")
                self._checked_out = sha
                self._author = self._git("show", "-s", "--format=%an <%ae>", sha) or None
        return Checkout(self.root, self.revision(sha), self.dir, self._author)

    def holds(self, checkout: Checkout) -> bool:
        """A commit's tree is only ever changed by :meth:`checkout`, on the pass's own thread."""
        return True

    def watch(self, stop: threading.Event, changed: Callable[[], None]) -> None:
        seen = self._fetched
        while not stop.wait(self.interval):
            try:
                sha = self.fetch()
            except errors.SourceError as exc:
                _log.warning("%s; retrying in %gs", exc, self.interval)
                continue
            if sha != seen:
                _log.info(
                    "new commit %s", self.revision(sha), extra={"revision": self.revision(sha)}
                )
                seen = sha
                changed()
