"""``infinibay export``: manifests for the libvirt objects that exist now (SPEC §12).

One libvirt observation is turned into manifests by
:mod:`reconciler.manifests.export`; the record says which objects the
reconciler manages already (skipped unless ``--all``). Documents go to stdout
(one YAML stream), or with ``-o DIR`` one file each, ``DIR/KIND-NAME.yaml``.
What a manifest cannot say, and is kept as it is by adoption, is written as
comments above its document; objects no manifest can represent are named on
stderr. Nothing is written to libvirt or the record, and no record is created.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import click

from reconciler import errors
from reconciler.cli import common, output
from reconciler.manifests import export as exporting
from reconciler.models import catalog, kinds, naming, observed, record
from reconciler.store import store as store_module

__all__ = ["export"]

_EXPORTABLE = (kinds.Kind.STORAGE_POOL, kinds.Kind.NETWORK, kinds.Kind.VIRTUAL_MACHINE)


def _owners(world: observed.World) -> dict[kinds.Kind, dict[str, observed.Ownership | None]]:
    return {
        kinds.Kind.VIRTUAL_MACHINE: {n: d.owner for n, d in world.domains.items()},
        kinds.Kind.NETWORK: {n: d.owner for n, d in world.networks.items()},
        kinds.Kind.STORAGE_POOL: dict.fromkeys(world.pools),
    }


def _managed(
    world: observed.World, records: list[record.ResourceRecord], installation: str
) -> tuple[dict[kinds.Kind, dict[str, str]], dict[kinds.Kind, set[str]]]:
    """Libvirt name -> resource name of what this installation manages; and foreign names."""
    managed: dict[kinds.Kind, dict[str, str]] = {k: {} for k in _EXPORTABLE}
    foreign: dict[kinds.Kind, set[str]] = {k: set() for k in _EXPORTABLE}
    for rec in records:
        kind = kinds.Kind(rec.key.kind)
        if rec.deleted_at is None and kind in managed:
            managed[kind][naming.libvirt_name(rec.key.name, rec.annotations)] = rec.key.name
    for kind, owners in _owners(world).items():
        for name, owner in owners.items():
            if owner is None:
                continue
            if owner.installation == installation:
                managed[kind].setdefault(name, owner.name)
            else:
                foreign[kind].add(name)
    return managed, foreign


def _selection(
    world: observed.World,
    names: Mapping[kinds.Kind, Mapping[str, str]],
    kind: kinds.Kind | None,
    name: str | None,
) -> dict[kinds.Kind, set[str]]:
    """The libvirt names asked for; NAME is a libvirt name or the name it is exported under."""
    wanted = [kind] if kind is not None else list(_EXPORTABLE)
    selected = {k: set(names.get(k, {})) for k in wanted}
    if kind is not None and name is not None:
        selected[kind] = {
            libvirt for libvirt, exported in names[kind].items() if name in (libvirt, exported)
        }
        if not selected[kind]:
            raise errors.NotFound(
                f"no libvirt {catalog.libvirt_what(kind)} named {name!r} at this connection"
            )
    return selected


def _text(item: exporting.Exported) -> str:
    comments = "".join(f"# {note}\n" for note in item.notes)
    return comments + output.to_yaml(item.document)


@click.command()
@click.argument("kind", required=False)
@click.argument("name", required=False)
@click.option(
    "--all",
    "everything",
    is_flag=True,
    help="Also export objects the reconciler manages already (or another installation does).",
)
@click.option(
    "-o",
    "--output-dir",
    "directory",
    type=click.Path(file_okay=False, path_type=Path),
    help="Write one file per object, DIR/KIND-NAME.yaml, instead of one stream to stdout.",
)
@click.pass_context
def export(
    ctx: click.Context,
    kind: str | None,
    name: str | None,
    everything: bool,
    directory: Path | None,
) -> None:
    """Write manifests for the libvirt objects that exist now (domains, networks, pools).

    Without --all only objects the reconciler does not manage yet are exported:
    what virt-install, virt-manager or virsh made. `apply --adopt` of the output
    takes them over without changing what the guest sees, and a `plan` after it
    is empty. KIND is vm, network or pool; NAME is the libvirt name or the name
    it is exported under. A libvirt name that is not a DNS label (Win11,
    ubuntu22.04) is exported under one, with the annotation
    infinibay.io/libvirt-name holding the real name. Devices the manifests do
    not model are listed as comments and kept as they are.

    Exit codes: 0 exported (or nothing to export), 1 error.
    """
    resolved = common.parse_kind(kind) if kind is not None else None
    if resolved is not None and resolved not in _EXPORTABLE:
        raise click.BadParameter(
            f"a {catalog.display(resolved)} has no libvirt object to export (vm, network, pool)",
            param_hint="KIND",
        )
    if name is not None and resolved is None:  # pragma: no cover - click fills KIND first
        raise click.UsageError("NAME needs a KIND")
    records: list[record.ResourceRecord] = []
    installation = ""  # without a record nothing is managed: everything is exported
    if store_module.missing_record(common.settings_of(ctx).database_url) is None:
        with common.open_store(ctx, read_only=True) as store:
            records = store.resources()
            installation = store.installation_id()
    with common.hypervisor(ctx) as hv:
        world = hv.observe()
    managed, foreign = _managed(world, records, installation)
    names = exporting.resource_names(world, managed)
    selected = _selection(world, names, resolved, name)
    if not everything:
        for k, chosen in selected.items():
            chosen -= managed[k].keys() | foreign[k]
    exported, skipped = exporting.export(world, names, selected)
    for refused in skipped:
        click.echo(
            f"warning: {catalog.short(refused.kind)}/{refused.libvirt_name} not exported: "
            f"{refused.reason}",
            err=True,
        )
    if directory is None:
        click.echo("---\n".join(_text(item) for item in exported), nl=False)
    else:
        directory.mkdir(parents=True, exist_ok=True)
        for item in exported:
            path = directory / f"{catalog.short(item.kind)}-{item.name}.yaml"
            path.write_text(_text(item), encoding="utf-8")
            click.echo(f"wrote {path}", err=True)
    if not exported:
        click.echo("Nothing to export.", err=True)
