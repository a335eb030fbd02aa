"""How sharded daemons deal the hosts among themselves (pure)."""

from __future__ import annotations

from reconciler.daemon import leader


def test_the_deal_is_the_same_for_every_member_and_balanced() -> None:
    hosts = [f"h{i}" for i in range(7)]
    dealt = leader.assign(hosts, ["m2", "m1", "m3"])
    assert dealt == leader.assign(list(reversed(hosts)), ["m3", "m2", "m1"])
    counts = sorted(list(dealt.values()).count(m) for m in ("m1", "m2", "m3"))
    assert counts == [2, 2, 3]
    assert leader.assign(hosts, []) == {}
