"""History: every applied revision of a VM is kept with what changed, and from which commit.

Three revisions of one VM are applied (each with a ``--revision`` as the daemon
records git commits); ``infinibay history vm/NAME`` lists them in order with
the field diffs, in text and in JSON, and matches the record's revisions.
"""

from __future__ import annotations

import json
import re
from typing import Any

import pytest

from reconciler.models import record
from tests.integration.harness import Harness

pytestmark = pytest.mark.integration


def test_history_lists_each_applied_revision_with_its_field_diff(h: Harness) -> None:
    base = [h.pool(), h.network(), h.template()]
    revisions: list[tuple[str, dict[str, Any]]] = [
        ("main@sha1:" + "a" * 40, {}),
        ("main@sha1:" + "b" * 40, {"cpus": 2}),
        ("main@sha1:" + "c" * 40, {"cpus": 2, "memory": "128MiB"}),
    ]
    for revision, spec in revisions:
        h.write(*base, h.vm("web", powerState="Stopped", **spec))
        result = h.apply("--revision", revision)
        assert result.exit_code == 0, result.output
    result = h.apply("--revision", revisions[-1][0])  # re-applied unchanged: no new revision
    assert result.exit_code == 0 and "Nothing to do" in result.output, result.output

    key = record.ResourceKey("VirtualMachine", h.name("web"))
    with h.store() as store:
        stored = store.history(key)
    assert [r.generation for r in stored] == [1, 2, 3]
    assert [r.source_revision for r in stored] == [rev for rev, _ in revisions]
    assert [r.spec["spec"].get("cpus") for r in stored] == [None, 2, 2]
    assert [r.spec["spec"].get("memory") for r in stored] == [None, None, "128MiB"]
    assert all(r.run_id is not None for r in stored)

    text = h.run("history", f"vm/{h.name('web')}")
    assert text.exit_code == 0, text.output
    generations = re.findall(r"^Generation (\d+)$", text.output, re.M)
    assert generations == ["1", "2", "3"]
    for revision, _ in revisions:
        assert revision in text.output
    second, third = text.output.split("Generation 2")[1].split("Generation 3")
    assert re.search(r"spec\.cpus: .*2", second), second
    assert "memory" not in second
    assert re.search(r"spec\.memory: .*128MiB", third), third
    assert "spec.cpus" not in third

    as_json = h.run("history", f"vm/{h.name('web')}", "-o", "json")
    assert as_json.exit_code == 0, as_json.output
    document = json.loads(as_json.output)
    assert [r["generation"] for r in document["revisions"]] == [1, 2, 3]
    assert [r["revision"] for r in document["revisions"]] == [rev for rev, _ in revisions]
    assert document["revisions"][0]["changes"] == []
    changed = [{c["path"] for c in r["changes"]} for r in document["revisions"][1:]]
    assert any("cpus" in path for path in changed[0])
    assert any("memory" in path for path in changed[1])
