"""``reclaimPolicy: Delete`` is the consent to delete a volume with its VM; nothing else is.

Every case runs the installed ``infinibay`` as a real process against the real
libvirtd. A VM pruned (``apply --prune``) or deleted (``delete``) takes its
``Delete`` volumes with it without ``--allow-data-loss`` (event
``VolumeDeleted``) and leaves its ``Retain`` volumes (``VolumeRetained``); a
VM whose volume is already gone destroys nothing; detaching a disk still needs
the flag, whatever its reclaim policy.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import libvirt
import pytest

from reconciler.models import record
from tests.integration.harness import Harness

pytestmark = pytest.mark.integration


def _base(h: Harness) -> list[dict[str, Any]]:
    return [h.pool(), h.network(), h.template()]


def _disk(h: Harness, name: str = "root", reclaim: str = "Delete") -> dict[str, Any]:
    return {"name": name, "size": "16MiB", "pool": h.name("pool"), "reclaimPolicy": reclaim}


def _volume(h: Harness, vm: str, disk: str = "root") -> Path:
    return h.pool_dir / f"{h.name(vm)}.{disk}.qcow2"


def _reasons(h: Harness, vm: str) -> list[str]:
    with h.store() as store:
        return [e.reason for e in store.events(record.ResourceKey("VirtualMachine", h.name(vm)))]


def _ok(done: Any) -> None:
    assert done.returncode == 0, done.stdout + done.stderr


def test_prune_deletes_a_reclaim_delete_volume_without_the_flag(h: Harness) -> None:
    scratch = h.vm("scratch", powerState="Stopped", disks=[_disk(h)])
    kept = h.vm("kept", powerState="Stopped", disks=[_disk(h, reclaim="Retain")])
    h.write(*_base(h), scratch, kept)
    _ok(h.cli("apply", "-f", str(h.workdir)))
    assert _volume(h, "scratch").is_file() and _volume(h, "kept").is_file()
    h.write(*_base(h))

    plan = h.cli("plan", "-f", str(h.workdir), "--prune")
    assert plan.returncode == 2, plan.stdout + plan.stderr
    assert f"- virtualmachine/{h.name('scratch')} (delete, data-loss)" in plan.stdout
    assert (
        f"volume {h.name('pool')}/{_volume(h, 'scratch').name}: delete (reclaimPolicy Delete)"
        in plan.stdout
    )

    done = h.cli("apply", "-f", str(h.workdir), "--prune", "--shutdown-timeout", "1")
    _ok(done)
    assert "--allow-data-loss" not in done.stdout + done.stderr
    assert not h.has_domain("scratch") and not h.has_domain("kept")
    assert not _volume(h, "scratch").exists()
    assert _volume(h, "kept").is_file()
    assert "VolumeDeleted" in _reasons(h, "scratch")
    assert "ApplyRefused" not in _reasons(h, "scratch")
    assert "VolumeRetained" in _reasons(h, "kept")
    assert "VolumeDeleted" not in _reasons(h, "kept")
    assert h.cli("plan", "-f", str(h.workdir), "--prune").returncode == 0


def test_delete_of_a_vm_takes_its_reclaim_delete_volume_without_the_flag(h: Harness) -> None:
    h.write(*_base(h), h.vm("web", powerState="Stopped", disks=[_disk(h)]))
    _ok(h.cli("apply", "-f", str(h.workdir)))

    done = h.cli("delete", "vm", h.name("web"), "--shutdown-timeout", "1")

    _ok(done)
    assert f"virtualmachine/{h.name('web')} deleted" in done.stdout
    assert not h.has_domain("web")
    assert not _volume(h, "web").exists()
    assert "VolumeDeleted" in _reasons(h, "web")


def test_a_vm_whose_volume_is_already_gone_is_pruned_without_the_flag(h: Harness) -> None:
    h.write(*_base(h), h.vm("web", powerState="Stopped", disks=[_disk(h)]))
    _ok(h.cli("apply", "-f", str(h.workdir)))
    pool = h.conn.storagePoolLookupByName(h.name("pool"))
    pool.storageVolLookupByName(_volume(h, "web").name).delete()
    h.write(*_base(h))

    plan = h.cli("plan", "-f", str(h.workdir), "--prune")
    assert plan.returncode == 2, plan.stdout + plan.stderr
    assert f"- virtualmachine/{h.name('web')} (delete, live)" in plan.stdout
    assert "already gone" in plan.stdout

    _ok(h.cli("apply", "-f", str(h.workdir), "--prune", "--shutdown-timeout", "1"))
    assert not h.has_domain("web")


def test_detaching_a_reclaim_delete_disk_still_needs_the_flag(h: Harness) -> None:
    both = [_disk(h), _disk(h, "data")]
    h.write(*_base(h), h.vm("web", powerState="Stopped", disks=both))
    _ok(h.cli("apply", "-f", str(h.workdir)))
    data = _volume(h, "web", "data")
    before = data.stat()
    h.write(*_base(h), h.vm("web", powerState="Stopped", disks=[_disk(h)]))

    refused = h.cli("apply", "-f", str(h.workdir))

    assert refused.returncode == 1, refused.stdout + refused.stderr
    assert "--allow-data-loss" in refused.stdout + refused.stderr
    after = data.stat()
    assert (after.st_ino, after.st_mtime_ns) == (before.st_ino, before.st_mtime_ns)
    disks = h.domain_xml("web").findall("devices/disk")
    assert len(disks) == 2
    _ok(h.cli("apply", "-f", str(h.workdir), "--allow-data-loss"))
    assert len(h.domain_xml("web").findall("devices/disk")) == 1
    assert h.state("web") == libvirt.VIR_DOMAIN_SHUTOFF
