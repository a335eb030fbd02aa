"""Planning Networks: owned through our metadata in the network's XML.

A network's IPv4 subnet must not overlap one that libvirt has already: the
manifests were checked among themselves (and against the record) when loaded,
but only the plan sees libvirt, whose other networks (``default``, another
tool's, one of ours no longer declared) would make the new one fail to start.
The network's own libvirt object (the one it updates or adopts), and those of
the other manifest networks (which take their declared subnets), are not
obstacles.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable

from reconciler.models import catalog, desired, kinds, observed, record
from reconciler.planning import actions, compare, context, targets
from reconciler.planning.handlers.base import Uses

__all__ = ["HANDLER"]

Impact = actions.Impact

_RESTARTING = ("mode", "bridge", "address", "dhcp", "hosts", "domain", "mtu")


class NetworkPlanner:
    what = catalog.libvirt_what(kinds.Kind.NETWORK)

    def plan(self, ctx: context.Context) -> None:
        declared = {
            ctx.libvirt(context.key_of(kinds.Kind.NETWORK, name)) for name in ctx.state.networks
        }
        for _, loaded in sorted(ctx.state.networks.items()):
            assert isinstance(loaded.manifest, kinds.Network)
            _check_subnet(ctx, loaded, declared)
            key, _ = ctx.remember_spec(loaded)
            target = targets.network_shape(loaded.manifest)
            current = ctx.world.networks.get(ctx.libvirt(key))
            if current is None:
                ctx.emit(
                    key,
                    [],
                    verb=actions.Verb.CREATE,
                    target=actions.NetworkTarget(target),
                    owner=ctx.owner(key),
                    drift=context.converged(ctx.live_record(key)),
                )
                continue
            owned = ctx.labelled_ours(current.owner)
            if (foreign := ctx.foreign(current.owner)) is not None or not (owned or ctx.adopt):
                ctx.conflict(key, self.what, foreign)
                continue
            if not owned and ctx.unrepresentable(key, self.what, current.unmodelled):
                continue
            impacts = dict.fromkeys(_RESTARTING, Impact.RESTART)
            impacts["autostart"] = Impact.LIVE
            changes = compare.compare(current.shape, target, impacts)
            if not current.active:
                changes.append(actions.FieldChange("active", False, True, Impact.LIVE))
            if not owned:
                changes.append(actions.FieldChange("owner", None, ctx.installation, Impact.LIVE))
            restart = any(c.impact is Impact.RESTART for c in changes)
            intents: list[actions.Intent] = []
            if restart or not owned:
                intents.append(actions.Patch())
            if restart:
                intents.append(actions.Restart())
            ctx.emit(
                key,
                changes,
                target=actions.NetworkTarget(target),
                uuid=current.uuid,
                owner=ctx.owner(key),
                adopt=not owned,
                note="the network is restarted: guests on it lose connectivity until reattached"
                if restart
                else "",
                intents=tuple(intents),
            )

    def exists(self, ctx: context.Context, name: str) -> bool:
        return ctx.libvirt(context.key_of(kinds.Kind.NETWORK, name)) in ctx.world.networks

    def ownership(
        self, ctx: context.Context, key: record.ResourceKey
    ) -> tuple[bool, observed.Ownership | None]:
        found = ctx.world.networks.get(ctx.libvirt(key))
        if found is None:
            return True, None
        return ctx.labelled_ours(found.owner), ctx.foreign(found.owner)

    def used_by(self, name: str, uses: Uses) -> bool:
        return name in uses.networks

    def orphans(self, ctx: context.Context) -> Iterable[str]:
        return [
            resource
            for name, network in ctx.world.networks.items()
            if ctx.labelled_ours(network.owner)
            and (resource := ctx.resource(kinds.Kind.NETWORK, name)) not in ctx.state.networks
        ]


def _check_subnet(ctx: context.Context, loaded: desired.Loaded, declared: set[str]) -> None:
    """A located error when the network's subnet overlaps a libvirt network not declared."""
    assert isinstance(loaded.manifest, kinds.Network)
    ipv4 = loaded.manifest.spec.ipv4
    if ipv4 is None:
        return
    subnet = ipv4.address.network
    for name, found in sorted(ctx.world.networks.items()):
        address = found.shape.address
        if name in declared or address is None:
            continue
        taken = ipaddress.IPv4Interface(address).network
        if not subnet.overlaps(taken):
            continue
        if ctx.labelled_ours(found.owner):
            other = (
                f"network/{ctx.resource(kinds.Kind.NETWORK, name)} "
                "(in libvirt, no longer in the manifests)"
            )
        else:
            other = f"libvirt network {name!r}, which this installation does not manage"
        path = ("spec", "ipv4", "address")
        ctx.errors.append(
            f"{loaded.source.at(path)}: {kinds.Kind.NETWORK.value}/{loaded.name}: "
            f"spec.ipv4.address: subnet {subnet} overlaps {taken} of {other}"
        )
        return


HANDLER = NetworkPlanner()
