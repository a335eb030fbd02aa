"""``suspend`` and ``resume``: hold back reconciliation of a resource, as Flux's suspend.

``suspend`` sets the annotation ``infinibay.io/reconcile: disabled`` on the
resource in the record; every later plan, apply and daemon pass then leaves
it as it is (listed as suspended), until ``resume`` removes the annotation.
A manifest can carry the same annotation; then the resource stays suspended
until the manifest drops it, whatever ``resume`` does.
"""

from __future__ import annotations

import click

from reconciler import errors
from reconciler.cli import common, selection
from reconciler.models import kinds, record

__all__ = ["resume", "suspend"]


def _set(ctx: click.Context, refs: tuple[str, ...], *, suspend: bool) -> None:
    _kind, keys = selection.parse_refs(refs)
    value = "disabled" if suspend else None
    missing = 0
    with common.open_store(ctx) as store, store.writer_lock():
        for key in keys:
            before = store.get(key)
            if before is None:
                missing += 1
                click.echo(f"error: {errors.NotFound(f'{key} not found')}", err=True)
                continue
            was = kinds.suspended(before.annotations)
            after = store.set_annotation(key, kinds.RECONCILE_ANNOTATION, value)
            if after is None:
                missing += 1
                click.echo(f"error: {key} not found", err=True)
                continue
            if was == suspend:
                click.echo(f"{key} was already {'suspended' if suspend else 'reconciled'}.")
                continue
            reason = "Suspended" if suspend else "Resumed"
            message = (
                "reconciliation suspended by infinibay suspend (infinibay.io/reconcile: disabled)"
                if suspend
                else "reconciliation resumed by infinibay resume"
            )
            store.record_events([record.NewEvent(key, record.EventType.NORMAL, reason, message)])
            click.echo(f"{key} {reason.lower()}.")
            if not suspend and before.spec.get("metadata", {}).get("annotations", {}).get(
                kinds.RECONCILE_ANNOTATION
            ):
                click.echo(f"note: the manifest of {key} still suspends it", err=True)
    ctx.exit(1 if missing else 0)


_refs = click.argument(
    "refs",
    nargs=-1,
    required=True,
    metavar="KIND NAME... | KIND/NAME...",
    shell_complete=selection.complete_refs,
)


@click.command()
@_refs
@click.pass_context
def suspend(ctx: click.Context, refs: tuple[str, ...]) -> None:
    """Suspend reconciliation of resources: plan, apply and the daemon leave them alone.

    Exit 0, or 1 when a resource is not in the record.
    """
    _set(ctx, refs, suspend=True)


@click.command()
@_refs
@click.pass_context
def resume(ctx: click.Context, refs: tuple[str, ...]) -> None:
    """Resume reconciliation of suspended resources. Exit 0, or 1 when one is not in the record."""
    _set(ctx, refs, suspend=False)
