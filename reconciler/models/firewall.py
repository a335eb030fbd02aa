"""Firewall rules, presets and quotas: the parts of FirewallPolicy, Department and a VM's firewall.

Infinibay's old backend kept rule sets per department and per VM (the VM's
overriding the department's) and rendered them as libvirt nwfilters. Here a
rule is a pydantic model validated like every other field, and a preset is a
named list of rules (:data:`PRESETS`). :func:`expand` turns a policy's presets
and rules into one ordered list, each rule with where it came from, which is
what ``describe`` shows and what the nwfilter renderer reads.

Ports are a string of ports and inclusive ranges (``"80,443,8000-8080"``),
parsed once into :class:`PortRange` tuples; a range like ``90-80``, a port
outside 1..65535, or ports on ``icmp``/``all`` are refused where they are
written.
"""

from __future__ import annotations

import dataclasses
import difflib
import enum
import ipaddress
from collections.abc import Mapping
from typing import Annotated, Any, Self

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, field_validator, model_validator

from reconciler.models import fields

__all__ = [
    "MAX_LEVEL",
    "PRESETS",
    "Action",
    "ConnState",
    "DefaultAction",
    "Direction",
    "EffectiveRule",
    "FirewallPolicySpec",
    "PortRange",
    "Protocol",
    "Quota",
    "Rule",
    "VmFirewall",
    "expand",
    "levels",
    "parse_ports",
    "policy_filter",
    "vm_filter",
]

MIN_PRIORITY, MAX_PRIORITY, DEFAULT_PRIORITY = -1000, 1000, 500
MAX_LEVEL = 4  # how deep ``extends`` may nest: each level is a band of nwfilter priorities
MAX_RULES = 200  # per policy, presets included: every rule needs a priority of its own


class DefaultAction(enum.StrEnum):
    DROP = "Drop"  # the old backend's BLOCK_ALL
    ACCEPT = "Accept"  # ALLOW_ALL


class Action(enum.StrEnum):
    ACCEPT = "Accept"
    DROP = "Drop"
    REJECT = "Reject"


class Direction(enum.StrEnum):
    IN = "In"  # to the guest
    OUT = "Out"  # from the guest
    IN_OUT = "InOut"


class Protocol(enum.StrEnum):
    TCP = "tcp"
    UDP = "udp"
    ICMP = "icmp"
    ALL = "all"


class ConnState(enum.StrEnum):
    NEW = "New"
    ESTABLISHED = "Established"
    RELATED = "Related"


@dataclasses.dataclass(frozen=True, order=True)
class PortRange:
    start: int
    end: int

    def __str__(self) -> str:
        return str(self.start) if self.start == self.end else f"{self.start}-{self.end}"


def parse_ports(text: str) -> tuple[PortRange, ...]:
    """``"80,443,8000-8080"`` -> its ranges in the order written; ValueError naming a bad one."""
    ranges: list[PortRange] = []
    for part in text.split(","):
        item = part.strip()
        low, sep, high = item.partition("-")
        if not low.isdigit() or (sep and not high.isdigit()):
            raise ValueError(f"{item!r} is not a port or a range of ports like 8000-8080")
        start, end = int(low), int(high) if sep else int(low)
        for port in (start, end):
            if not 1 <= port <= 65535:
                raise ValueError(f"port {port} is outside 1..65535")
        if start > end:
            raise ValueError(f"port range {item} ends before it starts")
        ranges.append(PortRange(start, end))
    return tuple(ranges)


class _Strict(BaseModel):
    # ``defer_build``: a model's validator is built when it first validates, so a
    # command pays only for the kinds its manifests hold (building them all at
    # import was most of the cost of importing this module).
    model_config = ConfigDict(extra="forbid", frozen=True, use_enum_values=False, defer_build=True)


class Rule(_Strict):
    name: fields.DnsLabel = Field(description="Unique within its policy (or VM).")
    priority: int = Field(
        default=DEFAULT_PRIORITY,
        ge=MIN_PRIORITY,
        le=MAX_PRIORITY,
        description="-1000..1000; lower is evaluated first.",
    )
    action: Action = Field(description="Accept, Drop or Reject.")
    direction: Direction = Field(description="In (to the guest), Out (from it) or InOut.")
    protocol: Protocol = Field(default=Protocol.ALL, description="tcp, udp, icmp or all.")
    ports: str | None = Field(
        default=None,
        description="tcp/udp only: ports and inclusive ranges, e.g. '80,443,8000-8080'.",
    )
    cidr: ipaddress.IPv4Network | None = Field(
        default=None, description="The peer's addresses, e.g. 10.0.0.0/8."
    )
    state: list[ConnState] = Field(
        default_factory=list, description="Connection states matched: New, Established, Related."
    )

    @field_validator("ports", mode="before")
    @classmethod
    def _ports_text(cls, value: Any) -> Any:
        return str(value) if isinstance(value, int) and not isinstance(value, bool) else value

    @field_validator("ports")
    @classmethod
    def _ports(cls, value: str | None) -> str | None:
        if value is not None:
            parse_ports(value)
        return value

    @field_validator("cidr", mode="before")
    @classmethod
    def _cidr(cls, value: Any) -> Any:
        if isinstance(value, str):
            try:
                return ipaddress.IPv4Network(value)
            except ValueError as exc:
                raise ValueError(
                    f"{value!r} is not an IPv4 network like 10.0.0.0/8 ({exc})"
                ) from None
        return value

    @model_validator(mode="after")
    def _ports_need_a_transport(self) -> Self:
        if self.ports is not None and self.protocol not in (Protocol.TCP, Protocol.UDP):
            raise ValueError(f"ports apply to tcp and udp only, not {self.protocol.value}")
        if len(set(self.state)) != len(self.state):
            raise ValueError("a connection state is listed twice")
        return self

    @property
    def port_ranges(self) -> tuple[PortRange, ...]:
        return parse_ports(self.ports) if self.ports is not None else ()


def _rule(name: str, priority: int, action: str, direction: str, **kw: Any) -> Rule:
    return Rule(
        name=name, priority=priority, action=Action(action), direction=Direction(direction), **kw
    )


_REPLIES = [ConnState.ESTABLISHED, ConnState.RELATED]
_OUTBOUND = [ConnState.NEW, ConnState.ESTABLISHED, ConnState.RELATED]

PRESETS: dict[str, tuple[Rule, ...]] = {
    # Guest-initiated traffic and its replies.
    "allow-outbound": (
        _rule("outbound", 900, "Accept", "Out", state=_OUTBOUND),
        _rule("outbound-replies", 900, "Accept", "In", state=_REPLIES),
    ),
    # Outbound DNS, HTTP and HTTPS, and their replies.
    "allow-internet": (
        _rule("dns-udp", 900, "Accept", "Out", protocol=Protocol.UDP, ports="53", state=_OUTBOUND),
        _rule("dns-tcp", 900, "Accept", "Out", protocol=Protocol.TCP, ports="53", state=_OUTBOUND),
        _rule("web", 900, "Accept", "Out", protocol=Protocol.TCP, ports="80,443", state=_OUTBOUND),
        _rule("internet-replies", 900, "Accept", "In", state=_REPLIES),
    ),
    "block-ssh": (_rule("ssh", 100, "Drop", "In", protocol=Protocol.TCP, ports="22"),),
    "block-smb": (
        _rule("smb-tcp", 100, "Drop", "In", protocol=Protocol.TCP, ports="139,445"),
        _rule("smb-udp", 100, "Drop", "In", protocol=Protocol.UDP, ports="137,138"),
    ),
    "block-databases": (
        _rule(
            "databases",
            100,
            "Drop",
            "In",
            protocol=Protocol.TCP,
            ports="1433,1521,3306,5432,6379,27017",
        ),
    ),
}


def _check_preset(preset: str) -> str:
    if preset not in PRESETS:
        close = difflib.get_close_matches(preset, PRESETS, n=1)
        hint = f"did you mean {close[0]!r}?" if close else f"one of {', '.join(sorted(PRESETS))}"
        raise ValueError(f"unknown preset {preset!r}; {hint}")
    return preset


Preset = Annotated[str, AfterValidator(_check_preset)]


class _RuleSet(_Strict):
    presets: list[Preset] = Field(
        default_factory=list, description="Named rule sets: " + ", ".join(sorted(PRESETS)) + "."
    )
    rules: list[Rule] = Field(default_factory=list, description="Rules of its own.")

    @field_validator("presets")
    @classmethod
    def _once(cls, value: list[str]) -> list[str]:
        if len(set(value)) != len(value):
            raise ValueError("a preset is listed twice")
        return value

    @model_validator(mode="after")
    def _unique_rules(self) -> Self:
        seen: set[str] = set()
        for rule in self.rules:
            if rule.name in seen:
                raise ValueError(f"rule name {rule.name!r} is used twice")
            seen.add(rule.name)
        if len(expand(self, "")) > MAX_RULES:
            raise ValueError(f"more than {MAX_RULES} rules, presets included")
        return self


class FirewallPolicySpec(_RuleSet):
    defaultAction: DefaultAction = Field(
        default=DefaultAction.DROP,
        description="What happens to traffic no rule matched: Drop (the default) or Accept.",
    )
    extends: list[fields.DnsLabel] = Field(
        default_factory=list,
        description="Other FirewallPolicies whose rules are evaluated after these.",
    )

    @field_validator("extends")
    @classmethod
    def _once(cls, value: list[str]) -> list[str]:
        if len(set(value)) != len(value):
            raise ValueError("a policy is listed twice in extends")
        return value


class VmFirewall(_RuleSet):
    """A VM's own presets and rules, evaluated before its department's."""


class Quota(_Strict):
    vms: int | None = Field(default=None, ge=0, description="At most this many VMs.")
    cpus: int | None = Field(default=None, ge=0, description="At most this many vCPUs in all.")
    memory: fields.Size | None = Field(default=None, description="At most this much memory in all.")


@dataclasses.dataclass(frozen=True)
class EffectiveRule:
    """A rule as evaluated, with where it came from: ``vm``, ``policy/NAME`` or ``preset/NAME``."""

    rule: Rule
    origin: str


def expand(rules: _RuleSet, origin: str) -> list[EffectiveRule]:
    """The set's own rules (from ``origin``) and its presets', by priority, then name."""
    found = [EffectiveRule(r, origin) for r in rules.rules]
    for preset in rules.presets:
        found += [EffectiveRule(r, f"preset/{preset}") for r in PRESETS[preset]]
    return sorted(found, key=lambda e: (e.rule.priority, e.rule.name, e.origin))


def levels(policies: Mapping[str, FirewallPolicySpec]) -> dict[str, int]:
    """Each policy's ``extends`` level: 0 for one that extends nothing, else 1 + the deepest.

    A missing policy counts as level 0 and a cycle is cut where it closes; the
    loader reports both, and a level above :data:`MAX_LEVEL`.
    """
    found: dict[str, int] = {}

    def level(name: str, path: frozenset[str]) -> int:
        if name in found:
            return found[name]
        spec = policies.get(name)
        if spec is None:
            return 0
        below = [level(e, path | {name}) for e in spec.extends if e not in path | {name}]
        found[name] = 1 + max(below, default=-1)
        return found[name]

    for name in policies:
        level(name, frozenset())
    return found


def policy_filter(policy: str) -> str:
    """The libvirt nwfilter of FirewallPolicy ``policy``."""
    return f"ib-policy-{policy}"


def vm_filter(vm: str) -> str:
    """The libvirt nwfilter of VM ``vm``: its own rules, then its department's policy."""
    return f"ib-vm-{vm}"
