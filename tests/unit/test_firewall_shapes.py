"""Policies and VM rules as nwfilter shapes: bands keep the evaluation order libvirt sees."""

from __future__ import annotations

from reconciler.models import firewall, kinds, observed
from reconciler.planning import firewall as shapes

Rule = firewall.Rule
A, D = firewall.Action, firewall.Direction


def _rule(name: str, priority: int, **kw: object) -> Rule:
    return Rule.model_validate({"name": name, "priority": priority, **kw})


def test_levels_put_a_policy_above_what_it_extends() -> None:
    policies = {
        "base": firewall.FirewallPolicySpec(),
        "mid": firewall.FirewallPolicySpec(extends=["base"]),
        "top": firewall.FirewallPolicySpec(extends=["mid", "base"]),
    }
    assert shapes.levels(policies) == {"base": 0, "mid": 1, "top": 2}


def test_every_rule_of_a_higher_level_comes_before_every_rule_of_a_lower_one() -> None:
    low = firewall.FirewallPolicySpec(rules=[_rule("a", -1000, action="Drop", direction="In")])
    high = firewall.FirewallPolicySpec(
        extends=["low"], rules=[_rule("b", 1000, action="Accept", direction="In")]
    )
    lows = shapes.policy_shape("low", low, 0).rules
    highs = shapes.policy_shape("high", high, 1).rules
    vm = shapes.vm_shape(
        "web",
        firewall.VmFirewall(rules=[_rule("c", 1000, action="Accept", direction="Out")]),
        "high",
        firewall.DefaultAction.DROP,
    ).rules
    own = [r for r in vm if r.priority > -991 and r.priority < 1000]
    assert max(r.priority for r in own) < min(r.priority for r in highs)
    assert max(r.priority for r in highs) < min(r.priority for r in lows)
    assert vm[-1] == observed.FilterRule("drop", "inout", 1000, "all")


def test_a_rule_renders_one_libvirt_rule_per_port_range_and_direction() -> None:
    spec = firewall.FirewallPolicySpec(
        rules=[
            _rule(
                "web",
                100,
                action="Accept",
                direction="InOut",
                protocol="tcp",
                ports="80,8000-8080",
                cidr="10.0.0.0/8",
                state=["Established", "New"],
            )
        ]
    )
    rules = shapes.policy_shape("eng", spec, 0).rules
    assert [(r.direction, dict(r.attributes)) for r in rules] == [
        (
            "in",
            {
                "dstportstart": "80",
                "srcipaddr": "10.0.0.0",
                "srcipmask": "8",
                "state": "NEW,ESTABLISHED",
            },
        ),
        (
            "in",
            {
                "dstportstart": "8000",
                "dstportend": "8080",
                "srcipaddr": "10.0.0.0",
                "srcipmask": "8",
                "state": "NEW,ESTABLISHED",
            },
        ),
        (
            "out",
            {
                "dstportstart": "80",
                "dstipaddr": "10.0.0.0",
                "dstipmask": "8",
                "state": "NEW,ESTABLISHED",
            },
        ),
        (
            "out",
            {
                "dstportstart": "8000",
                "dstportend": "8080",
                "dstipaddr": "10.0.0.0",
                "dstipmask": "8",
                "state": "NEW,ESTABLISHED",
            },
        ),
    ]
    assert len({r.priority for r in rules}) == len(rules)  # each its own: a stable order


def test_a_vm_filter_references_clean_traffic_and_its_departments_policy() -> None:
    shape = shapes.vm_shape("web", None, "eng", firewall.DefaultAction.ACCEPT)
    assert [r.filter for r in shape.references] == ["clean-traffic", "ib-policy-eng"]
    assert all(r.action == "accept" for r in shape.rules)  # DHCP only: Accept adds no rule


def test_a_policy_change_reaches_the_vms_of_departments_using_it_or_what_extends_it() -> None:
    policies = {
        "base": firewall.FirewallPolicySpec(),
        "eng": firewall.FirewallPolicySpec(extends=["base"]),
        "ops": firewall.FirewallPolicySpec(),
    }
    departments = {
        "eng": kinds.DepartmentSpec(network="lab", firewall="eng"),
        "ops": kinds.DepartmentSpec(network="lab", firewall="ops"),
    }
    members = {"a": "eng", "b": "ops", "c": None, "d": "eng"}
    assert shapes.reached("base", departments, policies, members) == ["a", "d"]
    assert shapes.reached("ops", departments, policies, members) == ["b"]


def test_the_shapes_planned_are_already_in_the_form_libvirt_writes_back() -> None:
    from reconciler.hypervisor import nwfilters

    spec = firewall.FirewallPolicySpec(
        presets=list(firewall.PRESETS),
        rules=[
            _rule(
                "web",
                100,
                action="Accept",
                direction="InOut",
                protocol="tcp",
                ports="1-9",
                cidr="10.1.0.0/16",
                state=["Related", "New"],
            ),
        ],
    )
    for shape in (
        shapes.policy_shape("eng", spec, 2),
        shapes.vm_shape(
            "web", firewall.VmFirewall(presets=["block-ssh"]), "eng", firewall.DefaultAction.DROP
        ),
    ):
        assert nwfilters.canonical(shape) == shape
