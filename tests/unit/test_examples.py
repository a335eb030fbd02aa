"""The shipped manifests are valid, documented and editor-friendly.

Every directory under ``examples/`` and the stock ``manifests/`` must load with
the real loader (the same call ``infinibay validate -f DIR`` makes, also run
here as a subprocess, exactly as the READMEs say), carry a README, and start
each file with the ``yaml-language-server`` modeline pointing at the generated
``schemas/all.json``. A few facts the READMEs promise are checked against the
loaded state, so the prose and the manifests cannot drift apart.
"""

from __future__ import annotations

import ipaddress
import os
import subprocess
import sys
from pathlib import Path

import pytest

from reconciler.manifests import loader
from reconciler.models import desired, kinds

ROOT = Path(__file__).resolve().parents[2]
SCHEMA = ROOT / "schemas" / "all.json"
EXAMPLES = sorted(p for p in (ROOT / "examples").iterdir() if p.is_dir())
MANIFEST_DIRS = [*EXAMPLES, ROOT / "manifests"]
LIBVIRT_DEFAULT_SUBNET = ipaddress.ip_network("192.168.122.0/24")
MANIFEST_FILES = sorted(
    f for d in MANIFEST_DIRS for f in d.rglob("*") if f.suffix in (".yaml", ".yml")
)


def _rel(path: Path) -> str:
    return str(path.relative_to(ROOT))


def _load(directory: Path) -> desired.DesiredState:
    return loader.load([str(directory)])


def test_there_are_examples_to_check() -> None:
    assert {p.name for p in EXAMPLES} >= {"quickstart", "classroom"}


@pytest.mark.parametrize("directory", MANIFEST_DIRS, ids=_rel)
def test_manifest_directory_loads_and_validates(directory: Path) -> None:
    state = _load(directory)
    assert len(state) > 0


@pytest.mark.parametrize("directory", MANIFEST_DIRS, ids=_rel)
def test_manifest_directory_validates_through_the_cli(directory: Path) -> None:
    infinibay = Path(sys.executable).with_name("infinibay")
    result = subprocess.run(
        [str(infinibay), "validate", "-f", f"{_rel(directory)}/"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, "INFINIBAY_DATABASE_URL": "sqlite://"},
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert "valid" in result.stdout


@pytest.mark.parametrize("directory", MANIFEST_DIRS, ids=_rel)
def test_manifest_directory_has_a_readme(directory: Path) -> None:
    readme = directory / "README.md"
    assert readme.is_file()
    assert readme.read_text().startswith("# ")


@pytest.mark.parametrize("path", MANIFEST_FILES, ids=_rel)
def test_manifest_file_starts_with_the_schema_modeline(path: Path) -> None:
    expected = f"# yaml-language-server: $schema={os.path.relpath(SCHEMA, path.parent)}"
    assert path.read_text().splitlines()[0] == expected


def test_quickstart_declares_one_running_and_one_stopped_vm() -> None:
    state = _load(ROOT / "examples" / "quickstart")
    power = {name: vm.power for name, vm in state.effective_vms.items()}
    assert power == {"qs-web": kinds.PowerState.RUNNING, "qs-db": kinds.PowerState.STOPPED}
    for vm in state.effective_vms.values():
        assert vm.memory == 64 << 20
        assert [(d.size, d.pool) for d in vm.disks] == [(16 << 20, "quickstart")]
        assert [n.network for n in vm.nics] == ["quickstart"]


def test_classroom_desks_have_distinct_macs_with_static_leases() -> None:
    state = _load(ROOT / "examples" / "classroom")
    desks = state.effective_vms
    assert sorted(desks) == [f"desk-{i:02d}" for i in range(1, 11)]
    assert {vm.template for vm in desks.values()} == {"classroom-desktop"}
    network = state.networks["classroom"].manifest
    assert isinstance(network, kinds.Network)
    assert network.spec.ipv4 is not None
    leases = {host.mac: host.name for host in network.spec.ipv4.hosts}
    for name, vm in desks.items():
        (nic,) = vm.nics
        assert leases[nic.mac or ""] == name


def test_stock_network_cannot_clash_with_libvirts_default_network() -> None:
    state = _load(ROOT / "manifests")
    assert "default" not in state.networks
    for loaded in state.networks.values():
        network = loaded.manifest
        assert isinstance(network, kinds.Network)
        assert network.spec.bridge not in (None, "virbr0")
        assert network.spec.ipv4 is not None
        assert not network.spec.ipv4.address.network.overlaps(LIBVIRT_DEFAULT_SUBNET)


def test_stock_templates_include_the_old_seeded_basic_template() -> None:
    state = _load(ROOT / "manifests")
    assert set(state.templates) >= {"basic", "linux-small", "windows-desktop"}
    basic = state.templates["basic"].manifest
    assert isinstance(basic, kinds.Template)
    assert (basic.spec.cpus, basic.spec.memory) == (6, 24 << 30)
    assert [d.size for d in basic.spec.disks] == [70 << 30]
