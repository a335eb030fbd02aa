"""Run-wide settings resolved from options and the environment.

One place decides defaults (SPEC §4): ``--db`` / ``INFINIBAY_DATABASE_URL`` with
the SQLite file under ``$XDG_STATE_HOME`` as fallback, and ``-c`` /
``INFINIBAY_LIBVIRT_URI`` defaulting to ``qemu:///system``. :func:`redact`
hides a database password wherever a URL is shown.

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
* ``INFINIBAY_ALLOW_REMOTE_GRAPHICS=1`` lets ``graphics.listen`` leave
  127.0.0.0/8; VNC has no password, so by default the console stays local.
* :class:`Limits` caps what one run reads: ``INFINIBAY_MAX_FILE_BYTES`` (8 MiB
  per file), ``INFINIBAY_MAX_DOCUMENTS`` (20,000 per run) and
  ``INFINIBAY_MAX_DEPTH`` (64 levels of YAML nesting).
"""

from __future__ import annotations

import dataclasses
import ipaddress
import os
import re
from collections.abc import Mapping
from pathlib import Path

from reconciler import errors

__all__ = [
    "DEFAULT_IMAGE_ROOTS",
    "DEFAULT_LIBVIRT_URI",
    "DEFAULT_POOL_ROOTS",
    "SYSTEM_PATHS",
    "Boundary",
    "Limits",
    "Settings",
    "default_database_url",
    "redact",
]

DEFAULT_LIBVIRT_URI = "qemu:///system"
_PASSWORD_RE = re.compile(r"(?P<head>[a-z0-9+.-]+://[^:/@\s]*:)(?P<pw>[^@\s]*)(?P<tail>@)", re.I)


def default_database_url() -> str:
    state = os.environ.get("XDG_STATE_HOME") or str(Path.home() / ".local" / "state")
    return f"sqlite:///{Path(state) / 'infinibay' / 'state.db'}"


def redact(text: str) -> str:
    """Replace any password inside a URL in ``text`` with ``***``."""
    return _PASSWORD_RE.sub(r"\g<head>***\g<tail>", text)


@dataclasses.dataclass(frozen=True)
class Settings:
    database_url: str = dataclasses.field(default_factory=default_database_url)
    libvirt_uri: str = DEFAULT_LIBVIRT_URI
    verbose: bool = False
    log_format: str = "text"
    lock_timeout: float = 60.0


# --- the trust boundary (SPEC §13) ------------------------------------------------

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


def _inside(path: str, root: str) -> bool:
    return path == root or path.startswith(root.rstrip("/") + "/")


def _system(path: str) -> str | None:
    """The system path ``path`` is or lies inside, or ``None``."""
    if any(_inside(path, allowed) for allowed in _EXCEPTIONS):
        return None
    for system in SYSTEM_PATHS:
        if path == system or (system not in _ONLY_ITSELF and _inside(path, system)):
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

    @classmethod
    def from_environ(cls, environ: Mapping[str, str] | None = None) -> Boundary:
        env = os.environ if environ is None else environ
        return cls(
            pool_roots=_roots(env, "INFINIBAY_POOL_ROOTS", DEFAULT_POOL_ROOTS),
            image_roots=_roots(env, "INFINIBAY_IMAGE_ROOTS", DEFAULT_IMAGE_ROOTS),
            allow_remote_graphics=env.get("INFINIBAY_ALLOW_REMOTE_GRAPHICS", "") == "1",
        )

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
        if not any(_inside(real, root) for root in usable):
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
