"""Pure formatting of the read-only commands: ages, ``--since``, diffs, tables, views.

Everything here is computed from values and a fixed ``now``; the commands that
print it are exercised end to end in ``tests/integration/test_cli_inspect.py``.
"""

from __future__ import annotations

import datetime as dt
import json
from typing import Any

import pytest

from reconciler.cli import output, views
from reconciler.models import documents, kinds, observed, record

NOW = dt.datetime(2024, 5, 1, 12, 0, 0, tzinfo=dt.UTC)


# --- age and time ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("seconds", "shown"),
    [
        (0, "0s"),
        (59, "59s"),
        (60, "1m"),
        (5 * 60 + 59, "5m"),
        (3599, "59m"),
        (2 * 3600, "2h"),
        (86399, "23h"),
        (3 * 86400 + 5, "3d"),
        (400 * 86400, "400d"),
    ],
)
def test_age_uses_the_largest_whole_unit(seconds: int, shown: str) -> None:
    assert output.age(NOW - dt.timedelta(seconds=seconds), NOW) == shown


def test_age_of_a_moment_in_the_future_is_zero_not_negative() -> None:
    assert output.age(NOW + dt.timedelta(minutes=3), NOW) == "0s"


def test_timestamp_is_utc_to_the_second_whatever_the_input_zone() -> None:
    plus_two = dt.timezone(dt.timedelta(hours=2))
    moment = dt.datetime(2024, 5, 1, 14, 0, 0, 123456, tzinfo=plus_two)
    assert documents.timestamp(moment) == "2024-05-01T12:00:00+00:00"
    assert documents.timestamp(moment.replace(tzinfo=None)) == "2024-05-01T14:00:00+00:00"


# --- --since -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "delta"),
    [
        ("30s", dt.timedelta(seconds=30)),
        ("5m", dt.timedelta(minutes=5)),
        ("1h", dt.timedelta(hours=1)),
        ("2d", dt.timedelta(days=2)),
        ("1w", dt.timedelta(weeks=1)),
        ("1h30m", dt.timedelta(hours=1, minutes=30)),
        (" 2H ", dt.timedelta(hours=2)),
    ],
)
def test_since_accepts_durations_before_now(text: str, delta: dt.timedelta) -> None:
    assert output.parse_since(text, NOW) == NOW - delta


def test_since_accepts_iso_timestamps_naive_meaning_utc() -> None:
    assert output.parse_since("2024-04-30T10:00:00Z", NOW) == dt.datetime(
        2024, 4, 30, 10, tzinfo=dt.UTC
    )
    assert output.parse_since("2024-04-30T10:00:00", NOW) == dt.datetime(
        2024, 4, 30, 10, tzinfo=dt.UTC
    )
    assert output.parse_since("2024-04-30T12:00:00+02:00", NOW) == dt.datetime(
        2024, 4, 30, 10, tzinfo=dt.UTC
    )


@pytest.mark.parametrize("text", ["", "1", "5 minutes", "m5", "1h-2m", "yesterday"])
def test_since_refuses_anything_else_with_a_hint(text: str) -> None:
    with pytest.raises(ValueError, match=r"30s, 5m, 1h, 2d"):
        output.parse_since(text, NOW)


# --- diffs -------------------------------------------------------------------------


def test_diff_names_changed_added_and_removed_leaves_by_path() -> None:
    old = {"spec": {"cpus": 1, "memory": "64MiB", "graphics": {"type": "vnc"}, "disks": [{"a": 1}]}}
    new = {"spec": {"cpus": 2, "memory": "64MiB", "autostart": True, "disks": [{"a": 2}, {"b": 1}]}}
    lines = [output.diff_line(d) for d in output.diff_documents(old, new)]
    assert lines == [
        "+ spec.autostart: true",
        "~ spec.cpus: 1 -> 2",
        "~ spec.disks[0].a: 1 -> 2",
        '+ spec.disks[1]: {"b":1}',
        '- spec.graphics: {"type":"vnc"}',
    ]


def test_diff_of_equal_documents_is_empty_and_type_changes_count() -> None:
    document = {"spec": {"cpus": 2, "labels": {"a": "b"}, "disks": []}}
    assert output.diff_documents(document, json.loads(json.dumps(document))) == []
    (change,) = output.diff_documents({"x": 1}, {"x": True})
    assert output.diff_line(change) == "~ x: 1 -> true"
    assert output.diff_line(output.diff_documents({"x": None}, {"x": "a"})[0]) == "~ x: null -> a"


def test_diff_as_json_carries_op_old_and_new() -> None:
    (change,) = output.diff_documents({"spec": {}}, {"spec": {"cpus": 4}})
    assert change.as_json() == {"path": "spec.cpus", "op": "added", "old": None, "new": 4}


# --- tables ------------------------------------------------------------------------


def test_table_is_plain_aligned_columns_with_upper_case_headers() -> None:
    text = output.table(
        ["name", "phase", "message"],
        [["web-1", "Ready", "short"], ["db-10", "-", "a message with spaces"]],
    )
    assert text.splitlines() == [
        "NAME    PHASE   MESSAGE",
        "web-1   Ready   short",
        "db-10   -       a message with spaces",
    ]
    assert "\x1b" not in text


def test_table_prints_brackets_literally_and_never_wraps_long_cells() -> None:
    message = "volume [default]/web-1-root.qcow2 " + "x" * 300
    text = output.table(["MESSAGE"], [[message]])
    assert text.splitlines() == ["MESSAGE", message]


def test_table_without_header_keeps_rows_only_and_a_terminal_gets_a_bold_header() -> None:
    assert output.table(["A", "B"], [["1", "2"]], header=False) == "1   2"
    assert "\x1b[1m" in output.table(["A"], [["1"]], terminal=True)


# --- views -------------------------------------------------------------------------


def _vm_record(status: dict[str, Any] | None = None, **spec: Any) -> record.ResourceRecord:
    return record.ResourceRecord(
        key=record.ResourceKey("VirtualMachine", "web-1"),
        uid="uid-1",
        generation=2,
        spec={
            "apiVersion": kinds.API_VERSION,
            "kind": "VirtualMachine",
            "metadata": {"name": "web-1"},
            "spec": {"template": "small", **spec},
            "effective": {"cpus": 2, "memory": 64 << 20, "graphics_type": "vnc"},
        },
        spec_hash="h",
        source_file="vms.yaml",
        source_document=0,
        source_revision="main@sha1:abc",
        labels={},
        annotations={},
        status=status if status is not None else {},
        created_at=NOW - dt.timedelta(minutes=5),
        updated_at=NOW,
        deleted_at=None,
    )


def _domain(installation: str) -> observed.ObservedDomain:
    shape = observed.VmShape(
        cpus=2,
        memory=64 << 20,
        firmware=kinds.Firmware.BIOS,
        machine=kinds.Machine.Q35,
        graphics_type=kinds.GraphicsType.VNC,
        graphics_listen="127.0.0.1",
        disks=(),
        nics=(observed.NicShape(network="lab", mac="52:54:00:00:00:01"),),
        autostart=False,
    )
    return observed.ObservedDomain(
        name="web-1",
        uuid="uuid-live",
        owner=observed.Ownership("VirtualMachine", "web-1", installation, "h"),
        shape=shape,
        live=shape,
        power=kinds.PowerState.RUNNING,
        graphics_port=5900,
    )


def test_vm_row_overlays_power_ip_graphics_and_drift_from_an_owned_live_domain() -> None:
    rec = _vm_record({"phase": "Ready", "power": "Stopped"})
    world = observed.World(domains={"web-1": _domain("me")})
    live = views.Live("me", world, {"52:54:00:00:00:01": ("10.0.0.5",)}, frozenset({rec.key}))
    headers, rows = views.table_rows(kinds.Kind.VIRTUAL_MACHINE, [rec], [rec], live, NOW)
    assert dict(zip(headers, rows[0], strict=True)) == {
        "NAME": "web-1",
        "PHASE": "Ready",
        "POWER": "Running",
        "CPUS": "2",
        "MEMORY": "64MiB",
        "IP": "10.0.0.5",
        "GRAPHICS": "vnc:5900",
        "AGE": "5m",
        "DRIFT": "yes",
    }


def test_a_same_named_domain_of_another_installation_is_not_overlaid() -> None:
    rec = _vm_record({"power": "Stopped"})
    live = views.Live("me", observed.World(domains={"web-1": _domain("someone-else")}))
    facts = views.vm_facts(rec, live)
    assert (facts.power, facts.graphics, facts.uuid, facts.drift) == ("Stopped", None, None, False)


def test_without_an_observation_the_record_speaks_and_drift_is_unknown() -> None:
    rec = _vm_record({"power": "Paused", "ips": ["10.0.0.9"], "graphicsPort": 5901})
    headers, rows = views.table_rows(
        kinds.Kind.VIRTUAL_MACHINE, [rec], [rec], views.Live("me"), NOW, wide=True
    )
    row = dict(zip(headers, rows[0], strict=True))
    assert (row["POWER"], row["IP"], row["GRAPHICS"], row["DRIFT"]) == (
        "Paused",
        "10.0.0.9",
        "vnc:5901",
        "-",
    )
    assert (row["TEMPLATE"], row["GENERATION"], row["OBSERVED"]) == ("small", "2", "-")
    assert (row["SOURCE"], row["REVISION"]) == ("vms.yaml", "main@sha1:abc")
    assert views.item(rec, [rec], views.Live("me"))["status"]["drift"] is None


def test_history_lines_show_creation_then_field_diffs() -> None:
    def revision(generation: int, cpus: int) -> record.RevisionRecord:
        return record.RevisionRecord(
            key=record.ResourceKey("VirtualMachine", "web-1"),
            generation=generation,
            spec={"spec": {"cpus": cpus}},
            spec_hash=f"h{generation}",
            source_revision=None,
            source_file="vms.yaml",
            applied_at=NOW - dt.timedelta(hours=3 - generation),
            run_id=None,
        )

    lines = views.history_lines([revision(1, 1), revision(2, 2)], NOW)
    assert lines[0] == "Generation 1"
    assert "  Changes:            created" in lines
    assert "  Revision:           -" in lines
    assert lines[lines.index("Generation 2") :][-1] == "    ~ spec.cpus: 1 -> 2"
