"""``plan`` (alias ``diff``), ``apply`` and ``delete``: the commands that converge.

Each loads and validates every manifest first (nothing is touched when any is
invalid), then hands a :class:`~reconciler.engine.reconcile.Pass` to the
engine. Exit codes are the contract of SPEC §4: ``plan`` 0 no changes, 2
changes, 1 error; ``apply`` and ``delete`` 0 only when everything converged.
"""

from __future__ import annotations

import json
import math
import os
import signal
import sys
import threading
import time
import types
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any, NamedTuple

import click

from reconciler.cli import common, main, options, render, saved, selection
from reconciler.engine import execute, ports, reconcile
from reconciler.manifests import loader
from reconciler.models import desired, observed, record, selectors
from reconciler.planning import actions
from reconciler.store import store as store_module

if TYPE_CHECKING:
    from rich.progress import Progress

__all__ = ["apply", "delete", "diff", "plan"]

_prune = click.option(
    "--prune", is_flag=True, help="Delete owned objects missing from the manifests."
)
_output = click.option(
    "-o", "--output", type=click.Choice(["text", "json"]), default="text", show_default=True
)
_shutdown_timeout = click.option(
    "--shutdown-timeout",
    type=float,
    default=60.0,
    show_default=True,
    envvar="INFINIBAY_SHUTDOWN_TIMEOUT",
    show_envvar=True,
    help="Seconds to wait for a guest's graceful (ACPI) shutdown before forcing it off.",
)


def _load(
    store: ports.Store, paths: tuple[str, ...], revision: str | None = None
) -> desired.DesiredState:
    return _loader(paths, revision)(store.resources())


def _loader(paths: tuple[str, ...], revision: str | None = None) -> reconcile.Load:
    def load(records: Sequence[record.ResourceRecord]) -> desired.DesiredState:
        state = loader.load_against(list(paths), records, revision=revision)
        for notice in state.notices:
            click.echo(f"note: {notice}", err=True)
        return state

    return load


def colour() -> bool:
    """Colour on a terminal, unless ``NO_COLOR`` is set (https://no-color.org)."""
    return sys.stdout.isatty() and not os.environ.get("NO_COLOR")


def _print_plan(plan: actions.Plan, output: str) -> None:
    if output == "json":
        click.echo(json.dumps(render.plan_json(plan), indent=2))
        return
    painted = colour()
    for line in render.plan_lines(plan, colour=painted):
        click.echo(line, color=painted)
    click.echo(render.plan_summary(plan))


def _plan_command(name: str, hidden: bool = False) -> click.Command:
    @click.command(name=name, hidden=hidden)
    @options.manifest_files
    @_prune
    @click.option(
        "--adopt", is_flag=True, help="Plan taking over same-named objects we do not own."
    )
    @selection.selector_option
    @click.option(
        "-out",
        "--out",
        "out",
        type=click.Path(dir_okay=False),
        default=None,
        metavar="FILE",
        help="Also save the plan to FILE; apply FILE carries out exactly it.",
    )
    @_output
    @click.pass_context
    def command(
        ctx: click.Context,
        paths: tuple[str, ...],
        prune: bool,
        adopt: bool,
        selector: selectors.Selector | None,
        out: str | None,
        output: str,
    ) -> None:
        """Show what apply would change and what each change costs; exit 2 on changes.

        With -l, only resources whose labels match are planned (and, with --prune,
        pruned). Resources annotated infinibay.io/reconcile: disabled are skipped
        and listed as suspended.
        """
        if out is not None and "-" in paths:
            raise click.UsageError(
                "-out needs manifest files: a plan read from stdin (-f -) "
                "cannot be checked again at apply"
            )
        inputs: dict[str, str] = {}
        # With no record yet, the plan is made against an empty one of its own: its
        # installation id is not the record's that apply creates (the empty record's
        # digest stands for it).
        fresh = store_module.missing_record(common.settings_of(ctx).database_url) is not None
        with common.open_store(ctx, or_empty=True) as store, common.hypervisor(ctx) as hv:
            installation = store.installation_id()

            def seen(
                state: desired.DesiredState,
                records: Sequence[record.ResourceRecord],
                world: observed.World,
            ) -> None:
                # Only a saved plan keeps the digests; over 1,000 VMs they cost
                # about as much as the planning itself.
                if out is not None:
                    inputs.update(saved.hashes(installation, state, records, world))

            plan = common.reconciler(ctx, store, hv).preview(
                _loader(paths),
                prune=prune,
                adopt=adopt,
                selector=selector,
                seen=seen,
            )
        if out is not None:
            saved.write(
                out,
                paths=paths,
                prune=prune,
                adopt=adopt,
                selector=selector,
                installation="" if fresh else installation,
                inputs=inputs,
                plan=plan,
                shown=render.plan_json(plan),
            )
        _print_plan(plan, output)
        if out is not None and output == "text":
            click.echo(f"Saved the plan to {out}; run: infinibay apply {out}")
        ctx.exit(0 if plan.empty else 2)

    return command


plan = _plan_command("plan")
diff = _plan_command("diff")


class _InFlight:
    """What is running now, for the progress bar and the interrupt message.

    Changes are added as they start and removed as they end (on the main
    thread); the ACPI waits are announced by the workers (``Options.on_wait``).
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._running: dict[record.ResourceKey, None] = {}
        self._waits: dict[record.ResourceKey, float] = {}

    def started(self, changes: list[actions.Change]) -> None:
        with self._lock:
            self._running.update(dict.fromkeys(c.key for c in changes))

    def ended(self, key: record.ResourceKey) -> None:
        with self._lock:
            self._running.pop(key, None)
            self._waits.pop(key, None)

    def waiting(self, key: record.ResourceKey, deadline: float | None) -> None:
        with self._lock:
            if deadline is None:
                self._waits.pop(key, None)
            else:
                self._waits[key] = deadline

    def __len__(self) -> int:
        with self._lock:
            return len(self._running)

    def text(self) -> str:
        """``vm/web: ACPI shutdown, forced off in 42s; vm/db`` (what the bar shows)."""
        now = time.monotonic()
        with self._lock:
            parts = []
            for key in self._running:
                deadline = self._waits.get(key)
                label = str(key)
                if deadline is not None:
                    left = max(0, math.ceil(deadline - now))
                    label += f": ACPI shutdown, forced off in {left}s"
                parts.append(label)
        return "; ".join(parts)


def _interrupt_message(in_flight: int) -> str:
    what = "action" if in_flight == 1 else "actions"
    return f"interrupt: finishing {in_flight} {what} in flight (Ctrl-C again to abandon)"


def _run(
    ctx: click.Context,
    title: str,
    output: str,
    options: execute.Options,
    action: Callable[[reconcile.Reconciler, _Hooks], reconcile.Result],
    in_flight: _InFlight,
) -> None:
    """Run an apply or delete pass, printing one line per outcome (and a progress bar on a tty).

    The first Ctrl-C starts nothing more: what is in flight finishes and is
    recorded (its events, the run), then the command exits 130. A second one
    abandons at once; the next pass completes what was left (the journal).
    """
    progress: Progress | None = None
    task: Any = None
    show_progress = output == "text" and sys.stdout.isatty()

    def on_plan(plan: actions.Plan) -> None:
        nonlocal progress, task
        if show_progress and plan.changes:
            # only on a terminal: rich costs start-up time
            from rich.progress import BarColumn, Progress, TaskProgressColumn, TextColumn

            progress = Progress(
                TextColumn("{task.description}"),
                BarColumn(),
                TaskProgressColumn(),
                TextColumn("{task.completed}/{task.total}"),
                _in_flight_column(in_flight),
                transient=True,
            )
            progress.start()
            task = progress.add_task(
                title.lower().removesuffix("e") + "ing", total=len(plan.changes)
            )

    def on_outcome(outcome: execute.Outcome) -> None:
        in_flight.ended(outcome.change.key)
        if output != "text":
            return
        line = render.outcome_line(outcome)
        if progress is not None:
            progress.advance(task)
        if not outcome.ok:
            click.echo(f"error: {line}", err=True)  # a failure is printed once, here
        elif progress is not None:
            progress.console.print(line, highlight=False, markup=False)
        else:
            click.echo(line)

    def on_sigint(_signum: int, _frame: types.FrameType | None) -> None:
        if options.interrupt.is_set():
            click.echo(
                "interrupt: abandoned; the next apply completes what was in flight", err=True
            )
            os._exit(main.EXIT_INTERRUPTED)
        options.interrupt.set()
        click.echo(_interrupt_message(len(in_flight)), err=True)

    hooks = _Hooks(on_outcome, on_plan, in_flight.started)
    previous = signal.signal(signal.SIGINT, on_sigint)
    try:
        with common.open_store(ctx) as store, common.hypervisor(ctx) as hv:
            try:
                result = action(common.reconciler(ctx, store, hv), hooks)
            finally:
                if progress is not None:
                    progress.stop()
    finally:
        signal.signal(signal.SIGINT, previous)
    outcomes = list(result.outcomes)
    failed = len(result.failed)
    if output == "json":
        click.echo(json.dumps(render.apply_json(result.plan, outcomes, result.run_id), indent=2))
    elif result.interrupted:
        left = len(result.plan.changes) - len(outcomes)
        click.echo(
            f"{title} interrupted: {len(outcomes) - failed} changed, {failed} failed, "
            f"{left} not started."
        )
    elif result.plan.not_found and not outcomes:
        pass  # only names that exist nowhere: their lines below say so
    elif not outcomes and result.plan.empty:
        click.echo("Nothing to do: everything is converged.")
    else:
        verb = "failed" if failed else "complete"
        click.echo(f"{title} {verb}: {len(outcomes) - failed} changed, {failed} failed.")
    if output == "text":
        for key in result.plan.not_found:
            click.echo(f"error: {key} not found", err=True)
    if result.interrupted:
        ctx.exit(main.EXIT_INTERRUPTED)
    ctx.exit(0 if result.ok else 1)


class _Hooks(NamedTuple):
    """What a pass tells the command line: each outcome, the plan, the changes starting."""

    on_outcome: Callable[[execute.Outcome], None]
    on_plan: Callable[[actions.Plan], None]
    on_start: Callable[[list[actions.Change]], None]


def _in_flight_column(in_flight: _InFlight) -> Any:
    from rich.progress import ProgressColumn
    from rich.text import Text

    class Column(ProgressColumn):
        def render(self, task: Any) -> Text:
            return Text(in_flight.text(), overflow="ellipsis", no_wrap=True)

    return Column()


@click.command()
@click.argument("plan_file", required=False, metavar="[PLANFILE]", type=click.Path(dir_okay=False))
@click.option(
    "-f",
    "--filename",
    "paths",
    multiple=True,
    type=click.Path(),
    help="File, directory (recursive) or - for stdin. Repeatable. Required without PLANFILE.",
)
@_prune
@selection.selector_option
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
@_shutdown_timeout
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
    plan_file: str | None,
    paths: tuple[str, ...],
    prune: bool,
    selector: selectors.Selector | None,
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
    """Converge libvirt and the record on the manifests; exit 0 only when converged.

    With PLANFILE (written by plan -out), carry out exactly that plan: refused,
    with nothing changed, when the manifests, the record or libvirt changed
    since it was made. With -l, only resources whose labels match.
    """
    del wait  # power operations always complete before apply returns
    plan_of: saved.Saved | None = None
    if plan_file is not None:
        if paths or prune or adopt or selector is not None or dry_run:
            raise click.UsageError(
                "a saved plan carries its manifests and options: give PLANFILE alone "
                "(no -f, --prune, --adopt, -l or --dry-run)"
            )
        plan_of = saved.read(plan_file)
        paths, prune, adopt, selector = (
            plan_of.paths,
            plan_of.prune,
            plan_of.adopt,
            plan_of.selector,
        )
    elif not paths:
        raise click.UsageError("give -f PATH... (or a PLANFILE made by plan -out)")
    in_flight = _InFlight()
    run_options = execute.Options(
        workers=workers,
        shutdown_timeout=shutdown_timeout,
        allow_data_loss=allow_data_loss,
        on_wait=in_flight.waiting,
    )
    request = reconcile.Pass(
        prune=prune,
        allow_empty=allow_empty,
        adopt=adopt,
        dry_run=dry_run,
        revision=revision,
        trigger=record.Trigger.APPLY,
        options=run_options,
        selector=selector,
    )
    if dry_run:
        with common.open_store(ctx) as store, common.hypervisor(ctx) as hv:
            result = common.reconciler(ctx, store, hv).apply(_loader(paths, revision), request)
        _print_plan(result.plan, output)
        ctx.exit(0)

    def action(rec: reconcile.Reconciler, hooks: _Hooks) -> reconcile.Result:
        if plan_of is None:
            return rec.apply(
                _loader(paths, revision),
                request,
                hooks.on_outcome,
                hooks.on_plan,
                on_start=hooks.on_start,
            )
        installation = rec.store.installation_id()

        def seen(
            state: desired.DesiredState,
            records: Sequence[record.ResourceRecord],
            world: observed.World,
        ) -> None:
            plan_of.check_inputs(installation, state, records, world)

        def checked(plan: actions.Plan) -> None:
            plan_of.check_plan(plan)
            hooks.on_plan(plan)

        return rec.apply(
            _loader(paths, revision), request, hooks.on_outcome, checked, seen, hooks.on_start
        )

    _run(ctx, "Apply", output, run_options, action, in_flight)


@click.command()
@click.option(
    "-f",
    "--filename",
    "paths",
    multiple=True,
    type=click.Path(),
    help="Delete what these manifests declare.",
)
@click.argument(
    "refs",
    nargs=-1,
    metavar="[KIND NAME... | KIND/NAME...]",
    shell_complete=selection.complete_refs,
)
@selection.selector_option
@click.option(
    "--allow-data-loss",
    is_flag=True,
    help="Accepted, and never needed: a volume goes with its VM only when its disk "
    "declares reclaimPolicy Delete, which is the consent.",
)
@click.option("--adopt", is_flag=True, help="Also delete same-named objects we do not own.")
@click.option("--dry-run", is_flag=True, help="Print the deletion plan; change nothing.")
@_shutdown_timeout
@_output
@click.pass_context
def delete(
    ctx: click.Context,
    paths: tuple[str, ...],
    refs: tuple[str, ...],
    selector: selectors.Selector | None,
    allow_data_loss: bool,
    adopt: bool,
    dry_run: bool,
    shutdown_timeout: float,
    output: str,
) -> None:
    """Delete resources this installation owns, honouring reclaim policies and protection.

    The whole deletion is planned first; anything refused (not owned, protected,
    or still used by a VM that stays) is listed with its reason, left alone, and
    makes the command exit 1, as does a name that exists nowhere. A running VM is
    shut down first (ACPI, forced off after --shutdown-timeout). Volumes whose
    disk declares reclaimPolicy Delete are deleted with their VM (event
    VolumeDeleted); all others are retained. With -l, what -f or KIND names is
    narrowed to the resources whose labels match (record labels; KIND -l
    SELECTOR alone picks every resource of KIND that matches, -l alone every kind).
    """
    if paths and refs:
        raise click.UsageError("give either -f PATH... or KIND NAME..., not both")
    if not paths and not refs and selector is None:
        raise click.UsageError("give -f PATH..., KIND NAME..., KIND/NAME... or -l SELECTOR")
    kind, named = selection.parse_refs(refs, names_required=selector is None and bool(refs))
    in_flight = _InFlight()
    request = reconcile.Pass(
        trigger=record.Trigger.DELETE,
        adopt=adopt,
        dry_run=dry_run,
        options=execute.Options(
            shutdown_timeout=shutdown_timeout,
            allow_data_loss=allow_data_loss,
            refusal_fails=True,
            on_wait=in_flight.waiting,
        ),
    )

    def keys(store: ports.Store) -> list[record.ResourceKey]:
        if paths:
            found = [
                (record.ResourceKey(item.kind.value, item.name), item.manifest.metadata.labels)
                for item in _load(store, paths)
            ]
            return [k for k, labels in found if selector is None or selector.matches(labels)]
        if selector is None:
            return named
        recorded = {r.key: r for r in store.resources()}
        if named:
            return [k for k in named if k in recorded and selector.matches(recorded[k].labels)]
        return [
            key
            for key, rec in recorded.items()
            if (kind is None or key.kind == kind.value) and selector.matches(rec.labels)
        ]

    if dry_run:
        with common.open_store(ctx) as store, common.hypervisor(ctx) as hv:
            plan = common.reconciler(ctx, store, hv).delete(keys(store), request).plan
        _print_plan(plan, output)
        if output == "text":
            for key in plan.not_found:
                click.echo(f"error: {key} not found", err=True)
        refused = plan.refusals(allow_data_loss=allow_data_loss)
        ctx.exit(1 if refused or plan.not_found else 0)

    def action(rec: reconcile.Reconciler, hooks: _Hooks) -> reconcile.Result:
        return rec.delete(
            keys(rec.store), request, hooks.on_outcome, hooks.on_start, on_plan=hooks.on_plan
        )

    _run(ctx, "Delete", output, request.options, action, in_flight)
