"""``plan`` (alias ``diff``), ``apply`` and ``delete``: the commands that converge.

Each loads and validates every manifest first (nothing is touched when any is
invalid), then hands a :class:`~reconciler.engine.reconcile.Pass` to the
engine. Exit codes are the contract of SPEC §4: ``plan`` 0 no changes, 2
changes, 1 error; ``apply`` and ``delete`` 0 only when everything converged.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import click

from reconciler.cli import common, options, render
from reconciler.engine import execute, ports, reconcile
from reconciler.manifests import loader
from reconciler.models import desired, record
from reconciler.planning import actions

if TYPE_CHECKING:
    from rich.progress import Progress

__all__ = ["apply", "delete", "diff", "plan"]

_prune = click.option(
    "--prune", is_flag=True, help="Delete owned objects missing from the manifests."
)
_output = click.option(
    "-o", "--output", type=click.Choice(["text", "json"]), default="text", show_default=True
)


def _load(
    store: ports.Store, paths: tuple[str, ...], revision: str | None = None
) -> desired.DesiredState:
    return _loader(paths, revision)(store.resources())


def _loader(paths: tuple[str, ...], revision: str | None = None) -> reconcile.Load:
    return lambda records: loader.load_against(list(paths), records, revision=revision)


def _print_plan(plan: actions.Plan, output: str) -> None:
    if output == "json":
        click.echo(json.dumps(render.plan_json(plan), indent=2))
        return
    for line in render.plan_lines(plan):
        click.echo(line)
    click.echo(render.plan_summary(plan))


def _plan_command(name: str, hidden: bool = False) -> click.Command:
    @click.command(name=name, hidden=hidden)
    @options.manifest_files
    @_prune
    @click.option(
        "--adopt", is_flag=True, help="Plan taking over same-named objects we do not own."
    )
    @_output
    @click.pass_context
    def command(
        ctx: click.Context, paths: tuple[str, ...], prune: bool, adopt: bool, output: str
    ) -> None:
        """Show what apply would change and what each change costs; exit 2 on changes."""
        with common.open_store(ctx, or_empty=True) as store, common.hypervisor(ctx) as hv:
            plan = reconcile.Reconciler(store, hv).preview(
                lambda records: loader.load_against(list(paths), records), prune=prune, adopt=adopt
            )
        _print_plan(plan, output)
        ctx.exit(0 if plan.empty else 2)

    return command


plan = _plan_command("plan")
diff = _plan_command("diff")


def _run(
    ctx: click.Context,
    title: str,
    output: str,
    action: Callable[
        [reconcile.Reconciler, Callable[[execute.Outcome], None], Callable[[actions.Plan], None]],
        reconcile.Result,
    ],
) -> None:
    """Run an apply or delete pass, printing one line per outcome (and a progress bar on a tty)."""
    progress: Progress | None = None
    task: Any = None
    show_progress = output == "text" and sys.stdout.isatty()

    def on_plan(plan: actions.Plan) -> None:
        nonlocal progress, task
        if show_progress and plan.changes:
            from rich.progress import Progress  # only on a terminal: rich costs start-up time

            progress = Progress(transient=True)
            progress.start()
            task = progress.add_task("applying", total=len(plan.changes))

    def on_outcome(outcome: execute.Outcome) -> None:
        if output == "text":
            line = render.outcome_line(outcome)
            if progress is not None:
                progress.console.print(line, highlight=False, markup=False)
                progress.advance(task)
            else:
                click.echo(line)

    with common.open_store(ctx) as store, common.hypervisor(ctx) as hv:
        try:
            result = action(reconcile.Reconciler(store, hv), on_outcome, on_plan)
        finally:
            if progress is not None:
                progress.stop()
    outcomes = list(result.outcomes)
    if output == "json":
        click.echo(json.dumps(render.apply_json(result.plan, outcomes, result.run_id), indent=2))
    elif result.plan.not_found and not outcomes:
        pass  # only names that exist nowhere: their lines below say so
    elif not outcomes and result.plan.empty:
        click.echo("Nothing to do: everything is converged.")
    else:
        failed = len(result.failed)
        verb = "failed" if failed else "complete"
        click.echo(f"{title} {verb}: {len(outcomes) - failed} changed, {failed} failed.")
        for outcome in result.failed:
            click.echo(f"error: {render.outcome_line(outcome)}", err=True)
    if output == "text":
        for key in result.plan.not_found:
            click.echo(f"error: {key} not found", err=True)
    ctx.exit(0 if result.ok else 1)


@click.command()
@options.manifest_files
@_prune
@click.option("--allow-empty", is_flag=True, help="Allow --prune with an empty desired state.")
@click.option("--dry-run", is_flag=True, help="Print the plan; change nothing.")
@click.option("--adopt", is_flag=True, help="Take ownership of same-named objects we do not own.")
@click.option("--allow-data-loss", is_flag=True, help="Allow changes that destroy volumes.")
@click.option(
    "--wait/--no-wait",
    default=True,
    show_default=True,
    help="Wait for power operations to finish (always on for now).",
)
@click.option(
    "--shutdown-timeout",
    type=float,
    default=60.0,
    show_default=True,
    help="Seconds to wait for a graceful (ACPI) shutdown before forcing it.",
)
@click.option(
    "--workers",
    type=click.IntRange(1, 64),
    default=8,
    show_default=True,
    help="Changes run at once; most of their time is spent waiting on libvirtd and QEMU.",
)
@click.option("--revision", default=None, help="Source revision to record (e.g. main@sha1:...).")
@_output
@click.pass_context
def apply(
    ctx: click.Context,
    paths: tuple[str, ...],
    prune: bool,
    allow_empty: bool,
    dry_run: bool,
    adopt: bool,
    allow_data_loss: bool,
    wait: bool,
    shutdown_timeout: float,
    workers: int,
    revision: str | None,
    output: str,
) -> None:
    """Converge libvirt and the record on the manifests; exit 0 only when converged."""
    del wait  # power operations always complete before apply returns
    request = reconcile.Pass(
        prune=prune,
        allow_empty=allow_empty,
        adopt=adopt,
        dry_run=dry_run,
        revision=revision,
        trigger=record.Trigger.APPLY,
        options=execute.Options(
            workers=workers, shutdown_timeout=shutdown_timeout, allow_data_loss=allow_data_loss
        ),
    )
    if dry_run:
        with common.open_store(ctx) as store, common.hypervisor(ctx) as hv:
            result = reconcile.Reconciler(store, hv).apply(_loader(paths, revision), request)
        _print_plan(result.plan, output)
        ctx.exit(0)

    def action(
        rec: reconcile.Reconciler,
        on_outcome: Callable[[execute.Outcome], None],
        on_plan: Callable[[actions.Plan], None],
    ) -> reconcile.Result:
        return rec.apply(_loader(paths, revision), request, on_outcome, on_plan)

    _run(ctx, "Apply", output, action)


@click.command()
@click.option(
    "-f", "--filename", "paths", multiple=True, help="Delete what these manifests declare."
)
@click.argument("kind", required=False)
@click.argument("names", nargs=-1)
@click.option(
    "--allow-data-loss",
    is_flag=True,
    help="Accepted, and never needed: a volume goes with its VM only when its disk "
    "declares reclaimPolicy Delete, which is the consent.",
)
@click.option("--adopt", is_flag=True, help="Also delete same-named objects we do not own.")
@click.option("--dry-run", is_flag=True, help="Print the deletion plan; change nothing.")
@click.option("--shutdown-timeout", type=float, default=60.0, show_default=True)
@_output
@click.pass_context
def delete(
    ctx: click.Context,
    paths: tuple[str, ...],
    kind: str | None,
    names: tuple[str, ...],
    allow_data_loss: bool,
    adopt: bool,
    dry_run: bool,
    shutdown_timeout: float,
    output: str,
) -> None:
    """Delete resources this installation owns, honouring reclaim policies and protection.

    The whole deletion is planned first; anything refused (not owned, protected,
    or still used by a VM that stays) is listed with its reason, left alone, and
    makes the command exit 1, as does a name that exists nowhere. Volumes whose
    disk declares reclaimPolicy Delete are deleted with their VM (event
    VolumeDeleted); all others are retained.
    """
    if bool(paths) == bool(kind):
        raise click.UsageError("give either -f PATH... or KIND NAME...")
    if kind is not None and not names:
        raise click.UsageError("give at least one NAME after KIND")
    request = reconcile.Pass(
        trigger=record.Trigger.DELETE,
        adopt=adopt,
        dry_run=dry_run,
        options=execute.Options(
            shutdown_timeout=shutdown_timeout,
            allow_data_loss=allow_data_loss,
            refusal_fails=True,
        ),
    )

    def keys(store: ports.Store) -> list[record.ResourceKey]:
        if paths:
            return [record.ResourceKey(item.kind.value, item.name) for item in _load(store, paths)]
        assert kind is not None
        resolved = common.parse_kind(kind)
        return [record.ResourceKey(resolved.value, name) for name in names]

    if dry_run:
        with common.open_store(ctx) as store, common.hypervisor(ctx) as hv:
            plan = reconcile.Reconciler(store, hv).delete(keys(store), request).plan
        _print_plan(plan, output)
        if output == "text":
            for key in plan.not_found:
                click.echo(f"error: {key} not found", err=True)
        refused = plan.refusals(allow_data_loss=allow_data_loss)
        ctx.exit(1 if refused or plan.not_found else 0)

    def action(
        rec: reconcile.Reconciler,
        on_outcome: Callable[[execute.Outcome], None],
        on_plan: Callable[[actions.Plan], None],
    ) -> reconcile.Result:
        return rec.delete(keys(rec.store), request, on_outcome)

    _run(ctx, "Delete", output, action)
