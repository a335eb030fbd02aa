"""The raw-libvirt floor: the least libvirt-python code that does each section's work.

The floor scripts (``bench/floor/*.py``) run as whole processes, as the project
does, so start-up is in both figures; :func:`run` times one and reads the JSON
it prints. :func:`domain_xml` is the small guest the floor defines.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from lxml import etree
from results import BenchError

__all__ = ["FLOOR", "domain_xml", "run"]

FLOOR = Path(__file__).resolve().parent / "floor"


def run(script: str, *args: str) -> tuple[float, dict[str, Any]]:
    command = [sys.executable, str(FLOOR / script), *args]
    start = time.perf_counter()
    done = subprocess.run(command, capture_output=True, text=True, check=False)
    elapsed = time.perf_counter() - start
    if done.returncode != 0:
        raise BenchError(f"floor {script} failed: {done.stderr.strip()[-2000:]}")
    return elapsed, json.loads(done.stdout)


def domain_xml(name: str, domain_type: str) -> str:
    """A small q35 guest with a loopback VNC display and no disk, as the floor defines."""
    domain = etree.Element("domain", type=domain_type)
    etree.SubElement(domain, "name").text = name
    etree.SubElement(domain, "memory", unit="KiB").text = "32768"
    etree.SubElement(domain, "vcpu").text = "1"
    os_ = etree.SubElement(domain, "os")
    etree.SubElement(os_, "type", arch="x86_64", machine="q35").text = "hvm"
    etree.SubElement(os_, "boot", dev="hd")
    features = etree.SubElement(domain, "features")
    etree.SubElement(features, "acpi")
    etree.SubElement(features, "apic")
    devices = etree.SubElement(domain, "devices")
    graphics = etree.SubElement(devices, "graphics", type="vnc", autoport="yes")
    etree.SubElement(graphics, "listen", type="address", address="127.0.0.1")
    etree.SubElement(devices, "console", type="pty")
    return etree.tostring(domain, encoding="unicode")
