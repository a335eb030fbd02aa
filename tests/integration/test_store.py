"""The record's behaviour on both backends: real SQLite files and a real PostgreSQL.

Every test runs twice through the ``db_url`` fixture (``[sqlite]`` and
``[postgresql]``) and asserts what a reader of the record would see: rows,
generations, counts and the statements sent to the database.
"""

from __future__ import annotations

import datetime as dt
import socket
from collections.abc import Iterator
from typing import Any

import pytest
import sqlalchemy as sa

from reconciler import errors
from reconciler.manifests import loader
from reconciler.models import record
from reconciler.store import Store, schema
from tests.fixtures import database

pytestmark = pytest.mark.integration

VM = "VirtualMachine"


def _key(name: str, kind: str = VM) -> record.ResourceKey:
    return record.ResourceKey(kind, name)


def _spec(
    name: str,
    spec: dict[str, Any] | None = None,
    *,
    kind: str = VM,
    revision: str | None = "main@sha1:aaaa",
    annotations: dict[str, str] | None = None,
    run_id: record.RunId | None = None,
) -> record.SpecWrite:
    spec = spec if spec is not None else {"cpus": 2, "memory": "2GiB"}
    return record.SpecWrite(
        key=_key(name, kind),
        spec=spec,
        spec_hash=f"sha256:{sorted(spec.items())}",
        labels={"app": "web"},
        annotations=annotations or {},
        source_file="vms.yaml",
        source_document=0,
        source_revision=revision,
        run_id=run_id,
    )


def _event(name: str, reason: str = "Created", message: str = "created") -> record.NewEvent:
    return record.NewEvent(_key(name), record.EventType.NORMAL, reason, message)


class _Statements:
    """Counts statements sent to the database through the store's engine."""

    def __init__(self) -> None:
        self.sql: list[str] = []

    def __call__(self, conn: Any, cursor: Any, statement: str, *args: Any) -> None:
        self.sql.append(statement)


@pytest.fixture
def statements(store: Store) -> Iterator[_Statements]:
    counter = _Statements()
    engine = store._engine  # the test reaches in on purpose: it counts real round trips
    sa.event.listen(engine, "before_cursor_execute", counter)
    yield counter
    sa.event.remove(engine, "before_cursor_execute", counter)


# -- installation --------------------------------------------------------------------


def test_installation_id_is_generated_once_and_survives_reopening(db_url: str) -> None:
    with Store.open(db_url) as first:
        installation = first.installation_id()
    with Store.open(db_url) as again:
        assert again.installation_id() == installation
    assert len(installation) == 36


def test_two_databases_have_different_installation_ids(store: Store, tmp_path: Any) -> None:
    with Store.open(f"sqlite:///{tmp_path / 'other.db'}") as other:
        assert other.installation_id() != store.installation_id()


# -- resources and generations -------------------------------------------------------


def test_new_resource_gets_uid_generation_1_and_a_revision(store: Store) -> None:
    (created,) = store.apply_specs([_spec("web-1")])

    assert created.generation == 1
    assert len(created.uid) == 36
    assert created.status == {}
    assert created.created_at == created.updated_at
    assert created.created_at.tzinfo is dt.UTC
    assert store.get(_key("web-1")) == created
    assert [r.generation for r in store.history(_key("web-1"))] == [1]


def test_unchanged_spec_hash_changes_nothing(store: Store) -> None:
    (first,) = store.apply_specs([_spec("web-1")])
    (second,) = store.apply_specs([_spec("web-1")])

    assert second == first
    assert len(store.history(_key("web-1"))) == 1


def test_changed_spec_hash_bumps_generation_and_appends_a_revision(store: Store) -> None:
    (first,) = store.apply_specs([_spec("web-1")])
    (second,) = store.apply_specs([_spec("web-1", {"cpus": 4}, revision="main@sha1:bbbb")])

    assert second.generation == 2
    assert second.uid == first.uid
    assert second.spec == {"cpus": 4}
    assert second.source_revision == "main@sha1:bbbb"
    assert second.created_at == first.created_at
    assert second.updated_at > first.updated_at
    history = store.history(_key("web-1"))
    assert [(r.generation, r.spec, r.source_revision) for r in history] == [
        (1, {"cpus": 2, "memory": "2GiB"}, "main@sha1:aaaa"),
        (2, {"cpus": 4}, "main@sha1:bbbb"),
    ]


def test_metadata_change_is_recorded_without_a_new_generation(store: Store) -> None:
    store.apply_specs([_spec("web-1")])
    protect = {"infinibay.io/protect": "true"}
    (changed,) = store.apply_specs([_spec("web-1", annotations=protect)])

    assert changed.generation == 1
    assert changed.annotations == protect
    assert len(store.history(_key("web-1"))) == 1


def test_apply_specs_batches_creates_updates_and_no_ops_in_order(store: Store) -> None:
    run = store.start_run(record.Trigger.APPLY, "main@sha1:aaaa")
    store.apply_specs([_spec("a"), _spec("b")])
    result = store.apply_specs(
        [_spec("c", run_id=run), _spec("b", {"cpus": 8}, run_id=run), _spec("a")]
    )

    assert [(r.key.name, r.generation) for r in result] == [("c", 1), ("b", 2), ("a", 1)]
    assert store.history(_key("b"))[-1].run_id == run
    assert [r.key.name for r in store.resources()] == ["a", "b", "c"]


def test_same_resource_twice_in_one_batch_is_refused(store: Store) -> None:
    with pytest.raises(errors.StoreError, match="twice"):
        store.apply_specs([_spec("web-1"), _spec("web-1", {"cpus": 4})])
    assert store.resources() == []


def test_resources_filters_by_kind(store: Store) -> None:
    store.apply_specs([_spec("web-1"), _spec("lab", {"mode": "nat"}, kind="Network")])

    assert [r.key for r in store.resources("Network")] == [_key("lab", "Network")]
    assert len(store.resources()) == 2


def test_resources_of_a_few_vms_keep_every_other_kind(store: Store) -> None:
    store.apply_specs(
        [
            _spec("web-1"),
            _spec("web-2"),
            _spec("db-1"),
            _spec("lab", {"mode": "nat"}, kind="Network"),
        ]
    )

    keys = [r.key for r in store.resources(vms={"web-2", "gone"})]
    assert keys == [_key("lab", "Network"), _key("web-2")]
    assert [r.key for r in store.resources(vms=set())] == [_key("lab", "Network")]


def test_a_run_keeps_the_resources_its_pass_was_narrowed_to(store: Store) -> None:
    full = store.start_run(record.Trigger.RESYNC, None)
    narrowed = store.start_run(record.Trigger.LIBVIRT_EVENT, None, [_key("web-2"), _key("web-1")])

    scopes = {r.id: r.scope for r in store.runs()}
    assert scopes == {full: None, narrowed: ("virtualmachine/web-1", "virtualmachine/web-2")}


def test_stamping_a_revision_changes_its_provenance_alone(store: Store) -> None:
    before = {r.key: r for r in store.apply_specs([_spec("web-1"), _spec("web-2"), _spec("db-1")])}
    store.tombstone([_key("db-1")])

    store.stamp_revision([_key("web-1"), _key("db-1"), _key("absent")], "main@sha1:bbbb")

    after = {r.key: r for r in store.resources(include_deleted=True)}
    assert after[_key("web-1")].source_revision == "main@sha1:bbbb"
    assert after[_key("web-2")].source_revision == "main@sha1:aaaa"
    assert after[_key("db-1")].source_revision == "main@sha1:aaaa"  # a tombstone stays
    web = after[_key("web-1")]
    assert (web.generation, web.spec, web.spec_hash) == (
        before[_key("web-1")].generation,
        before[_key("web-1")].spec,
        before[_key("web-1")].spec_hash,
    )
    assert len(store.history(_key("web-1"))) == 1  # no new revision in history


def test_the_vms_nics_read_by_json_path_give_the_macs_the_whole_records_do(store: Store) -> None:
    nics = {
        "effective": {"nics": [{"network": "lab", "mac": "52:54:00:AA:00:01"}, {"network": "x"}]}
    }
    store.apply_specs(
        [
            _spec("web-1", nics),
            _spec("web-2", {"effective": {"nics": [{"mac": "52:54:00:aa:00:01"}]}}),
            _spec("bare", {"cpus": 1}),
            _spec("gone", {"effective": {"nics": [{"mac": "52:54:00:aa:00:09"}]}}),
            _spec("lab", {"mode": "nat"}, kind="Network"),
        ]
    )
    store.write_status([record.StatusWrite(_key("web-1"), {"macs": {"x": "52:54:00:aa:00:02"}})])
    store.tombstone([_key("gone")])

    macs = loader.recorded_macs(store.vm_nics())

    assert macs == {"52:54:00:aa:00:01": "web-1", "52:54:00:aa:00:02": "web-1"}
    records = store.resources()
    assert macs == loader.recorded_macs(
        (r.key.name, r.status.get("macs"), r.spec.get("effective", {}).get("nics"))
        for r in records
        if r.key.kind == VM
    )


def test_listing_resources_is_one_query(store: Store, statements: _Statements) -> None:
    store.apply_specs([_spec(f"vm-{i}") for i in range(50)])
    statements.sql.clear()

    assert len(store.resources()) == 50
    assert len([s for s in statements.sql if s.lstrip().upper().startswith("SELECT")]) == 1


# -- tombstones ----------------------------------------------------------------------


def test_tombstone_hides_the_resource_and_keeps_its_history(store: Store) -> None:
    store.apply_specs([_spec("web-1"), _spec("web-2")])
    store.tombstone([_key("web-1"), _key("never-existed")])

    assert store.get(_key("web-1")) is None
    gone = store.get(_key("web-1"), include_deleted=True)
    assert gone is not None and gone.deleted_at is not None
    assert [r.key.name for r in store.resources()] == ["web-2"]
    assert [r.key.name for r in store.resources(include_deleted=True)] == ["web-1", "web-2"]
    assert len(store.history(_key("web-1"))) == 1


def test_reapplying_a_tombstoned_resource_revives_it_with_a_new_generation(store: Store) -> None:
    (first,) = store.apply_specs([_spec("web-1")])
    store.tombstone([_key("web-1")])
    (revived,) = store.apply_specs([_spec("web-1")])

    assert revived.deleted_at is None
    assert revived.generation == 2
    assert revived.uid == first.uid
    assert [r.generation for r in store.history(_key("web-1"))] == [1, 2]


def test_forget_removes_the_resource_and_its_history(store: Store) -> None:
    store.apply_specs([_spec("web-1")])
    store.forget([_key("web-1")])

    assert store.get(_key("web-1"), include_deleted=True) is None
    assert store.history(_key("web-1")) == []


# -- status ----------------------------------------------------------------------------


def test_write_status_replaces_status_and_keeps_the_spec(store: Store) -> None:
    (applied,) = store.apply_specs([_spec("web-1")])
    status = {"phase": "Running", "observedGeneration": 1, "ips": ["192.0.2.10"]}
    store.write_status([record.StatusWrite(_key("web-1"), status)])

    stored = store.get(_key("web-1"))
    assert stored is not None
    assert stored.status == status
    assert stored.generation == applied.generation
    assert stored.updated_at == applied.updated_at


def test_write_status_skips_unknown_resources(store: Store) -> None:
    store.apply_specs([_spec("web-1")])
    store.write_status(
        [
            record.StatusWrite(_key("ghost"), {"phase": "Running"}),
            record.StatusWrite(_key("web-1"), {"phase": "Stopped"}),
        ]
    )
    stored = store.get(_key("web-1"))
    assert stored is not None and stored.status == {"phase": "Stopped"}


def test_status_for_1000_resources_takes_a_bounded_number_of_statements(
    store: Store, statements: _Statements
) -> None:
    names = [f"vm-{i:04d}" for i in range(1000)]
    store.apply_specs([_spec(name) for name in names])
    statements.sql.clear()

    store.write_status([record.StatusWrite(_key(n), {"phase": "Running", "n": n}) for n in names])

    assert len(statements.sql) <= 5, statements.sql
    assert all(r.status["n"] == r.key.name for r in store.resources())


def test_apply_specs_for_1000_resources_takes_a_bounded_number_of_statements(
    store: Store, statements: _Statements
) -> None:
    store.apply_specs([_spec(f"vm-{i:04d}") for i in range(1000)])
    created = len(statements.sql)
    statements.sql.clear()
    store.apply_specs([_spec(f"vm-{i:04d}", {"cpus": 4}) for i in range(1000)])

    # Insert-many-values splits very large inserts into pages; still no per-row round trips.
    assert created <= 12, statements.sql
    assert len(statements.sql) <= 8, statements.sql
    assert {r.generation for r in store.resources()} == {2}


# -- events ----------------------------------------------------------------------------


def test_1000_identical_events_in_one_batch_fold_into_one_row(store: Store) -> None:
    store.apply_specs([_spec("web-1")])
    store.record_events([_event("web-1", "DriftDetected", "vcpus 2 -> 4")] * 1000)

    (event,) = store.events()
    assert event.count == 1000
    assert event.reason == "DriftDetected"
    assert event.uid == store.get(_key("web-1")).uid  # type: ignore[union-attr]


def test_1000_identical_events_one_at_a_time_fold_into_one_row(store: Store) -> None:
    for _ in range(1000):
        store.record_events([_event("web-1", "DriftDetected", "vcpus 2 -> 4")])

    (event,) = store.events()
    assert event.count == 1000
    assert event.last_seen > event.first_seen
    assert event.uid is None  # never applied: no uid to point at


def test_events_fold_only_on_same_object_reason_and_message(store: Store) -> None:
    store.record_events(
        [
            _event("web-1", "Started", "started"),
            _event("web-1", "Started", "started"),
            _event("web-2", "Started", "started"),
            _event("web-1", "Stopped", "started"),
            _event("web-1", "Started", "started again"),
        ]
    )
    counts = sorted((e.key.name, e.reason, e.message, e.count) for e in store.events())
    assert counts == [
        ("web-1", "Started", "started", 2),
        ("web-1", "Started", "started again", 1),
        ("web-1", "Stopped", "started", 1),
        ("web-2", "Started", "started", 1),
    ]


def test_a_folded_event_takes_the_latest_diff_revision_and_run(store: Store) -> None:
    run = store.start_run(record.Trigger.RESYNC, "main@sha1:bbbb")
    store.record_events([_event("web-1", "DriftDetected", "drift")])
    later = record.NewEvent(
        _key("web-1"),
        record.EventType.WARNING,
        "DriftDetected",
        "drift",
        diff={"vcpus": {"old": 2, "new": 4}},
        revision="main@sha1:bbbb",
        run_id=run,
    )
    store.record_events([later])

    (event,) = store.events()
    assert (event.count, event.type, event.diff) == (2, record.EventType.WARNING, later.diff)
    assert (event.revision, event.run_id) == ("main@sha1:bbbb", run)


def test_long_messages_fold_too(store: Store) -> None:
    message = "x" * 20_000  # longer than a PostgreSQL btree entry may be
    store.record_events([_event("web-1", "ApplyFailed", message)] * 2)
    store.record_events([_event("web-1", "ApplyFailed", message)])
    (event,) = store.events()
    assert (event.count, event.message) == (3, message)


def test_events_by_object_since_and_limit(store: Store) -> None:
    store.record_events([_event("web-1", "Created"), _event("web-2", "Created")])
    cutoff = dt.datetime.now(dt.UTC)
    store.record_events([_event("web-1", "Started", "started")])
    store.record_events([_event("web-1", "Stopped", "stopped")])

    assert [e.reason for e in store.events(_key("web-1"))] == ["Created", "Started", "Stopped"]
    assert [e.reason for e in store.events(since=cutoff)] == ["Started", "Stopped"]
    assert [e.reason for e in store.events(_key("web-1"), limit=2)] == ["Started", "Stopped"]
    assert [e.key.name for e in store.events(_key("web-2"))] == ["web-2"]
    first_id = store.events()[0].id
    assert len(store.events(after_id=first_id)) == 3


def test_events_are_ordered_by_last_seen(store: Store) -> None:
    store.record_events([_event("web-1", "Created")])
    store.record_events([_event("web-1", "Started", "started")])
    store.record_events([_event("web-1", "Created")])  # repeat: now the newest

    assert [(e.reason, e.count) for e in store.events()] == [("Started", 1), ("Created", 2)]


def test_1000_distinct_events_take_a_bounded_number_of_statements(
    store: Store, statements: _Statements
) -> None:
    store.record_events([_event(f"vm-{i}", "Created", f"created {i}") for i in range(1000)])

    assert len(statements.sql) <= 5, statements.sql
    assert len(store.events()) == 1000


def test_prune_events_deletes_only_old_events(store: Store) -> None:
    store.record_events([_event("web-1", "Created")])
    day_old = dt.datetime.now(dt.UTC) - dt.timedelta(days=1)
    with store._engine.begin() as conn:  # age the first event by a day
        conn.execute(sa.update(schema.Event).values(last_seen=day_old))
    store.record_events([_event("web-1", "Started", "started")])

    assert store.prune_events(dt.timedelta(hours=1)) == 1
    assert [e.reason for e in store.events()] == ["Started"]
    assert store.prune_events(dt.timedelta(hours=1)) == 0


# -- runs --------------------------------------------------------------------------------


def test_runs_record_trigger_revision_counts_and_result(store: Store) -> None:
    assert store.last_run() is None
    first = store.start_run(record.Trigger.APPLY, "main@sha1:aaaa")
    second = store.start_run(record.Trigger.GIT, "main@sha1:bbbb")

    running = store.last_run()
    assert running is not None
    assert (running.id, running.finished_at, running.result) == (second, None, None)

    store.finish_run(first, {"create": 3, "update": 1}, "succeeded")
    runs = store.runs(limit=10)
    assert [r.id for r in runs] == [second, first]
    done = runs[1]
    assert done.trigger is record.Trigger.APPLY
    assert done.revision == "main@sha1:aaaa"
    assert done.counts == {"create": 3, "update": 1}
    assert done.result == "succeeded"
    assert done.finished_at is not None and done.finished_at >= done.started_at
    assert [r.id for r in store.runs(limit=1)] == [second]


def test_finishing_an_unknown_run_is_an_error(store: Store) -> None:
    with pytest.raises(errors.StoreError, match="run 999"):
        store.finish_run(record.RunId(999), {}, "succeeded")


# -- errors and secrets ------------------------------------------------------------------


def test_unreachable_postgres_error_is_one_line_without_the_password(free_port: int) -> None:
    url = f"postgresql://reconciler:hunter2secret@127.0.0.1:{free_port}/infinibay"
    with pytest.raises(errors.StoreError) as caught:
        Store.open(url)
    message = str(caught.value)
    assert "hunter2secret" not in message
    assert "\n" not in message
    assert "***" in message and "127.0.0.1" in message


def test_wrong_password_error_does_not_contain_the_password(postgres_server: str) -> None:
    admin = database.admin_engine(postgres_server)
    role = database.PASSWORD_ROLE
    try:
        with admin.connect() as conn:
            exists = conn.execute(
                sa.text("SELECT 1 FROM pg_roles WHERE rolname = :r"), {"r": role}
            ).first()
            verb = "ALTER" if exists else "CREATE"
            conn.exec_driver_sql(f"{verb} ROLE {role} LOGIN PASSWORD 'the-right-one'")
    finally:
        admin.dispose()
    url = sa.make_url(postgres_server).set(username=role, password="s3cr3t-wrong-pw")
    try:
        Store.open(url.render_as_string(hide_password=False)).close()
    except errors.StoreError as exc:
        message = str(exc)
    else:
        pytest.fail(
            f"the server accepted a wrong password for role {role}: it must require "
            "password authentication for that role on 127.0.0.1 (the throwaway server "
            "started when INFINIBAY_TEST_POSTGRES_URL is unset does)"
        )
    assert "s3cr3t-wrong-pw" not in message
    assert "password authentication failed" in message
    assert "\n" not in message


def test_unsupported_url_is_a_config_error_without_the_password() -> None:
    with pytest.raises(errors.ConfigError) as caught:
        Store.open("mysql://root:topsecret@localhost/db")
    assert "topsecret" not in str(caught.value)


def test_a_closed_store_refuses_work(db_url: str) -> None:
    store = Store.open(db_url)
    store.close()
    store.close()
    with pytest.raises(errors.StoreError, match="closed"):
        store.resources()


@pytest.fixture
def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port
