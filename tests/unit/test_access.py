"""Access's pure parts: secrets and hashes, expiry, roles, the token a request presents,
and the gate's failure window and throttled last use over a real (SQLite) record."""

from __future__ import annotations

import dataclasses
import datetime as dt
import hashlib
from collections.abc import Iterator
from pathlib import Path

import pytest

from reconciler.daemon import auth
from reconciler.models import access, record
from reconciler.store import store as store_module

NOW = dt.datetime(2026, 12, 2, 20, 0, tzinfo=dt.UTC)


def _resource(kind: str, name: str, labels: dict[str, str]) -> record.ResourceRecord:
    return record.ResourceRecord(
        key=record.ResourceKey(kind, name),
        uid=f"uid-{name}",
        generation=1,
        spec={},
        spec_hash="h",
        source_file=None,
        source_document=None,
        source_revision=None,
        labels=labels,
        annotations={},
        status={},
        created_at=NOW,
        updated_at=NOW,
        deleted_at=None,
    )


def test_a_secret_is_256_random_bits_and_only_its_sha256_is_kept() -> None:
    first, second = access.new_secret(), access.new_secret()
    assert first != second and first.startswith("ib_") and len(first) == 3 + 43
    assert access.hash_secret(first) == hashlib.sha256(first.encode()).hexdigest()
    assert access.same_hash(first, access.hash_secret(first))
    assert not access.same_hash(second, access.hash_secret(first))


@pytest.mark.parametrize(
    ("ttl", "expires"),
    [
        ("30d", NOW + dt.timedelta(days=30)),
        ("12h", NOW + dt.timedelta(hours=12)),
        ("1h30m", NOW + dt.timedelta(minutes=90)),
        (None, None),
        ("never", None),
        ("0", None),
    ],
)
def test_a_ttl_is_read_like_every_other_duration(ttl: str | None, expires: dt.datetime) -> None:
    assert access.expiry(ttl, NOW) == expires


def test_an_unreadable_ttl_is_a_value_error() -> None:
    with pytest.raises(ValueError, match="cannot read the duration"):
        access.expiry("3 fortnights", NOW)


def test_a_token_expires_at_its_expiry_not_after() -> None:
    token = record.TokenRecord("t", "viewer", None, NOW, NOW + dt.timedelta(days=1), None)
    assert not access.expired(token, NOW)
    assert access.expired(token, NOW + dt.timedelta(days=1))
    forever = dataclasses.replace(token, expires_at=None)
    assert not access.expired(forever, NOW + dt.timedelta(days=999))


def test_admin_and_viewer_see_everything_a_user_only_the_vms_labelled_theirs() -> None:
    mine = _resource("VirtualMachine", "a", {access.OWNER_LABEL: "alice"})
    theirs = _resource("VirtualMachine", "b", {access.OWNER_LABEL: "bob"})
    unowned = _resource("VirtualMachine", "c", {})
    template = _resource("Template", "t", {access.OWNER_LABEL: "alice"})
    admin = access.Principal("ops", access.Role.ADMIN)
    viewer = access.Principal("audit", access.Role.VIEWER)
    alice = access.Principal("alice", access.Role.USER, "alice")
    nobody = access.Principal("odd", access.Role.USER, None)
    everything = [mine, theirs, unowned, template]
    assert [r.key.name for r in everything if access.visible(admin, r)] == ["a", "b", "c", "t"]
    assert [r.key.name for r in everything if access.visible(viewer, r)] == ["a", "b", "c", "t"]
    assert [r.key.name for r in everything if access.visible(alice, r)] == ["a"]
    assert [r.key.name for r in everything if access.visible(nobody, r)] == []
    assert access.may_read_metrics(viewer) and not access.may_read_metrics(alice)
    assert access.may_open_console(admin, theirs)
    assert not access.may_open_console(viewer, mine)
    assert access.may_open_console(alice, mine) and not access.may_open_console(alice, theirs)


def test_a_user_sees_the_events_of_their_resources_only() -> None:
    def event(name: str) -> record.EventRecord:
        key = record.ResourceKey("VirtualMachine", name)
        return record.EventRecord(
            1, key, None, record.EventType.NORMAL, "Created", "m", None, None, None, 1, NOW, NOW
        )

    mine = frozenset({record.ResourceKey("VirtualMachine", "a")})
    alice = access.Principal("alice", access.Role.USER, "alice")
    viewer = access.Principal("audit", access.Role.VIEWER)
    assert access.event_visible(alice, event("a"), mine)
    assert not access.event_visible(alice, event("b"), mine)
    assert access.event_visible(viewer, event("b"), frozenset())


@pytest.mark.parametrize(
    ("authorization", "cookie", "presented"),
    [
        ("Bearer ib_x", None, "ib_x"),
        ("bearer   ib_x  ", None, "ib_x"),
        ("Basic dXNlcjpwYXNz", None, ""),  # another scheme: presented, and wrong
        ("Bearer ", None, ""),
        (None, "infinibay_token=ib_c; theme=dark", "ib_c"),
        (None, "theme=dark", None),
        ("Bearer ib_h", "infinibay_token=ib_c", "ib_h"),  # the header wins
        (None, None, None),
    ],
)
def test_the_token_a_request_presents(
    authorization: str | None, cookie: str | None, presented: str | None
) -> None:
    assert auth.token_of(authorization, cookie) == presented


def test_the_session_cookie_is_http_only_same_site_strict_and_secure_under_tls() -> None:
    cookie = auth.session_cookie("ib_x", secure=True, max_age=3600)
    parts = [part.strip() for part in cookie.split(";")]
    assert parts[0] == "infinibay_token=ib_x"
    assert {"HttpOnly", "SameSite=Strict", "Path=/", "Secure", "Max-Age=3600"} <= set(parts)
    assert "Secure" not in auth.session_cookie("ib_x", secure=False)


@pytest.fixture
def store(tmp_path: Path) -> Iterator[store_module.Store]:
    with store_module.Store.open(f"sqlite:///{tmp_path / 'state.db'}") as opened:
        yield opened


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_the_gate_admits_a_valid_token_and_refuses_unknown_expired_and_missing_ones(
    store: store_module.Store,
) -> None:
    secret, old = access.new_secret(), access.new_secret()
    store.create_token("alice", access.hash_secret(secret), "user", "alice", None)
    past = dt.datetime.now(dt.UTC) - dt.timedelta(seconds=1)
    store.create_token("old", access.hash_secret(old), "admin", None, past)
    gate = auth.Gate(store)
    assert gate.admit("10.0.0.1", secret) == access.Principal("alice", access.Role.USER, "alice")
    assert gate.admit("10.0.0.1", old) == auth.Refused(401)
    assert gate.admit("10.0.0.1", "ib_unknown") == auth.Refused(401)
    assert gate.admit("10.0.0.1", None) == auth.Refused(401)
    assert gate.admit("10.0.0.1", "") == auth.Refused(401)


def test_failed_attempts_block_an_address_for_the_window_and_only_that_address(
    store: store_module.Store,
) -> None:
    secret = access.new_secret()
    store.create_token("ops", access.hash_secret(secret), "admin", None, None)
    clock = Clock()
    gate = auth.Gate(store, max_failures=3, window=60, clock=clock)
    for _ in range(2):
        assert gate.admit("10.0.0.1", "ib_guess") == auth.Refused(401)
        assert gate.admit("10.0.0.1", None) == auth.Refused(401)  # no token is no guess
    assert gate.admit("10.0.0.1", secret).name == "ops"  # type: ignore[union-attr]
    assert gate.admit("10.0.0.1", "ib_guess") == auth.Refused(401)
    assert gate.admit("10.0.0.1", secret) == auth.Refused(429, 60)
    assert gate.admit("10.0.0.2", secret).name == "ops"  # type: ignore[union-attr]
    clock.now += 30
    assert gate.admit("10.0.0.1", secret) == auth.Refused(429, 30)
    clock.now += 30.5
    assert gate.admit("10.0.0.1", secret).name == "ops"  # type: ignore[union-attr]


def test_last_use_is_written_once_per_interval_not_per_request(
    store: store_module.Store,
) -> None:
    secret = access.new_secret()
    store.create_token("ops", access.hash_secret(secret), "admin", None, None)
    clock = Clock()
    gate = auth.Gate(store, touch_every=60, clock=clock)
    gate.admit("127.0.0.1", secret)
    (first,) = [t.last_used_at for t in store.tokens()]
    assert first is not None
    gate.admit("127.0.0.1", secret)
    assert [t.last_used_at for t in store.tokens()] == [first]
    clock.now += 61
    gate.admit("127.0.0.1", secret)
    (later,) = [t.last_used_at for t in store.tokens()]
    assert later is not None and later > first
