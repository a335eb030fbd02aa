"""Who is asking: the daemon's HTTP side of SPEC §11 (tokens, failed attempts, last use).

A request names its token in ``Authorization: Bearer TOKEN`` or in the
``infinibay_token`` cookie. The cookie is for the web UI: its login page is
to set it ``HttpOnly; SameSite=Strict; Path=/`` (``Secure`` under TLS, see
:func:`session_cookie`), so that page scripts never read the token and no
other site's page can send it. Every request looks the token's SHA-256 up in
the record, so a revoked token is refused from the next request on; the
lookup is one indexed equality, far cheaper than any answer it guards.

* **No detail on refusal.** A missing, unknown, expired or revoked token is
  the same 401; the log says which at debug level, by the token's name when
  there is one, never the secret.
* **Failed attempts** (a token given that is not valid) count per client
  address in a sliding window: after :data:`MAX_FAILURES` within
  :data:`FAILURE_WINDOW` seconds that address gets 429 for whatever it asks
  (the probes aside), until the window has moved past its failures. The
  table of addresses is bounded, so a spray from many addresses cannot grow
  it without limit. A missing token is not an attempt: it guesses nothing.
* **Last use** is written at most once per :data:`TOUCH_EVERY` seconds per
  token, on the request that finds it due, not on every request.
"""

from __future__ import annotations

import collections
import dataclasses
import datetime as dt
import http.cookies
import logging
import threading
import time
from collections.abc import Callable

from reconciler import errors
from reconciler.models import access
from reconciler.store import store as store_module

__all__ = [
    "COOKIE",
    "FAILURE_WINDOW",
    "MAX_FAILURES",
    "TOUCH_EVERY",
    "Gate",
    "Refused",
    "session_cookie",
    "token_of",
]

_log = logging.getLogger(__name__)

COOKIE = "infinibay_token"
MAX_FAILURES = 10
FAILURE_WINDOW = 60.0  # seconds
TOUCH_EVERY = 60.0  # seconds between two writes of one token's last use
_MAX_ADDRESSES = 4096  # client addresses whose failures are remembered at once


@dataclasses.dataclass(frozen=True)
class Refused:
    """Why a request is not let in: 401 (no valid token) or 429 (too many failures)."""

    status: int
    retry_after: int | None = None


def token_of(authorization: str | None, cookie: str | None) -> str | None:
    """The token a request presents: its Bearer credentials, else its session cookie."""
    if authorization:
        scheme, _, credentials = authorization.strip().partition(" ")
        if scheme.lower() == "bearer" and credentials.strip():
            return credentials.strip()
        return ""  # some other scheme, or an empty one: presented, and not valid
    if cookie:
        jar = http.cookies.SimpleCookie()
        try:
            jar.load(cookie)
        except http.cookies.CookieError:
            return ""
        if COOKIE in jar:
            return jar[COOKIE].value
    return None


def session_cookie(secret: str, *, secure: bool, max_age: int | None = None) -> str:
    """The ``Set-Cookie`` value the web UI's login answers with (see the module doc)."""
    jar = http.cookies.SimpleCookie()
    jar[COOKIE] = secret
    morsel = jar[COOKIE]
    morsel["httponly"] = True
    morsel["samesite"] = "Strict"
    morsel["path"] = "/"
    if secure:
        morsel["secure"] = True
    if max_age is not None:
        morsel["max-age"] = max_age
    return morsel.OutputString()


class _Failures:
    """Failed attempts per client address, in a sliding window; bounded in size."""

    def __init__(self, limit: int, window: float) -> None:
        self.limit = limit
        self.window = window
        self._seen: collections.OrderedDict[str, collections.deque[float]] = (
            collections.OrderedDict()
        )
        self._lock = threading.Lock()

    def _recent(self, address: str, now: float) -> collections.deque[float] | None:
        times = self._seen.get(address)
        if times is None:
            return None
        while times and times[0] <= now - self.window:
            times.popleft()
        if not times:
            del self._seen[address]
            return None
        return times

    def blocked_for(self, address: str, now: float) -> int | None:
        """Seconds until ``address`` may try again, or ``None`` if it may now."""
        with self._lock:
            times = self._recent(address, now)
            if times is None or len(times) < self.limit:
                return None
            return max(1, int(times[-self.limit] + self.window - now + 0.999))

    def fail(self, address: str, now: float) -> None:
        with self._lock:
            times = self._recent(address, now)
            if times is None:
                times = self._seen[address] = collections.deque(maxlen=self.limit)
                while len(self._seen) > _MAX_ADDRESSES:
                    self._seen.popitem(last=False)
            else:
                self._seen.move_to_end(address)
            times.append(now)


class Gate:
    """Lets a request in as a :class:`~reconciler.models.access.Principal`, or refuses it."""

    def __init__(
        self,
        store: store_module.Store,
        *,
        max_failures: int = MAX_FAILURES,
        window: float = FAILURE_WINDOW,
        touch_every: float = TOUCH_EVERY,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._store = store
        self._failures = _Failures(max_failures, window)
        self._touch_every = touch_every
        self._touched: dict[str, float] = {}
        self._touch_lock = threading.Lock()
        self._clock = clock

    def admit(self, address: str, presented: str | None) -> access.Principal | Refused:
        """The principal ``presented`` names, for a request from ``address``."""
        now = self._clock()
        wait = self._failures.blocked_for(address, now)
        if wait is not None:
            return Refused(429, wait)
        if presented is None:
            return Refused(401)
        found = self._store.token_by_hash(access.hash_secret(presented)) if presented else None
        wall = dt.datetime.now(dt.UTC)
        if found is None or not access.same_hash(presented, found[1]):
            _log.debug("http: an unknown token from %s", address)
            self._failures.fail(address, now)
            return Refused(401)
        token, _ = found
        if access.expired(token, wall):
            _log.debug("http: the expired token %s from %s", token.name, address)
            self._failures.fail(address, now)
            return Refused(401)
        self._touch(token.name, now, wall)
        return access.Principal(token.name, access.Role(token.role), token.owner)

    def _touch(self, name: str, now: float, wall: dt.datetime) -> None:
        with self._touch_lock:
            last = self._touched.get(name)
            if last is not None and now - last < self._touch_every:
                return
            self._touched[name] = now
        try:
            self._store.touch_tokens({name: wall})
        except errors.StoreError as exc:  # the answer matters more than the bookkeeping
            _log.warning("http: recording the use of token %s failed: %s", name, exc)
