"""``start``, ``stop`` and ``restart``: power a VM now, for the moments GitOps needs it.

They act on one or more VMs this installation owns, under the writer lock (a
pass is not running at the same time), and record an event for each. They do
not change the manifest or the record's spec: the declared ``powerState``
still wins at the next apply or daemon pass, and each command says so.
``stop`` is a graceful ACPI shutdown that fails (exit 1) when the guest is
still running after ``--timeout``; ``--force`` turns it off at once.
``restart`` boots the guest with its persistent configuration, which clears
the ``RestartRequired`` condition.
"""

from __future__ import annotations

import datetime as dt
import time

import click

from reconciler import errors
from reconciler.cli import common, selection
from reconciler.hypervisor import adapter
from reconciler.models import kinds, naming, observed, record
from reconciler.planning import status as status_module
from reconciler.store import store as store_module

__all__ = ["restart", "start", "stop"]

_VM = kinds.Kind.VIRTUAL_MACHINE


class _StillRunning(Exception):
    """The graceful shutdown's time ran out: the guest is left running."""


def _declared(rec: record.ResourceRecord) -> str:
    effective = rec.spec.get("effective")
    power = effective.get("power") if isinstance(effective, dict) else None
    if power is None:
        spec = rec.spec.get("spec")
        power = spec.get("powerState") if isinstance(spec, dict) else None
    return str(power or kinds.PowerState.RUNNING.value)


def _domain(
    hv: adapter.Hypervisor, installation: str, key: record.ResourceKey, name: str
) -> observed.ObservedDomain:
    found = hv.observe().domains.get(name)
    if found is None or found.owner is None or found.owner.installation != installation:
        raise errors.NotFound(f"{key}: no libvirt domain {name!r} owned by this installation")
    return found


def _stop(hv: adapter.Hypervisor, name: str, *, force: bool, timeout: float) -> str:
    """Stop ``name``; how (``ACPI shutdown`` or ``forced off``)."""
    if force:
        hv.stop_domain(name, timeout=0)
        return "forced off"
    deadline = time.monotonic() + timeout

    def guard() -> None:
        if time.monotonic() > deadline:
            raise _StillRunning

    try:
        hv.stop_domain(name, timeout=timeout + 3600, guard=guard)
    except _StillRunning:
        raise errors.RefusedError(
            f"domain {name} is still running after {timeout:g}s of ACPI shutdown "
            "(the guest may ignore it); left running: use --force to turn it off"
        ) from None
    return "ACPI shutdown"


def _restart_done(rec: record.ResourceRecord, power: str) -> dict[str, object]:
    """The record's status after a restart: ``RestartRequired`` cleared, power as it is now."""
    stamp = dt.datetime.now(dt.UTC).isoformat(timespec="seconds")
    status = dict(rec.status)
    previous = [c for c in status.get("conditions") or [] if isinstance(c, dict)]
    cleared = status_module.condition(previous, "RestartRequired", False, "Restarted", "", stamp)
    others = [c for c in previous if c.get("type") != "RestartRequired"]
    status["conditions"] = [*others, cleared]
    status["power"] = power
    return status


def _act(
    ctx: click.Context, refs: tuple[str, ...], verb: str, *, force: bool, timeout: float
) -> None:
    _kind, keys = selection.parse_refs(refs)
    for key in keys:
        if key.kind != _VM.value:
            raise click.UsageError(f"{verb} acts on virtual machines: {key} is not one")
    with common.open_store(ctx) as store, store.writer_lock(), common.hypervisor(ctx) as hv:
        failed = 0
        for key in keys:
            try:
                _one(store, hv, key, verb, force=force, timeout=timeout)
            except errors.InfinibayError as exc:
                failed += 1
                click.echo(f"error: {exc}", err=True)
    ctx.exit(1 if failed else 0)


def _one(
    store: store_module.Store,
    hv: adapter.Hypervisor,
    key: record.ResourceKey,
    verb: str,
    *,
    force: bool,
    timeout: float,
) -> None:
    rec = store.get(key)
    if rec is None:
        raise errors.NotFound(f"{key} not found")
    name = naming.libvirt_name(key.name, rec.annotations)  # the domain's name in libvirt
    domain = _domain(hv, store.installation_id(), key, name)
    running = domain.power is not kinds.PowerState.STOPPED
    declared = _declared(rec)
    if verb == "start":
        if domain.power is kinds.PowerState.RUNNING:
            click.echo(f"{key} is already running.")
            return
        if domain.power is kinds.PowerState.PAUSED:
            hv.resume_domain(name)
        else:
            hv.start_domain(name)
        done, reason, now = "started", "Started", kinds.PowerState.RUNNING
    elif verb == "stop":
        if not running:
            click.echo(f"{key} is already stopped.")
            return
        how = _stop(hv, name, force=force, timeout=timeout)
        done, reason, now = f"stopped ({how})", "Stopped", kinds.PowerState.STOPPED
    else:
        how = _stop(hv, name, force=force, timeout=timeout) if running else "was stopped"
        hv.start_domain(name)
        done, reason, now = f"restarted ({how})", "Restarted", kinds.PowerState.RUNNING
        store.write_status([record.StatusWrite(key, _restart_done(rec, now.value))])
    if declared == now.value:
        wins = f"it matches the declared powerState {declared}"
    else:
        wins = f"the declared powerState {declared} wins at the next reconcile pass"
    store.record_events(
        [
            record.NewEvent(
                key, record.EventType.NORMAL, reason, f"{done} by infinibay {verb}; {wins}"
            )
        ]
    )
    click.echo(f"{key} {done}.")
    click.echo(f"note: {wins}.")


_refs = click.argument(
    "refs",
    nargs=-1,
    required=True,
    metavar="vm NAME... | vm/NAME...",
    shell_complete=selection.complete_refs,
)
_force = click.option("--force", is_flag=True, help="Turn the guest off at once (destroy).")
_timeout = click.option(
    "--timeout",
    type=float,
    default=60.0,
    show_default=True,
    help="Seconds to wait for the guest to shut down (ACPI) before giving up.",
)


@click.command()
@_refs
@click.pass_context
def start(ctx: click.Context, refs: tuple[str, ...]) -> None:
    """Start (or resume) VMs now; exit 0 when all run, 1 otherwise.

    The declared powerState still wins at the next pass.
    """
    _act(ctx, refs, "start", force=False, timeout=0)


@click.command()
@_refs
@_force
@_timeout
@click.pass_context
def stop(ctx: click.Context, refs: tuple[str, ...], force: bool, timeout: float) -> None:
    """Shut VMs down now (ACPI; --force: off at once); exit 0 when all stopped, 1 otherwise.

    The declared powerState still wins at the next pass.
    """
    _act(ctx, refs, "stop", force=force, timeout=timeout)


@click.command()
@_refs
@_force
@_timeout
@click.pass_context
def restart(ctx: click.Context, refs: tuple[str, ...], force: bool, timeout: float) -> None:
    """Restart VMs now, booting their current configuration (clears RestartRequired).

    Exit 0 when all were restarted, 1 otherwise. The declared powerState still
    wins at the next pass.
    """
    _act(ctx, refs, "restart", force=force, timeout=timeout)
