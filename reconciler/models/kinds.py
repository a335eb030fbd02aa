"""The four manifest kinds of ``infinibay.io/v1alpha1``, as pydantic models.

Models are strict (``extra="forbid"``) and frozen. Field names are the YAML
names users write (``powerState``, ``reclaimPolicy``), so a validation error's
location maps straight back onto the YAML node that caused it. Defaults that
depend on a template are left ``None`` here and resolved by
:mod:`reconciler.models.effective`; only the defaults that hold everywhere are
written in these classes.

Fields added after the first release of the kinds are left out of dumps while
they hold their default (:func:`_added`): the record keys every resource by a
hash of its dumped spec, so a manifest written before a field existed keeps its
hash, and an upgrade is not a wave of record-only "changes".
"""

from __future__ import annotations

import enum
import ipaddress
from collections.abc import Mapping
from pathlib import PurePosixPath
from typing import Annotated, Any, Literal, Self

from lxml import etree
from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from reconciler.models import fields
from reconciler.models import firewall as fw

__all__ = [
    "API_VERSION",
    "KINDS",
    "AnyManifest",
    "BootDevice",
    "Cdrom",
    "CloudInit",
    "Cpu",
    "CpuMode",
    "Department",
    "DepartmentSpec",
    "DhcpRange",
    "Disk",
    "FirewallPolicy",
    "Firmware",
    "FirstBoot",
    "Graphics",
    "GraphicsPassword",
    "GraphicsType",
    "GuestOs",
    "HostDevice",
    "Ipv4",
    "Kind",
    "Machine",
    "Manifest",
    "Metadata",
    "Network",
    "NetworkMode",
    "NetworkSpec",
    "Nic",
    "PowerState",
    "ReclaimPolicy",
    "StaticHost",
    "StoragePool",
    "StoragePoolSpec",
    "Template",
    "TemplateSpec",
    "UpdatePolicy",
    "Video",
    "VirtualMachine",
    "VirtualMachineSpec",
]

API_VERSION = "infinibay.io/v1alpha1"
PROTECT_ANNOTATION = "infinibay.io/protect"
RECONCILE_ANNOTATION = "infinibay.io/reconcile"
"""``disabled`` suspends reconciliation of the resource: plan, apply and the daemon skip it."""


class Kind(enum.StrEnum):
    STORAGE_POOL = "StoragePool"
    NETWORK = "Network"
    TEMPLATE = "Template"
    VIRTUAL_MACHINE = "VirtualMachine"
    FIREWALL_POLICY = "FirewallPolicy"
    DEPARTMENT = "Department"
    HOST = "Host"


class NetworkMode(enum.StrEnum):
    NAT = "nat"
    ISOLATED = "isolated"
    ROUTE = "route"
    BRIDGE = "bridge"


class Firmware(enum.StrEnum):
    BIOS = "bios"
    UEFI = "uefi"


class Machine(enum.StrEnum):
    Q35 = "q35"
    PC = "pc"


class GraphicsType(enum.StrEnum):
    VNC = "vnc"
    SPICE = "spice"
    NONE = "none"


class CpuMode(enum.StrEnum):
    HOST_PASSTHROUGH = "host-passthrough"
    HOST_MODEL = "host-model"
    MAXIMUM = "maximum"


class GuestOs(enum.StrEnum):
    LINUX = "linux"
    WINDOWS = "windows"


class Video(enum.StrEnum):
    VIRTIO = "virtio"
    QXL = "qxl"
    VGA = "vga"
    NONE = "none"


class BootDevice(enum.StrEnum):
    CDROM = "cdrom"
    DISK = "disk"
    NETWORK = "network"


class GraphicsPassword(enum.StrEnum):
    GENERATE = "generate"
    NONE = "none"


class PowerState(enum.StrEnum):
    RUNNING = "Running"
    STOPPED = "Stopped"
    PAUSED = "Paused"


class UpdatePolicy(enum.StrEnum):
    ON_RESTART = "OnRestart"
    RESTART = "Restart"


class ReclaimPolicy(enum.StrEnum):
    RETAIN = "Retain"
    DELETE = "Delete"


class _Strict(BaseModel):
    # ``defer_build``: a model's validator is built when it first validates, so a
    # command pays only for the kinds its manifests hold (building them all at
    # import was most of the cost of importing this module).
    model_config = ConfigDict(extra="forbid", frozen=True, use_enum_values=False, defer_build=True)


def suspended(annotations: Mapping[str, str]) -> bool:
    """Whether ``annotations`` suspend reconciliation (:data:`RECONCILE_ANNOTATION`)."""
    return annotations.get(RECONCILE_ANNOTATION, "").strip().lower() == "disabled"


def _added(default: Any, **kwargs: Any) -> Any:
    """A field added after the first release: dumped only when it differs from ``default``."""
    return Field(default=default, exclude_if=lambda value: value == default, **kwargs)


class Metadata(_Strict):
    name: fields.DnsLabel = Field(
        description="The resource's name, a DNS label (lower case, digits, '-'; at most 63); "
        "also its libvirt name."
    )
    labels: dict[str, str] = Field(
        default_factory=dict,
        description="Key/value pairs to select resources by (-l app=web); not sent to libvirt.",
    )
    annotations: dict[str, str] = Field(
        default_factory=dict,
        description="Key/value notes; infinibay.io/protect: 'true' refuses deletion, "
        "infinibay.io/reconcile: disabled suspends reconciliation.",
    )

    @property
    def protected(self) -> bool:
        return self.annotations.get(PROTECT_ANNOTATION, "").lower() == "true"

    @property
    def suspended(self) -> bool:
        return suspended(self.annotations)


# --- StoragePool ---------------------------------------------------------------


class StoragePoolSpec(_Strict):
    path: str = Field(description="Absolute directory of a libvirt 'dir' pool.")
    autostart: bool = Field(True, description="Start the pool when libvirtd starts.")
    images: bool = _added(
        False,
        description="Whether disks may take their 'image' backing files from this pool; "
        "the operator's INFINIBAY_IMAGE_ROOTS must contain its path.",
    )
    hosts: list[fields.DnsLabel] = _added(
        [],
        description="The Hosts the pool may exist on; empty: any host (with hostSelector, "
        "those it matches). It is created on each host a VM that uses it is placed on.",
    )
    hostSelector: dict[str, str] = _added(
        {}, description="Host labels the pool's hosts must all have."
    )
    shared: bool = _added(
        False,
        description="The path is one storage every host sees (an NFS export, a cluster file "
        "system): a running VM whose volumes are all in shared pools moves between hosts live "
        "(libvirt migration, peer to peer, tunnelled through libvirt's own connection) instead "
        "of cold. Checked before each move: the target must see the source's volumes.",
    )

    @field_validator("path")
    @classmethod
    def _absolute(cls, value: str) -> str:
        path = PurePosixPath(value)
        if not path.is_absolute():
            raise ValueError(f"{value!r} is not an absolute path")
        if ".." in path.parts:
            raise ValueError(f"{value!r} must not contain '..'")
        return str(path)


class StoragePool(_Strict):
    apiVersion: Literal["infinibay.io/v1alpha1"] = Field(
        description="Always infinibay.io/v1alpha1."
    )
    kind: Literal["StoragePool"] = Field(description="The resource's kind.")
    metadata: Metadata = Field(description="Name, labels and annotations.")
    spec: StoragePoolSpec = Field(description="The declared state.")


# --- Network -------------------------------------------------------------------


class DhcpRange(_Strict):
    start: ipaddress.IPv4Address = Field(description="First address DHCP hands out.")
    end: ipaddress.IPv4Address = Field(description="Last address DHCP hands out (inclusive).")

    @model_validator(mode="after")
    def _ordered(self) -> Self:
        if self.start > self.end:
            raise ValueError(f"DHCP range start {self.start} is after its end {self.end}")
        return self


class StaticHost(_Strict):
    mac: fields.Mac = Field(description="The guest NIC's MAC address.")
    ip: ipaddress.IPv4Address = Field(
        description="The address DHCP always gives that MAC, inside the network's prefix."
    )
    name: fields.DnsLabel | None = Field(None, description="Host name given with the lease.")


class Ipv4(_Strict):
    address: ipaddress.IPv4Interface = Field(
        description="Gateway address with prefix, e.g. 10.20.0.1/24."
    )
    dhcp: DhcpRange | None = Field(
        None, description="The range DHCP hands addresses out of; none: no DHCP."
    )
    hosts: list[StaticHost] = Field(
        default_factory=list, description="Static DHCP leases, one per MAC."
    )

    @field_validator("address")
    @classmethod
    def _usable_gateway(cls, value: ipaddress.IPv4Interface) -> ipaddress.IPv4Interface:
        net = value.network
        if net.prefixlen > 30:
            raise ValueError(f"prefix /{net.prefixlen} is too small for a gateway and guests")
        if value.ip in (net.network_address, net.broadcast_address):
            raise ValueError(f"{value.ip} is the network or broadcast address of {net}")
        return value

    @model_validator(mode="after")
    def _inside_prefix(self) -> Self:
        net = self.address.network
        if self.dhcp is not None:
            for end in (self.dhcp.start, self.dhcp.end):
                if end not in net or end in (net.network_address, net.broadcast_address):
                    raise ValueError(
                        f"DHCP range {self.dhcp.start}-{self.dhcp.end} is outside {net}"
                    )
            if self.dhcp.start <= self.address.ip <= self.dhcp.end:
                raise ValueError(f"DHCP range includes the gateway address {self.address.ip}")
        seen: set[str] = set()
        for host in self.hosts:
            if host.ip not in net:
                raise ValueError(f"static host {host.ip} is outside {net}")
            if host.ip == self.address.ip:
                raise ValueError(f"static host {host.ip} is the gateway address")
            if host.mac in seen:
                raise ValueError(f"static host MAC {host.mac} is listed twice")
            seen.add(host.mac)
        return self


class NetworkSpec(_Strict):
    mode: NetworkMode = Field(
        NetworkMode.NAT,
        description="nat (guests reach out through the host), route (routed, no NAT), isolated "
        "(guests and host only) or bridge (an existing host bridge).",
    )
    bridge: fields.BridgeName | None = Field(
        None,
        description="The Linux bridge's name: created by libvirt, or the existing host bridge "
        "with mode bridge.",
    )
    ipv4: Ipv4 | None = Field(
        None, description="The network's gateway address, DHCP range and static hosts."
    )
    domain: str | None = Field(
        default=None,
        pattern=r"^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$",
        description="DNS domain of the network's guests.",
    )
    mtu: int | None = Field(
        default=None, ge=576, le=65535, description="MTU of the network's bridge."
    )
    autostart: bool = Field(True, description="Start the network when libvirtd starts.")
    hosts: list[fields.DnsLabel] = _added(
        [],
        description="The Hosts the network may exist on; empty: any host (with hostSelector, "
        "those it matches). It is created on each host a VM that uses it is placed on.",
    )
    hostSelector: dict[str, str] = _added(
        {}, description="Host labels the network's hosts must all have."
    )

    @model_validator(mode="after")
    def _mode_fits(self) -> Self:
        if self.mode is NetworkMode.BRIDGE:
            if self.bridge is None:
                raise ValueError("mode bridge attaches to an existing host bridge: give 'bridge'")
            if self.ipv4 is not None:
                raise ValueError("mode bridge takes no 'ipv4': addresses come from the host bridge")
        elif self.mode in (NetworkMode.NAT, NetworkMode.ROUTE) and self.ipv4 is None:
            raise ValueError(f"mode {self.mode.value} needs 'ipv4' (gateway address and prefix)")
        return self


class Network(_Strict):
    apiVersion: Literal["infinibay.io/v1alpha1"] = Field(
        description="Always infinibay.io/v1alpha1."
    )
    kind: Literal["Network"] = Field(description="The resource's kind.")
    metadata: Metadata = Field(description="Name, labels and annotations.")
    spec: NetworkSpec = Field(description="The declared state.")


# --- Template and VirtualMachine -------------------------------------------------


class Graphics(_Strict):
    type: GraphicsType = Field(GraphicsType.VNC, description="vnc, spice or none.")
    listen: ipaddress.IPv4Address = Field(
        ipaddress.IPv4Address("127.0.0.1"),
        description="Address the display listens on; beyond 127.0.0.0/8 only with "
        "INFINIBAY_ALLOW_REMOTE_GRAPHICS=1.",
    )
    password: GraphicsPassword = _added(
        GraphicsPassword.NONE,
        description="generate: a random password, set once and kept only in libvirt, "
        "printed by 'infinibay console' alone; none: no password.",
    )


_VOLUME_FILE = r"^[A-Za-z0-9][A-Za-z0-9_.+-]*$"


class Disk(_Strict):
    name: fields.DnsLabel = Field(
        description="The disk's name, unique in the VM; its volume is VM.NAME.qcow2."
    )
    size: fields.Size | None = Field(
        None, description="Capacity, e.g. 20GiB; grown in place, never shrunk."
    )
    pool: fields.DnsLabel | None = Field(
        None, description="The StoragePool that holds the disk's volume."
    )
    image: str | None = Field(
        default=None,
        pattern=_VOLUME_FILE,
        description="Backing volume, from an image pool: 'imagePool', else the disk's own pool.",
    )
    imagePool: fields.DnsLabel | None = _added(
        None, description="The image pool ('images: true') that holds 'image'."
    )
    # An existing volume of ``pool`` used as it is (never created, grown or deleted)
    # instead of the generated ``VM.DISK.qcow2``; taking it needs ``--adopt``.
    volume: str | None = _added(
        None,
        pattern=_VOLUME_FILE,
        description="An existing volume of 'pool', used as it is; taking it needs --adopt.",
    )
    reclaimPolicy: ReclaimPolicy | None = Field(
        None,
        description="Retain (default) keeps the volume when the VM goes; Delete deletes it with "
        "the VM.",
    )

    @model_validator(mode="after")
    def _volume_or_image(self) -> Self:
        if self.volume is not None and self.image is not None:
            raise ValueError("give either volume (used as it is) or image (a backing file)")
        return self


class Nic(_Strict):
    network: fields.DnsLabel = Field(description="The Network the NIC attaches to.")
    mac: fields.Mac | None = Field(
        None, description="MAC address; generated (and then kept) when unset."
    )


class Cpu(_Strict):
    mode: CpuMode | None = Field(
        default=None,
        description="host-passthrough (the default where the host can run it), host-model "
        "or maximum; where the host cannot, the default falls back and describe says so.",
    )


class Cdrom(_Strict):
    name: fields.DnsLabel = Field(description="The cdrom's name, unique in the VM.")
    image: str = Field(
        pattern=_VOLUME_FILE, description="An ISO volume of 'pool', attached read-only on SATA."
    )
    pool: fields.DnsLabel = Field(description="The image pool ('images: true') that holds 'image'.")


_PCI_ADDRESS = r"^[0-9a-f]{4}:[0-9a-f]{2}:[0-9a-f]{2}\.[0-7]$"


class HostDevice(_Strict):
    pci: str = Field(
        pattern=_PCI_ADDRESS,
        description="A host PCI address (domain:bus:slot.function, e.g. 0000:01:00.0) passed "
        "through to the guest; checked against the host's devices when planning.",
    )


_SEED_TEXT = 1 << 20  # a first-boot file: far more than cloud-init or Windows Setup need


class CloudInit(_Strict):
    userData: str = Field(
        max_length=_SEED_TEXT,
        description="cloud-init user-data (e.g. a '#cloud-config' document), as written.",
    )
    instanceId: str | None = Field(
        None,
        min_length=1,
        max_length=128,
        pattern=r"^[A-Za-z0-9][A-Za-z0-9_.:-]*$",
        description="meta-data instance-id; default iid-NAME. cloud-init runs its once-per-"
        "instance modules again only when this changes, not when userData does.",
    )
    networkConfig: dict[str, Any] | None = Field(
        None, description="network-config (version 2), written as YAML next to user-data."
    )


class FirstBoot(_Strict):
    cloudInit: CloudInit | None = Field(
        None,
        description="A NoCloud seed ISO (label cidata) built in-process, uploaded into the "
        "pool and attached as a cdrom; re-uploaded when its content changes.",
    )
    windowsUnattend: str | None = Field(
        None,
        max_length=_SEED_TEXT,
        description="An Autounattend.xml for Windows Setup, on a seed ISO of its own.",
    )
    pool: fields.DnsLabel | None = Field(
        None, description="The pool the seed volumes live in; default the first disk's pool."
    )

    @field_validator("windowsUnattend")
    @classmethod
    def _well_formed(cls, value: str | None) -> str | None:
        if value is not None:
            _check_xml(value)
        return value


def _check_xml(text: str) -> None:
    """Refuse text that is not one well-formed XML document (no entities, no network)."""
    parser = etree.XMLParser(resolve_entities=False, no_network=True, load_dtd=False)
    try:
        etree.fromstring(text.encode(), parser)
    except etree.XMLSyntaxError as exc:
        raise ValueError(f"not well-formed XML: {exc.msg}") from None


def _unique(items: list[str], what: str) -> None:
    seen: set[str] = set()
    for item in items:
        if item in seen:
            raise ValueError(f"{what} {item!r} is listed twice")
        seen.add(item)


class _Hardware(_Strict):
    """Fields a template and a VM share; every one is optional so a VM can override."""

    cpus: int | None = Field(default=None, ge=1, le=256, description="Virtual CPUs.")
    memory: fields.Size | None = Field(None, description="Memory, e.g. 2GiB (at least 16MiB).")
    firmware: Firmware | None = Field(None, description="bios or uefi.")
    machine: Machine | None = Field(None, description="The QEMU machine type: q35 or pc.")
    graphics: Graphics | None = Field(None, description="The display (VNC or SPICE) or none.")
    disks: list[Disk] = Field(
        default_factory=list,
        description="Disks; a VM's merge over its template's by name, field by field.",
    )
    networks: list[Nic] = Field(
        default_factory=list,
        description="NICs; a VM's merge over its template's by network, field by field.",
    )
    # Guest hardware (SPEC section 9). Unset, a field takes its default when the domain
    # is created and is not compared afterwards: a domain adopted, or created before the
    # field existed, keeps what it has until a manifest or template says otherwise.
    cpu: Cpu | None = _added(None, description="The guest CPU.")
    tpm: bool | None = _added(
        None,
        description="An emulated TPM 2.0 (swtpm). Default false, true with firmware uefi and "
        "os windows; its state is deleted with the VM only when all its volumes are.",
    )
    os: GuestOs | None = _added(
        None,
        description="linux or windows: windows adds Hyper-V enlightenments and the "
        "virtio-win driver ISO (INFINIBAY_VIRTIO_WIN) as a cdrom.",
    )
    guestAgent: bool | None = _added(
        None,
        description="qemu-guest-agent's virtio channel and, with spice graphics, the spice "
        "vdagent channel. Default true.",
    )
    video: Video | None = _added(
        None, description="virtio, qxl, vga or none. Default virtio (none without graphics)."
    )
    cdroms: list[Cdrom] | None = _added(
        None, description="Read-only ISO volumes on SATA (q35 has no IDE), in order."
    )
    bootOrder: list[BootDevice] | None = _added(
        None,
        description="Devices tried at boot, in order. Default [disk], [disk, cdrom] with cdroms.",
    )
    hostDevices: list[HostDevice] | None = _added(
        None, description="Host PCI devices passed through (a GPU, say)."
    )
    firstBoot: FirstBoot | None = _added(
        None, description="First-boot media: a cloud-init seed and/or a Windows answer file."
    )

    @model_validator(mode="after")
    def _unique_members(self) -> Self:
        _unique([d.name for d in self.disks], "disk")
        _unique([c.name for c in self.cdroms or []], "cdrom")
        _unique([d.pci for d in self.hostDevices or []], "host device")
        _unique([b.value for b in self.bootOrder or []], "boot device")
        networks = [n.network for n in self.networks]
        for nic in self.networks:
            # NICs are told apart by MAC: two may share a network when each names its own.
            if networks.count(nic.network) > 1 and nic.mac is None:
                raise ValueError(
                    f"network {nic.network!r} is listed twice; NICs that share a network "
                    "need a 'mac' each"
                )
        _unique([n.mac for n in self.networks if n.mac is not None], "MAC")
        if self.memory is not None and self.memory < (16 << 20):
            raise ValueError("memory must be at least 16MiB")
        return self


class TemplateSpec(_Hardware):
    description: str | None = Field(None, description="Free text for people; not sent to libvirt.")


class Template(_Strict):
    apiVersion: Literal["infinibay.io/v1alpha1"] = Field(
        description="Always infinibay.io/v1alpha1."
    )
    kind: Literal["Template"] = Field(description="The resource's kind.")
    metadata: Metadata = Field(description="Name, labels and annotations.")
    spec: TemplateSpec = Field(description="The declared state.")


class VirtualMachineSpec(_Hardware):
    template: fields.DnsLabel | None = Field(
        None, description="The Template whose spec this VM's fields are merged over."
    )
    powerState: PowerState = Field(
        PowerState.RUNNING,
        description="Running, Stopped or Paused: what every pass brings the VM to.",
    )
    autostart: bool = Field(False, description="Start the VM when libvirtd starts.")
    updatePolicy: UpdatePolicy = Field(
        UpdatePolicy.ON_RESTART,
        description="OnRestart: a change needing a reboot waits for the next one (condition "
        "RestartRequired); Restart: the VM is restarted to apply it.",
    )
    department: fields.DnsLabel | None = _added(
        None,
        description="A Department: its network is the VM's when it lists none, and its "
        "firewall policy applies to every NIC.",
    )
    firewall: fw.VmFirewall | None = _added(
        None, description="The VM's own presets and rules, evaluated before its department's."
    )
    host: fields.DnsLabel | None = _added(
        None,
        description="The Host the VM runs on (a pin); unset: placement chooses one. "
        "Changing it moves the VM.",
    )
    hostSelector: dict[str, str] = _added(
        {},
        description="Host labels the VM's host must all have; changing it moves the VM "
        "if its host no longer matches.",
    )


class VirtualMachine(_Strict):
    apiVersion: Literal["infinibay.io/v1alpha1"] = Field(
        description="Always infinibay.io/v1alpha1."
    )
    kind: Literal["VirtualMachine"] = Field(description="The resource's kind.")
    metadata: Metadata = Field(description="Name, labels and annotations.")
    spec: VirtualMachineSpec = Field(description="The declared state.")


# --- FirewallPolicy and Department --------------------------------------------------


class FirewallPolicy(_Strict):
    apiVersion: Literal["infinibay.io/v1alpha1"] = Field(
        description="Always infinibay.io/v1alpha1."
    )
    kind: Literal["FirewallPolicy"] = Field(description="The resource's kind.")
    metadata: Metadata = Field(description="Name, labels and annotations.")
    spec: fw.FirewallPolicySpec = Field(description="The declared state.")


class DepartmentSpec(_Strict):
    network: fields.DnsLabel = Field(
        description="A Network: the department's VMs attach to it when they list no networks."
    )
    firewall: fields.DnsLabel | None = Field(
        default=None,
        description="A FirewallPolicy applied to every NIC of the department's VMs.",
    )
    quota: fw.Quota | None = Field(
        default=None, description="Optional limits; manifests that exceed them are refused."
    )


class Department(_Strict):
    apiVersion: Literal["infinibay.io/v1alpha1"] = Field(
        description="Always infinibay.io/v1alpha1."
    )
    kind: Literal["Department"] = Field(description="The resource's kind.")
    metadata: Metadata = Field(description="Name, labels and annotations.")
    spec: DepartmentSpec = Field(description="The declared state.")


# --- Host -------------------------------------------------------------------------


class PlacementStrategy(enum.StrEnum):
    SPREAD = "spread"
    PACK = "pack"


class Overcommit(_Strict):
    cpu: float = Field(
        1.0, gt=0, le=64, description="vCPUs placed per host CPU (getInfo's count) at most."
    )
    memory: float = Field(
        1.0, gt=0, le=4, description="Memory placed per byte of host memory at most."
    )


class HostSpec(_Strict):
    uri: str = Field(
        description="The libvirt URI of the hypervisor (qemu+ssh://, qemu+tls://, "
        "qemu+unix:// with a socket); it must match one of the operator's "
        "INFINIBAY_HOST_URIS patterns."
    )
    schedulable: bool = Field(
        True, description="false cordons the host: nothing new is placed on it."
    )
    drain: bool = Field(False, description="true moves every VM away from the host.")
    overcommit: Overcommit = Field(
        default_factory=Overcommit, description="How far placement may overcommit the host."
    )

    @field_validator("uri")
    @classmethod
    def _uri(cls, value: str) -> str:
        if "://" not in value or any(c.isspace() for c in value):
            raise ValueError(f"{value!r} is not a libvirt URI")
        return value


class Host(_Strict):
    apiVersion: Literal["infinibay.io/v1alpha1"] = Field(
        description="Always infinibay.io/v1alpha1."
    )
    kind: Literal["Host"] = Field(description="The resource's kind.")
    metadata: Metadata = Field(description="Name, labels and annotations.")
    spec: HostSpec = Field(description="The declared state.")


AnyManifest = StoragePool | Network | Template | VirtualMachine | FirewallPolicy | Department | Host
Manifest = Annotated[AnyManifest, Field(discriminator="kind")]

KINDS: dict[Kind, type[AnyManifest]] = {
    Kind.STORAGE_POOL: StoragePool,
    Kind.NETWORK: Network,
    Kind.TEMPLATE: Template,
    Kind.VIRTUAL_MACHINE: VirtualMachine,
    Kind.FIREWALL_POLICY: FirewallPolicy,
    Kind.DEPARTMENT: Department,
    Kind.HOST: Host,
}
