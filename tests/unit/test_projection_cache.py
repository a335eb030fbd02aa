"""Observation projects a domain once per distinct reading: a resync of unchanged
domains parses nothing again, and any change of what a projection comes from does."""

from __future__ import annotations

import dataclasses

from reconciler.hypervisor import domains, xml
from reconciler.models import kinds, observed


def _reading(name: str = "web-1", cpus: int = 1) -> domains.DomainReading:
    shape = observed.VmShape(
        cpus=cpus,
        memory=32 << 20,
        firmware=kinds.Firmware.BIOS,
        machine=kinds.Machine.Q35,
        graphics_type=kinds.GraphicsType.VNC,
        graphics_listen="127.0.0.1",
        disks=(),
        nics=(),
        autostart=False,
    )
    owner = observed.Ownership("VirtualMachine", name, "inst", "hash")
    document = xml.render_domain(name, shape, domain_type="kvm", owner=owner)
    return domains.DomainReading(name, 5, False, document, None)


def test_an_unchanged_reading_is_projected_once() -> None:
    first = domains._project(_reading(), {})

    assert domains._project(_reading(), {}) is first
    assert first.shape.cpus == 1


def test_any_change_of_what_it_comes_from_projects_again() -> None:
    first = domains._project(_reading(), {})

    changed = [
        domains._project(_reading(cpus=2), {}),
        domains._project(dataclasses.replace(_reading(), autostart=True), {}),
        domains._project(dataclasses.replace(_reading(), state=1), {}),
        domains._project(_reading(), {"/pools/a": "a"}),
    ]

    assert all(c is not first for c in changed)
    assert changed[0].shape.cpus == 2 and changed[1].shape.autostart
    assert changed[2].power is kinds.PowerState.RUNNING


def test_the_cache_is_bounded_least_recently_used_first_out() -> None:
    cache = domains._Projections(2)
    one, two, three = (domains._project(_reading(f"vm-{i}"), {}) for i in range(3))
    keys = [domains._Projections.key(_reading(f"vm-{i}"), {}) for i in range(3)]
    cache.put(keys[0], one)
    cache.put(keys[1], two)
    assert cache.get(keys[0]) is one  # now the most recent
    cache.put(keys[2], three)

    assert cache.get(keys[1]) is None and cache.get(keys[0]) is one
