"""Volume naming: the one place a VM disk's volume file name is made and read back.

A disk's volume is the one its manifest names (``volume:``), else the one the
record's inventory says the disk was created under, else the generated
``VM.DISK.qcow2``. Generated names come from the VM and disk names, never a
UUID, and are joined by a dot, which cannot occur in a DNS label: VM ``a``
disk ``b-root`` and VM ``a-b`` disk ``root`` get two volumes. Installations
from before made ``VM-DISK.qcow2``; :func:`disk_of` still reads those back.
"""

from __future__ import annotations

__all__ = ["SUFFIX", "disk_of", "generated", "volume_name"]

SUFFIX = ".qcow2"


def generated(vm: str, disk: str) -> str:
    """The volume made for disk ``disk`` of VM ``vm``: ``vm.disk.qcow2``."""
    return f"{vm}.{disk}{SUFFIX}"


def volume_name(vm: str, disk: str, *, named: str | None = None, known: str | None = None) -> str:
    """The volume of ``vm``'s disk ``disk``: ``named`` in the manifest, else ``known``
    (the record's name for it), else :func:`generated`."""
    return named or known or generated(vm, disk)


def disk_of(vm: str, volume: str) -> str:
    """A disk's name in a shape, from its volume: libvirt keeps no disk names.

    ``<vm>.<disk>.qcow2`` (the generated name) and ``<vm>-<disk>.qcow2`` (the one
    installations made before) give ``<disk>``; any other volume, such as one
    named in a manifest with ``volume:``, stands for itself.
    """
    for prefix in (f"{vm}.", f"{vm}-"):
        if volume.startswith(prefix) and volume.endswith(SUFFIX):
            disk = volume[len(prefix) : -len(SUFFIX)]
            if disk and "." not in disk:  # a disk name is a DNS label
                return disk
    return volume
