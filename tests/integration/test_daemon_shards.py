"""Sharded daemons (SPEC §10): two ``--shard`` daemons on one PostgreSQL share two real hosts.

The hosts are the system libvirtd and the namespaced second one of
``scripts/lib/second-libvirtd.sh``. Each daemon holds one host; killed with
``kill -9``, its host is taken by the other within the lease. That no host
was ever acted on by two daemons is read from the record afterwards: every
sharded run names its daemon and the hosts it held with their lease epochs,
and every VM's events belong to runs that held that VM's host.
"""

from __future__ import annotations

import itertools
import signal
import time
from collections.abc import Callable
from typing import Any

import libvirt
import pytest

from reconciler.daemon import leader
from reconciler.store import store as store_module
from tests.integration.harness import Harness, doc
from tests.integration.test_daemon import Daemon, dump, spawn, until

__all__ = ["spawn"]

pytestmark = pytest.mark.integration

LEASE_S = 3.0


def _running(conn: libvirt.virConnect, name: str) -> bool:
    try:
        return bool(conn.lookupByName(name).state()[0] == libvirt.VIR_DOMAIN_RUNNING)
    except libvirt.libvirtError:
        return False


def _hosts(daemon: Daemon) -> list[str]:
    ready = daemon.readyz()
    return list(ready.get("hosts") or [])


@pytest.mark.parametrize("db_url", ["postgresql"], indirect=True)
def test_two_sharded_daemons_hold_one_host_each_and_one_takes_over_a_killed_ones_host(
    h: Harness,
    libvirt_uri2: str,
    libvirt_conn2: libvirt.virConnect,
    libvirt_cleanup2: None,
    spawn: Callable[..., Daemon],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("INFINIBAY_HOST_URIS", f"{h.uri} {libvirt_uri2}")
    hv1, hv2 = h.name("hv1"), h.name("hv2")
    conns = {hv1: h.conn, hv2: libvirt_conn2}
    vms = {h.name(f"a{i}"): hv1 for i in range(2)} | {h.name(f"b{i}"): hv2 for i in range(2)}
    docs: list[dict[str, Any]] = [
        doc("Host", hv1, {"uri": h.uri}),
        doc("Host", hv2, {"uri": libvirt_uri2}),
        *(
            doc(
                "VirtualMachine",
                vm,
                {"cpus": 1, "memory": "64MiB", "graphics": {"type": "none"}, "host": host},
            )
            for vm, host in vms.items()
        ),
    ]
    (h.workdir / "fleet.yaml").write_text(dump(*docs))
    args = ("--source", str(h.workdir), "--interval", "10m", "--lease", f"{LEASE_S:g}s", "--shard")

    first = spawn(*args)
    until(lambda: first.answering() and len(_hosts(first)) == 2, 60, "one daemon holds both", first)
    second = spawn(*args)
    until(
        lambda: len(_hosts(first)) == 1 and len(_hosts(second)) == 1,
        60,
        "each daemon holds one host",
        second,
    )
    held = {_hosts(first)[0]: first, _hosts(second)[0]: second}
    assert set(held) == {hv1, hv2}
    assert {first.readyz()["role"], second.readyz()["role"]} == {"shard"}
    until(
        lambda: all(_running(conns[host], vm) for vm, host in vms.items()),
        90,
        "every VM runs on its host",
        second,
    )

    def holders() -> dict[str, str]:
        with h.store() as store:
            return {
                r.key.name: str(r.status.get("holder"))
                for r in store.resources("Host")
                if r.key.name in (hv1, hv2)
            }

    until(
        lambda: all(f"pid {held[host].proc.pid} " in holders()[host] for host in held),
        60,
        "each host's status names its holder",
        second,
    )
    listed = h.sh("get", "hosts")
    assert listed.exit_code == 0, listed.output
    assert f"pid {held[hv2].proc.pid}" in listed.stdout, listed.output

    victim, survivor = held[hv2], held[hv1]
    victim.proc.send_signal(signal.SIGKILL)
    victim.proc.wait(10)
    killed = time.monotonic()
    until(lambda: set(_hosts(survivor)) == {hv1, hv2}, LEASE_S + 3, "the take-over", survivor)
    took = time.monotonic() - killed
    assert took < LEASE_S + 3

    # The survivor acts on the host it took: a VM destroyed there runs again.
    gone = h.name("b0")
    libvirt_conn2.lookupByName(gone).destroy()
    until(lambda: _running(libvirt_conn2, gone), 60, "b0 runs again on hv2", survivor)
    # Once more, when nothing but hv2's lifecycle event can wake it (resync: 10 min):
    # the survivor follows the events of the host it took.
    libvirt_conn2.lookupByName(h.name("b1")).destroy()
    until(lambda: _running(libvirt_conn2, h.name("b1")), 20, "b1 runs again on hv2", survivor)
    until(lambda: f"pid {survivor.proc.pid} " in holders()[hv2], 30, "hv2's holder", survivor)
    assert survivor.terminate() == 0

    with h.store() as store:
        runs = [r for r in store.runs(limit=10_000) if r.holder is not None]
        events = store.events(limit=100_000)
    assert len({r.holder for r in runs}) == 2
    # One daemon per lease epoch of a host, and the epochs follow each other in time.
    for host in (hv1, hv2):
        acting = sorted((r for r in runs if r.hosts and host in r.hosts), key=lambda r: r.id)
        assert acting, f"no run held {host}"
        by_epoch: dict[int, set[str]] = {}
        for run in acting:
            assert run.hosts is not None and run.holder is not None
            by_epoch.setdefault(run.hosts[host], set()).add(run.holder)
        assert all(len(who) == 1 for who in by_epoch.values()), (host, by_epoch)
        epochs = [run.hosts[host] for run in acting if run.hosts is not None]
        assert epochs == sorted(epochs), (host, epochs)
        if host == hv2:  # the killed daemon's, then the survivor's
            assert len(set().union(*by_epoch.values())) == 2, (host, by_epoch)
        # Runs of different daemons on one host never overlap in time.
        for before, after in itertools.pairwise(acting):
            if before.holder != after.holder:
                assert before.finished_at is not None
                assert before.finished_at <= after.started_at, (host, before, after)
    # Every VM's events were written by runs that held the VM's host.
    by_id = {int(r.id): r for r in runs}
    checked = 0
    for event in events:
        if event.key.kind != "VirtualMachine" or event.key.name not in vms:
            continue
        owner = by_id.get(event.run_id or -1)
        assert owner is not None and owner.hosts is not None, event
        assert vms[event.key.name] in owner.hosts, (event, owner)
        checked += 1
    assert checked >= len(vms)


@pytest.mark.parametrize("db_url", ["postgresql"], indirect=True)
def test_sharding_deals_the_hosts_and_a_member_that_leaves_hands_its_hosts_over(
    db_url: str,
) -> None:
    hosts = ["hv-a", "hv-b", "hv-c"]
    with store_module.Store.open(db_url) as a, store_module.Store.open(db_url) as b:
        first = leader.Sharding(a, 2, lambda: hosts)
        second = leader.Sharding(b, 2, lambda: hosts)
        assert first.claim() is True and first.held == frozenset(hosts)
        second.claim()  # a member now: the deal gives it some, but they are not free yet
        first.tick()  # hands over what the deal gives the second member
        assert second.tick() is True
        assert first.held | second.held == frozenset(hosts)
        assert not first.held & second.held
        assert {len(first.held), len(second.held)} == {1, 2}
        assert a.host_holders(hosts).keys() == set(hosts)

        second.resign()
        assert first.tick() is True
        assert first.held == frozenset(hosts)
        assert not b.held_hosts()


@pytest.mark.parametrize("db_url", ["postgresql"], indirect=True)
def test_daemons_with_and_without_shard_never_act_on_one_record_at_once(db_url: str) -> None:
    hosts = ["hv-a", "hv-b"]
    with (
        store_module.Store.open(db_url) as a,
        store_module.Store.open(db_url) as b,
        store_module.Store.open(db_url) as c,
    ):
        sharded = leader.Sharding(a, 2, lambda: hosts)
        assert sharded.claim() is True
        plain = leader.Leadership(b, lease=2)
        assert plain.claim() is False and not plain.leading.is_set()  # yields to the shard
        assert b.leader() is None

        sharded.resign()
        assert plain.tick() is True and plain.leading.is_set()
        late = leader.Sharding(c, 2, lambda: hosts)
        assert late.claim() is False and not late.held  # a leader acts on every host
        assert not c.held_hosts()
