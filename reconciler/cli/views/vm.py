"""How a VirtualMachine is shown: the record's spec with its live domain overlaid."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from typing import Any

from reconciler.cli import output
from reconciler.cli.views import base
from reconciler.models import addresses as guest_addresses
from reconciler.models import fields, firewall, kinds, record
from reconciler.planning import actions

__all__ = ["VmFacts", "VmView", "vm_facts"]


@dataclasses.dataclass(frozen=True)
class VmFacts:
    """A VM as the record and the live domain describe it together."""

    power: str | None
    ips: list[str]
    graphics_type: str | None
    graphics_port: int | None
    uuid: str | None
    macs: dict[str, str]
    drift: bool | None

    @property
    def graphics(self) -> str | None:
        if self.graphics_port is None or self.graphics_type in (None, "none"):
            return None
        return f"{self.graphics_type}:{self.graphics_port}"


def vm_facts(rec: record.ResourceRecord, live: base.Live) -> VmFacts:
    status = rec.status
    domain = live.domain(rec)
    macs = {str(k): str(v) for k, v in (status.get("macs") or {}).items()}
    if domain is not None:
        macs.update(actions.nic_macs(domain.shape.nics))
    if live.world is not None:
        ips = guest_addresses.of_macs(macs.values(), live.addresses)
    else:
        ips = [str(ip) for ip in status.get("ips") or []]
    if domain is not None:
        return VmFacts(
            power=domain.power.value,
            ips=ips,
            graphics_type=domain.shape.graphics_type.value,
            graphics_port=domain.graphics_port,
            uuid=domain.uuid,
            macs=macs,
            drift=live.drift(rec.key),
        )
    graphics_type = base.effective_spec(rec).get("graphics_type")
    return VmFacts(
        power=status.get("power"),
        ips=ips,
        graphics_type=str(graphics_type) if graphics_type is not None else None,
        # Without a domain nothing listens; the record's port is history, not a fact.
        graphics_port=status.get("graphicsPort") if live.world is None else None,
        uuid=status.get("uuid"),
        macs=macs,
        drift=live.drift(rec.key),
    )


# The record's effective spec uses the planner's names; describe shows the manifest's.
_MANIFEST_NAMES = {"nics": "networks", "reclaim": "reclaimPolicy", "power": "powerState"}


def _manifest_name(key: str) -> str:
    """``image_pool`` -> ``imagePool``; the few renamed fields by :data:`_MANIFEST_NAMES`."""
    if key in _MANIFEST_NAMES:
        return _MANIFEST_NAMES[key]
    head, *rest = key.split("_")
    return head + "".join(part[:1].upper() + part[1:] for part in rest)


def _manifest_names(value: Any) -> Any:
    if isinstance(value, list):
        return [_manifest_names(item) for item in value]
    if not isinstance(value, Mapping):
        return value
    shown: dict[str, Any] = {}
    graphics: dict[str, Any] = {}
    for key, item in value.items():
        if key.startswith("graphics_"):  # graphics_type, graphics_listen: graphics.type, ...
            graphics[_manifest_name(key.removeprefix("graphics_"))] = item
        else:
            shown[_manifest_name(key)] = _manifest_names(item)
    if graphics:
        shown["graphics"] = graphics
    return shown


def _readable_effective(effective: Mapping[str, Any]) -> dict[str, Any]:
    """The effective spec in manifest field names, byte counts as sizes (``memory: 64MiB``)."""
    shown: dict[str, Any] = base.compact(dict(effective))
    if isinstance(shown.get("memory"), int):
        shown["memory"] = fields.format_size(shown["memory"])
    disks = []
    for disk in shown.get("disks") or []:
        disk = dict(disk)
        if isinstance(disk.get("size"), int):
            disk["size"] = fields.format_size(disk["size"])
        disks.append(disk)
    if "disks" in shown:
        shown["disks"] = disks
    named: dict[str, Any] = _manifest_names(shown)
    return named


class VmView:
    observes = True

    def columns(self, *, wide: bool) -> list[str]:
        headers = ["NAME", "PHASE", "POWER", "CPUS", "MEMORY", "IP", "GRAPHICS", "AGE", "DRIFT"]
        return [*headers, "TEMPLATE", "UUID", *base.WIDE_COMMON] if wide else headers

    def row(self, rec: record.ResourceRecord, ctx: base.Context, *, wide: bool) -> list[str]:
        facts = vm_facts(rec, ctx.live)
        effective = base.effective_spec(rec)
        spec = base.manifest_spec(rec)
        row = [
            rec.key.name,
            base.phase(rec),
            base.text(facts.power),
            base.text(effective.get("cpus", spec.get("cpus"))),
            base.size(effective.get("memory", spec.get("memory"))),
            base.text(facts.ips),
            base.text(facts.graphics),
            output.age(rec.created_at, ctx.now),
            base.text(facts.drift),
        ]
        if wide:
            row += [base.text(spec.get("template")), base.text(facts.uuid)]
            row += base.common_wide(rec)
        return row

    def status(
        self,
        rec: record.ResourceRecord,
        everything: Sequence[record.ResourceRecord],
        live: base.Live,
    ) -> dict[str, Any]:
        facts = vm_facts(rec, live)
        return {
            "power": facts.power,
            "ips": facts.ips,
            "graphicsPort": facts.graphics_port,
            "uuid": facts.uuid,
            "macs": facts.macs,
        }

    def drift(self, rec: record.ResourceRecord, live: base.Live) -> bool | None:
        return live.drift(rec.key)

    def sections(self, rec: record.ResourceRecord) -> list[str]:
        effective = base.effective_spec(rec)
        if not effective:
            return []
        return ["Effective Spec:", *base.yaml_lines(_readable_effective(effective))]

    def describe(self, rec: record.ResourceRecord, ctx: base.Context) -> list[str]:
        facts = vm_facts(rec, ctx.live)
        lines = [
            base.field("Power", facts.power, 2),
            base.field("IPs", ", ".join(facts.ips), 2),
            base.field("Graphics", facts.graphics, 2),
            base.field("UUID", facts.uuid, 2),
            base.field("MACs", base.pairs(facts.macs), 2),
        ]
        cpu = _cpu(rec, ctx.live)
        if cpu is not None:
            lines.append(base.field("CPU", cpu, 2))
        rules = effective_rules(rec, ctx.everything)
        if rules is not None:
            department = base.manifest_spec(rec).get("department")
            lines.append(base.field("Department", base.text(department), 2))
            lines.append("  Firewall (in evaluation order):")
            lines += [f"    {line}" for line in rules]
        return lines


def _cpu(rec: record.ResourceRecord, live: base.Live) -> str | None:
    """The guest CPU mode the domain has; where the manifests name none, why it is that one."""
    domain = live.domain(rec)
    if domain is None or live.world is None:
        return None
    mode = domain.shape.cpu_mode or "libvirt's default model"
    if base.effective_spec(rec).get("cpu_mode") is not None:
        return mode
    _, why = live.world.host.default_cpu()
    return f"{mode} (default{': ' + why if why else ''})"


def effective_rules(
    rec: record.ResourceRecord, everything: Sequence[record.ResourceRecord]
) -> list[str] | None:
    """The VM's firewall as evaluated, one rule a line with where it comes from.

    Its own rules first, then its department's policy, then what that extends
    (depth first, in the order listed), then the policy's default action;
    ``None`` for a VM with no department and no rules of its own.
    """
    spec = base.manifest_spec(rec)
    by_key = {(r.key.kind, r.key.name): r for r in everything if r.deleted_at is None}
    own = spec.get("firewall")
    department = by_key.get((kinds.Kind.DEPARTMENT.value, spec.get("department") or ""))
    if own is None and department is None:
        return None
    sets: list[tuple[firewall.EffectiveRule, str]] = []
    if own is not None:
        mine = firewall.VmFirewall.model_validate(own)
        sets += [(e, "vm") for e in firewall.expand(mine, "vm")]
    default = None
    policy = base.manifest_spec(department).get("firewall") if department is not None else None
    seen: set[str] = set()
    todo = [policy] if policy else []
    while todo:
        name = todo.pop(0)
        found = by_key.get((kinds.Kind.FIREWALL_POLICY.value, name))
        if name in seen or found is None:
            continue
        seen.add(name)
        policy_spec = firewall.FirewallPolicySpec.model_validate(base.manifest_spec(found))
        if default is None:
            default = policy_spec.defaultAction
        for item in firewall.expand(policy_spec, f"policy/{name}"):
            via = f"department/{department.key.name} policy/{name}" if department else name
            preset = item.origin if item.origin.startswith("preset/") else None
            sets.append((item, f"{preset} via {via}" if preset else via))
        todo = list(policy_spec.extends) + todo
    lines = []
    for item, where in sets:
        rule = item.rule
        what = rule.protocol.value + (f"/{rule.ports}" if rule.ports else "")
        peer = f" {rule.cidr}" if rule.cidr is not None else ""
        lines.append(
            f"{rule.name}: {rule.action.value} {rule.direction.value} {what}{peer} "
            f"(priority {rule.priority}, from {where})"
        )
    if default is not None:
        lines.append(f"default: {default.value} (from policy/{policy})")
    return lines
