"""Smoke tests: the real services the suite depends on are there and usable.

If one of these fails, every other integration failure is probably the same
cause: libvirtd not running, PostgreSQL binaries missing, or the host unable to
start a QEMU process. Each test proves one thing about the real service, never
about a fake.
"""

from __future__ import annotations

import socket
import time
from pathlib import Path

import libvirt
import psycopg
import pytest
from lxml import etree

from tests.fixtures import libvirt as libvirt_fixtures

pytestmark = pytest.mark.integration


def _psycopg_conninfo(sqlalchemy_url: str) -> str:
    """psycopg takes libpq URLs; SQLAlchemy's name the driver in the scheme."""
    scheme, sep, rest = sqlalchemy_url.partition("://")
    assert sep, f"not a URL: {sqlalchemy_url!r}"
    return f"{scheme.split('+')[0]}://{rest}"


def test_libvirt_daemon_answers_with_its_version_and_domain_list(
    libvirt_conn: libvirt.virConnect, libvirt_uri: str
) -> None:
    assert libvirt_conn.getURI() == libvirt_uri
    assert libvirt_conn.getLibVersion() >= 9_000_000
    assert libvirt_conn.getVersion() > 0, "the QEMU driver reports no hypervisor version"
    domains = libvirt_conn.listAllDomains()
    assert all(isinstance(d.name(), str) for d in domains)


def test_postgres_server_answers_select_version(postgres_server: object) -> None:
    with psycopg.connect(_psycopg_conninfo(str(postgres_server)), connect_timeout=10) as conn:
        row = conn.execute("SELECT version()").fetchone()
    assert row is not None
    assert row[0].startswith("PostgreSQL ")


def test_firmware_only_domain_is_defined_started_destroyed_and_undefined(
    libvirt_conn: libvirt.virConnect,
    libvirt_cleanup: None,
    prefix: str,
    domain_type: str,
) -> None:
    name = f"{prefix}fw"
    dom = libvirt_conn.defineXML(libvirt_fixtures.firmware_only_domain(name, domain_type))
    assert libvirt_conn.lookupByName(name).UUIDString() == dom.UUIDString()

    dom.create()
    deadline = time.monotonic() + 30
    while dom.state()[0] != libvirt.VIR_DOMAIN_RUNNING and time.monotonic() < deadline:
        time.sleep(0.2)
    assert dom.state()[0] == libvirt.VIR_DOMAIN_RUNNING
    live = etree.fromstring(dom.XMLDesc().encode())
    assert live.get("type") == domain_type

    dom.destroy()
    assert dom.state()[0] == libvirt.VIR_DOMAIN_SHUTOFF
    dom.undefine()
    with pytest.raises(libvirt.libvirtError) as missing:
        libvirt_conn.lookupByName(name)
    assert missing.value.get_error_code() == libvirt.VIR_ERR_NO_DOMAIN


def _link_exists(name: str) -> bool:
    """Ask the kernel of this network namespace, not a possibly stale /sys."""
    try:
        socket.if_nametoindex(name)
    except OSError:
        return False
    return True


def test_prefixed_network_pool_and_volume_are_created_then_removed_by_cleanup(
    libvirt_conn: libvirt.virConnect, prefix: str, pool_dir: Path
) -> None:
    bridge = libvirt_fixtures.bridge_name(prefix)
    net = libvirt_conn.networkDefineXML(libvirt_fixtures.isolated_network(f"{prefix}net", bridge))
    net.create()
    assert _link_exists(bridge)

    pool = libvirt_conn.storagePoolDefineXML(libvirt_fixtures.dir_pool(f"{prefix}pool", pool_dir))
    pool.create()
    vol = pool.createXML(libvirt_fixtures.qcow2_volume("disk.qcow2", 1))
    assert Path(vol.path()) == pool_dir / "disk.qcow2"
    assert vol.info()[1] == 1 << 20

    assert libvirt_fixtures.remove_prefixed(libvirt_conn, prefix) == []
    names = [n.name() for n in libvirt_conn.listAllNetworks()]
    names += [p.name() for p in libvirt_conn.listAllStoragePools()]
    assert not [n for n in names if n.startswith(prefix)]
    assert not _link_exists(bridge)
    assert not pool_dir.exists()
