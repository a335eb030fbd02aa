"""What a plan is made of: one :class:`Change` per resource, with field diffs and intents.

A change carries everything the executor needs (the target shape, the volumes,
the observed UUID), so executing never re-derives intent. Each field diff has
an :class:`Impact`; a change's impact is the worst of its fields, and the order
of the enum is the order of cost.

Field diffs (:class:`FieldChange`) are for people: the plan, events and
history show them. What the executor does is said by the change's typed
:data:`Intent` list (create a volume, hot-plug a NIC, patch the definition,
power the guest), decided by the planner; the executor never reads a field path.
"""

from __future__ import annotations

import dataclasses
import enum
import typing
from collections.abc import Collection, Iterable, Mapping
from typing import Any

from reconciler.models import kinds, observed, record, seeds

__all__ = [
    "AdoptVolume",
    "Change",
    "CreateVolume",
    "DefineFilter",
    "DeleteSeed",
    "FieldChange",
    "FilterTarget",
    "GrowVolume",
    "Hotplug",
    "Impact",
    "Intent",
    "NetworkTarget",
    "Patch",
    "Plan",
    "PoolTarget",
    "Power",
    "RecreateVolume",
    "Restart",
    "SeedTarget",
    "SetAutostart",
    "SyncGraphicsPassword",
    "TemplateTarget",
    "UndefineFilter",
    "UpdateNicFilter",
    "UploadSeed",
    "Verb",
    "VmTarget",
    "VolumeTarget",
    "nic_macs",
    "nic_path",
    "shared_networks",
]


class Impact(enum.IntEnum):
    """What a change costs, cheapest first (SPEC §3)."""

    RECORD = 0  # only the record changes (templates, labels)
    LIVE = 1  # applied at once, no disruption
    RESTART = 2  # persistent config now; effective at the next boot
    REPLACE = 3  # the libvirt object is recreated
    DATA_LOSS = 4  # a volume would be destroyed

    @property
    def label(self) -> str:
        return self.name.lower().replace("_", "-")


class Verb(enum.StrEnum):
    CREATE = "create"
    UPDATE = "update"
    REPLACE = "replace"
    DELETE = "delete"
    CONFLICT = "conflict"
    PROTECTED = "protected"  # a deletion blocked by the protect annotation
    UNKNOWN = "unknown"  # on a host this pass could not reach, or held where it is

    @property
    def symbol(self) -> str:
        return {
            Verb.CREATE: "+",
            Verb.UPDATE: "~",
            Verb.REPLACE: "-/+",
            Verb.DELETE: "-",
            Verb.CONFLICT: "?",
            Verb.PROTECTED: "-",
            Verb.UNKNOWN: "?",
        }[self]


@dataclasses.dataclass(frozen=True)
class FieldChange:
    path: str
    old: Any
    new: Any
    impact: Impact

    def as_json(self) -> dict[str, Any]:
        return {"field": self.path, "old": self.old, "new": self.new, "impact": self.impact.label}


@dataclasses.dataclass(frozen=True)
class VolumeTarget:
    disk: str
    pool: str
    volume: str
    size: int
    image: str | None
    reclaim: kinds.ReclaimPolicy
    created: bool  # the inventory says this installation created it (may grow, reuse, delete)
    image_pool: str | None = None  # the image pool ``image`` is read from; else ``pool``
    named: bool = False  # named in the manifest (``volume:``): used as it is
    exists: bool = True  # libvirt has it (False only when its pool was seen without it)
    seed: bool = False  # a first-boot seed: made from the manifests, so deleting it loses nothing

    @property
    def deletes(self) -> bool:
        """Deleting the VM deletes this volume: ``reclaimPolicy: Delete`` and one we created."""
        return self.reclaim is kinds.ReclaimPolicy.DELETE and self.created


@dataclasses.dataclass(frozen=True)
class SeedTarget:
    """A first-boot seed ISO volume: its name is its content (reconciler.models.seeds)."""

    pool: str
    volume: str
    seed: seeds.Seed


@dataclasses.dataclass(frozen=True)
class VmTarget:
    shape: observed.VmShape
    power: kinds.PowerState
    update_policy: kinds.UpdatePolicy
    volumes: tuple[VolumeTarget, ...]
    seeds: tuple[SeedTarget, ...] = ()
    filter: FilterTarget | None = None  # the VM's own nwfilter, when it has a firewall


@dataclasses.dataclass(frozen=True)
class NetworkTarget:
    shape: observed.NetworkShape


@dataclasses.dataclass(frozen=True)
class PoolTarget:
    shape: observed.PoolShape
    images: bool = False  # an image pool: its path must lie under the image roots


@dataclasses.dataclass(frozen=True)
class TemplateTarget:
    pass


@dataclasses.dataclass(frozen=True)
class FilterTarget:
    """An nwfilter to define: a FirewallPolicy's."""

    name: str  # the libvirt name (reconciler.models.firewall.policy_filter)
    shape: observed.FilterShape


Target = VmTarget | NetworkTarget | PoolTarget | TemplateTarget | FilterTarget


# --- intents: what the executor does, decided by the planner --------------------


@dataclasses.dataclass(frozen=True)
class CreateVolume:
    """Create the disk's volume (reused when it exists and the inventory says it is ours)."""

    volume: VolumeTarget


@dataclasses.dataclass(frozen=True)
class GrowVolume:
    volume: VolumeTarget
    old: int  # capacity now, bytes
    live: bool  # the guest runs: grow through the domain so it sees the new size


@dataclasses.dataclass(frozen=True)
class RecreateVolume:
    """Delete and create the volume on its new backing image (data-loss), guest stopped first."""

    volume: VolumeTarget
    stop_first: bool


@dataclasses.dataclass(frozen=True)
class UploadSeed:
    """Build a seed ISO and upload it as a new volume, before the domain refers to it."""

    seed: SeedTarget


@dataclasses.dataclass(frozen=True)
class DeleteSeed:
    """Delete a seed volume of ours the domain no longer refers to (a superseded one)."""

    pool: str
    volume: str


@dataclasses.dataclass(frozen=True)
class AdoptVolume:
    """Use a volume named with ``volume:`` as it is: never grown or deleted."""

    volume: VolumeTarget


@dataclasses.dataclass(frozen=True)
class Patch:
    """Rewrite the owned fields of the object's persistent definition, keeping the rest."""


@dataclasses.dataclass(frozen=True)
class Hotplug:
    """Plug a NIC into the running guest (its persistent config has it already)."""

    nic: observed.NicShape


@dataclasses.dataclass(frozen=True)
class SetAutostart:
    autostart: bool


@dataclasses.dataclass(frozen=True)
class Power:
    """Take the guest from its observed power state to the declared one (or, deleted, Stopped)."""

    current: kinds.PowerState
    want: kinds.PowerState


@dataclasses.dataclass(frozen=True)
class Restart:
    """Stop and start the object so that its new configuration takes effect."""


@dataclasses.dataclass(frozen=True)
class SyncGraphicsPassword:
    """Give the running display the password its patched config now has, in place."""


@dataclasses.dataclass(frozen=True)
class DefineFilter:
    """Define (or redefine) the VM's own nwfilter, before its NICs reference it."""

    filter: FilterTarget
    uuid: str | None = None  # the existing filter's: libvirt redefines a filter under its UUID


@dataclasses.dataclass(frozen=True)
class UndefineFilter:
    """Remove the VM's own nwfilter once nothing references it."""

    name: str


@dataclasses.dataclass(frozen=True)
class UpdateNicFilter:
    """Point a running guest's NIC at another filter (or none), in place."""

    mac: str
    filter: observed.FilterRef | None


Intent = (
    CreateVolume
    | GrowVolume
    | RecreateVolume
    | AdoptVolume
    | UploadSeed
    | DeleteSeed
    | Patch
    | Hotplug
    | SetAutostart
    | Power
    | Restart
    | DefineFilter
    | UndefineFilter
    | UpdateNicFilter
    | SyncGraphicsPassword
)
_I = typing.TypeVar("_I", bound=Intent)


@dataclasses.dataclass(frozen=True)
class Change:
    key: record.ResourceKey
    verb: Verb
    fields: tuple[FieldChange, ...] = ()
    drift: bool = False
    adopt: bool = False
    target: Target | None = None
    uuid: str | None = None  # the observed libvirt object's UUID, kept on redefinition
    owner: observed.Ownership | None = None  # ownership to write into the object
    depends_on: tuple[record.ResourceKey, ...] = ()
    retained: tuple[VolumeTarget, ...] = ()  # volumes a deletion keeps or removes
    note: str = ""
    intents: tuple[Intent, ...] = ()  # what the executor does, in this order of kinds
    # The libvirt object's name when it is not the resource's (reconciler.models.naming).
    libvirt_name: str = ""
    host: str = ""  # the Host it is carried out on; "" with one implicit host (SPEC §10)
    move_from: str = ""  # a VM's create on ``host`` that moves it from this host
    move_live: bool = False  # that move migrates the running VM (shared storage), not cold
    # A deletion of the object on ``host`` alone (a drained host's pool or network): the
    # resource stays, on the hosts that still need it.
    local: bool = False

    @property
    def object_name(self) -> str:
        """The name of the resource's libvirt object: every libvirt call for it uses this."""
        return self.libvirt_name or self.key.name

    def intended(self, kind: type[_I]) -> list[_I]:
        """The intents of one type, in plan order."""
        return [i for i in self.intents if isinstance(i, kind)]

    def intends(self, kind: type[Intent]) -> bool:
        return any(isinstance(i, kind) for i in self.intents)

    @property
    def impact(self) -> Impact:
        impacts = [f.impact for f in self.fields]
        if self.verb is Verb.DELETE and any(
            v.deletes and v.exists and not v.seed for v in self.retained
        ):
            impacts.append(Impact.DATA_LOSS)
        if self.verb is Verb.REPLACE:
            impacts.append(Impact.REPLACE)
        return max(impacts, default=Impact.LIVE)

    @property
    def needs_data_loss_flag(self) -> bool:
        """Whether carrying this change out needs ``--allow-data-loss``.

        A volume deleted with its VM (deleted or pruned) because its disk declares
        ``reclaimPolicy: Delete`` was consented to by that declaration; every other
        destruction of data (a disk detached or pointed elsewhere, an image changed,
        a pool moved from under its volumes) needs the flag.
        """
        return any(f.impact is Impact.DATA_LOSS for f in self.fields)

    @property
    def symbol(self) -> str:
        return "!" if self.drifted else self.verb.symbol

    @property
    def drifted(self) -> bool:
        """Drift of a converged resource: changed, or gone (recreated), behind our back."""
        return self.drift and self.verb in (Verb.UPDATE, Verb.CREATE)

    def field(self, path: str) -> FieldChange | None:
        return next((f for f in self.fields if f.path == path), None)

    def as_json(self) -> dict[str, Any]:
        return {
            "resource": str(self.key),
            "kind": self.key.kind,
            "name": self.key.name,
            "action": self.verb.value,
            "drift": self.drift,
            "adopt": self.adopt,
            "impact": self.impact.label,
            "changes": [f.as_json() for f in self.fields],
            "note": self.note,
        }


@dataclasses.dataclass(frozen=True)
class Plan:
    changes: tuple[Change, ...]
    in_sync: tuple[record.ResourceKey, ...] = ()
    spec_writes: tuple[record.SpecWrite, ...] = ()  # record updates, applied with each change
    errors: tuple[str, ...] = ()  # located refusals (e.g. a disk shrink): nothing may run
    not_found: tuple[record.ResourceKey, ...] = ()  # named for deletion, exist nowhere
    # Volumes to add to the inventory before anything runs (intent), so that a volume
    # a killed pass created is still known as ours.
    volume_claims: tuple[record.VolumeRecord, ...] = ()
    # Resources skipped because reconciliation is suspended (infinibay.io/reconcile: disabled).
    suspended: tuple[record.ResourceKey, ...] = ()
    # The libvirt name of every resource whose object is not named like it.
    libvirt_names: Mapping[record.ResourceKey, str] = dataclasses.field(default_factory=dict)

    def libvirt(self, key: record.ResourceKey) -> str:
        """The name of the libvirt object of ``key``."""
        return self.libvirt_names.get(key, key.name)

    @property
    def empty(self) -> bool:
        return not self.changes

    def refusals(self, *, allow_data_loss: bool) -> list[Change]:
        """The changes that will not be carried out, each with its reason in ``note``."""
        return [
            c
            for c in self.changes
            if c.verb in (Verb.CONFLICT, Verb.PROTECTED, Verb.UNKNOWN)
            or (c.needs_data_loss_flag and not allow_data_loss)
        ]

    def counts(self) -> dict[str, int]:
        counts: dict[str, int] = {}
        for change in self.changes:
            label = "drift" if change.drifted else change.verb.value
            counts[label] = counts.get(label, 0) + 1
        return counts


def nic_path(nic: observed.NicShape, shared: Collection[str]) -> str:
    """``networks[lab]``; ``networks[lab/MAC]`` for a network several of the VM's NICs share."""
    if nic.network in shared:
        return f"networks[{nic.network}/{nic.mac}]"
    return f"networks[{nic.network}]"


def shared_networks(*nic_lists: Iterable[observed.NicShape]) -> set[str]:
    """Networks that more than one NIC of one list is on."""
    shared: set[str] = set()
    for nics in nic_lists:
        networks = [n.network for n in nics]
        shared |= {n for n in networks if networks.count(n) > 1}
    return shared


def nic_macs(nics: Iterable[observed.NicShape]) -> dict[str, str]:
    """MAC by network; by ``network/MAC`` where NICs share a network, so none is hidden."""
    listed = list(nics)
    shared = shared_networks(listed)
    return {(f"{n.network}/{n.mac}" if n.network in shared else n.network): n.mac for n in listed}
