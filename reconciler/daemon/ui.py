"""The daemon's web UI at ``/`` (SPEC §11): pages rendered from the record, kept live by SSE.

Argo CD's UI is the model: a list of what is declared with its health (phase,
power) and sync (drift) side by side, one page per resource with its applied
spec, conditions, events and history with diffs, and updates pushed without a
reload. Pages are rendered here, on the server, by Jinja2 templates with
autoescaping on (``templates/``), so every value from the record, a name like
``<script>`` included, reaches the browser as text; nothing builds HTML by
string formatting. The little JavaScript (``static/ui.js``, no build step)
only signs in, swaps fragments and applies the list's filters as they are typed
(the form works without it):

* **Signing in** keeps the server read-only (GET and HEAD only). The login
  page's script sends ``GET /api/v1/session`` with ``Authorization: Bearer``;
  a valid token is answered with the ``infinibay_token`` cookie
  (:func:`reconciler.daemon.auth.session_cookie`: ``HttpOnly``, so no page
  script reads it back; ``SameSite=Strict``, so no other site's page sends
  it; ``Secure`` on a TLS listener) and ``{name, role}``. ``/logout`` clears it.
* **Who sees what** is :mod:`reconciler.models.access`, as for the JSON API:
  a ``user`` sees only its VMs and their events, another's VM is a 404 as if
  absent, and the console link shows only where
  :func:`~reconciler.models.access.may_open_console` allows it. A page asked
  for without a valid cookie is a 303 to ``/login`` (the API keeps its 401),
  and a stale cookie is cleared on the way, so a browser stops presenting it.
* **Live updates**: the script listens to ``/api/v1/stream`` (the cookie
  authenticates it) and re-fetches the page's fragment
  (``/ui/fragments/...``) and swaps the parts marked ``data-swap``: at once
  on an event, then at most once more per quarter second for a burst. The
  fragment is rendered from the record like the page, level-based: an
  event only says *when* to look again, never *what* to show.
* **Drift** as the list shows it: ``Drifted`` while the condition says so
  (or a ``DriftDetected`` event is newer than the status), ``Healed`` for
  :data:`HEALED_FOR` after a ``DriftCorrected``, so a correction that took a
  second is still seen by whoever looks, else ``In sync``.
* **Headers**: every answer here carries a Content-Security-Policy that
  allows only this origin's scripts and styles (no inline ones), frames from
  nowhere, ``nosniff`` and ``no-referrer``. No page holds a token or a
  graphics password: the record has neither (hashes only, and the password
  lives in libvirt), and the session cookie is not readable by scripts.

Nothing here opens a socket: :mod:`reconciler.daemon.http` routes to
:class:`Pages` and sends the :class:`Page` it gets back.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import importlib.resources
import json
import urllib.parse
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

import jinja2
import yaml

from reconciler import errors
from reconciler.daemon import auth
from reconciler.models import access, catalog, documents, kinds, record
from reconciler.planning import diff
from reconciler.store import store as store_module

__all__ = ["HEADERS", "HEALED_FOR", "STATIC", "Page", "Pages", "serves"]

HEADERS = {
    "Content-Security-Policy": "default-src 'self'; img-src 'self' data:; frame-ancestors 'none'",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
}
STATIC = {
    "ui.css": "text/css; charset=utf-8",
    "ui.js": "text/javascript; charset=utf-8",
    # the console page's (reconciler.daemon.console)
    "console.css": "text/css; charset=utf-8",
    "console.js": "text/javascript; charset=utf-8",
}
HEALED_FOR = dt.timedelta(minutes=10)
_HTML = "text/html; charset=utf-8"
_RECENT_EVENTS = 15  # events on the list page
_PAGE_EVENTS = 100  # events on a resource page
_DRIFT_EVENTS = 500  # newest events read to tell drifted and healed resources
_DRIFT_REASONS = ("DriftDetected", "DriftCorrected")
_PHASES = ("Ready", "Pending", "Failed", "Conflict")


@dataclasses.dataclass(frozen=True)
class Page:
    """One answer of the UI: what :mod:`reconciler.daemon.http` sends as it is."""

    status: int
    body: bytes
    content_type: str = _HTML
    headers: Mapping[str, str] = dataclasses.field(default_factory=dict)


_PATHS: tuple[list[str], ...] = ([], ["login"], ["logout"], ["api", "v1", "session"])


def serves(parts: Sequence[str]) -> bool:
    """Whether the path (split on ``/``) is the UI's: its pages, fragments, files and login."""
    return list(parts) in _PATHS or list(parts[:1]) in (["ui"], ["static"])


@dataclasses.dataclass(frozen=True)
class _Filters:
    """The list's query: ``kind``, ``phase``, ``label`` (``KEY`` or ``KEY=VALUE``), ``q``."""

    kind: kinds.Kind | None = None
    phase: str = ""
    label: str = ""
    q: str = ""

    @classmethod
    def of(cls, query: Mapping[str, list[str]]) -> _Filters:
        def one(name: str) -> str:
            return (query.get(name) or [""])[0].strip()

        kind = None
        if text := one("kind"):
            try:
                kind = catalog.parse_kind(text)
            except errors.UsageError:
                kind = None  # a filter that names no kind filters nothing, as the form offers
        return cls(kind, one("phase"), one("label"), one("q"))

    @property
    def short_kind(self) -> str:
        return catalog.short(self.kind) if self.kind else ""

    @property
    def query(self) -> str:
        """The query string that asks for these filters again (for the fragment's URL)."""
        pairs = {
            "kind": self.short_kind,
            "phase": self.phase,
            "label": self.label,
            "q": self.q,
        }
        return urllib.parse.urlencode({k: v for k, v in pairs.items() if v})

    def keep(self, row: _Row) -> bool:
        if self.kind is not None and row.kind is not self.kind:
            return False
        if self.phase and row.phase.lower() != self.phase.lower():
            return False
        if self.label:
            key, sep, value = self.label.partition("=")
            if key.strip() not in row.labels:
                return False
            if sep and row.labels[key.strip()] != value.strip():
                return False
        return not self.q or self.q.lower() in row.haystack


@dataclasses.dataclass(frozen=True)
class _Drift:
    state: str  # "drifted", "healed", "in-sync" or "unknown": the CSS class
    text: str
    detail: str = ""


@dataclasses.dataclass(frozen=True)
class _Row:
    """A resource as the list and its page show it."""

    kind: kinds.Kind
    name: str
    href: str
    phase: str
    power: str
    drift: _Drift
    host: str
    ips: tuple[str, ...]
    owner: str
    labels: Mapping[str, str]

    @property
    def haystack(self) -> str:
        words = [self.name, self.kind.value, self.phase, self.power, self.host, self.owner]
        words += [*self.ips, *(f"{k}={v}" for k, v in self.labels.items())]
        return " ".join(words).lower()


def _href(kind: kinds.Kind, name: str, under: str = "/ui") -> str:
    return f"{under}/{catalog.short(kind)}/{urllib.parse.quote(name, safe='')}"


def _condition(rec: record.ResourceRecord, kind: str) -> Mapping[str, Any] | None:
    found = [c for c in rec.status.get("conditions") or [] if c.get("type") == kind]
    return found[0] if found else None


def _aware(moment: dt.datetime) -> dt.datetime:
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=dt.UTC)


def _drift(rec: record.ResourceRecord, last: record.EventRecord | None, now: dt.datetime) -> _Drift:
    condition = _condition(rec, "Drifted")
    if condition is not None and condition.get("status") == "True":
        return _Drift("drifted", "Drifted", str(condition.get("message") or ""))
    if last is not None:
        when = documents.timestamp(last.last_seen)
        written = rec.status.get("lastReconciled")
        newer = written is None or str(written) < when
        if last.reason == "DriftDetected" and newer:
            return _Drift("drifted", "Drifted", last.message)
        if last.reason == "DriftCorrected" and now - _aware(last.last_seen) <= HEALED_FOR:
            return _Drift("healed", "Healed", f"{last.message} at {when}")
    if condition is None:
        return _Drift("unknown", "-")
    return _Drift("in-sync", "In sync")


def _row(rec: record.ResourceRecord, last: record.EventRecord | None, now: dt.datetime) -> _Row:
    kind = kinds.Kind(rec.key.kind)
    status = rec.status
    vm = kind is kinds.Kind.VIRTUAL_MACHINE
    spec = rec.spec.get("spec") if isinstance(rec.spec.get("spec"), dict) else {}
    host = status.get("host") or (spec or {}).get("host") or "local"
    return _Row(
        kind=kind,
        name=rec.key.name,
        href=_href(kind, rec.key.name),
        phase=str(status.get("phase") or "Unknown"),
        power=str(status.get("power") or "-") if vm else "-",
        drift=_drift(rec, last, now),
        host=str(host) if vm else "-",
        ips=tuple(str(ip) for ip in status.get("ips") or ()),
        owner=rec.labels.get(access.OWNER_LABEL, ""),
        labels=dict(rec.labels),
    )


def _last_drift(
    events: Iterable[record.EventRecord],
) -> dict[record.ResourceKey, record.EventRecord]:
    """Each resource's newest drift event (``events`` oldest first)."""
    return {e.key: e for e in events if e.reason in _DRIFT_REASONS}


def _events(
    events: Iterable[record.EventRecord], linked: frozenset[record.ResourceKey]
) -> list[dict[str, Any]]:
    """Events as the API shapes them, newest first, each with a link to its resource if
    it is one of ``linked`` (the source's events, and deleted resources, have none)."""
    shown = []
    for event in events:
        href = None
        if event.key in linked:
            href = _href(kinds.Kind(event.key.kind), event.key.name)
        shown.append({**documents.event(event), "href": href})
    return shown[::-1]


@dataclasses.dataclass(frozen=True)
class _Change:
    sign: str  # "+", "-" or "~"
    path: str
    old: str
    new: str


def _value(value: Any) -> str:
    return value if isinstance(value, str) else json.dumps(value, default=str, sort_keys=True)


def _changes(before: Mapping[str, Any], after: Mapping[str, Any]) -> list[_Change]:
    """What changed from one revision's spec to the next; derived ``effective`` fields last."""
    found = [
        _Change(
            {"added": "+", "removed": "-"}.get(d.op.value, "~"),
            diff.render_path(d.path) or "(document)",
            _value(d.old),
            _value(d.new),
        )
        for d in diff.document_diff(dict(before), dict(after))
    ]
    declared = [c for c in found if not c.path.startswith("effective")]
    return declared or found


@dataclasses.dataclass(frozen=True)
class _Revision:
    rev: record.RevisionRecord
    applied: str
    changes: list[_Change]
    first: bool


def _revisions(revisions: Sequence[record.RevisionRecord]) -> list[_Revision]:
    """Newest first, each with its diff against the one before it."""
    shown = [
        _Revision(
            rev,
            documents.timestamp(rev.applied_at),
            _changes(before.spec, rev.spec) if before is not None else [],
            before is None,
        )
        for before, rev in zip([None, *revisions[:-1]], revisions, strict=True)
    ]
    return shown[::-1]


@dataclasses.dataclass(frozen=True)
class _Console:
    label: str
    href: str | None  # None: nothing to open now, the label says why


def _console(rec: record.ResourceRecord, who: access.Principal) -> _Console | None:
    """A VM's console link where it has a display and ``who`` may open it (VNC: the
    browser console; SPICE: a ``.vv`` for virt-viewer); a stopped guest has none open."""
    if rec.key.kind != kinds.Kind.VIRTUAL_MACHINE.value or not access.may_open_console(who, rec):
        return None
    effective = rec.spec.get("effective")
    graphics = effective.get("graphics_type") if isinstance(effective, dict) else None
    if graphics not in (kinds.GraphicsType.VNC.value, kinds.GraphicsType.SPICE.value):
        return None
    if rec.status.get("power") != kinds.PowerState.RUNNING.value:
        return _Console("The console opens while the VM runs.", None)
    name = urllib.parse.quote(rec.key.name, safe="")
    if graphics == kinds.GraphicsType.VNC.value:
        return _Console("Open console", f"/console/{name}")
    return _Console("Download .vv", f"/console/{name}/vv")


@dataclasses.dataclass(frozen=True)
class _Banner:
    """The source's trouble, from the readiness's ``source`` section."""

    refused: str | None
    applied: str | None
    unavailable: str | None
    errors: tuple[str, ...]


def _banner(detail: Mapping[str, Any], who: access.Principal) -> _Banner | None:
    """What the source refused, or why it cannot be read; ``None`` while it is valid.

    Not for a ``user``: a refused commit's errors quote manifests of every owner.
    """
    source = detail.get("source")
    if who.role is access.Role.USER or not isinstance(source, dict):
        return None
    banner = _Banner(
        refused=source.get("refusedRevision"),
        applied=source.get("appliedRevision"),
        unavailable=source.get("unavailable"),
        errors=tuple(str(line) for line in source.get("errors") or ()),
    )
    return banner if banner.refused or banner.unavailable else None


def _yaml(spec: Any) -> str:
    """The applied spec as YAML, without the fields it leaves unset (``null`` in the record)."""

    def set_only(value: Any) -> Any:
        if isinstance(value, dict):
            return {k: set_only(v) for k, v in value.items() if v is not None}
        if isinstance(value, list):
            return [set_only(v) for v in value]
        return value

    document = set_only(spec) if isinstance(spec, dict) else {}
    return yaml.safe_dump(document, sort_keys=False, allow_unicode=True) if document else "{}\n"


def _when(stamp: Any) -> str:
    """``2024-05-01T12:00:00+00:00`` as ``2024-05-01 12:00:00 UTC``: what a person reads."""
    text = str(stamp or "")
    if text.endswith("+00:00"):
        return text[: -len("+00:00")].replace("T", " ", 1) + " UTC"
    return text or "-"


class Pages:
    """The UI over one record; ``readiness`` is the probe's (for the source banner)."""

    def __init__(
        self,
        store: store_module.Store,
        readiness: Callable[[], tuple[bool, dict[str, Any]]],
        *,
        secure: bool = False,
        clock: Callable[[], dt.datetime] = lambda: dt.datetime.now(dt.UTC),
    ) -> None:
        self._store = store
        self._readiness = readiness
        self._secure = secure
        self._clock = clock
        self._env = jinja2.Environment(
            loader=jinja2.PackageLoader("reconciler.daemon", "templates"),
            autoescape=True,  # every template, whatever its name: see the module doc
            undefined=jinja2.StrictUndefined,
            trim_blocks=True,
            lstrip_blocks=True,
        )
        self._env.filters["when"] = _when
        folder = importlib.resources.files("reconciler.daemon") / "static"
        self._static = {name: (folder / name).read_bytes() for name in STATIC}

    # -- what needs no token -------------------------------------------------------

    def public(self, parts: Sequence[str]) -> Page | None:
        """The login page, the logout and the static files; ``None`` for the rest."""
        if list(parts) == ["login"]:
            return self._html(200, "login.html", who=None)
        if list(parts) == ["logout"]:
            return self._to_login(clear=True)
        if parts[:1] == ["static"]:
            if len(parts) == 2 and parts[1] in STATIC:
                return Page(200, self._static[parts[1]], STATIC[parts[1]], HEADERS)
            return self._not_found(None)
        return None

    def refused(self, parts: Sequence[str], refusal: auth.Refused, presented: str | None) -> Page:
        """No valid token: the session says 401 or 429 as JSON; a page goes to the login."""
        if list(parts) == ["api", "v1", "session"] or refusal.status == 429:
            retry = {"Retry-After": str(refusal.retry_after or 1)} if refusal.status == 429 else {}
            text = "unauthorized" if refusal.status == 401 else "too many failed attempts"
            body = json.dumps({"error": text}).encode()
            return Page(refusal.status, body, "application/json", {**HEADERS, **retry})
        return self._to_login(clear=bool(presented))

    # -- what a principal asks for --------------------------------------------------

    def answer(
        self,
        parts: Sequence[str],
        query: Mapping[str, list[str]],
        who: access.Principal,
        presented: str,
    ) -> Page:
        path = [urllib.parse.unquote(p) for p in parts]
        match path:
            case ["api", "v1", "session"]:
                return self._session(who, presented)
            case []:
                return self._list(query, who, "list.html")
            case ["ui", "fragments", "resources"]:
                return self._list(query, who, "list_live.html")
            case ["ui", "fragments", "resource", kind, name]:
                return self._resource(kind, name, who, "resource_live.html")
            case ["ui", kind, name]:
                return self._resource(kind, name, who, "resource.html")
        return self._not_found(who)

    def _session(self, who: access.Principal, presented: str) -> Page:
        cookie = auth.session_cookie(presented, secure=self._secure)
        body = json.dumps({"name": who.name, "role": who.role.value}).encode()
        return Page(200, body, "application/json", {**HEADERS, "Set-Cookie": cookie})

    def _list(self, query: Mapping[str, list[str]], who: access.Principal, template: str) -> Page:
        filters = _Filters.of(query)
        now = self._clock()
        visible = [r for r in self._store.resources() if access.visible(who, r)]
        mine = frozenset(r.key for r in visible)
        events = [
            e for e in self._store.events(limit=_DRIFT_EVENTS) if access.event_visible(who, e, mine)
        ]
        drift = _last_drift(events)
        rows = [_row(r, drift.get(r.key), now) for r in visible]
        return self._html(
            200,
            template,
            who=who,
            rows=[row for row in rows if filters.keep(row)],
            total=len(rows),
            filters=filters,
            kinds=[(catalog.short(k), catalog.display(k, plural=True)) for k in kinds.Kind],
            phases=_PHASES,
            events=_events(events[-_RECENT_EVENTS:], mine),
            source=_banner(self._readiness()[1], who),
            live="/ui/fragments/resources" + (f"?{filters.query}" if filters.query else ""),
        )

    def _resource(self, kind_text: str, name: str, who: access.Principal, template: str) -> Page:
        try:
            kind = catalog.parse_kind(kind_text)
        except errors.UsageError:
            return self._not_found(who)
        rec = self._store.get(record.ResourceKey(kind.value, name))
        if rec is None or not access.visible(who, rec):  # another's: as if absent
            return self._not_found(who)
        events = self._store.events(rec.key, limit=_PAGE_EVENTS)
        return self._html(
            200,
            template,
            who=who,
            rec=rec,
            row=_row(rec, _last_drift(events).get(rec.key), self._clock()),
            spec=_yaml(rec.spec.get("spec")),
            conditions=rec.status.get("conditions") or [],
            events=_events(events, frozenset()),
            revisions=_revisions(self._store.history(rec.key)),
            console=_console(rec, who),
            live=_href(kind, name, "/ui/fragments/resource"),
            subject=f"{rec.key.kind}/{rec.key.name}",
        )

    # -- rendering ---------------------------------------------------------------

    def _html(self, status: int, template: str, **values: Any) -> Page:
        body = self._env.get_template(template).render(**values).encode()
        return Page(status, body, _HTML, HEADERS)

    def _not_found(self, who: access.Principal | None) -> Page:
        return self._html(404, "not_found.html", who=who)

    def _to_login(self, *, clear: bool) -> Page:
        headers = {**HEADERS, "Location": "/login"}
        if clear:
            headers["Set-Cookie"] = auth.session_cookie("", secure=self._secure, max_age=0)
        return Page(303, b"", "text/plain; charset=utf-8", headers)  # See Other: GET /login
