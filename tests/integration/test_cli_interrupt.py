"""Ctrl-C during ``apply`` and the progress bar, on a real process at a real terminal.

The guests boot no operating system, so they ignore the ACPI shutdown request:
stopping one waits the whole ``--shutdown-timeout`` and then forces it off. The
test runs ``infinibay apply`` under a pseudo-terminal (so the rich progress bar
is shown), reads the bar naming the VM and counting the ACPI wait down, sends
one SIGINT, and checks what the operator is promised: the interrupt line with
the number of actions in flight, the stop that was in flight finished and
recorded as its event, nothing else started, and exit code 130. ``delete`` of
a running VM shuts it down the same way, and its bar counts the wait down too.
"""

from __future__ import annotations

import os
import pty
import re
import select
import signal
import subprocess
import time

import libvirt
import pytest

from reconciler.models import record
from tests.integration.harness import INFINIBAY, Harness

pytestmark = pytest.mark.integration

TIMEOUT = 8  # seconds of ACPI wait before the guest is forced off


def _read_until(fd: int, pattern: str, seen: list[str], timeout: float) -> re.Match[str] | None:
    """Read the terminal into ``seen`` until ``pattern`` matches all of it (or time is up)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = re.search(pattern, "".join(seen))
        if found:
            return found
        ready, _, _ = select.select([fd], [], [], 0.2)
        if ready:
            try:
                chunk = os.read(fd, 65536)
            except OSError:  # the process closed the terminal
                break
            if not chunk:
                break
            seen.append(chunk.decode(errors="replace"))
    return re.search(pattern, "".join(seen))


def _on_a_terminal(h: Harness, *args: str) -> tuple[subprocess.Popen[bytes], int]:
    """``infinibay ARGS`` on this test's record, its output a pseudo-terminal; (process, fd)."""
    leader, follower = pty.openpty()
    env = {k: v for k, v in os.environ.items() if not k.startswith("INFINIBAY_DATABASE")}
    env.update({"COLUMNS": "200", "TERM": "xterm"})
    env.pop("NO_COLOR", None)
    env.pop("INFINIBAY_SHUTDOWN_TIMEOUT", None)
    command = [str(INFINIBAY), "--db", h.db_url, "-c", h.uri, *args]
    process = subprocess.Popen(
        command, stdin=follower, stdout=follower, stderr=follower, env=env, close_fds=True
    )
    os.close(follower)
    return process, leader


def test_first_ctrl_c_finishes_the_shutdown_in_flight_records_it_and_exits_130(
    h: Harness,
) -> None:
    h.write(h.pool(), h.network(), h.template(), h.vm("web"))
    assert h.apply().exit_code == 0
    assert h.state("web") == libvirt.VIR_DOMAIN_RUNNING
    # One worker: web's stop (an ACPI wait) runs first, zlater (planned after it) waits.
    h.write(h.pool(), h.network(), h.template(), h.vm("web", powerState="Stopped"), h.vm("zlater"))

    process, leader = _on_a_terminal(
        h, "apply", "-f", str(h.workdir), "--shutdown-timeout", str(TIMEOUT), "--workers", "1"
    )
    seen: list[str] = []
    try:
        name = re.escape(f"virtualmachine/{h.name('web')}")
        countdown = _read_until(
            leader, name + r": ACPI shutdown, forced off in (\d+)s", seen, timeout=60
        )
        assert countdown is not None, "".join(seen)
        first = int(countdown.group(1))
        later = _read_until(
            leader, name + rf": ACPI shutdown, forced off in (?!{first}s)(\d+)s", seen, timeout=5
        )
        assert later is not None and int(later.group(1)) < first, "".join(seen)
        interrupted_at = time.monotonic()
        process.send_signal(signal.SIGINT)
        message = _read_until(
            leader,
            r"interrupt: finishing 1 action in flight \(Ctrl-C again to abandon\)",
            seen,
            timeout=10,
        )
        assert message is not None, "".join(seen)
        _read_until(leader, r"\Z(?!x)x", seen, timeout=TIMEOUT + 30)  # to the end
        code = process.wait(timeout=30)
    finally:
        if process.poll() is None:
            process.kill()
        os.close(leader)
    text = "".join(seen)
    assert code == 130, text
    assert time.monotonic() - interrupted_at < TIMEOUT + 20
    assert "Apply interrupted: 1 changed, 0 failed, 1 not started." in text
    assert text.count("interrupt: finishing") == 1
    assert "Traceback" not in text and "Aborted!" not in text
    assert h.state("web") == libvirt.VIR_DOMAIN_SHUTOFF  # the stop in flight finished
    assert not h.has_domain("zlater")  # what had not started did not start
    with h.store() as store:
        web = record.ResourceKey("VirtualMachine", h.name("web"))
        reasons = [e.reason for e in store.events(web)]
        assert "Stopped" in reasons
        assert store.events(record.ResourceKey("VirtualMachine", h.name("zlater"))) == []
        assert store.runs()[0].result == "interrupted"
    assert h.apply().exit_code == 0  # the next pass does the rest
    assert h.has_domain("zlater")


def test_delete_of_a_running_vm_shows_the_bar_counting_its_acpi_shutdown_down(
    h: Harness,
) -> None:
    h.write(h.pool(), h.network(), h.template(), h.vm("web"))
    assert h.apply().exit_code == 0
    assert h.state("web") == libvirt.VIR_DOMAIN_RUNNING

    process, leader = _on_a_terminal(
        h, "delete", "vm", h.name("web"), "--shutdown-timeout", str(TIMEOUT)
    )
    seen: list[str] = []
    try:
        name = re.escape(f"virtualmachine/{h.name('web')}")
        countdown = _read_until(
            leader, name + r": ACPI shutdown, forced off in (\d+)s", seen, timeout=60
        )
        assert countdown is not None, "".join(seen)
        assert h.has_domain("web")  # shut down first, undefined only after
        _read_until(leader, r"\Z(?!x)x", seen, timeout=TIMEOUT + 30)  # to the end
        code = process.wait(timeout=30)
    finally:
        if process.poll() is None:
            process.kill()
        os.close(leader)
    text = "".join(seen)
    assert code == 0, text
    assert "deleting" in text  # the bar's title
    assert f"virtualmachine/{h.name('web')} deleted" in text
    assert "Delete complete: 1 changed, 0 failed." in text
    assert not h.has_domain("web")


def test_a_failure_is_printed_once_on_stderr(h: Harness) -> None:
    blocker = h.pool_dir / "blocker"
    blocker.write_text("a file where the pool's parent directory should be\n")
    h.write(h.pool("bad", path=blocker / "pool"))

    done = h.cli("apply", "-f", str(h.workdir))

    assert done.returncode == 1, done.stdout + done.stderr
    line = f"storagepool/{h.name('bad')} failed:"
    assert (done.stdout + done.stderr).count(line) == 1, done.stdout + done.stderr
    assert f"error: {line}" in done.stderr
    assert "Apply failed: 0 changed, 1 failed." in done.stdout
