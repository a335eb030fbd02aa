"""The record's side of access: token hashes, and who acted on events and revisions.

Every test runs on SQLite and PostgreSQL through the ``db_url`` fixture.
"""

from __future__ import annotations

import datetime as dt

import pytest
import sqlalchemy as sa

from reconciler import errors
from reconciler.models import access, record
from reconciler.store import Store, schema

pytestmark = pytest.mark.integration

_LATER = dt.datetime(2030, 1, 1, 12, 0, tzinfo=dt.UTC)


def _key(name: str) -> record.ResourceKey:
    return record.ResourceKey("VirtualMachine", name)


def _spec(name: str, spec_hash: str = "h1") -> record.SpecWrite:
    return record.SpecWrite(
        key=_key(name),
        spec={"spec": {"cpus": 1}},
        spec_hash=spec_hash,
        labels={},
        annotations={},
        source_file=None,
        source_document=None,
        source_revision=None,
    )


def test_a_token_is_kept_by_hash_listed_without_it_and_revoked(store: Store) -> None:
    secret = access.new_secret()
    created = store.create_token("alice", access.hash_secret(secret), "user", "alice", _LATER)
    assert (created.name, created.role, created.owner) == ("alice", "user", "alice")
    assert created.expires_at == _LATER and created.last_used_at is None
    store.create_token("ops", access.hash_secret(access.new_secret()), "admin", None, None)
    assert [t.name for t in store.tokens()] == ["alice", "ops"]
    found = store.token_by_hash(access.hash_secret(secret))
    assert found is not None and found[0] == created
    assert store.token_by_hash(access.hash_secret("ib_other")) is None

    with store._engine.connect() as conn:  # the test reaches in: no column holds the secret
        rows = [tuple(row) for row in conn.execute(sa.select(schema.Token.__table__))]
    assert secret not in repr(rows)

    assert store.revoke_token("alice") is True
    assert store.revoke_token("alice") is False
    assert store.token_by_hash(access.hash_secret(secret)) is None


def test_a_token_name_is_taken_once(store: Store) -> None:
    store.create_token("ops", access.hash_secret(access.new_secret()), "admin", None, None)
    with pytest.raises(errors.UsageError, match="a token named ops exists already"):
        store.create_token("ops", access.hash_secret(access.new_secret()), "viewer", None, None)


def test_last_use_of_several_tokens_is_one_write(store: Store) -> None:
    for name in ("a", "b", "c"):
        store.create_token(name, access.hash_secret(access.new_secret()), "viewer", None, None)
    store.touch_tokens({"a": _LATER, "c": _LATER - dt.timedelta(hours=1)})
    used = {t.name: t.last_used_at for t in store.tokens()}
    assert used == {"a": _LATER, "b": None, "c": _LATER - dt.timedelta(hours=1)}


def test_events_and_revisions_name_the_store_actor_unless_the_event_names_its_own(
    store: Store,
) -> None:
    store.actor = "cli:alice@host"
    store.apply_specs([_spec("web")])
    store.record_events(
        [
            record.NewEvent(_key("web"), record.EventType.NORMAL, "Created", "made"),
            record.NewEvent(_key("web"), record.EventType.NORMAL, "Opened", "c", actor="ops"),
        ]
    )
    assert {e.reason: e.actor for e in store.events()} == {
        "Created": "cli:alice@host",
        "Opened": "ops",
    }
    store.actor = "Test <test@example.invalid>"
    store.apply_specs([_spec("web", "h2")])
    store.record_events([record.NewEvent(_key("web"), record.EventType.NORMAL, "Created", "made")])
    assert [r.actor for r in store.history(_key("web"))] == [
        "cli:alice@host",
        "Test <test@example.invalid>",
    ]
    (folded,) = [e for e in store.events() if e.reason == "Created"]
    assert (folded.count, folded.actor) == (2, "Test <test@example.invalid>")  # the latest


def test_events_of_some_resources_only(store: Store) -> None:
    store.record_events(
        [
            record.NewEvent(_key(name), record.EventType.NORMAL, "Created", name)
            for name in ("a", "b", "c")
        ]
    )
    assert [e.key.name for e in store.events(keys=[_key("a"), _key("c")])] == ["a", "c"]
    assert store.events(keys=[]) == []
    assert [e.key.name for e in store.events(keys=[_key("b")], limit=5)] == ["b"]
