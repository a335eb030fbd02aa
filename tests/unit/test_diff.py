"""The deepdiff adapter: which paths of two JSON documents differ, and how callers read them.

``document_diff`` replaced two hand-written recursive diffs (the planner's
template diff and ``history``'s revision diff). Besides the examples, a property
test holds each caller to the function it replaced, kept here as the oracle, on
arbitrary JSON documents: the output of ``plan`` and ``history`` did not move.
"""

from __future__ import annotations

import json
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from reconciler.cli import output
from reconciler.planning import actions, compare, diff

Op = diff.Op
D = diff.Difference


def test_nested_dicts_name_the_changed_leaf_by_dotted_path() -> None:
    old = {"spec": {"cpus": 1, "graphics": {"type": "vnc", "port": 5900}}}
    new = {"spec": {"cpus": 1, "graphics": {"type": "spice", "port": 5900}}}
    assert diff.document_diff(old, new) == [
        D(("spec", "graphics", "type"), Op.CHANGED, "vnc", "spice")
    ]
    assert diff.render_path(("spec", "graphics", "type")) == "spec.graphics.type"


def test_lists_of_dicts_compare_item_by_index_and_report_tail_items_whole() -> None:
    old = {"disks": [{"name": "root", "size": 1}, {"name": "data", "size": 2}]}
    new = {"disks": [{"name": "data", "size": 2}]}
    assert diff.document_diff(old, new) == [
        D(("disks", 0, "name"), Op.CHANGED, "root", "data"),
        D(("disks", 0, "size"), Op.CHANGED, 1, 2),
        D(("disks", 1), Op.REMOVED, old={"name": "data", "size": 2}),
    ]
    assert diff.render_path(("disks", 0, "size")) == "disks[0].size"
    assert diff.render_path((0, "a", 2)) == "[0].a[2]"
    assert diff.render_path(()) == ""


def test_added_and_removed_keys_carry_the_whole_value_sorted_by_key() -> None:
    old = {"b": {"x": [1]}, "c": 1}
    new = {"a": {"y": 2}, "c": 1, "d": None}
    assert diff.document_diff(old, new) == [
        D(("a",), Op.ADDED, new={"y": 2}),
        D(("b",), Op.REMOVED, old={"x": [1]}),
        D(("d",), Op.ADDED, new=None),
    ]


def test_type_changes_count_even_between_equal_values() -> None:
    assert diff.document_diff({"x": 1}, {"x": 1.0}) == [D(("x",), Op.CHANGED, 1, 1.0)]
    assert diff.document_diff({"x": 1}, {"x": True}) == [D(("x",), Op.CHANGED, 1, True)]
    assert diff.document_diff({"x": {}}, {"x": []}) == [D(("x",), Op.CHANGED, {}, [])]
    assert diff.document_diff({"x": "a"}, None) == [D((), Op.CHANGED, {"x": "a"}, None)]


def test_equal_documents_have_no_differences_however_much_they_hold() -> None:
    document = {"spec": {"disks": [{"a": [1, {"b": None}]}] * 3, "labels": {"k": "v"}}}
    assert diff.document_diff(document, json.loads(json.dumps(document))) == []


def test_a_dict_changed_throughout_is_still_diffed_leaf_by_leaf() -> None:
    # deepdiff would otherwise report a mostly-changed dict as one replaced value.
    old = {"s": {"a": 1, "b": 2, "c": 3, "d": 4}}
    new = {"s": {"a": 9, "b": 8, "c": 7, "d": 4}}
    assert [d.path for d in diff.document_diff(old, new)] == [("s", "a"), ("s", "b"), ("s", "c")]


def test_template_diff_folds_lists_into_one_field_and_ignores_none_for_missing() -> None:
    old = {"image": "a", "disks": [{"size": 1}], "labels": {"x": None}, "cpus": 2}
    new = {"image": "b", "disks": [{"size": 2}], "labels": {}, "cpus": 2.0}
    assert compare.record_diff(old, new) == [
        actions.FieldChange("disks", [{"size": 1}], [{"size": 2}], actions.Impact.RECORD),
        actions.FieldChange("image", "a", "b", actions.Impact.RECORD),
    ]


# --- the functions deepdiff replaced, as oracles --------------------------------------


def _old_planner_diff(old: Any, new: Any, path: str = "") -> list[actions.FieldChange]:
    if isinstance(old, dict) and isinstance(new, dict):
        out: list[actions.FieldChange] = []
        for k in sorted(old.keys() | new.keys()):
            out += _old_planner_diff(old.get(k), new.get(k), f"{path}.{k}" if path else k)
        return out
    return [] if old == new else [actions.FieldChange(path, old, new, actions.Impact.RECORD)]


def _join(path: str, key: str | int) -> str:
    if isinstance(key, int):
        return f"{path}[{key}]"
    return f"{path}.{key}" if path else key


def _old_history_diff(old: Any, new: Any, path: str = "") -> list[output.FieldDiff]:
    if isinstance(old, dict) and isinstance(new, dict):
        diffs: list[output.FieldDiff] = []
        for key in sorted(old.keys() | new.keys(), key=str):
            where = _join(path, key)
            if key not in new:
                diffs.append(output.FieldDiff(where, output.DiffOp.REMOVED, old=old[key]))
            elif key not in old:
                diffs.append(output.FieldDiff(where, output.DiffOp.ADDED, new=new[key]))
            else:
                diffs += _old_history_diff(old[key], new[key], where)
        return diffs
    if isinstance(old, list) and isinstance(new, list):
        diffs = []
        for index in range(max(len(old), len(new))):
            where = _join(path, index)
            if index >= len(new):
                diffs.append(output.FieldDiff(where, output.DiffOp.REMOVED, old=old[index]))
            elif index >= len(old):
                diffs.append(output.FieldDiff(where, output.DiffOp.ADDED, new=new[index]))
            else:
                diffs += _old_history_diff(old[index], new[index], where)
        return diffs
    if old == new and type(old) is type(new):
        return []
    return [output.FieldDiff(path or "(document)", output.DiffOp.CHANGED, old=old, new=new)]


_SCALARS = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-2, 2),
    st.sampled_from([0.0, 1.0, 1.5]),
    st.sampled_from(["", "a", "b"]),
)
_DOCS = st.recursive(
    _SCALARS,
    lambda inner: st.one_of(
        st.lists(inner, max_size=3),
        st.dictionaries(st.sampled_from(["a", "b", "c", "d"]), inner, max_size=4),
    ),
    max_leaves=12,
)
_PAIRS = st.one_of(
    st.tuples(_DOCS, _DOCS),
    # Mostly-equal pairs: one document and a small edit of it.
    _DOCS.flatmap(
        lambda d: st.tuples(
            st.just(d), st.one_of(st.just(d), _DOCS.map(lambda e: {"a": d, "b": e}))
        )
    ),
)
_PROPERTY = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@_PROPERTY
@given(_PAIRS)
def test_history_diff_matches_the_hand_written_one_it_replaced(pair: tuple[Any, Any]) -> None:
    old, new = pair
    assert output.diff_documents(old, new) == _old_history_diff(old, new)
    assert [output.diff_line(d) for d in output.diff_documents(old, new)] == [
        output.diff_line(d) for d in _old_history_diff(old, new)
    ]


@_PROPERTY
@given(_PAIRS)
def test_template_diff_matches_the_hand_written_one_it_replaced(pair: tuple[Any, Any]) -> None:
    old, new = pair
    assert compare.record_diff(old, new) == _old_planner_diff(old, new)
