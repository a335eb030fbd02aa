"""First-boot seed ISOs, built in-process with pycdlib (no mkisofs on the host).

cloud-init's NoCloud source finds the seed by its volume label ``cidata`` and
reads ``user-data``, ``meta-data`` and ``network-config`` by those names, which
plain ISO 9660 cannot spell: the names are written as Joliet and Rock Ridge
names, as ``genisoimage -J -r`` would. Windows Setup reads ``Autounattend.xml``
from the root of the drive through Joliet.

pycdlib is imported by the functions that use it: only a pass that builds or
reads a seed pays for it, not every command that opens the hypervisor.
"""

from __future__ import annotations

import io
import re

from reconciler.models import seeds

__all__ = ["build", "read"]


def _iso9660(name: str, taken: set[str]) -> str:
    """An 8.3 ISO 9660 level-1 name for ``name``, unique in the directory."""
    stem, _, ext = name.upper().rpartition(".")
    if not stem:
        stem, ext = ext, ""
    stem = re.sub(r"[^A-Z0-9_]", "_", stem)[:8] or "FILE"
    ext = re.sub(r"[^A-Z0-9_]", "_", ext)[:3]
    candidate, n = stem, 0
    while f"{candidate}.{ext}" in taken:
        n += 1
        candidate = f"{stem[: 8 - len(str(n))]}{n}"
    taken.add(f"{candidate}.{ext}")
    return f"/{candidate}.{ext};1"


def build(seed: seeds.Seed) -> bytes:
    """The ISO image of ``seed``: its files at the root, under its volume label."""
    import pycdlib

    iso = pycdlib.PyCdlib()
    iso.new(interchange_level=1, vol_ident=seed.label, joliet=3, rock_ridge="1.09")
    taken: set[str] = set()
    for name, data in seed.files:
        iso.add_fp(
            io.BytesIO(data),
            len(data),
            iso_path=_iso9660(name, taken),
            rr_name=name,
            joliet_path=f"/{name}",
        )
    out = io.BytesIO()
    iso.write_fp(out)
    iso.close()
    return out.getvalue()


def read(image: bytes) -> tuple[str, dict[str, bytes]]:
    """The volume label and files (by Joliet name) of an ISO image: what a guest sees."""
    import pycdlib

    iso = pycdlib.PyCdlib()
    iso.open_fp(io.BytesIO(image))
    try:
        label = iso.pvd.volume_identifier.decode().strip()
        files = {}
        for child in iso.list_children(joliet_path="/"):
            if child.is_dot() or child.is_dotdot() or child.is_dir():
                continue
            name = child.file_identifier().decode("utf-16-be")
            out = io.BytesIO()
            iso.get_file_from_iso_fp(out, joliet_path=f"/{name}")
            files[name] = out.getvalue()
        return label, files
    finally:
        iso.close()
