"""Label selectors, global options after the command, and saved-plan digests: pure logic."""

from __future__ import annotations

import dataclasses

import pytest

from reconciler import errors
from reconciler.cli import main
from reconciler.models import kinds, observed, selectors
from reconciler.planning import fingerprint


@pytest.mark.parametrize(
    ("text", "labels", "expected"),
    [
        ("app=web", {"app": "web"}, True),
        ("app==web", {"app": "db"}, False),
        ("app!=web", {}, True),
        ("app!=web", {"app": "web"}, False),
        ("app in (web, db)", {"app": "db"}, True),
        ("app notin (web,db)", {"app": "x"}, True),
        ("app notin (web,db)", {"app": "web"}, False),
        ("app", {"app": ""}, True),
        ("!app", {"app": "web"}, False),
        ("app=web,!legacy,env in (a,b)", {"app": "web", "env": "b"}, True),
        ("app=web,!legacy", {"app": "web", "legacy": "1"}, False),
        ("infinibay.io/team=x", {"infinibay.io/team": "x"}, True),
        ("", {"anything": "goes"}, True),
    ],
)
def test_a_selector_matches_as_kubectl_does(
    text: str, labels: dict[str, str], expected: bool
) -> None:
    assert selectors.parse(text).matches(labels) is expected


@pytest.mark.parametrize("text", ["app=(x", "app in ()", "a,,b", "bad key=x", "app=web)", "a=b c"])
def test_a_malformed_selector_is_a_usage_error(text: str) -> None:
    with pytest.raises(errors.UsageError, match="selector"):
        selectors.parse(text)


def test_global_options_after_the_command_move_before_it() -> None:
    commands = {"get", "plan"}
    assert main.hoist_globals(["get", "vm", "--db", "sqlite:///x", "-v"], commands) == [
        "--db",
        "sqlite:///x",
        "-v",
        "get",
        "vm",
    ]
    assert main.hoist_globals(["-c", "get", "plan", "-f", "d", "--log-format=json"], commands) == [
        "-c",
        "get",
        "--log-format=json",
        "plan",
        "-f",
        "d",
    ]
    assert main.hoist_globals(["get", "vm", "--", "-v"], commands) == ["get", "vm", "--", "-v"]


_SHAPE = observed.VmShape(
    1,
    64,
    next(iter(kinds.Firmware)),
    next(iter(kinds.Machine)),
    next(iter(kinds.GraphicsType)),
    "",
    (),
    (),
    False,
)


def _domain(
    name: str, installation: str | None, power: kinds.PowerState
) -> observed.ObservedDomain:
    owner = observed.Ownership("VirtualMachine", name, installation, "h") if installation else None
    return observed.ObservedDomain(name, "uuid-" + name, owner, _SHAPE, None, power, None)


def test_the_world_digest_ignores_what_a_plan_is_not_about() -> None:
    from reconciler.models import desired

    mine = _domain("web", "me", kinds.PowerState.STOPPED)
    world = observed.World(domains={"web": mine})
    base = fingerprint.world(world, desired.DesiredState(), [], "me")
    neighbour = _domain("other", "them", kinds.PowerState.RUNNING)
    crowded = observed.World(domains={"web": mine, "other": neighbour})
    assert fingerprint.world(crowded, desired.DesiredState(), [], "me") == base
    started = observed.World(
        domains={"web": dataclasses.replace(mine, power=kinds.PowerState.RUNNING)}
    )
    assert fingerprint.world(started, desired.DesiredState(), [], "me") != base


def test_a_volume_allocation_does_not_change_a_digest() -> None:
    volume = observed.ObservedVolume("p", "v", "/p/v", 10, None, allocation=1)
    grown = dataclasses.replace(volume, allocation=5)
    assert fingerprint.digest(volume) == fingerprint.digest(grown)
    assert fingerprint.digest(volume) != fingerprint.digest(
        dataclasses.replace(volume, capacity=11)
    )
