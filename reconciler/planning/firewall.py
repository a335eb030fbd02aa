"""Firewall policies and VM rules as nwfilter shapes: bands of priorities, one rule per port.

libvirt instantiates the rules of a filter and of the filters it references
in one priority order. To make "a VM's own rules before its department's, a
policy's before those it extends" hold whatever priorities users write, each
filter's rules take their libvirt priorities from a band of their own, in the
order the policy evaluates them (priority, then name):

* ``-1000..-991``: what every guest may always do (DHCP);
* ``-990..-661``: the VM's own rules;
* then one band of 330 per ``extends`` level, the policy a department names
  first, down to a policy that extends nothing;
* ``1000``: the default action of the department's policy (``Drop`` renders
  a drop of everything; ``Accept`` renders nothing).

Anti-spoofing is libvirt's ``clean-traffic``, referenced by every VM filter
and fed the NIC's ``MAC`` (and ``IP`` where a static host gives it) by the
interface's ``<filterref>``.
"""

from __future__ import annotations

from collections.abc import Mapping

from reconciler.models import firewall, kinds, observed

__all__ = [
    "BAND",
    "MAX_LEVEL",
    "levels",
    "policy_shape",
    "reached",
    "rule_lines",
    "vm_shape",
]

BAND = 330
MAX_LEVEL = firewall.MAX_LEVEL
_ALWAYS = -1000
_VM_BAND = -990
_DEFAULT = 1000
CLEAN_TRAFFIC = "clean-traffic"


def levels(policies: Mapping[str, firewall.FirewallPolicySpec]) -> dict[str, int]:
    """Each policy's band level (:func:`reconciler.models.firewall.levels`, capped)."""
    return {name: min(MAX_LEVEL, level) for name, level in firewall.levels(policies).items()}


def _band(level: int) -> int:
    """The first priority of the band of policies at ``level`` (higher levels go first)."""
    return _VM_BAND + BAND * (1 + MAX_LEVEL - level)


def _element(
    rule: firewall.Rule, direction: str, ports: firewall.PortRange | None
) -> observed.FilterRule:
    attributes: dict[str, str] = {}
    if ports is not None:
        attributes["dstportstart"] = str(ports.start)
        if ports.end != ports.start:
            attributes["dstportend"] = str(ports.end)
    if rule.cidr is not None:
        side = "src" if direction == "in" else "dst"
        attributes[f"{side}ipaddr"] = str(rule.cidr.network_address)
        attributes[f"{side}ipmask"] = str(rule.cidr.prefixlen)
    if rule.state:
        order = list(firewall.ConnState)
        states = sorted(rule.state, key=order.index)
        attributes["state"] = ",".join(s.value.upper() for s in states)
    return observed.FilterRule(
        action=rule.action.value.lower(),
        direction=direction,
        priority=0,  # set by the band
        protocol=rule.protocol.value,
        attributes=tuple(sorted(attributes.items())),
    )


def _rules(effective: list[firewall.EffectiveRule], start: int) -> tuple[observed.FilterRule, ...]:
    """libvirt rules for ``effective`` (in evaluation order), numbered from ``start``."""
    rendered: list[observed.FilterRule] = []
    for item in effective:
        rule = item.rule
        directions = {
            firewall.Direction.IN: ("in",),
            firewall.Direction.OUT: ("out",),
            firewall.Direction.IN_OUT: ("in", "out"),
        }[rule.direction]
        ranges: tuple[firewall.PortRange | None, ...] = rule.port_ranges or (None,)
        for direction in directions:
            for ports in ranges:
                rendered.append(_element(rule, direction, ports))
    if len(rendered) > BAND:
        raise ValueError(f"{len(rendered)} nwfilter rules; a policy renders at most {BAND}")
    return tuple(
        observed.FilterRule(
            r.action, r.direction, start + i, r.protocol, r.attributes, r.statematch
        )
        for i, r in enumerate(rendered)
    )


def policy_shape(name: str, spec: firewall.FirewallPolicySpec, level: int) -> observed.FilterShape:
    """The nwfilter of policy ``name``: its rules in its band, then what it extends."""
    rules = _rules(firewall.expand(spec, f"policy/{name}"), _band(level))
    refs = tuple(observed.FilterRef(firewall.policy_filter(e)) for e in spec.extends)
    return observed.FilterShape(chain="root", references=refs, rules=rules)


_DHCP = (
    observed.FilterRule(
        "accept", "out", _ALWAYS, "udp", (("dstportstart", "67"), ("srcportstart", "68"))
    ),
    observed.FilterRule(
        "accept", "in", _ALWAYS + 1, "udp", (("dstportstart", "68"), ("srcportstart", "67"))
    ),
)


def vm_shape(
    vm: str,
    own: firewall.VmFirewall | None,
    policy: str | None,
    default: firewall.DefaultAction | None,
) -> observed.FilterShape:
    """The nwfilter of VM ``vm``: anti-spoofing, DHCP, its own rules, its department's policy."""
    rules = list(_DHCP)
    if own is not None:
        rules += _rules(firewall.expand(own, "vm"), _VM_BAND)
    if default is firewall.DefaultAction.DROP:
        rules.append(observed.FilterRule("drop", "inout", _DEFAULT, "all"))
    refs = [observed.FilterRef(CLEAN_TRAFFIC)]
    if policy is not None:
        refs.append(observed.FilterRef(firewall.policy_filter(policy)))
    return observed.FilterShape(chain="root", references=tuple(refs), rules=tuple(rules))


def reached(
    policy: str,
    departments: Mapping[str, kinds.DepartmentSpec],
    policies: Mapping[str, firewall.FirewallPolicySpec],
    vm_departments: Mapping[str, str | None],
) -> list[str]:
    """The VMs a change of ``policy`` reaches: through departments and ``extends``, sorted."""
    using = {policy}
    grew = True
    while grew:  # every policy that extends one that uses it, transitively
        grew = False
        for name, spec in policies.items():
            if name not in using and using & set(spec.extends):
                using.add(name)
                grew = True
    chosen = {d for d, spec in departments.items() if spec.firewall in using}
    return sorted(vm for vm, department in vm_departments.items() if department in chosen)


def rule_lines(shape: observed.FilterShape) -> list[str]:
    """A filter as the plan and events show it: one line per reference and rule."""
    lines = [f"-> {ref.filter}" for ref in shape.references]
    for rule in shape.rules:
        match = " ".join(f"{k}={v}" for k, v in rule.attributes)
        lines.append(
            f"{rule.priority} {rule.action} {rule.direction} {rule.protocol}"
            + (f" {match}" if match else "")
        )
    return lines
