"""First-boot seeds (SPEC section 9): the files of a cloud-init NoCloud seed or a
Windows answer file, and the volume that holds them.

A seed's volume is named after its content, ``VM.cidata-DIGEST.iso`` or
``VM.unattend-DIGEST.iso``, so the name alone says whether the pool holds the
seed the manifest asks for: a change is a new volume, uploaded, attached in
place of the old one, which is then deleted. Nothing is downloaded to compare.
"""

from __future__ import annotations

import dataclasses
import hashlib
import re
from typing import Any

import yaml

__all__ = [
    "CIDATA",
    "UNATTEND",
    "Seed",
    "cloud_init",
    "default_instance_id",
    "field_of",
    "is_seed",
    "kind_of",
    "windows_unattend",
]

CIDATA = "cidata"
UNATTEND = "unattend"

_VOLUME = re.compile(r"^(?P<vm>.+)\.(?P<kind>cidata|unattend)-[0-9a-f]{12}\.iso$")


@dataclasses.dataclass(frozen=True)
class Seed:
    """The files of one seed ISO, and the volume label it carries."""

    kind: str  # CIDATA or UNATTEND
    label: str
    files: tuple[tuple[str, bytes], ...] = dataclasses.field(repr=False)
    instance_id: str | None = None  # cloud-init's, shown in the plan

    @property
    def digest(self) -> str:
        sha = hashlib.sha256(self.label.encode())
        for name, data in self.files:
            sha.update(b"\0" + name.encode() + b"\0" + len(data).to_bytes(8, "big") + data)
        return sha.hexdigest()[:12]

    def volume(self, vm: str) -> str:
        return f"{vm}.{self.kind}-{self.digest}.iso"

    @property
    def field(self) -> str:
        """The manifest path the plan names it by."""
        return field_of(self.kind)


def kind_of(volume: str) -> str | None:
    """CIDATA or UNATTEND when ``volume`` is named as a seed, else ``None``."""
    match = _VOLUME.match(volume)
    return match["kind"] if match is not None else None


def field_of(kind: str) -> str:
    """The manifest path of a seed kind."""
    return "firstBoot.cloudInit" if kind == CIDATA else "firstBoot.windowsUnattend"


def is_seed(volume: str) -> bool:
    """Whether ``volume`` is named as any VM's seed (never modelled as a plain cdrom)."""
    return _VOLUME.match(volume) is not None


def default_instance_id(vm: str) -> str:
    return f"iid-{vm}"


def _yaml(document: Any) -> bytes:
    return yaml.safe_dump(document, default_flow_style=False, sort_keys=True).encode()


def cloud_init(
    vm: str,
    user_data: str,
    *,
    instance_id: str | None = None,
    network_config: dict[str, Any] | None = None,
) -> Seed:
    """A NoCloud seed: ``user-data`` as written, ``meta-data`` with a stable instance-id
    and the VM's host name, and ``network-config`` when given."""
    iid = instance_id or default_instance_id(vm)
    files = [
        ("meta-data", _yaml({"instance-id": iid, "local-hostname": vm})),
        ("user-data", user_data.encode()),
    ]
    if network_config is not None:
        files.append(("network-config", _yaml(network_config)))
    return Seed(CIDATA, "cidata", tuple(sorted(files)), instance_id=iid)


def windows_unattend(answer_file: str) -> Seed:
    """Windows Setup reads ``Autounattend.xml`` from the root of any removable drive."""
    return Seed(UNATTEND, "UNATTEND", (("Autounattend.xml", answer_file.encode()),))
