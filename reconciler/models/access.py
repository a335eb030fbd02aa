"""Who may read what (SPEC §11): roles, token secrets and their hashes, actors.

Pure functions, no I/O: the store keeps the hashes, the daemon's HTTP side
asks :func:`visible` and :func:`event_visible` what a caller may see, and the
CLI names itself with :func:`cli_actor`.

* **Roles** follow the old backend's ADMIN / USER, plus a read-only operator:
  ``admin`` sees everything, ``viewer`` reads everything, ``user`` sees only
  the VMs labelled ``infinibay.io/owner: OWNER`` (its token's owner) and
  their events. Consoles (a later part of §11) will ask :func:`may_open_console`.
* **Secrets** are 256 random bits from :mod:`secrets`, prefixed ``ib_`` so a
  secret scanner can spot a leaked one. The record keeps the SHA-256 of the
  secret only: with that much entropy a plain hash cannot be reversed by
  guessing, and looking a token up stays one indexed equality. Comparisons
  go through :func:`hmac.compare_digest`.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import enum
import getpass
import hashlib
import hmac
import re
import secrets
import socket

from reconciler.models import fields, kinds, record

__all__ = [
    "OWNER_LABEL",
    "Principal",
    "Role",
    "cli_actor",
    "event_visible",
    "expired",
    "expiry",
    "hash_secret",
    "local_actor",
    "may_open_console",
    "may_read_metrics",
    "new_secret",
    "same_hash",
    "valid_token_name",
    "visible",
]

OWNER_LABEL = "infinibay.io/owner"
_PREFIX = "ib_"
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._@-]{0,127}$")


class Role(enum.StrEnum):
    ADMIN = "admin"
    VIEWER = "viewer"
    USER = "user"


@dataclasses.dataclass(frozen=True)
class Principal:
    """Whom a request's token names: the token's name (the actor), role and owner."""

    name: str
    role: Role
    owner: str | None = None


def new_secret() -> str:
    """A fresh token: ``ib_`` and 43 URL-safe characters (256 random bits)."""
    return _PREFIX + secrets.token_urlsafe(32)


def hash_secret(secret: str) -> str:
    """The hex SHA-256 of ``secret``: what the record keeps instead of it."""
    return hashlib.sha256(secret.encode()).hexdigest()


def same_hash(secret: str, stored: str) -> bool:
    """Whether ``secret`` hashes to ``stored``, in time independent of where they differ."""
    return hmac.compare_digest(hash_secret(secret), stored)


def valid_token_name(name: str) -> bool:
    """Names are shown as actors and in ``token list``: letters, digits, ``._@-``."""
    return bool(_NAME.match(name))


def expiry(ttl: str | None, now: dt.datetime) -> dt.datetime | None:
    """When a token created ``now`` with ``--ttl`` ``ttl`` (``30d``, ``12h``) expires.

    ``None``, ``never`` or ``0``: it does not. Raises :class:`ValueError` when the
    text is not a duration.
    """
    if ttl is None or ttl.strip().lower() in {"never", "0", "none"}:
        return None
    seconds = fields.parse_duration(ttl)
    if seconds <= 0:
        return None
    return now + dt.timedelta(seconds=seconds)


def expired(token: record.TokenRecord, now: dt.datetime) -> bool:
    return token.expires_at is not None and token.expires_at <= now


def visible(principal: Principal, resource: record.ResourceRecord) -> bool:
    """Whether ``principal`` may read ``resource``."""
    match principal.role:
        case Role.ADMIN | Role.VIEWER:
            return True
        case Role.USER:
            return (
                resource.key.kind == kinds.Kind.VIRTUAL_MACHINE.value
                and principal.owner is not None
                and resource.labels.get(OWNER_LABEL) == principal.owner
            )


def event_visible(
    principal: Principal, event: record.EventRecord, mine: frozenset[record.ResourceKey]
) -> bool:
    """Whether ``principal`` may read ``event``; ``mine``: the resources it may read."""
    if principal.role is not Role.USER:
        return True
    return event.key in mine


def may_read_metrics(principal: Principal) -> bool:
    """``/metrics`` describes the whole installation: not for a ``user``."""
    return principal.role is not Role.USER


def may_open_console(principal: Principal, resource: record.ResourceRecord) -> bool:
    """A console is a keyboard on the guest: admins, and a user for their own VMs."""
    match principal.role:
        case Role.ADMIN:
            return True
        case Role.VIEWER:
            return False
        case Role.USER:
            return visible(principal, resource)


def local_actor(program: str) -> str:
    """``PROGRAM:USER@HOST``: who a run on this host acts as, in events and history."""
    try:
        user = getpass.getuser()
    except (KeyError, OSError):
        user = "unknown"
    return f"{program}:{user}@{socket.gethostname()}"


def cli_actor() -> str:
    """``cli:USER@HOST``: a CLI run (a daemon from git acts as the commit's author)."""
    return local_actor("cli")
