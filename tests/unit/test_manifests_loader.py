"""The loader accepts valid manifests and locates every problem at ``FILE:LINE:COL``.

Each error test writes small YAML files into a temporary directory (and runs
from there, so messages carry short relative names), then asserts the exact
lines of :class:`ManifestError`. The YAML is spelled out in the test so the
expected line and column can be checked by eye.
"""

from __future__ import annotations

import datetime as dt
import io
import json
import textwrap
from collections.abc import Sequence
from pathlib import Path

import pytest
import yaml

from reconciler import errors, settings
from reconciler.manifests import loader
from reconciler.models import kinds, record

POOL = """\
apiVersion: infinibay.io/v1alpha1
kind: StoragePool
metadata: {name: default}
spec:
  path: /var/lib/infinibay/pools/default
"""

NETWORK = """\
apiVersion: infinibay.io/v1alpha1
kind: Network
metadata: {name: lab}
spec:
  mode: nat
  ipv4:
    address: 10.20.0.1/24
    dhcp: {start: 10.20.0.100, end: 10.20.0.200}
"""

TEMPLATE = """\
apiVersion: infinibay.io/v1alpha1
kind: Template
metadata: {name: linux-small}
spec:
  cpus: 2
  memory: 2GiB
  disks:
    - {name: root, size: 20GiB, pool: default}
  networks:
    - {network: lab}
"""

BASE = f"{POOL}---\n{NETWORK}---\n{TEMPLATE}"


@pytest.fixture(autouse=True)
def _in_tmp(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)


def _write(files: dict[str, str]) -> list[str]:
    for name, text in files.items():
        Path(name).parent.mkdir(parents=True, exist_ok=True)
        Path(name).write_text(textwrap.dedent(text))
    return list(files)


def _errors(files: dict[str, str], *, known: Sequence[record.ResourceKey] = ()) -> list[str]:
    paths = _write({"base.yaml": BASE, **files})
    with pytest.raises(errors.ManifestError) as info:
        loader.load(paths, known=known)
    return info.value.messages


def _vm(spec: str, name: str = "web-1") -> str:
    head = f"apiVersion: infinibay.io/v1alpha1\nkind: VirtualMachine\nmetadata: {{name: {name}}}\n"
    return head + "spec:\n" + textwrap.indent(textwrap.dedent(spec), "  ")


# --- valid input -------------------------------------------------------------------


def test_valid_manifests_load_into_a_desired_state_with_merged_vms() -> None:
    vm = _vm("""\
        template: linux-small
        cpus: 4
        disks:
          - {name: root, size: 40GiB}
          - {name: data, size: 1GiB, reclaimPolicy: Delete}
        """)
    paths = _write({"base.yaml": BASE, "vm.yaml": vm})

    state = loader.load(paths, revision="main@sha1:abc")

    assert len(state) == 4
    assert set(state.pools) == {"default"}
    assert set(state.networks) == {"lab"}
    assert set(state.templates) == {"linux-small"}
    web = state.effective_vms["web-1"]
    assert (web.cpus, web.memory, web.template) == (4, 2 << 30, "linux-small")
    assert [(d.name, d.size, d.pool, d.reclaim) for d in web.disks] == [
        ("root", 40 << 30, "default", kinds.ReclaimPolicy.RETAIN),
        ("data", 1 << 30, "default", kinds.ReclaimPolicy.DELETE),
    ]
    assert [n.network for n in web.nics] == ["lab"]


def test_each_document_records_its_source() -> None:
    paths = _write({"base.yaml": "# the pool\n" + BASE})

    state = loader.load(paths, revision="main@sha1:abc")

    pool = state.pools["default"].source
    network = state.networks["lab"].source
    assert (pool.file, pool.line, pool.column, pool.document) == ("base.yaml", 2, 1, 0)
    assert (network.file, network.line, network.column, network.document) == ("base.yaml", 8, 1, 1)
    assert pool.revision == "main@sha1:abc"
    assert str(network) == "base.yaml:8:1"


def test_empty_documents_are_skipped_but_counted_in_the_document_index() -> None:
    paths = _write({"pool.yaml": f"---\n---\n{POOL}---\n"})

    state = loader.load(paths)

    assert state.pools["default"].source.document == 1
    assert len(state) == 1


def test_a_top_level_status_is_ignored() -> None:
    paths = _write({"pool.yaml": POOL + "status: {phase: Ready}\n"})

    assert set(loader.load(paths).pools) == {"default"}


def test_directories_are_read_recursively_in_sorted_order_skipping_hidden_paths() -> None:
    _write(
        {
            "site/b/vm.yml": _vm("template: linux-small\n"),
            "site/a/base.yaml": BASE,
            "site/.git/config.yaml": "not: a manifest\n",
            "site/notes.txt": "not yaml at all: [",
            "site/a/z.yaml": _vm("cpus: 0\n", name="bad"),
            "site/b/a.yaml": _vm("cpus: 0\n", name="bad-too"),
        }
    )

    with pytest.raises(errors.ManifestError) as info:
        loader.load(["site"])

    assert info.value.messages == [
        "site/a/z.yaml:5:9: VirtualMachine/bad: spec.cpus: "
        "Input should be greater than or equal to 1",
        "site/b/a.yaml:5:9: VirtualMachine/bad-too: spec.cpus: "
        "Input should be greater than or equal to 1",
    ]


def test_a_directory_loads_its_yaml_and_yml_files() -> None:
    _write({"site/a/base.yaml": BASE, "site/b/vm.yml": _vm("template: linux-small\n")})

    state = loader.load(["site"])

    assert set(state.vms) == {"web-1"}
    assert state.vms["web-1"].source.file == "site/b/vm.yml"


def test_a_file_named_twice_is_read_once() -> None:
    _write({"site/base.yaml": BASE})

    state = loader.load(["site", "site/base.yaml"])

    assert len(state) == 3


def test_dash_reads_manifests_from_stdin() -> None:
    state = loader.load(["-"], stdin=io.StringIO(BASE))

    assert set(state.templates) == {"linux-small"}
    assert state.templates["linux-small"].source.file == "-"


def test_errors_from_stdin_are_located_in_dash() -> None:
    with pytest.raises(errors.ManifestError) as info:
        loader.load(["-"], stdin=io.StringIO(_vm("cpus: 0\n")))

    assert info.value.messages == [
        "-:5:9: VirtualMachine/web-1: spec.cpus: Input should be greater than or equal to 1"
    ]


# --- a kind: List, as get -o yaml / -o json print it ---------------------------------

LISTED = """\
apiVersion: infinibay.io/v1alpha1
kind: List
items:
- apiVersion: infinibay.io/v1alpha1
  kind: StoragePool
  metadata:
    name: default
    uid: 6f1c
    generation: 3
    creationTimestamp: '2026-11-27T12:00:00+00:00'
  spec:
    path: /var/lib/infinibay/pools/default
  status: {phase: Ready}
- apiVersion: infinibay.io/v1alpha1
  kind: Network
  metadata: {name: lab, uid: 7a2d}
  spec:
    mode: nat
    ipv4: {address: 10.20.0.1/24}
"""


def test_the_items_of_a_list_load_as_documents_with_a_notice_each() -> None:
    state = loader.load(["-"], stdin=io.StringIO(LISTED))

    assert (set(state.pools), set(state.networks)) == ({"default"}, {"lab"})
    assert str(state.networks["lab"].source) == "-:14:3"
    assert state.notices == [
        "-:8:10: StoragePool/default: metadata.uid, metadata.generation, "
        "metadata.creationTimestamp: set by the reconciler, ignored",
        "-:16:30: Network/lab: metadata.uid: set by the reconciler, ignored",
    ]


def test_a_list_printed_as_json_loads_too() -> None:
    listed = json.dumps(yaml.safe_load(LISTED), indent=2)

    state = loader.load(["-"], stdin=io.StringIO(listed))

    assert (set(state.pools), set(state.networks)) == ({"default"}, {"lab"})


def test_an_error_inside_an_item_names_the_file_line_item_and_field() -> None:
    listed = LISTED.replace("    mode: nat\n", "    mode: nat\n    mtu: -1\n")
    paths = _write({"vms.yaml": listed})

    with pytest.raises(errors.ManifestError) as info:
        loader.load(paths)

    assert info.value.messages == [
        "vms.yaml:19:10: Network/lab: spec.mtu: Input should be greater than or equal to 576"
    ]


def test_a_list_without_items_or_with_other_fields_is_located() -> None:
    with pytest.raises(errors.ManifestError) as info:
        loader.load(["-"], stdin=io.StringIO("apiVersion: v1\nkind: List\nmetadata: {}\n"))

    assert info.value.messages == [
        "-:1:1: List/?: items: required field is missing; a List holds its manifests in items",
        "-:1:13: List/?: apiVersion: unknown apiVersion 'v1'; use infinibay.io/v1alpha1",
        "-:3:11: List/?: metadata: unknown field 'metadata'; a List has apiVersion, kind, items",
    ]


def test_an_item_that_is_not_a_mapping_and_a_key_twice_in_an_item_are_located() -> None:
    listed = "apiVersion: infinibay.io/v1alpha1\nkind: List\nitems:\n- 3\n" + textwrap.indent(
        NETWORK.replace("kind: Network\n", "kind: Network\nkind: Network\n"), "  "
    ).replace("  apiVersion", "- apiVersion", 1)

    with pytest.raises(errors.ManifestError) as info:
        loader.load(["-"], stdin=io.StringIO(listed))

    assert info.value.messages == [
        "-:4:3: ?/?: a manifest must be a mapping with apiVersion, kind, metadata and spec, "
        "not a int",
        "-:7:3: Network/lab: kind: key written twice; first at line 6",
    ]


def test_the_items_of_a_list_count_against_the_document_cap() -> None:
    limits = settings.Limits(documents=2)
    with pytest.raises(errors.ManifestError) as info:
        loader.load(["-"], stdin=io.StringIO(LISTED), limits=limits)

    assert info.value.messages == [
        "-:3:1: ?/?: more than 2 documents in this run (INFINIBAY_MAX_DOCUMENTS); "
        "refusing to load any of them"
    ]


# --- YAML and document shape ---------------------------------------------------------


def test_yaml_syntax_error_is_located_at_the_yaml_mark() -> None:
    broken = """\
        apiVersion: infinibay.io/v1alpha1
        kind: VirtualMachine
        metadata:
          name: web-1
           cpus: 2
        """
    assert _errors({"vm.yaml": broken}) == [
        "vm.yaml:5:8: ?/?: YAML syntax error: mapping values are not allowed here"
    ]


def test_yaml_syntax_error_names_the_construct_it_interrupted() -> None:
    broken = "apiVersion: infinibay.io/v1alpha1\nkind: StoragePool\nmetadata: {name: p\nspec: {}\n"
    assert _errors({"pool.yaml": broken}) == [
        "pool.yaml:4:5: ?/?: YAML syntax error: expected ',' or '}', but got ':' "
        "(while parsing a flow mapping at line 3, column 11)"
    ]


def test_documents_before_a_syntax_error_are_still_validated() -> None:
    text = _vm("cpus: 0\n") + "---\nkind: [\n"
    assert _errors({"vm.yaml": text}) == [
        "vm.yaml:5:9: VirtualMachine/web-1: spec.cpus: Input should be greater than or equal to 1",
        "vm.yaml:8:1: ?/?: YAML syntax error: expected the node content, but found '<stream end>'",
    ]


def test_a_document_that_is_not_a_mapping_is_rejected() -> None:
    assert _errors({"list.yaml": "- web-1\n- web-2\n"}) == [
        "list.yaml:1:1: ?/?: a manifest must be a mapping with apiVersion, kind, metadata "
        "and spec, not a list"
    ]


def test_a_key_written_twice_is_rejected() -> None:
    text = POOL.replace("name: default", "name: fast") + "  path: /srv/other\n"
    assert _errors({"pool.yaml": text}) == [
        "pool.yaml:6:3: StoragePool/fast: spec.path: key written twice; first at line 5"
    ]


def test_merge_keys_work_and_errors_point_at_the_written_node() -> None:
    text = """\
        apiVersion: infinibay.io/v1alpha1
        kind: Template
        metadata: {name: big}
        spec:
          <<: {cpus: 2, memory: 2GiB}
          cpus: 0
        """
    assert _errors({"tpl.yaml": text}) == [
        "tpl.yaml:6:9: Template/big: spec.cpus: Input should be greater than or equal to 1"
    ]


def test_python_tags_are_refused() -> None:
    text = "apiVersion: infinibay.io/v1alpha1\nkind: StoragePool\nmetadata: {name: p}\n"
    text += "spec: {path: !!python/object/apply:os.system [true]}\n"
    assert _errors({"pool.yaml": text}) == [
        "pool.yaml:4:14: ?/?: YAML error: could not determine a constructor for the tag "
        "'tag:yaml.org,2002:python/object/apply:os.system'"
    ]


def test_a_document_expanding_through_aliases_beyond_the_limit_is_refused() -> None:
    lines = ['a0: &a0 ["x", "x", "x", "x", "x", "x", "x", "x", "x", "x"]']
    lines += [f"a{i}: &a{i} [{', '.join([f'*a{i - 1}'] * 10)}]" for i in range(1, 6)]
    assert _errors({"bomb.yaml": "\n".join(lines) + "\n"}) == [
        "bomb.yaml:1:1: ?/?: YAML error: the document expands to more than 100000 nodes "
        "through aliases; refusing to load it"
    ]


def test_a_missing_path_is_reported() -> None:
    _write({"base.yaml": BASE})
    with pytest.raises(errors.ManifestError) as info:
        loader.load(["base.yaml", "nope.yaml"])
    assert info.value.messages == ["nope.yaml: no such file or directory"]


# --- apiVersion and kind ----------------------------------------------------------------


def test_unknown_api_version_suggests_the_supported_one() -> None:
    text = "apiVersion: infinibay.io/v1\nkind: StoragePool\nmetadata: {name: p}\nspec: {path: /p}\n"
    assert _errors({"pool.yaml": text}) == [
        "pool.yaml:1:13: StoragePool/p: apiVersion: unknown apiVersion 'infinibay.io/v1'; "
        "use infinibay.io/v1alpha1"
    ]


def test_missing_api_version_points_at_the_document() -> None:
    text = "kind: StoragePool\nmetadata: {name: p}\nspec: {path: /p}\n"
    assert _errors({"pool.yaml": text}) == [
        "pool.yaml:1:1: StoragePool/p: apiVersion: required field is missing; "
        "use infinibay.io/v1alpha1"
    ]


def test_unknown_kind_suggests_the_closest_kind() -> None:
    text = "apiVersion: infinibay.io/v1alpha1\nkind: VirtualMachin\nmetadata: {name: web-1}\n"
    assert _errors({"vm.yaml": text}) == [
        "vm.yaml:2:7: ?/web-1: kind: unknown kind 'VirtualMachin'; did you mean 'VirtualMachine'?"
    ]


def test_unknown_kind_without_a_close_match_lists_the_kinds() -> None:
    text = "apiVersion: infinibay.io/v1alpha1\nkind: Gadget\nmetadata: {name: fw}\n"
    assert _errors({"fw.yaml": text}) == [
        "fw.yaml:2:7: ?/fw: kind: unknown kind 'Gadget'; "
        "one of StoragePool, Network, Template, VirtualMachine, FirewallPolicy, Department, Host"
    ]


def test_an_unknown_kind_close_to_a_new_one_is_suggested() -> None:
    text = "apiVersion: infinibay.io/v1alpha1\nkind: Firewall\nmetadata: {name: fw}\n"
    assert _errors({"fw.yaml": text}) == [
        "fw.yaml:2:7: ?/fw: kind: unknown kind 'Firewall'; did you mean 'FirewallPolicy'?"
    ]


def test_a_kind_in_other_case_is_not_accepted() -> None:
    text = "apiVersion: infinibay.io/v1alpha1\nkind: virtualmachine\nmetadata: {name: web-1}\n"
    assert _errors({"vm.yaml": text}) == [
        "vm.yaml:2:7: ?/web-1: kind: unknown kind 'virtualmachine'; did you mean 'VirtualMachine'?"
    ]


# --- fields -------------------------------------------------------------------------------


def test_unknown_field_suggests_the_closest_field_name() -> None:
    assert _errors({"vm.yaml": _vm("cpuss: 4\n")}) == [
        "vm.yaml:5:3: VirtualMachine/web-1: spec.cpuss: unknown field 'cpuss'; did you mean 'cpus'?"
    ]


def test_unknown_nested_field_suggests_from_the_model_at_that_place() -> None:
    spec = """\
        disks:
          - name: root
            size: 1GiB
            reclaim: Delete
        """
    assert _errors({"vm.yaml": _vm(spec)}) == [
        "vm.yaml:8:7: VirtualMachine/web-1: spec.disks[0].reclaim: unknown field 'reclaim'; "
        "did you mean 'reclaimPolicy'?"
    ]


def test_unknown_field_without_a_close_match_lists_the_allowed_fields() -> None:
    text = POOL.replace("name: default", "name: fast") + "  owner: root\n"
    assert _errors({"pool.yaml": text}) == [
        "pool.yaml:6:3: StoragePool/fast: spec.owner: unknown field 'owner'; "
        "expected one of: autostart, hostSelector, hosts, images, path, shared"
    ]


def test_bare_number_size_asks_for_a_unit() -> None:
    spec = """\
        memory: 4
        disks:
          - {name: root, size: 20}
        """
    assert _errors({"vm.yaml": _vm(spec)}) == [
        "vm.yaml:5:11: VirtualMachine/web-1: spec.memory: "
        "give a unit, e.g. 4GiB or 4MiB (bare numbers are ambiguous)",
        "vm.yaml:7:26: VirtualMachine/web-1: spec.disks[0].size: "
        "give a unit, e.g. 20GiB or 20MiB (bare numbers are ambiguous)",
    ]


def test_wrong_type_is_located_at_the_value() -> None:
    assert _errors({"vm.yaml": _vm("cpus: two\nautostart: maybe\n")}) == [
        "vm.yaml:5:9: VirtualMachine/web-1: spec.cpus: "
        "Input should be a valid integer, unable to parse string as an integer",
        "vm.yaml:6:14: VirtualMachine/web-1: spec.autostart: "
        "Input should be a valid boolean, unable to interpret input",
    ]


def test_wrong_enum_value_names_the_allowed_values_and_the_input() -> None:
    assert _errors({"vm.yaml": _vm("powerState: running\n")}) == [
        "vm.yaml:5:15: VirtualMachine/web-1: spec.powerState: "
        "Input should be 'Running', 'Stopped' or 'Paused', not 'running'"
    ]


def test_out_of_range_values_are_rejected() -> None:
    network = NETWORK.replace("name: lab", "name: lab2") + "  mtu: 100\n"
    assert _errors({"vm.yaml": _vm("cpus: 0\n"), "net.yaml": network}) == [
        "vm.yaml:5:9: VirtualMachine/web-1: spec.cpus: Input should be greater than or equal to 1",
        "net.yaml:9:8: Network/lab2: spec.mtu: Input should be greater than or equal to 576",
    ]


def test_a_missing_field_points_at_its_parent_mapping() -> None:
    text = """\
        apiVersion: infinibay.io/v1alpha1
        kind: StoragePool
        metadata:
          labels: {team: qa}
        spec:
          autostart: false
        """
    assert _errors({"pool.yaml": text}) == [
        "pool.yaml:3:1: StoragePool/?: metadata.name: required field is missing",
        "pool.yaml:5:1: StoragePool/?: spec.path: required field is missing",
    ]


@pytest.mark.parametrize(
    ("name", "column"),
    [("../x", 18), ("Web_1", 18)],
)
def test_names_that_are_not_dns_labels_are_rejected(name: str, column: int) -> None:
    text = f"apiVersion: infinibay.io/v1alpha1\nkind: StoragePool\nmetadata: {{name: '{name}'}}\n"
    text += "spec: {path: /p}\n"
    assert _errors({"pool.yaml": text}) == [
        f"pool.yaml:3:{column}: StoragePool/{name}: metadata.name: '{name}' is not a DNS label: "
        "use lowercase letters, digits and '-', starting and ending with a letter or digit"
    ]


def test_dhcp_range_outside_the_prefix_points_at_dhcp() -> None:
    text = NETWORK.replace("end: 10.20.0.200", "end: 10.30.0.200")
    assert _errors({"net.yaml": text.replace("name: lab", "name: lab2")}) == [
        "net.yaml:8:11: Network/lab2: spec.ipv4.dhcp: "
        "DHCP range 10.20.0.100-10.30.0.200 is outside 10.20.0.0/24"
    ]


def test_static_host_outside_the_prefix_points_at_its_ip() -> None:
    text = NETWORK.replace("name: lab", "name: lab2") + (
        "    hosts:\n"
        '      - {mac: "52:54:00:00:00:10", ip: 10.20.0.10}\n'
        '      - {mac: "52:54:00:00:00:11", ip: 10.99.0.11}\n'
    )
    assert _errors({"net.yaml": text}) == [
        "net.yaml:11:40: Network/lab2: spec.ipv4.hosts[1].ip: static host 10.99.0.11 is outside "
        "10.20.0.0/24"
    ]


def test_bridge_name_longer_than_15_characters_is_rejected() -> None:
    text = NETWORK.replace("name: lab", "name: lab2").replace(
        "  mode: nat\n", "  mode: nat\n  bridge: ib-lab-far-too-long\n"
    )
    assert _errors({"net.yaml": text}) == [
        "net.yaml:6:11: Network/lab2: spec.bridge: "
        "bridge name 'ib-lab-far-too-long' is 19 characters; Linux allows at most 15"
    ]


def test_a_model_level_error_without_a_field_points_at_the_model() -> None:
    text = "apiVersion: infinibay.io/v1alpha1\nkind: Network\nmetadata: {name: br}\nspec:\n"
    text += "  mode: bridge\n"
    assert _errors({"net.yaml": text}) == [
        "net.yaml:4:1: Network/br: spec: "
        "mode bridge attaches to an existing host bridge: give 'bridge'"
    ]


def test_a_member_listed_twice_points_at_the_second_one() -> None:
    spec = """\
        disks:
          - {name: root, size: 1GiB}
          - {name: root, size: 2GiB}
        """
    assert _errors({"vm.yaml": _vm(spec)}) == [
        "vm.yaml:7:14: VirtualMachine/web-1: spec.disks[1].name: disk 'root' is listed twice"
    ]


# --- across documents ----------------------------------------------------------------------


def test_duplicate_kind_and_name_names_both_locations() -> None:
    assert _errors({"a.yaml": _vm("cpus: 1\n"), "b.yaml": "---\n" + _vm("cpus: 2\n")}) == [
        "b.yaml:4:18: VirtualMachine/web-1: metadata.name: duplicate VirtualMachine/web-1; "
        "first defined at a.yaml:3:18"
    ]


def test_the_same_name_in_different_kinds_is_not_a_duplicate() -> None:
    paths = _write({"base.yaml": BASE, "vm.yaml": _vm("cpus: 1\n", name="lab")})

    assert set(loader.load(paths).vms) == {"lab"}


def test_dangling_template_reference_points_at_the_template_field() -> None:
    assert _errors({"vm.yaml": _vm("template: linux-smal\n")}) == [
        "vm.yaml:5:13: VirtualMachine/web-1: spec.template: template 'linux-smal' is neither "
        "in the manifests nor in the record; did you mean 'linux-small'?"
    ]


def test_dangling_network_reference_points_at_the_network_field() -> None:
    assert _errors({"vm.yaml": _vm("networks:\n  - network: office\n")}) == [
        "vm.yaml:6:16: VirtualMachine/web-1: spec.networks[0].network: network 'office' is "
        "neither in the manifests nor in the record"
    ]


def test_dangling_pool_reference_points_at_the_pool_field() -> None:
    assert _errors({"vm.yaml": _vm("disks:\n  - {name: root, size: 1GiB, pool: fast}\n")}) == [
        "vm.yaml:6:38: VirtualMachine/web-1: spec.disks[0].pool: storage pool 'fast' is "
        "neither in the manifests nor in the record"
    ]


def test_dangling_references_in_a_template_point_into_the_template() -> None:
    template = TEMPLATE.replace("linux-small", "big").replace("pool: default", "pool: fast")
    template = template.replace("network: lab", "network: office")
    assert _errors({"tpl.yaml": template}) == [
        "tpl.yaml:8:39: Template/big: spec.disks[0].pool: storage pool 'fast' is neither in the "
        "manifests nor in the record",
        "tpl.yaml:10:17: Template/big: spec.networks[0].network: network 'office' is neither in "
        "the manifests nor in the record",
    ]


def test_an_implied_default_pool_must_exist_after_the_template_merge() -> None:
    template = TEMPLATE.replace("linux-small", "plain").replace(", pool: default", "")
    paths = _write(
        {
            "tpl.yaml": template,
            "net.yaml": NETWORK,
            "vm.yaml": _vm("template: plain\ndisks:\n  - {name: data, size: 1GiB}\n"),
        }
    )
    with pytest.raises(errors.ManifestError) as info:
        loader.load(paths)
    assert info.value.messages == [
        "vm.yaml:5:13: VirtualMachine/web-1: spec.template: disk 'root' uses the default storage "
        "pool 'default', which is neither in the manifests nor in the record; declare it or set "
        "'pool'",
        "vm.yaml:7:7: VirtualMachine/web-1: spec.disks[0]: disk 'data' uses the default storage "
        "pool 'default', which is neither in the manifests nor in the record; declare it or set "
        "'pool'",
    ]


def test_references_are_satisfied_by_resources_known_from_the_record() -> None:
    vm = _vm("""\
        template: golden
        disks:
          - {name: data, size: 1GiB, pool: fast}
        networks:
          - {network: office}
        """)
    known = [
        record.ResourceKey(kinds.Kind.TEMPLATE.value, "golden"),
        record.ResourceKey(kinds.Kind.STORAGE_POOL.value, "fast"),
        record.ResourceKey(kinds.Kind.NETWORK.value, "office"),
    ]
    paths = _write({"vm.yaml": vm})

    state = loader.load(paths, known=known)

    assert set(state.vms) == {"web-1"}
    # The template's spec lives in the record: the caller merges this VM.
    assert state.effective_vms == {}


def test_a_reference_to_an_invalid_document_is_not_reported_again() -> None:
    template = TEMPLATE.replace("cpus: 2", "cpus: 0")
    paths = _write(
        {
            "tpl.yaml": f"{POOL}---\n{NETWORK}---\n{template}",
            "vm.yaml": _vm("template: linux-small\n"),
        }
    )
    with pytest.raises(errors.ManifestError) as info:
        loader.load(paths)
    assert info.value.messages == [
        "tpl.yaml:20:9: Template/linux-small: spec.cpus: Input should be greater than or equal to 1"
    ]


def test_a_disk_without_size_after_the_merge_points_at_the_disk() -> None:
    spec = """\
        template: linux-small
        disks:
          - {name: data, pool: default}
        """
    assert _errors({"vm.yaml": _vm(spec)}) == [
        "vm.yaml:7:7: VirtualMachine/web-1: spec.disks[0].size: "
        "disk 'data' has no size in the VM or its template"
    ]


# --- the whole run ------------------------------------------------------------------------


def test_all_errors_of_all_files_are_reported_sorted_by_file_and_line() -> None:
    messages = _errors(
        {
            "one.yaml": _vm("memory: 4\ncpus: 0\n") + "---\n" + _vm("cpuss: 1\n", name="Web_2"),
            "two.yaml": "apiVersion: infinibay.io/v1alpha1\nkind: Networc\nmetadata: {name: x}\n",
            "three.yaml": "a: [\n",
        }
    )
    assert messages == [
        "one.yaml:5:11: VirtualMachine/web-1: spec.memory: "
        "give a unit, e.g. 4GiB or 4MiB (bare numbers are ambiguous)",
        "one.yaml:6:9: VirtualMachine/web-1: spec.cpus: Input should be greater than or equal to 1",
        "one.yaml:10:18: VirtualMachine/Web_2: metadata.name: 'Web_2' is not a DNS label: "
        "use lowercase letters, digits and '-', starting and ending with a letter or digit",
        "one.yaml:12:3: VirtualMachine/Web_2: spec.cpuss: unknown field 'cpuss'; "
        "did you mean 'cpus'?",
        "two.yaml:2:7: ?/x: kind: unknown kind 'Networc'; did you mean 'Network'?",
        "three.yaml:2:1: ?/?: YAML syntax error: expected the node content, but found "
        "'<stream end>'",
    ]


def test_manifest_error_summarises_the_count() -> None:
    with pytest.raises(errors.ManifestError) as info:
        loader.load(["-"], stdin=io.StringIO(_vm("cpus: 0\nmemory: 1\n")))

    assert str(info.value) == "2 invalid manifest entries"


def _recorded(
    kind: kinds.Kind, name: str, spec: dict[str, object], *, deleted: bool = False
) -> record.ResourceRecord:
    now = dt.datetime(2026, 11, 27, tzinfo=dt.UTC)
    document = {"apiVersion": kinds.API_VERSION, "kind": kind.value, "metadata": {"name": name}}
    return record.ResourceRecord(
        key=record.ResourceKey(kind.value, name),
        uid=f"uid-{name}",
        generation=1,
        spec={**document, "spec": spec},
        spec_hash="0" * 16,
        source_file="old.yaml",
        source_document=0,
        source_revision=None,
        labels={},
        annotations={},
        status={},
        created_at=now,
        updated_at=now,
        deleted_at=now if deleted else None,
    )


def test_load_against_the_record_merges_recorded_templates_and_ignores_tombstones() -> None:
    records = [
        _recorded(kinds.Kind.TEMPLATE, "golden", {"cpus": 4, "memory": "1GiB"}),
        _recorded(kinds.Kind.STORAGE_POOL, "fast", {"path": "/srv/fast"}),
        _recorded(kinds.Kind.NETWORK, "gone", {"mode": "isolated"}, deleted=True),
    ]
    paths = _write(
        {
            "web.yaml": _vm("template: golden\ndisks:\n  - {name: root, size: 1GiB, pool: fast}\n"),
        }
    )

    state = loader.load_against(paths, records)

    vm = state.effective_vms["web-1"]
    assert (vm.cpus, vm.memory) == (4, 1 << 30)
    assert [d.pool for d in vm.disks] == ["fast"]

    _write({"web.yaml": _vm("template: golden\nnetworks:\n  - network: gone\n")})
    with pytest.raises(errors.ManifestError) as info:
        loader.load_against(paths, records)
    assert info.value.messages == [
        "web.yaml:7:16: VirtualMachine/web-1: spec.networks[0].network: network 'gone' is "
        "neither in the manifests nor in the record"
    ]


def test_a_subnet_overlapping_a_recorded_network_not_declared_is_a_located_error() -> None:
    records = [
        _recorded(kinds.Kind.NETWORK, "old", {"mode": "nat", "ipv4": {"address": "10.20.0.1/24"}}),
        _recorded(kinds.Kind.NETWORK, "lab", {"mode": "nat", "ipv4": {"address": "10.9.0.1/24"}}),
    ]
    paths = _write({"base.yaml": NETWORK})

    with pytest.raises(errors.ManifestError) as info:
        loader.load_against(paths, records)

    assert info.value.messages == [
        "base.yaml:7:14: Network/lab: spec.ipv4.address: subnet 10.20.0.0/24 overlaps "
        "10.20.0.0/24 of network/old (in the record)"
    ]
    records[0] = _recorded(
        kinds.Kind.NETWORK, "old", {"mode": "nat", "ipv4": {"address": "10.21.0.1/24"}}
    )
    assert set(loader.load_against(paths, records).networks) == {"lab"}


def test_a_cached_load_gives_what_an_uncached_one_does_and_rereads_what_changed() -> None:
    """The daemon's cache: unchanged files give back their very manifests; a change is read."""
    vm = _vm("template: linux-small\n", name="web-1")
    _write(
        {"base.yaml": BASE, "web-1.yaml": vm, "web-2.yaml": _vm("cpus: 1\nmemory: 1GiB\n", "web-2")}
    )
    cache = loader.Cache()
    first = loader.load(["."], cache=cache, revision="r1")
    again = loader.load(["."], cache=cache, revision="r2")
    plain = loader.load(["."], revision="r2")
    assert again == plain  # the revision is every document's, cached or not
    assert {n: v.source.revision for n, v in again.vms.items()} == {"web-1": "r2", "web-2": "r2"}
    assert again.vms["web-1"].manifest is first.vms["web-1"].manifest
    assert again.effective_vms["web-1"] is first.effective_vms["web-1"]

    Path("web-2.yaml").write_text(_vm("cpus: 3\nmemory: 1GiB\n", "web-2"))
    changed = loader.load(["."], cache=cache)
    assert changed.vms["web-1"].manifest is first.vms["web-1"].manifest
    assert changed.effective_vms["web-2"].cpus == 3

    # Errors across documents are found over the whole source, cached or not.
    Path("web-3.yaml").write_text(_vm("template: nope\n", "web-3"))
    with pytest.raises(errors.ManifestError) as cached:
        loader.load(["."], cache=cache)
    with pytest.raises(errors.ManifestError) as uncached:
        loader.load(["."])
    assert cached.value.messages == uncached.value.messages != []
    Path("web-3.yaml").unlink()

    # A template's change is merged again into its VMs.
    Path("base.yaml").write_text(BASE.replace("cpus: 2", "cpus: 4"))
    assert loader.load(["."], cache=cache).effective_vms["web-1"].cpus == 4
