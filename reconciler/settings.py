"""Run-wide settings resolved from options and the environment.

One place decides defaults (SPEC §4): ``--db`` / ``INFINIBAY_DATABASE_URL`` with
the SQLite file under ``$XDG_STATE_HOME`` as fallback, and ``-c`` /
``INFINIBAY_LIBVIRT_URI`` defaulting to ``qemu:///system``.

Secrets never travel on a command line: a database password can come from the
file named by ``INFINIBAY_DATABASE_PASSWORD_FILE`` (read once, its trailing
newline stripped), or from libpq's own ``~/.pgpass`` / ``PGPASSFILE``, which
psycopg reads whenever the URL carries no password.

:func:`redact` is the one function every shown text goes through (errors, logs,
``/readyz``, the API). It works by parsing, not by one lucky pattern:

* each URL in the text is split at ``://`` and at the *last* ``@`` of its
  authority, so a raw ``@`` inside a password hides the whole password; the
  password is replaced by ``***`` and the user name kept; a userinfo that
  cannot be parsed (or a URL whose host and port do not parse) is masked whole;
* ``key=value`` pairs whose key names a secret (``password``, ``sslpassword``,
  ``token``, ...) — a URL's query string or a libpq conninfo string — keep the
  key and lose the value;
* every secret the process knows (:func:`remember_secret`: the database
  password however it was given, a git token) is masked wherever it appears,
  also in its percent-encoded form, which catches a driver message that
  quotes a fragment of a connection string.

The trust boundary (SPEC §13) is also decided here, by the operator through the
environment, never by a manifest, because whoever can commit to the source
repository writes the manifests:

* ``INFINIBAY_POOL_ROOTS`` (colon-separated, default
  ``/var/lib/infinibay/pools:/var/lib/libvirt/images``): every pool path must lie
  under one of them once symlinks are resolved (:func:`os.path.realpath`; a path
  that does not exist yet resolves through its deepest existing ancestor).
* ``INFINIBAY_IMAGE_ROOTS`` (default
  ``/var/lib/infinibay/images:/var/lib/libvirt/images``): a pool marked
  ``images: true`` must also lie under one of these. Only image pools provide
  the backing files named by a disk's ``image:``, so a manifest can never make a
  host file the backing file of a guest disk.
* :data:`SYSTEM_PATHS` are refused whatever the roots, and so is a root that is
  one of them or lies inside one (``/var/lib/libvirt`` itself is a system path,
  its ``images`` directory is not).
* ``INFINIBAY_HOST_URIS`` (whitespace-separated shell patterns, default none):
  the libvirt URIs a ``Host`` manifest may name. A host receives VMs and, on a
  drain, their volumes, so a manifest may point only at hypervisors the
  operator listed (``qemu+ssh://root@hv-*.example.org/system``).
* ``INFINIBAY_ALLOW_REMOTE_GRAPHICS=1`` lets ``graphics.listen`` leave
  127.0.0.0/8; VNC has no password, so by default the console stays local.
* ``INFINIBAY_VIRTIO_WIN=POOL/VOLUME`` names the virtio-win driver ISO that
  every ``os: windows`` VM gets as a cdrom (the old backend's
  ``VIRTIO_WIN_ISO_PATH``); a windows VM planned without it, or with a volume
  that is not there, is refused at its ``os`` field.
* :class:`Limits` caps what one run reads: ``INFINIBAY_MAX_FILE_BYTES`` (8 MiB
  per file), ``INFINIBAY_MAX_DOCUMENTS`` (20,000 per run) and
  ``INFINIBAY_MAX_DEPTH`` (64 levels of YAML nesting).
"""

from __future__ import annotations

import dataclasses
import fnmatch
import functools
import ipaddress
import os
import re
import threading
import urllib.parse
from collections.abc import Mapping
from pathlib import Path

from reconciler import errors

__all__ = [
    "DEFAULT_IMAGE_ROOTS",
    "DEFAULT_LIBVIRT_URI",
    "DEFAULT_POOL_ROOTS",
    "PASSWORD_FILE_ENV",
    "SYSTEM_PATHS",
    "VIRTIO_WIN_ENV",
    "Boundary",
    "Limits",
    "Settings",
    "database_password",
    "default_database_url",
    "inside",
    "private_dir",
    "redact",
    "redact_url",
    "remember_secret",
    "secret_from_file",
    "state_dir",
]

DEFAULT_LIBVIRT_URI = "qemu:///system"
PASSWORD_FILE_ENV = "INFINIBAY_DATABASE_PASSWORD_FILE"
_MASK = "***"
# A scheme starts where no scheme character precedes it and is at most 32 long: so a
# long run of letters (an API body, a label) is scanned once, not once per letter.
_URL_RE = re.compile(r"(?<![a-z0-9+.-])[a-z][a-z0-9+.-]{0,31}://[^\s'\"<>`]+", re.I)
_SECRET_KEYS = "password|passwd|pwd|pass|sslpassword|token|access_token|private_token|secret"
_PAIR_RE = re.compile(
    rf"(?P<key>\b(?:{_SECRET_KEYS}))(?P<eq>\s*=\s*)(?P<value>'(?:[^'\\]|\\.)*'|[^\s&'\"]+)", re.I
)
# Shorter values would mask ordinary words; URLs and key=value pairs are masked anyway.
_MIN_SECRET = 3
_secrets: set[str] = set()
_secrets_guard = threading.Lock()


def state_dir() -> Path:
    """``$XDG_STATE_HOME/infinibay`` (``~/.local/state/infinibay``)."""
    state = os.environ.get("XDG_STATE_HOME") or str(Path.home() / ".local" / "state")
    return Path(state) / "infinibay"


def default_database_url() -> str:
    return f"sqlite:///{state_dir() / 'state.db'}"


def private_dir(path: Path) -> Path:
    """Create ``path`` (and missing parents) readable by this user only, whatever the umask.

    Only the directories created here are tightened; an existing one the
    operator made stays as it is.
    """
    missing = [p for p in (path, *path.parents) if not p.exists()]
    for directory in reversed(missing):
        try:
            directory.mkdir(mode=0o700)
        except FileExistsError:
            continue
        os.chmod(directory, 0o700)
    return path


def remember_secret(value: str | None) -> None:
    """Mask ``value`` (and its percent-encoded form) in every text :func:`redact` sees."""
    if value is None or len(value) < _MIN_SECRET:
        return
    with _secrets_guard:
        _secrets.update({value, urllib.parse.quote(value, safe="")})


def secret_from_file(variable: str) -> str | None:
    """The secret in the file named by the environment ``variable``; ``None`` when unset.

    The file's one trailing newline (``echo pw > file``) is not part of the secret.
    """
    name = os.environ.get(variable)
    if not name:
        return None
    try:
        text = Path(name).read_text()
    except (OSError, UnicodeDecodeError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) else "not UTF-8 text"
        raise errors.ConfigError(f"cannot read {variable} {name}: {reason}") from exc
    secret = text.removesuffix("\n").removesuffix("\r")
    remember_secret(secret)
    return secret


@functools.cache
def database_password() -> str | None:
    """The password from ``INFINIBAY_DATABASE_PASSWORD_FILE``, read once; ``None`` when unset."""
    return secret_from_file(PASSWORD_FILE_ENV)


def _mask_pairs(text: str) -> str:
    return _PAIR_RE.sub(lambda m: f"{m['key']}{m['eq']}{_MASK}", text)


def redact_url(url: str) -> str:
    """``url`` with its password, and any secret query parameter, replaced by ``***``."""
    scheme, sep, rest = url.partition("://")
    if not sep:
        return _mask_pairs(url)
    # The authority ends at the first "?" or "#": a password may hold "/" (SQLAlchemy
    # reads it so) and a raw "@" (urllib splits at the last one), so the userinfo is
    # everything before the last "@" ahead of the query.
    end = min((i for i in (rest.find("?"), rest.find("#")) if i >= 0), default=len(rest))
    at = rest.rfind("@", 0, end)
    if at >= 0:
        userinfo, host = rest[:at], rest[at + 1 :]
        user, colon, _password = userinfo.partition(":")
        try:
            parsed = urllib.parse.urlsplit(f"{scheme}://x@{host}")
            parsed.port  # noqa: B018 - raises ValueError when the authority is not a URL's
            parseable = bool(user) and all(c not in user for c in "/@[]")
        except ValueError:
            parseable = False
        if not parseable:
            userinfo = _MASK
        elif colon:
            userinfo = f"{user}:{_MASK}"
        rest = f"{userinfo}@{host}"
    return f"{scheme}{sep}{_mask_pairs(rest)}"


def redact(text: str) -> str:
    """``text`` with every password and token in it replaced by ``***`` (see the module doc)."""
    text = _mask_pairs(_URL_RE.sub(lambda m: redact_url(m.group(0)), text))
    with _secrets_guard:
        known = sorted(_secrets, key=len, reverse=True)
    for secret in known:
        text = text.replace(secret, _MASK)
    return text


@dataclasses.dataclass(frozen=True)
class Settings:
    database_url: str = dataclasses.field(default_factory=default_database_url)
    libvirt_uri: str = DEFAULT_LIBVIRT_URI
    verbose: bool = False
    log_format: str = "text"
    lock_timeout: float = 60.0


# --- the trust boundary (SPEC §13) ------------------------------------------------

VIRTIO_WIN_ENV = "INFINIBAY_VIRTIO_WIN"
HOST_URIS_ENV = "INFINIBAY_HOST_URIS"
DEFAULT_POOL_ROOTS = ("/var/lib/infinibay/pools", "/var/lib/libvirt/images")
DEFAULT_IMAGE_ROOTS = ("/var/lib/infinibay/images", "/var/lib/libvirt/images")
SYSTEM_PATHS = (
    "/",
    "/bin",
    "/boot",
    "/dev",
    "/etc",
    "/home",
    "/lib",
    "/lib32",
    "/lib64",
    "/libx32",
    "/proc",
    "/root",
    "/run",
    "/sbin",
    "/sys",
    "/usr",
    "/var",
    "/var/lib",
    "/var/lib/libvirt",
    "/var/log",
    "/var/run",
)
"""Directories a pool may never be, nor lie inside, whatever the roots say.

The ones that are only refused *as themselves* (``/``, ``/var``, ``/var/lib``)
hold the roots; every other one is refused with everything below it, except
that ``/var/lib/libvirt/images`` (libvirt's own image directory, a default root)
is allowed below ``/var/lib/libvirt``. ``/home`` holds users' files, so it is a system path too: an
operator who wants pools there binds a directory under one of the roots
instead. ``/srv``, ``/opt``, ``/mnt``, ``/data`` and the like are site choices
and are allowed when a root names them; ``/tmp`` too (tests use it).
"""
_ONLY_ITSELF = frozenset({"/", "/var", "/var/lib"})
_EXCEPTIONS = ("/var/lib/libvirt/images",)
_LOOPBACK = ipaddress.IPv4Network("127.0.0.0/8")


def _resolve(path: str) -> str:
    """``realpath`` of ``path``; a path that does not exist yet resolves through its ancestors."""
    return os.path.realpath(path)


def inside(path: str, root: str) -> bool:
    """Whether ``path`` is ``root`` or lies under it; both already resolved (realpath)."""
    return path == root or path.startswith(root.rstrip("/") + "/")


def _system(path: str) -> str | None:
    """The system path ``path`` is or lies inside, or ``None``."""
    if any(inside(path, allowed) for allowed in _EXCEPTIONS):
        return None
    for system in SYSTEM_PATHS:
        if path == system or (system not in _ONLY_ITSELF and inside(path, system)):
            return system
    return None


def _roots(environ: Mapping[str, str], name: str, default: tuple[str, ...]) -> tuple[str, ...]:
    raw = environ.get(name)
    entries = raw.split(":") if raw else list(default)
    return tuple(_resolve(entry) for entry in entries if entry.strip())


@dataclasses.dataclass(frozen=True)
class Boundary:
    """Where on the host manifests may make the reconciler act; see the module docstring."""

    pool_roots: tuple[str, ...] = DEFAULT_POOL_ROOTS
    image_roots: tuple[str, ...] = DEFAULT_IMAGE_ROOTS
    allow_remote_graphics: bool = False
    virtio_win: str | None = None  # POOL/VOLUME of the virtio-win ISO (INFINIBAY_VIRTIO_WIN)
    host_uris: tuple[str, ...] = ()  # shell patterns of the URIs a Host may name

    @classmethod
    def from_environ(cls, environ: Mapping[str, str] | None = None) -> Boundary:
        env = os.environ if environ is None else environ
        return cls(
            pool_roots=_roots(env, "INFINIBAY_POOL_ROOTS", DEFAULT_POOL_ROOTS),
            image_roots=_roots(env, "INFINIBAY_IMAGE_ROOTS", DEFAULT_IMAGE_ROOTS),
            allow_remote_graphics=env.get("INFINIBAY_ALLOW_REMOTE_GRAPHICS", "") == "1",
            virtio_win=env.get(VIRTIO_WIN_ENV) or None,
            host_uris=tuple(env.get(HOST_URIS_ENV, "").split()),
        )

    def host_problem(self, uri: str) -> str | None:
        """Why a Host may not name ``uri``, or ``None`` when the operator allows it."""
        if any(fnmatch.fnmatchcase(uri, p) for p in self.host_uris):
            return None
        listed = " ".join(self.host_uris) or "none"
        return f"{uri!r} matches none of the operator's {HOST_URIS_ENV} ({listed})"

    def pool_problem(self, path: str, *, images: bool = False) -> str | None:
        """Why a pool may not live at ``path`` (resolved now), or ``None`` when it may."""
        real = _resolve(path)
        shown = repr(path) if real == path else f"{path!r} (resolved to {real!r})"
        system = _system(real)
        if system is not None:
            return f"{shown} is the system path {system!r} or inside it; pools may not live there"
        roots, variable = (
            (self.image_roots, "INFINIBAY_IMAGE_ROOTS")
            if images
            else (self.pool_roots, "INFINIBAY_POOL_ROOTS")
        )
        usable = [root for root in roots if _system(root) is None]
        if not any(inside(real, root) for root in usable):
            what = "an image pool" if images else "a pool"
            listed = ", ".join(usable) or "none usable"
            return f"{shown} is outside the roots allowed for {what} ({variable}: {listed})"
        return None

    def listen_problem(self, address: ipaddress.IPv4Address) -> str | None:
        """Why graphics may not listen on ``address``, or ``None`` when they may."""
        if address in _LOOPBACK or self.allow_remote_graphics:
            return None
        return (
            f"{address} is not a loopback address; the console has no password, so "
            "listening beyond 127.0.0.0/8 needs INFINIBAY_ALLOW_REMOTE_GRAPHICS=1"
        )


def _count(environ: Mapping[str, str], name: str, default: int) -> int:
    raw = environ.get(name)
    if not raw:
        return default
    try:
        value = int(raw)
    except ValueError:
        value = 0
    if value < 1:
        raise errors.ConfigError(f"{name}={raw!r} is not a positive whole number")
    return value


@dataclasses.dataclass(frozen=True)
class Limits:
    """Caps on what one load reads, so a hostile commit cannot exhaust memory or time."""

    file_bytes: int = 8 << 20
    documents: int = 20_000
    depth: int = 64

    @classmethod
    def from_environ(cls, environ: Mapping[str, str] | None = None) -> Limits:
        env = os.environ if environ is None else environ
        return cls(
            file_bytes=_count(env, "INFINIBAY_MAX_FILE_BYTES", cls.file_bytes),
            documents=_count(env, "INFINIBAY_MAX_DOCUMENTS", cls.documents),
            depth=_count(env, "INFINIBAY_MAX_DEPTH", cls.depth),
        )
