"""Every example in ``examples/`` converges on the real libvirtd, as its README says.

The examples use fixed names, bridges and subnets, which a shared host may
already have (someone ran the quick start). So the test rewrites each example
onto this test's prefix, pool directory, bridge and a random subnet, then does
exactly what the README does: ``infinibay apply -f DIR``, and checks that a
second apply does nothing.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import libvirt
import pytest
import yaml

from tests.integration.harness import Harness

pytestmark = pytest.mark.integration

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
_STATES = {
    "Running": libvirt.VIR_DOMAIN_RUNNING,
    "Stopped": libvirt.VIR_DOMAIN_SHUTOFF,
    "Paused": libvirt.VIR_DOMAIN_PAUSED,
}


def _rehome(h: Harness, docs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Rename every object onto the test's prefix, pool dir, bridge and subnet."""
    text = yaml.safe_dump_all(docs, sort_keys=False)
    names = {d["metadata"]["name"] for d in docs}
    for name in sorted(names, key=len, reverse=True):
        text = re.sub(rf"(?<![\w-]){re.escape(name)}(?![\w-])", h.name(name), text)
    rehomed = list(yaml.safe_load_all(text))
    for bridge_index, d in enumerate(x for x in rehomed if x["kind"] == "Network"):
        d["spec"]["bridge"] = h.bridge(bridge_index)
        subnet = h.subnet_of(bridge_index)
        old = d["spec"]["ipv4"]["address"].rsplit(".", 1)[0]
        d["spec"] = yaml.safe_load(yaml.safe_dump(d["spec"]).replace(old + ".", subnet + "."))
    for d in rehomed:
        if d["kind"] == "StoragePool":
            d["spec"]["path"] = str(h.pool_dir)
    return rehomed


@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)  # the backends are proven elsewhere
@pytest.mark.parametrize("example", ["quickstart", "classroom"])
def test_example_converges_and_a_second_apply_does_nothing(h: Harness, example: str) -> None:
    docs = [
        d
        for path in sorted((EXAMPLES / example).glob("*.yaml"))
        for d in yaml.safe_load_all(path.read_text())
        if d
    ]
    h.write(*_rehome(h, docs))
    result = h.apply()
    assert result.exit_code == 0, result.output
    for d in docs:
        if d["kind"] == "VirtualMachine":
            want = _STATES[d["spec"].get("powerState", "Running")]
            assert h.state(d["metadata"]["name"]) == want, d["metadata"]["name"]
    again = h.apply()
    assert again.exit_code == 0, again.output
    assert "Nothing to do" in again.output
    assert h.plan().exit_code == 0
