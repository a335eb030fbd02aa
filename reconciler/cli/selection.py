"""What picks resources on a command line: ``KIND NAME...``, ``KIND/NAME...``, ``-l``.

Every command that names resources accepts both forms kubectl does
(``get vm web-1 web-2`` and ``get vm/web-1 vm/web-2``), and the commands that
list or converge accept a label selector (:mod:`reconciler.models.selectors`).
Shell completion (click's: ``_INFINIBAY_COMPLETE=bash_source infinibay``) offers
kinds, and names from the record when one exists; it never creates one.
"""

from __future__ import annotations

import contextlib

import click
from click.shell_completion import CompletionItem

from reconciler import errors, settings
from reconciler.cli import common
from reconciler.models import catalog, kinds, record, selectors

__all__ = [
    "complete_refs",
    "parse_refs",
    "selector_option",
]


def _selector(
    _ctx: click.Context, _param: click.Parameter, value: str | None
) -> selectors.Selector | None:
    if value is None:
        return None
    try:
        return selectors.parse(value)
    except errors.UsageError as exc:
        raise click.BadParameter(str(exc)) from exc


selector_option = click.option(
    "-l",
    "--selector",
    callback=_selector,
    default=None,
    metavar="SELECTOR",
    help="Only resources whose labels match, e.g. app=web,tier!=db,env in (a,b),!legacy.",
)


def parse_refs(
    words: tuple[str, ...], *, names_required: bool = True
) -> tuple[kinds.Kind | None, list[record.ResourceKey]]:
    """``("vm", "a", "b")`` or ``("vm/a", "vm/b")`` -> the kind (if one) and the keys.

    With ``KIND NAME...`` the kind is returned even without names (``get vm``);
    ``KIND/NAME`` forms may mix kinds, and then no single kind is returned.
    """
    if not words:
        if names_required:
            raise click.UsageError("give KIND NAME... or KIND/NAME...")
        return None, []
    if "/" in words[0]:
        keys = []
        for word in words:
            if "/" not in word:
                raise click.UsageError(
                    f"{word!r}: give every resource as KIND/NAME, or KIND then NAMEs"
                )
            kind, name = common.parse_ref(word)
            keys.append(record.ResourceKey(kind.value, name))
        found = {k.kind for k in keys}
        return (kinds.Kind(found.pop()) if len(found) == 1 else None), keys
    kind = common.parse_kind(words[0])
    names = words[1:]
    for name in names:
        if "/" in name:
            raise click.UsageError(f"{name!r}: after KIND give plain NAMEs, not KIND/NAME")
    if names_required and not names:
        raise click.UsageError(f"give at least one NAME after {words[0]}")
    return kind, [record.ResourceKey(kind.value, name) for name in names]


# --- shell completion ------------------------------------------------------------


def _recorded(ctx: click.Context) -> list[record.ResourceRecord]:
    """The live records, when a record exists; nothing (and no new database) otherwise."""
    url = ctx.find_root().params.get("database_url") or settings.default_database_url()
    from reconciler.store import store as store_module  # only when completing names

    if store_module.missing_record(url) is not None:
        return []
    with contextlib.suppress(Exception), store_module.Store.open(url) as store:
        return list(store.resources())
    return []


def _kinds(incomplete: str, suffix: str = "") -> list[CompletionItem]:
    words = sorted({catalog.short(k) for k in kinds.Kind} | set(catalog.ALIASES))
    return [CompletionItem(w + suffix) for w in words if w.startswith(incomplete.lower())]


def complete_refs(
    ctx: click.Context, _param: click.Parameter, incomplete: str
) -> list[CompletionItem]:
    """Kinds first, then names of that kind (``vm we<TAB>``, ``vm/we<TAB>``)."""
    given = [w for w in ctx.params.get(_param.name or "", ()) or () if isinstance(w, str)]
    if "/" in incomplete:
        word, _, partial = incomplete.partition("/")
        kind = catalog.ALIASES.get(word.lower())
        if kind is None:
            return []
        return [
            CompletionItem(f"{word}/{r.key.name}")
            for r in _recorded(ctx)
            if r.key.kind == kind.value and r.key.name.startswith(partial)
        ]
    if not given:
        return _kinds(incomplete)
    kind = catalog.ALIASES.get(given[0].lower())
    if kind is None:
        return []
    return [
        CompletionItem(r.key.name)
        for r in _recorded(ctx)
        if r.key.kind == kind.value
        and r.key.name.startswith(incomplete)
        and r.key.name not in given
    ]
