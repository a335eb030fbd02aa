"""Storage pools (kind StoragePool) and their volumes.

Each function takes the connection to use now (``conn``, a ``virConnect``);
every libvirt call runs inside :func:`reconciler.hypervisor.connection.calling`.
A pool's directory is also what maps a domain's file disk back onto a volume
(:func:`directories`), so pools are observed before domains.
"""

from __future__ import annotations

import contextlib
import os
import posixpath
from collections.abc import Collection, Iterable, Iterator
from typing import Any

import libvirt
from lxml import etree

from reconciler import errors
from reconciler.hypervisor import connection, projection, xml
from reconciler.models import observed

__all__ = [
    "create_volume",
    "define",
    "definition",
    "delete_volume",
    "directories",
    "directories_of",
    "grow_volume",
    "lookup",
    "observe",
    "observe_pool",
    "set_autostart",
    "start",
    "undefine",
    "volume",
]


# --- observation -------------------------------------------------------------


def observe_pool(
    pool: Any, *, active: bool, autostart: bool, refresh: bool = False, with_volumes: bool = True
) -> observed.ObservedPool | None:
    """One pool and its volumes (unless not ``with_volumes``).

    ``None`` when the pool was undefined since the listing.
    """
    try:
        uuid, shape = projection.parse_pool(pool.XMLDesc(0), autostart=autostart)
        volumes: dict[str, observed.ObservedVolume] = {}
        if active and refresh:
            with contextlib.suppress(libvirt.libvirtError):
                pool.refresh(0)
        if active and with_volumes:
            try:
                listed = pool.listAllVolumes(0)
            except libvirt.libvirtError as exc:
                # Stopped between the listing and the read (a shared host): it is seen
                # as inactive now, as the next listing would show it.
                if exc.get_error_code() != libvirt.VIR_ERR_OPERATION_INVALID or pool.isActive():
                    raise
                listed, active = [], False
            for vol in listed:
                with contextlib.suppress(libvirt.libvirtError):
                    parsed = projection.parse_volume(vol.XMLDesc(0), pool.name())
                    volumes[parsed.name] = parsed
    except libvirt.libvirtError as exc:
        if exc.get_error_code() == libvirt.VIR_ERR_NO_STORAGE_POOL:
            return None  # undefined between the listing and the read (a shared host)
        raise
    return observed.ObservedPool(
        name=pool.name(), uuid=uuid, shape=shape, active=active, volumes=volumes
    )


def observe(
    conn: Any, *, refresh: Collection[str] = (), volumes: Collection[str] | None = None
) -> dict[str, observed.ObservedPool]:
    """Every pool with its volumes; only those named in ``refresh`` are rescanned.

    ``volumes``, when given, names the pools whose volumes are listed; the
    others are observed without any.

    Raises ``libvirtError``: the caller translates it for the whole pass.
    """
    list_pools = conn.listAllStoragePools
    active = connection.names(list_pools, libvirt.VIR_CONNECT_LIST_STORAGE_POOLS_ACTIVE)
    autostart = connection.names(list_pools, libvirt.VIR_CONNECT_LIST_STORAGE_POOLS_AUTOSTART)
    found = (
        observe_pool(
            pool,
            active=pool.name() in active,
            autostart=pool.name() in autostart,
            refresh=pool.name() in refresh,
            with_volumes=volumes is None or pool.name() in volumes,
        )
        for pool in list_pools(0)
    )
    return {p.name: p for p in found if p is not None}


def directories_of(pools: Iterable[observed.ObservedPool]) -> dict[str, str]:
    """Pool directory -> pool name, of pools already observed."""
    return {posixpath.normpath(p.shape.path): p.name for p in pools}


def directories(conn: Any, uri: str) -> dict[str, str]:
    """Pool directory -> pool name, for mapping file disks back onto volumes."""
    with connection.calling("list the pools of", uri):
        found = {}
        for pool in conn.listAllStoragePools(0):
            with contextlib.suppress(libvirt.libvirtError):
                _, shape = projection.parse_pool(pool.XMLDesc(0), autostart=False)
                found[posixpath.normpath(shape.path)] = pool.name()
        return found


# --- the kind's handler: definition, define, undefine --------------------------


def lookup(conn: Any, name: str) -> Any:
    with connection.calling("look up", f"pool {name}"):
        return conn.storagePoolLookupByName(name)


def definition(conn: Any, name: str) -> str:
    pool = lookup(conn, name)
    with connection.calling("read the definition of", f"pool {name}"):
        return str(pool.XMLDesc(libvirt.VIR_STORAGE_XML_INACTIVE))


def define(conn: Any, name: str, document: str) -> str:
    with connection.calling("define", f"pool {name}"):
        pool = conn.storagePoolDefineXML(document, 0)
        return str(pool.UUIDString())


def undefine(conn: Any, name: str) -> None:
    pool = lookup(conn, name)
    with connection.calling("undefine", f"pool {name}"):
        if pool.isActive():
            pool.destroy()
        pool.undefine()


# --- state and autostart --------------------------------------------------------


def start(conn: Any, name: str) -> None:
    pool = lookup(conn, name)
    with connection.calling("start", f"pool {name}"):
        if not pool.isActive():
            pool.build(0)
            pool.create(0)


def set_autostart(conn: Any, name: str, autostart: bool) -> None:
    pool = lookup(conn, name)
    with connection.calling("set autostart of", f"pool {name}"):
        pool.setAutostart(int(autostart))


# --- volumes ----------------------------------------------------------------------


def _contained(path: str, directory: str, what: str) -> None:
    """Refuse ``path`` unless it resolves to a regular file inside ``directory``."""
    real, root = os.path.realpath(path), os.path.realpath(directory)
    if not directory or os.path.commonpath([real, root]) != root or not os.path.isfile(real):
        raise errors.RefusedError(
            f"{what} is not a regular file inside the pool's directory {root!r} "
            "once symlinks are resolved; refusing to use it as a backing file"
        )


def create_volume(
    conn: Any,
    pool: str,
    name: str,
    capacity: int,
    *,
    backing: str | None = None,
    backing_pool: str | None = None,
) -> observed.ObservedVolume:
    """Create a qcow2 volume; over ``backing``, a volume of ``backing_pool`` (default ``pool``).

    The backing file must be a regular file inside the image pool's directory
    once symlinks are resolved, checked now rather than at validation: a
    volume in a pool can be a symlink to any host file.
    """
    storage = lookup(conn, pool)
    backing_path = backing_format = None
    if backing is not None:
        source = backing_pool or pool
        images = lookup(conn, source) if source != pool else storage
        with connection.calling("look up", f"image {backing} in pool {source}"):
            image = images.storageVolLookupByName(backing)
            backing_path = image.path()
            image_format = etree.fromstring(image.XMLDesc(0).encode()).find("target/format")
            backing_format = image_format.get("type") if image_format is not None else None
            directory = etree.fromstring(images.XMLDesc(0).encode()).findtext("target/path")
        _contained(backing_path, directory or "", f"image {backing} in pool {source}")
    document = xml.render_volume(
        name, capacity, backing_path=backing_path, backing_format=backing_format or "qcow2"
    )
    with connection.calling("create", f"volume {pool}/{name}"):
        vol = storage.createXML(document, 0)
        return projection.parse_volume(vol.XMLDesc(0), pool)


def volume(conn: Any, pool: str, name: str) -> observed.ObservedVolume:
    storage = lookup(conn, pool)
    with connection.calling("look up", f"volume {pool}/{name}"):
        return projection.parse_volume(storage.storageVolLookupByName(name).XMLDesc(0), pool)


def grow_volume(
    conn: Any, pool: str, name: str, capacity: int, *, domain: str | None = None
) -> None:
    """Grow a volume; through the running domain when there is one, so the guest sees it."""
    storage = lookup(conn, pool)
    with connection.calling("resize", f"volume {pool}/{name}"):
        vol = storage.storageVolLookupByName(name)
        dom = conn.lookupByName(domain) if domain is not None else None
        if dom is not None and dom.isActive():
            dom.blockResize(vol.path(), capacity, libvirt.VIR_DOMAIN_BLOCK_RESIZE_BYTES)
        else:
            vol.resize(capacity, 0)


_CHUNK = 256 << 10


def upload_volume(conn: Any, pool: str, name: str, data: bytes) -> None:
    """Create a raw volume holding ``data``, sent through libvirt's upload stream.

    The stream goes over the libvirt connection, so this works on a remote host as
    well; a failed upload leaves no half-written volume behind.
    """
    view = memoryview(data)
    chunks = (bytes(view[offset : offset + _CHUNK]) for offset in range(0, len(data), _CHUNK))
    write_volume(conn, pool, name, len(data), "raw", chunks)


def read_volume(conn: Any, pool: str, name: str) -> Iterator[bytes]:
    """The volume's file, chunk by chunk, through libvirt's download stream.

    The stream goes over the libvirt connection, so a volume leaves a remote
    host without any other channel (a cold move, SPEC §10).
    """
    storage = lookup(conn, pool)
    with connection.calling("download", f"volume {pool}/{name}"):
        vol = storage.storageVolLookupByName(name)
        stream = conn.newStream(0)
        vol.download(stream, 0, 0, 0)
    finished = False
    try:
        while True:
            with connection.calling("download", f"volume {pool}/{name}"):
                chunk = stream.recv(_CHUNK)
            if not chunk:
                break
            yield chunk
        with connection.calling("download", f"volume {pool}/{name}"):
            stream.finish()
        finished = True
    finally:
        if not finished:
            with contextlib.suppress(libvirt.libvirtError):
                stream.abort()


def write_volume(
    conn: Any, pool: str, name: str, capacity: int, volume_format: str, chunks: Iterable[bytes]
) -> None:
    """Create volume ``pool/name`` as exactly the bytes of ``chunks``, through the upload stream.

    The file is created empty and then filled: libvirt's upload writes over a
    file without truncating it, so a volume created at its format and capacity
    first (a fresh qcow2 is some 200 KiB of metadata) would keep whatever the
    bytes did not reach, and a compact image would never read back the same.
    Once written, the pool is refreshed and libvirt's reading of the file must
    give ``volume_format`` and ``capacity``. A failed write leaves no
    half-written volume behind.
    """
    storage = lookup(conn, pool)
    document = xml.render_volume(name, 0, volume_format="raw")
    with connection.calling("create", f"volume {pool}/{name}"):
        vol = storage.createXML(document, 0)
    try:
        with connection.calling("upload", f"volume {pool}/{name}"):
            stream = conn.newStream(0)
            vol.upload(stream, 0, 0, 0)
            try:
                for chunk in chunks:
                    view = memoryview(chunk)
                    while view:
                        sent = stream.send(bytes(view))
                        view = view[sent:]
                stream.finish()
            except BaseException:
                with contextlib.suppress(libvirt.libvirtError):
                    stream.abort()
                raise
        with connection.calling("refresh", f"pool {pool}"):
            storage.refresh(0)
            vol = storage.storageVolLookupByName(name)
            found = etree.fromstring(vol.XMLDesc(0).encode())
        kind = found.find("target/format")
        written = kind.get("type", "raw") if kind is not None else "raw"
        size = int(found.findtext("capacity") or 0)
        # Raw bytes that hold an ISO 9660 image are what libvirt's probe calls "iso".
        same = written == volume_format or {written, volume_format} == {"raw", "iso"}
        if not same or size != capacity:
            raise errors.HypervisorError(
                "write",
                f"volume {pool}/{name}",
                f"it reads back as {written} of {size} bytes, not {volume_format} of {capacity}",
            )
    except BaseException:
        with contextlib.suppress(libvirt.libvirtError):
            vol.delete(0)
        raise


def volume_format(conn: Any, pool: str, name: str) -> str:
    """The volume's format as libvirt reports it (``qcow2``, ``raw``)."""
    storage = lookup(conn, pool)
    with connection.calling("look up", f"volume {pool}/{name}"):
        document = etree.fromstring(storage.storageVolLookupByName(name).XMLDesc(0).encode())
    found = document.find("target/format")
    return found.get("type", "raw") if found is not None else "raw"


def delete_volume(conn: Any, pool: str, name: str) -> None:
    storage = lookup(conn, pool)
    with connection.calling("delete", f"volume {pool}/{name}"):
        storage.storageVolLookupByName(name).delete(0)
