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
from reconciler.cli import common, output, views
from reconciler.engine import reconcile, recorded
from reconciler.models import catalog, desired, documents, kinds, record
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


_get_output = click.option(
    "-o",
    "--output",
    "output_format",
    type=click.Choice(["table", "wide", "json", "yaml"]),
    default="table",
    show_default=True,
)


@click.command()
@click.argument("kind")
@click.argument("name", required=False)
@_get_output
@click.pass_context
def get(ctx: click.Context, kind: str, name: str | None, output_format: str) -> None:
    """List resources of KIND (or show NAME) with live status from libvirt.

    KIND is vm, template, network or pool (singular, plural or short form).
    """
    resolved = common.parse_kind(kind)
    with common.open_store(ctx, read_only=True) as store:
        everything = store.resources()
        selected = [r for r in everything if r.key.kind == resolved.value]
        if name is not None:
            selected = [r for r in selected if r.key.name == name]
            if not selected:
                raise _not_found(record.ResourceKey(resolved.value, name))
        needs_libvirt = views.view(resolved).observes and bool(selected)
        live = _observe(ctx, store, everything) if needs_libvirt else views.Live("")
    if output_format in ("json", "yaml"):
        shown = (
            views.item(selected[0], everything, live)
            if name is not None
            else views.list_document(selected, everything, live)
        )
        click.echo(output.document(shown, output_format))
        return
    if not selected:
        click.echo(f"No {catalog.display(resolved, plural=True)} found.", err=True)
        return
    headers, rows = views.table_rows(
        resolved, selected, everything, live, _now(), wide=output_format == "wide"
    )
    click.echo(output.table(headers, rows, terminal=_terminal()))


@click.command()
@click.argument("kind")
@click.argument("name")
@click.pass_context
def describe(ctx: click.Context, kind: str, name: str) -> None:
    """Show one resource: spec, status, conditions and recent events."""
    key = record.ResourceKey(common.parse_kind(kind).value, name)
    with common.open_store(ctx, read_only=True) as store:
        everything = store.resources()
        rec = next((r for r in everything if r.key == key), None)
        if rec is None:
            raise _not_found(key)
        recent = store.events(key, limit=20)
        needs_libvirt = views.view(kinds.Kind(key.kind)).observes
        live = _observe(ctx, store, everything) if needs_libvirt else views.Live("")
    click.echo(views.describe_text(rec, everything, live, recent, _now(), terminal=_terminal()))


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
@click.argument("ref", required=False, metavar="[KIND/NAME]")
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
    ref: str | None,
    since: dt.datetime | None,
    follow: bool,
    output_format: str,
    limit: int | None,
) -> None:
    """The event log, oldest first, of every resource or of KIND/NAME."""
    key = None
    if ref is not None:
        kind, name = common.parse_ref(ref)
        key = record.ResourceKey(kind.value, name)
    show = _EventPrinter(output_format)
    started = _now()
    with common.open_store(ctx, read_only=True) as store:
        found = store.events(key, since=since, limit=limit)
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
@click.argument("ref", metavar="KIND/NAME")
@click.option(
    "-o",
    "--output",
    "output_format",
    type=click.Choice(["text", "json", "yaml"]),
    default="text",
    show_default=True,
)
@click.pass_context
def history(ctx: click.Context, ref: str, output_format: str) -> None:
    """Every applied revision of KIND/NAME with what changed from the one before."""
    kind, name = common.parse_ref(ref)
    key = record.ResourceKey(kind.value, name)
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
