"""The daemon's options as one frozen value, and the parsers of their text forms.

Durations are written the way operators write them in Flux and systemd
(``30s``, ``5m``, ``1h``, ``1h30m``, ``500ms``; a bare number means seconds).
The listen address is ``HOST:PORT`` (``[::1]:9180`` for IPv6; port 0 picks
a free one, which the daemon logs). :class:`HttpLimits` bounds the HTTP
server on it (see :mod:`reconciler.daemon.http` for what each limit stops).
"""

from __future__ import annotations

import dataclasses

from reconciler import errors
from reconciler.models import fields

__all__ = ["Config", "HttpLimits", "parse_duration", "parse_listen"]


def parse_duration(text: str) -> float:
    """``"30s"`` -> 30.0 (:func:`reconciler.models.fields.parse_duration`).

    :class:`~reconciler.errors.ConfigError` when unreadable or negative.
    """
    try:
        return fields.parse_duration(text)
    except ValueError as exc:
        raise errors.ConfigError(str(exc)) from exc


def parse_listen(text: str) -> tuple[str, int]:
    """``"127.0.0.1:9180"`` -> ``("127.0.0.1", 9180)``; ``"[::1]:9180"`` -> ``("::1", 9180)``."""
    host, sep, port = text.rpartition(":")
    if not sep or not port.isdigit() or int(port) > 65535:
        raise errors.ConfigError(
            f"cannot read the listen address {text!r}: write HOST:PORT, e.g. 127.0.0.1:9180"
        )
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    return host or "127.0.0.1", int(port)


@dataclasses.dataclass(frozen=True)
class HttpLimits:
    """What one client, or many, may cost the HTTP server: threads, sockets, time."""

    workers: int = 2
    """Threads that answer ``/api`` and ``/metrics``; each probe has a thread of its own.

    Two keep one computing while the other waits for the record; more rarely help, as
    the process has one GIL and every busy worker takes a share of it from the pass.
    """
    max_connections: int = 256
    """Open connections at most; beyond it a request is answered 503 unless it is a probe."""
    header_timeout: float = 10.0
    """Seconds from a request's first byte (or the accept) to the end of its headers."""
    idle_timeout: float = 5.0
    """Seconds a kept-alive connection may wait for its next request."""
    write_timeout: float = 10.0
    """Seconds a response may take to reach a client that reads slowly."""


@dataclasses.dataclass(frozen=True)
class Config:
    """Everything ``infinibay daemon`` was told, resolved."""

    source: str
    ref: str = "main"
    path: str = ""
    interval: float = 300.0
    git_interval: float = 30.0
    prune: bool = False
    listen: tuple[str, int] | None = ("127.0.0.1", 9180)
    workers: int = 4
    shutdown_timeout: float = 60.0
    drain_timeout: float = 60.0
    lease: float = 15.0
    unhealthy_after: float = 60.0
    debounce: float = 0.5
    cache_dir: str | None = None
    adopt: bool = False
    allow_data_loss: bool = False
    http: HttpLimits = dataclasses.field(default_factory=HttpLimits)
    tls_cert: str | None = None
    """PEM certificate chain of ``--listen``; with ``tls_key``, it speaks HTTPS only."""
    tls_key: str | None = None
    metrics_public: bool = False
    """``/metrics`` without a token (a Prometheus on the host that holds none)."""
    novnc_path: str = "/usr/share/novnc"
    """Where noVNC's files are (Debian's ``novnc`` package); the console page loads them."""
    console_ticket_ttl: float = 60.0
    """Seconds a console ticket stays valid (it is single-use either way)."""
    shard: bool = False
    """Share the declared hosts with the other ``--shard`` daemons of the record (SPEC §10)."""
