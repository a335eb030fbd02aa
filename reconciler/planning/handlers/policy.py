"""Planning FirewallPolicies: one libvirt nwfilter each, owned through the record.

nwfilters carry no ``<metadata>``, so a policy's filter is ours when the
record holds the policy (and, once observed, the filter's UUID); a same-named
filter without that is a conflict. A change is ``live``: libvirt re-instantiates
the rules of every guest whose filter references it, and the plan names them.
"""

from __future__ import annotations

from collections.abc import Iterable

from reconciler.models import catalog, firewall, kinds, observed, record
from reconciler.planning import actions, context
from reconciler.planning import firewall as shapes
from reconciler.planning.handlers.base import Uses

__all__ = ["HANDLER", "specs"]

Impact = actions.Impact


def specs(ctx: context.Context) -> dict[str, firewall.FirewallPolicySpec]:
    return {
        name: loaded.manifest.spec
        for name, loaded in ctx.state.policies.items()
        if isinstance(loaded.manifest, kinds.FirewallPolicy)
    }


def departments(ctx: context.Context) -> dict[str, kinds.DepartmentSpec]:
    return {
        name: loaded.manifest.spec
        for name, loaded in ctx.state.departments.items()
        if isinstance(loaded.manifest, kinds.Department)
    }


class PolicyPlanner:
    what = catalog.libvirt_what(kinds.Kind.FIREWALL_POLICY)

    def plan(self, ctx: context.Context) -> None:
        policies = specs(ctx)
        levels = shapes.levels(policies)
        members = {name: vm.department for name, vm in ctx.state.effective_vms.items()}
        in_departments = departments(ctx)
        for name, loaded in sorted(ctx.state.policies.items()):
            key, _ = ctx.remember_spec(loaded)
            target = actions.FilterTarget(
                firewall.policy_filter(name),
                shapes.policy_shape(name, policies[name], levels.get(name, 0)),
            )
            reach = shapes.reached(name, in_departments, policies, members)
            note = "reaches " + ", ".join(f"virtualmachine/{v}" for v in reach) if reach else ""
            current = ctx.world.filters.get(target.name)
            rec = ctx.live_record(key)
            if current is None:
                ctx.emit(
                    key,
                    [],
                    verb=actions.Verb.CREATE,
                    target=target,
                    drift=context.converged(rec),
                    note=note,
                )
                continue
            owned = rec is not None and rec.status.get("uuid") in (None, current.uuid)
            if not owned and not ctx.adopt:
                note = (
                    f"a libvirt nwfilter named {target.name!r} exists that this installation "
                    "does not own; rename the policy or pass --adopt to take it over"
                )
                ctx.changes.append(actions.Change(key=key, verb=actions.Verb.CONFLICT, note=note))
                continue
            changes = []
            if current.shape != target.shape:
                changes.append(
                    actions.FieldChange(
                        "rules",
                        shapes.rule_lines(current.shape),
                        shapes.rule_lines(target.shape),
                        Impact.LIVE,
                    )
                )
            if not owned:
                changes.append(actions.FieldChange("owner", None, ctx.installation, Impact.LIVE))
            ctx.emit(key, changes, target=target, uuid=current.uuid, adopt=not owned, note=note)

    def exists(self, ctx: context.Context, name: str) -> bool:
        return firewall.policy_filter(name) in ctx.world.filters

    def ownership(
        self, ctx: context.Context, key: record.ResourceKey
    ) -> tuple[bool, observed.Ownership | None]:
        found = ctx.world.filters.get(firewall.policy_filter(key.name))
        rec = ctx.live_record(key)
        ours = found is None or (rec is not None and rec.status.get("uuid") in (None, found.uuid))
        return ours, None

    def used_by(self, name: str, uses: Uses) -> bool:
        return name in uses.policies

    def orphans(self, ctx: context.Context) -> Iterable[str]:
        return ()  # ours only through the record: pruned from the record alone


HANDLER = PolicyPlanner()
