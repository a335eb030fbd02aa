"""Spec hashes are stable across releases: new fields at their default change nothing.

The record keys a resource's generation, drift and history on the hash of its
dumped spec. The hashes below are what the first release recorded for these
manifests; a later field that is left at its default must not move them, or an
upgrade would show every resource as changed.
"""

from __future__ import annotations

from pathlib import Path

from reconciler.manifests import loader
from reconciler.models import kinds
from reconciler.planning import targets

MANIFESTS = """\
apiVersion: infinibay.io/v1alpha1
kind: StoragePool
metadata: {name: default}
spec: {path: /var/lib/infinibay/pools/default}
---
apiVersion: infinibay.io/v1alpha1
kind: Network
metadata: {name: lab}
spec:
  mode: nat
  ipv4: {address: 10.20.0.1/24, dhcp: {start: 10.20.0.100, end: 10.20.0.200}}
---
apiVersion: infinibay.io/v1alpha1
kind: Template
metadata: {name: small, labels: {category: linux}}
spec:
  cpus: 2
  memory: 2GiB
  graphics: {type: vnc, listen: 127.0.0.1}
  disks: [{name: root, size: 20GiB, pool: default}]
  networks: [{network: lab}]
---
apiVersion: infinibay.io/v1alpha1
kind: VirtualMachine
metadata: {name: web-1}
spec:
  template: small
  memory: 4GiB
  disks: [{name: root, size: 30GiB, reclaimPolicy: Delete}, {name: data, size: 1GiB}]
  networks: [{network: lab, mac: "52:54:00:12:34:56"}]
"""

FIRST_RELEASE = {
    "Network/lab": "57cc4a5721e48b20",
    "StoragePool/default": "95190cedc4a0fa4e",
    "Template/small": "ed48562da1827770",
    "VirtualMachine/web-1": "7b65ec12c22f6357",
}


def test_manifests_from_the_first_release_keep_their_recorded_spec_hash(tmp_path: Path) -> None:
    (tmp_path / "all.yaml").write_text(MANIFESTS)
    state = loader.load([str(tmp_path)])
    hashes = {}
    for loaded in state:
        vm = state.effective_vms[loaded.name] if loaded.kind is kinds.Kind.VIRTUAL_MACHINE else None
        hashes[f"{loaded.kind.value}/{loaded.name}"] = targets.spec_hash(
            targets.spec_document(loaded, vm)
        )
    assert hashes == FIRST_RELEASE


def test_a_new_field_set_away_from_its_default_does_change_the_hash(tmp_path: Path) -> None:
    (tmp_path / "all.yaml").write_text(
        MANIFESTS.replace(
            "spec: {path: /var/lib/infinibay/pools/default}",
            "spec: {path: /var/lib/infinibay/pools/default, images: true}",
        )
    )
    state = loader.load([str(tmp_path)])
    pool = state.pools["default"]
    assert (
        targets.spec_hash(targets.spec_document(pool, None)) != FIRST_RELEASE["StoragePool/default"]
    )
