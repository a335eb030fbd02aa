"""``get``, ``describe``, ``events`` and ``history``: the read-only commands (SPEC §4).

They read the record, and ``get`` / ``describe`` overlay what **one** libvirt
observation sees (``observe()`` plus ``guest_addresses()``; drift is planned against
that same observation). When libvirt cannot be reached or read, they still
print the record's view and say so once on stderr: an operator debugging a
broken host needs the record most. Nothing here writes anything. What is shown
is built by :mod:`reconciler.cli.views` (a module per kind); tables and documents by
:mod:`reconciler.cli.output`.

``-o json`` documents (stable; fields are only ever added):

``get KIND -o json``::

    {"apiVersion": "infinibay.io/v1alpha1", "kind": "List", "items": [ITEM, ...]}

``get KIND NAME -o json`` prints one ITEM::

    {"apiVersion": "infinibay.io/v1alpha1",
     "kind": "VirtualMachine",                      # StoragePool | Network | Template
     "metadata": {"name", "uid", "generation", "labels", "annotations",
                  "creationTimestamp"},              # ISO 8601, UTC
     "spec": {...},                                  # the applied manifest's spec
     "status": {...the record's status: phase, conditions, observedGeneration, ...,
                "drift": true | false | null}}       # null: libvirt was not observed

  plus, overlaid from libvirt when it was observed (else as the record last saw it):
  VirtualMachine ``power`` (Running | Stopped | Paused | null), ``ips`` (its MACs'
  DHCP leases and, when the guest agent answers, the agent's addresses; IPv4
  first), ``graphicsPort``, ``uuid``, ``macs`` ({network: mac});
  Network and StoragePool ``active`` and ``uuid``; Template ``usedBy`` (VM names).
  ``-o yaml`` prints the same documents as YAML.

``events -o json`` prints JSON Lines, one event per line::

    {"id", "time" (last seen), "firstSeen", "type" (Normal | Warning), "reason",
     "object": {"kind", "name", "uid"}, "message", "count", "diff", "revision", "run"}

``history KIND/NAME -o json``::

    {"apiVersion": "infinibay.io/v1alpha1", "kind": "History",
     "object": {"kind", "name"}, "deletedAt": ISO | null,
     "revisions": [{"generation", "appliedAt", "revision", "file", "specHash", "run",
                    "spec", "changes": [{"path", "op" (added | removed | changed),
                                         "old", "new"}]}]}
"""

from __future__ import annotations

import datetime as dt
import json
import sys
import time
from collections.abc import Sequence

import click

from reconciler import errors
from reconciler.cli import common, output, selection, views
from reconciler.engine import hosts, reconcile, recorded
from reconciler.hypervisor import adapter
from reconciler.models import catalog, desired, documents, kinds, record, selectors
from reconciler.store import store as store_module

__all__ = ["describe", "events", "get", "history"]

POLL_SECONDS = 1.0


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def _terminal() -> bool:
    return sys.stdout.isatty()


def _wait(seconds: float) -> None:
    """Between two polls of ``events --follow``; tests replace it to drive the loop."""
    time.sleep(seconds)


def _not_found(key: record.ResourceKey) -> errors.NotFound:
    return errors.NotFound(f"{key} not found")


def _observe(
    ctx: click.Context, store: store_module.Store, records: Sequence[record.ResourceRecord]
) -> views.Live:
    """One observation of libvirt, or a record-only :class:`~views.Live` and one warning."""
    installation = store.installation_id()
    config = common.settings_of(ctx)
    if any(r.key.kind == kinds.Kind.HOST.value and r.deleted_at is None for r in records):
        return _observe_hosts(ctx, store, records)
    try:
        with common.hypervisor(ctx) as hv:
            world = hv.observe(refresh=reconcile.pools_in_play(desired.DesiredState(), records))
            try:
                leases = hv.guest_addresses(world)
            except errors.HypervisorError as exc:
                click.echo(f"warning: no IP addresses: {exc}", err=True)
                leases = {}
    except errors.HypervisorError as exc:
        click.echo(
            f"warning: libvirt at {config.libvirt_uri} was not observed ({exc}); "
            "showing the record only",
            err=True,
        )
        return views.Live(installation)
    try:
        drifted = recorded.drifted(records, world, installation, store.volumes())
    except ValueError as exc:  # a record written by an older schema no longer validates
        click.echo(f"warning: drift not computed: {' '.join(str(exc).split())}", err=True)
        return views.Live(installation, world, leases)
    return views.Live(installation, world, leases, drifted)


def _observe_hosts(
    ctx: click.Context, store: store_module.Store, records: Sequence[record.ResourceRecord]
) -> views.Live:
    """:func:`_observe` over the recorded hosts, each observed on its own; one warning each
    for those that could not be reached (their resources show the record only)."""
    installation = store.installation_id()
    state = recorded.desired_from_record(records)
    with common.hypervisor(ctx) as hv:
        reach = hosts.Hosts(hv, connect=adapter.Hypervisor)
        try:
            found = reach.observe(state, refresh=reconcile.pools_in_play(state, records))
            leases: dict[str, tuple[str, ...]] = {}
            for host in found:
                if host.world is None:
                    click.echo(
                        f"warning: host {host.name} was not observed ({host.error}); "
                        "showing the record for its resources",
                        err=True,
                    )
                    continue
                try:
                    leases.update(
                        reach.hypervisor(host.manifest.spec.uri).guest_addresses(host.world)
                    )
                except errors.HypervisorError as exc:
                    click.echo(f"warning: no IP addresses on {host.name}: {exc}", err=True)
        finally:
            reach.close()
    try:
        world, drifted = recorded.drifted_on_hosts(
            records, found, installation, store.volumes(), hosts.placement_strategy()
        )
    except ValueError as exc:
        click.echo(f"warning: drift not computed: {' '.join(str(exc).split())}", err=True)
        return views.Live(installation)
    return views.Live(installation, world, leases, drifted)


_get_output = click.option(
    "-o",
    "--output",
    "output_format",
    type=click.Choice(["table", "wide", "json", "yaml", "name"]),
    default="table",
    show_default=True,
    help="name: one KIND/NAME per line, for scripts and other commands.",
)


def _label_columns(
    _ctx: click.Context, _param: click.Parameter, value: tuple[str, ...]
) -> list[str]:
    return [key.strip() for item in value for key in item.split(",") if key.strip()]


def _select(
    store: store_module.Store,
    kind: kinds.Kind,
    keys: Sequence[record.ResourceKey],
    selector: selectors.Selector | None,
) -> tuple[list[record.ResourceRecord], list[record.ResourceRecord]]:
    """Everything in the record, and what ``get`` shows of it (NotFound for a missing name)."""
    everything = store.resources()
    selected = [r for r in everything if r.key.kind == kind.value]
    if keys:
        by_key = {r.key: r for r in selected}
        for key in keys:
            if key not in by_key:
                raise _not_found(key)
        selected = [by_key[key] for key in dict.fromkeys(keys)]
    if selector is not None:
        selected = [r for r in selected if selector.matches(r.labels)]
    return everything, selected


def _get_table(
    kind: kinds.Kind,
    selected: Sequence[record.ResourceRecord],
    everything: Sequence[record.ResourceRecord],
    live: views.Live,
    *,
    wide: bool,
    label_columns: Sequence[str],
    show_labels: bool,
) -> tuple[list[str], list[list[str]]]:
    """``get``'s headers and rows: the kind's, then SUSPENDED, ``-L`` and LABELS columns."""
    headers, rows = views.table_rows(kind, selected, everything, live, _now(), wide=wide)
    suspended = [kinds.suspended(r.annotations) for r in selected]
    if any(suspended):
        headers = [*headers, "SUSPENDED"]
        rows = [[*row, "yes" if s else "no"] for row, s in zip(rows, suspended, strict=True)]
    for key in label_columns:
        headers = [*headers, key.rpartition("/")[2].upper()]
        rows = [
            [*row, output.escape(r.labels.get(key, "")) or output.NONE]
            for row, r in zip(rows, selected, strict=True)
        ]
    if show_labels:
        headers = [*headers, "LABELS"]
        rows = [
            [*row, ",".join(f"{k}={v}" for k, v in sorted(r.labels.items())) or "<none>"]
            for row, r in zip(rows, selected, strict=True)
        ]
    return headers, rows


@click.command()
@click.argument(
    "refs",
    nargs=-1,
    required=True,
    metavar="KIND [NAME...] | KIND/NAME...",
    shell_complete=selection.complete_refs,
)
@_get_output
@selection.selector_option
@click.option(
    "-L",
    "--label-columns",
    "label_columns",
    multiple=True,
    callback=_label_columns,
    metavar="KEY[,KEY]",
    help="A column with the value of each label KEY. Repeatable.",
)
@click.option("--show-labels", is_flag=True, help="A LABELS column with every label.")
@click.option(
    "-w",
    "--watch",
    is_flag=True,
    help="After the list, print each row again whenever it changes, until Ctrl-C.",
)
@click.pass_context
def get(
    ctx: click.Context,
    refs: tuple[str, ...],
    output_format: str,
    selector: selectors.Selector | None,
    label_columns: list[str],
    show_labels: bool,
    watch: bool,
) -> None:
    """List resources of KIND (or show NAME) with live status from libvirt.

    KIND is vm, template, network, pool, policy or department (singular, plural or
    short form); resources can also be named KIND/NAME.
    """
    resolved, keys = selection.parse_refs(refs, names_required=False)
    if resolved is None:
        raise click.UsageError("get lists one kind at a time: give KIND/NAMEs of one kind")
    if watch and output_format not in ("table", "wide"):
        raise click.UsageError("--watch prints tables: use -o table or -o wide")
    with common.open_store(ctx, read_only=True) as store:
        everything, selected = _select(store, resolved, keys, selector)
        needs_libvirt = views.view(resolved).observes and bool(selected)
        live = _observe(ctx, store, everything) if needs_libvirt else views.Live("")
        if output_format == "name":
            for rec in selected:
                click.echo(f"{catalog.short(resolved)}/{rec.key.name}")
            return
        if output_format in ("json", "yaml"):
            shown = (
                views.item(selected[0], everything, live)
                if len(keys) == 1 and selector is None
                else views.list_document(selected, everything, live)
            )
            click.echo(output.document(shown, output_format))
            return
        if not selected and not watch:
            click.echo(f"No {catalog.display(resolved, plural=True)} found.", err=True)
            return
        headers, rows = _get_table(
            resolved,
            selected,
            everything,
            live,
            wide=output_format == "wide",
            label_columns=label_columns,
            show_labels=show_labels,
        )
        if rows:
            click.echo(output.table(headers, rows, terminal=_terminal()))
        if not watch:
            return
        try:
            _watch(ctx, store, resolved, keys, selector, headers, rows)
        except KeyboardInterrupt:
            return


def _watch(
    ctx: click.Context,
    store: store_module.Store,
    kind: kinds.Kind,
    keys: Sequence[record.ResourceKey],
    selector: selectors.Selector | None,
    headers: list[str],
    rows: list[list[str]],
) -> None:
    """Poll the record and libvirt; print a row (no header) when anything but its age moved."""
    printed = bool(rows)
    ignored = {i for i, title in enumerate(headers) if title.upper() == "AGE"}

    def same(row: Sequence[str]) -> tuple[str, ...]:
        return tuple(cell for i, cell in enumerate(row) if i not in ignored)

    last = {row[0]: same(row) for row in rows}
    while True:
        _wait(POLL_SECONDS)
        try:
            everything, selected = _select(store, kind, keys, selector)
        except errors.NotFound:
            everything, selected = store.resources(), []
        needs_libvirt = views.view(kind).observes and bool(selected)
        live = _observe(ctx, store, everything) if needs_libvirt else views.Live("")
        opts = ctx.params
        headers, fresh = _get_table(
            kind,
            selected,
            everything,
            live,
            wide=opts["output_format"] == "wide",
            label_columns=opts["label_columns"],
            show_labels=opts["show_labels"],
        )
        changed = [row for row in fresh if last.get(row[0]) != same(row)]
        if changed:
            click.echo(output.table(headers, changed, terminal=_terminal(), header=not printed))
            printed = True
        last = {row[0]: same(row) for row in fresh}


@click.command()
@click.argument(
    "refs",
    nargs=-1,
    required=True,
    metavar="KIND NAME | KIND/NAME",
    shell_complete=selection.complete_refs,
)
@click.pass_context
def describe(ctx: click.Context, refs: tuple[str, ...]) -> None:
    """Show one resource: spec, status, conditions and recent events."""
    key = _one(refs)
    with common.open_store(ctx, read_only=True) as store:
        everything = store.resources()
        rec = next((r for r in everything if r.key == key), None)
        if rec is None:
            raise _not_found(key)
        recent = store.events(key, limit=20)
        needs_libvirt = views.view(kinds.Kind(key.kind)).observes
        live = _observe(ctx, store, everything) if needs_libvirt else views.Live("")
    click.echo(views.describe_text(rec, everything, live, recent, _now(), terminal=_terminal()))


def _one(refs: tuple[str, ...]) -> record.ResourceKey:
    """The one resource ``KIND NAME`` or ``KIND/NAME`` names."""
    _kind, keys = selection.parse_refs(refs)
    if len(keys) != 1:
        raise click.UsageError("name exactly one resource: KIND NAME or KIND/NAME")
    return keys[0]


def _since(_ctx: click.Context, _param: click.Parameter, value: str | None) -> dt.datetime | None:
    if value is None:
        return None
    try:
        return output.parse_since(value, _now())
    except ValueError as exc:
        raise click.BadParameter(str(exc)) from exc


class _EventPrinter:
    """Prints batches of events as table rows (header once) or JSON Lines."""

    def __init__(self, output_format: str) -> None:
        self.output_format = output_format
        self.printed = False

    def __call__(self, batch: Sequence[record.EventRecord]) -> None:
        if not batch:
            return
        if self.output_format == "json":
            for event in batch:
                click.echo(json.dumps(views.event_json(event), ensure_ascii=False))
        else:
            now = _now()
            rows = [views.event_row(event, now) for event in batch]
            click.echo(
                output.table(
                    views.EVENT_HEADERS, rows, terminal=_terminal(), header=not self.printed
                )
            )
        self.printed = True


class _Matching(_EventPrinter):
    """An :class:`_EventPrinter` of the events of resources a selector picks (record labels)."""

    def __init__(
        self, show: _EventPrinter, store: store_module.Store, selector: selectors.Selector
    ) -> None:
        super().__init__(show.output_format)
        self.store = store
        self.selector = selector

    def keep(self, batch: Sequence[record.EventRecord]) -> list[record.EventRecord]:
        records = self.store.resources(include_deleted=True)
        picked = {r.key for r in records if self.selector.matches(r.labels)}
        return [event for event in batch if event.key in picked]

    def __call__(self, batch: Sequence[record.EventRecord]) -> None:
        super().__call__(self.keep(batch))


def _follow(
    store: store_module.Store,
    key: record.ResourceKey | None,
    cursor: dt.datetime,
    seen: dict[int, int],
    show: _EventPrinter,
) -> None:
    """Poll for new events and repeats folded into old ones, until interrupted.

    A repeat updates its old row (count and last seen) instead of adding one, so
    polling by id would miss it: this polls by ``last_seen`` and remembers the
    count printed for each event at the cursor, printing a row again when its
    count grew.
    """
    while True:
        _wait(POLL_SECONDS)
        fresh = store.events(key, since=cursor)
        show([event for event in fresh if seen.get(event.id) != event.count])
        if fresh:
            cursor = max(event.last_seen for event in fresh)
            seen = {event.id: event.count for event in fresh if event.last_seen >= cursor}


@click.command()
@click.argument(
    "refs", nargs=-1, metavar="[KIND NAME | KIND/NAME]", shell_complete=selection.complete_refs
)
@selection.selector_option
@click.option(
    "--since",
    callback=_since,
    metavar="DURATION|TIME",
    help="Only events last seen since then: 30s, 5m, 1h, 2d or an ISO timestamp.",
)
@click.option("--follow", is_flag=True, help="Keep printing new and repeated events until Ctrl-C.")
@click.option(
    "-o",
    "--output",
    "output_format",
    type=click.Choice(["table", "json"]),
    default="table",
    show_default=True,
    help="json: one JSON object per line.",
)
@click.option("--limit", type=click.IntRange(min=1), default=None, help="Only the newest N events.")
@click.pass_context
def events(
    ctx: click.Context,
    refs: tuple[str, ...],
    selector: selectors.Selector | None,
    since: dt.datetime | None,
    follow: bool,
    output_format: str,
    limit: int | None,
) -> None:
    """The event log, oldest first, of every resource or of KIND/NAME.

    With -l, only the events of resources whose labels (in the record) match.
    """
    key = _one(refs) if refs else None
    started = _now()
    with common.open_store(ctx, read_only=True) as store:
        show = _EventPrinter(output_format)
        found = store.events(key, since=since, limit=None if selector else limit)
        if selector is not None:
            matching = _Matching(show, store, selector)
            found = matching.keep(found)
            found = found[-limit:] if limit else found
            show = matching
        show(found)
        if not follow:
            if not found and output_format == "table":
                click.echo("No events found.", err=True)
            return
        cursor = found[-1].last_seen if found else since or started
        seen = {event.id: event.count for event in found if event.last_seen >= cursor}
        try:
            _follow(store, key, cursor, seen, show)
        except KeyboardInterrupt:
            return


@click.command()
@click.argument(
    "refs",
    nargs=-1,
    required=True,
    metavar="KIND NAME | KIND/NAME",
    shell_complete=selection.complete_refs,
)
@click.option(
    "-o",
    "--output",
    "output_format",
    type=click.Choice(["text", "json", "yaml"]),
    default="text",
    show_default=True,
)
@click.pass_context
def history(ctx: click.Context, refs: tuple[str, ...], output_format: str) -> None:
    """Every applied revision of KIND/NAME with what changed from the one before."""
    key = _one(refs)
    with common.open_store(ctx, read_only=True) as store:
        revisions = store.history(key)
        rec = store.get(key, include_deleted=True)
    if not revisions and rec is None:
        raise _not_found(key)
    deleted = rec.deleted_at if rec is not None else None
    if output_format != "text":
        click.echo(output.document(views.history_json(key, revisions, deleted), output_format))
        return
    now = _now()
    lines = views.history_lines(revisions, now)
    if deleted is not None:
        lines += ["", f"Deleted {documents.timestamp(deleted)} ({output.age(deleted, now)} ago)"]
    click.echo("\n".join(lines) if lines else f"{key} has no applied revisions.")
