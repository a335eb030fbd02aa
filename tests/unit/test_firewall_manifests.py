"""FirewallPolicy and Department manifests: every bad rule is one located error line."""

from __future__ import annotations

import pytest

from reconciler.manifests import loader as loader_module
from reconciler.models import desired, firewall
from tests.unit.test_manifests_loader import (  # _in_tmp: autouse, runs each test in a tmp cwd
    BASE,
    _errors,
    _in_tmp,  # noqa: F401
    _write,
)

HEAD = "apiVersion: infinibay.io/v1alpha1\nkind: FirewallPolicy\nmetadata: {name: eng}\n"


def _policy(body: str) -> dict[str, str]:
    return {"fw.yaml": HEAD + "spec:\n" + body}


def _rule(**fields: object) -> str:
    rule = {"name": "web", "action": "Accept", "direction": "In", **fields}
    return "  rules:\n    - {" + ", ".join(f"{k}: {v}" for k, v in rule.items()) + "}\n"


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        (
            "  presets: [allow-outbund]\n",
            "fw.yaml:5:13: FirewallPolicy/eng: spec.presets[0]: unknown preset 'allow-outbund'; "
            "did you mean 'allow-outbound'?",
        ),
        (
            _rule(protocol="tcp", ports='"90-80"'),
            "fw.yaml:6:73: FirewallPolicy/eng: spec.rules[0].ports: port range 90-80 ends "
            "before it starts",
        ),
        (
            _rule(protocol="tcp", ports="70000"),
            "fw.yaml:6:73: FirewallPolicy/eng: spec.rules[0].ports: port 70000 is outside 1..65535",
        ),
        (
            _rule(protocol="icmp", ports="22"),
            "fw.yaml:6:7: FirewallPolicy/eng: spec.rules[0]: ports apply to tcp and udp only, "
            "not icmp",
        ),
        (
            _rule(priority=1001),
            "fw.yaml:6:73: FirewallPolicy/eng: spec.rules[0].priority: Input should be less "
            "than or equal to 1000",
        ),
        (
            _rule(cidr="10.0.0.1/8"),
            "fw.yaml:6:69: FirewallPolicy/eng: spec.rules[0].cidr: '10.0.0.1/8' is not an IPv4 "
            "network like 10.0.0.0/8 (10.0.0.1/8 has host bits set)",
        ),
    ],
    ids=["preset", "range", "port", "icmp-ports", "priority", "cidr"],
)
def test_a_bad_policy_is_one_located_line(body: str, expected: str) -> None:
    found = _errors(_policy(body))
    assert len(found) == 1, found
    # Columns depend on the flow mapping's layout; the file, line, object and message do not.
    file, line, _column, rest = found[0].split(":", 3)
    e_file, e_line, _e_column, e_rest = expected.split(":", 3)
    assert (file, line, rest) == (e_file, e_line, e_rest)


def test_a_rule_name_used_twice_is_refused() -> None:
    body = (
        "  rules:\n"
        "    - {name: web, action: Accept, direction: In}\n"
        "    - {name: web, action: Drop, direction: Out}\n"
    )
    (found,) = _errors(_policy(body))
    assert found.startswith("fw.yaml:")
    assert "FirewallPolicy/eng: spec" in found and "rule name 'web' is used twice" in found


def test_ports_are_parsed_into_ranges_in_the_order_written() -> None:
    assert firewall.parse_ports("80,443,8000-8080") == (
        firewall.PortRange(80, 80),
        firewall.PortRange(443, 443),
        firewall.PortRange(8000, 8080),
    )


def test_presets_and_own_rules_expand_in_evaluation_order_with_their_origin() -> None:
    spec = firewall.FirewallPolicySpec(
        presets=["block-ssh", "allow-outbound"],
        rules=[
            firewall.Rule(
                name="web",
                priority=300,
                action=firewall.Action.ACCEPT,
                direction=firewall.Direction.IN,
                protocol=firewall.Protocol.TCP,
                ports="8080",
            )
        ],
    )
    order = [(e.rule.name, e.origin) for e in firewall.expand(spec, "policy/eng")]
    assert order == [
        ("ssh", "preset/block-ssh"),
        ("web", "policy/eng"),
        ("outbound", "preset/allow-outbound"),
        ("outbound-replies", "preset/allow-outbound"),
    ]


def _doc(kind: str, name: str, spec: str) -> str:
    head = f"apiVersion: infinibay.io/v1alpha1\nkind: {kind}\nmetadata: {{name: {name}}}\n"
    return f"{head}spec:\n{spec}"


def _vm(name: str, spec: str = "  department: eng\n  disks: []\n") -> str:
    return _doc("VirtualMachine", name, spec)


DEPARTMENT = _doc("Department", "eng", "  network: lab\n  firewall: eng\n")
POLICY = _doc("FirewallPolicy", "eng", "  presets: [allow-outbound]\n")


def _load(files: dict[str, str]) -> desired.DesiredState:
    paths = _write({"base.yaml": BASE, **files})
    return loader_module.load(paths)


def test_a_vm_without_networks_gets_its_departments_network() -> None:
    state = _load({"d.yaml": f"{DEPARTMENT}---\n{POLICY}---\n{_vm('web-1')}"})
    vm = state.effective_vms["web-1"]
    assert [n.network for n in vm.nics] == ["lab"]
    assert vm.department == "eng"
    assert set(state.departments) == {"eng"} and set(state.policies) == {"eng"}


def test_a_vm_naming_a_missing_department_is_refused_where_it_names_it() -> None:
    assert _errors({"d.yaml": _vm("web-1", "  department: sales\n  disks: []\n")}) == [
        "d.yaml:5:15: VirtualMachine/web-1: spec.department: department 'sales' is neither "
        "in the manifests nor in the record"
    ]


def test_a_department_naming_a_missing_policy_is_refused_with_a_suggestion() -> None:
    department = _doc("Department", "eng", "  network: lab\n  firewall: engg\n")
    assert _errors({"d.yaml": f"{department}---\n{POLICY}"}) == [
        "d.yaml:6:13: Department/eng: spec.firewall: firewall policy 'engg' is neither in the "
        "manifests nor in the record; did you mean 'eng'?"
    ]


def test_an_extends_cycle_is_refused_at_both_ends() -> None:
    a = _doc("FirewallPolicy", "a", "  extends: [b]\n")
    b = _doc("FirewallPolicy", "b", "  extends: [a]\n")
    assert _errors({"p.yaml": f"{a}---\n{b}"}) == [
        "p.yaml:5:13: FirewallPolicy/a: spec.extends[0]: extends cycle: firewallpolicy/a -> "
        "firewallpolicy/b -> firewallpolicy/a; a policy cannot extend itself",
        "p.yaml:11:13: FirewallPolicy/b: spec.extends[0]: extends cycle: firewallpolicy/b -> "
        "firewallpolicy/a -> firewallpolicy/b; a policy cannot extend itself",
    ]


def test_a_quota_exceeded_by_the_manifests_names_the_vms() -> None:
    department = _doc(
        "Department", "eng", "  network: lab\n  quota: {vms: 1, cpus: 8, memory: 1GiB}\n"
    )
    spec = "  department: eng\n  disks: []\n  memory: 1GiB\n"
    vms = "---\n".join(_vm(n, spec) for n in ("a", "b"))
    assert _errors({"d.yaml": f"{department}---\n{vms}"}) == [
        "d.yaml:6:16: Department/eng: spec.quota.vms: quota exceeded: 2 vms > 1 "
        "(by virtualmachine/a, virtualmachine/b)",
        "d.yaml:6:36: Department/eng: spec.quota.memory: quota exceeded: 2GiB memory > 1GiB "
        "(by virtualmachine/a, virtualmachine/b)",
    ]
