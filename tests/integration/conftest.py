"""The end-to-end harness as a fixture: one record, the real libvirtd, this test's prefix.

``h2`` is the same harness on the second hypervisor (tests/fixtures/second_libvirt.py).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import libvirt
import pytest

from tests.integration.harness import Harness


@pytest.fixture(autouse=True)
def _quick_shutdown(monkeypatch: pytest.MonkeyPatch) -> None:
    """Test guests boot nothing and never answer ACPI: a stop or delete that waits for
    one (60 s by default) waits 1 s here, unless a test passes --shutdown-timeout."""
    monkeypatch.setenv("INFINIBAY_SHUTDOWN_TIMEOUT", "1")


@pytest.fixture
def h(
    db_url: str,
    libvirt_uri: str,
    libvirt_conn: libvirt.virConnect,
    prefix: str,
    pool_dir: Path,
    tmp_path: Path,
) -> Iterator[Harness]:
    workdir = tmp_path / "manifests"
    workdir.mkdir()
    yield Harness(prefix, db_url, libvirt_uri, libvirt_conn, pool_dir, workdir)


@pytest.fixture
def h2(
    db_url: str,
    libvirt_uri2: str,
    libvirt_conn2: libvirt.virConnect,
    prefix: str,
    pool_dir: Path,
    libvirt_cleanup2: None,
    tmp_path: Path,
) -> Iterator[Harness]:
    workdir = tmp_path / "manifests-hv2"
    workdir.mkdir()
    yield Harness(prefix, db_url, libvirt_uri2, libvirt_conn2, pool_dir, workdir)
