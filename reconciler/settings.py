"""Run-wide settings resolved from options and the environment.

One place decides defaults (SPEC §4): ``--db`` / ``INFINIBAY_DATABASE_URL`` with
the SQLite file under ``$XDG_STATE_HOME`` as fallback, and ``-c`` /
``INFINIBAY_LIBVIRT_URI`` defaulting to ``qemu:///system``. :func:`redact`
hides a database password wherever a URL is shown.
"""

from __future__ import annotations

import dataclasses
import os
import re
from pathlib import Path

__all__ = ["DEFAULT_LIBVIRT_URI", "Settings", "default_database_url", "redact"]

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
