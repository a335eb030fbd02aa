"""The audit journal: what a pass is about to do and has done, on disk before the record.

The record is the audit log, but it can be unreachable in the middle of a
pass (PostgreSQL restarted, the network cut), and a pass can be killed at any
instruction. Neither may lose what was done to libvirt. So every record write
of the executor goes through this journal, a JSON-lines file private to this
user under the state directory
(``$XDG_STATE_HOME/infinibay/journal/<installation>.jsonl``, 0600 in a 0700
directory, whatever the umask):

* **intent** — before a change's first libvirt call, the caller's thread
  appends an intent (``Creating``, ``Stopping``, ``Deleting``, ...) and queues
  its event for the record;
* **outcome** — when the change ends, its events (``Created``, ``Stopped``, ...
  exactly as the executor produced them) and tombstone are appended and the
  intent is closed;
* **flush** — whatever is queued is written to the record in one batch, then
  marked flushed. A flush that fails (the record is down) keeps the queue, on
  disk and in memory, and is retried by the next outcome after a short pause
  and at the start of the next pass; a file with nothing left in it is
  truncated.

A pass killed mid-way leaves intents that no outcome closed. The next pass —
under the writer lock, so no other pass is running — closes each with what it
observes: ``Created``/``Deleted`` when libvirt shows the object as the intent
wanted it, the intent's outcome for a change that is no longer planned, else a
``Warning`` ``Interrupted`` (this pass takes the change up again). A pass
killed on another host (a daemon leader whose standby takes over) left its
journal out of reach, but its intents reached the record: an intent event of
an aborted run that no other event of that object and run follows is closed
the same way.

The executor's worker threads never touch the journal or the record: all of
this runs on the caller's thread, between the workers' results. The file is
written with plain ``write`` calls, which survive the death of the process;
only a host crash may lose the tail, as it may lose the tail of a SQLite
record in WAL mode.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import time
import typing
import uuid
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

from reconciler import errors, settings
from reconciler.engine import ports
from reconciler.models import kinds, observed, record
from reconciler.planning import actions

__all__ = ["INTERRUPTED", "OBSERVED", "Intent", "Journal", "intent_reasons"]

INTERRUPTED = "Interrupted"
OBSERVED = "observed after an interrupted pass"
_RETRY_S = 5.0
_log = logging.getLogger(__name__)

_GERUNDS = {
    actions.Verb.CREATE: ("Creating", "Created"),
    actions.Verb.DELETE: ("Deleting", "Deleted"),
    actions.Verb.REPLACE: ("Replacing", "Replaced"),
}
_POWER = {
    (kinds.PowerState.PAUSED, kinds.PowerState.RUNNING): ("Resuming", "Resumed"),
    (None, kinds.PowerState.RUNNING): ("Starting", "Started"),
    (None, kinds.PowerState.STOPPED): ("Stopping", "Stopped"),
    (None, kinds.PowerState.PAUSED): ("Pausing", "Paused"),
}
# The power state an intent's outcome means, to check against what is observed.
_POWER_DONE = {done: power for (_, power), (_, done) in _POWER.items()}


# Intent reason -> (the verb it stands for, as far as closing it goes; its outcome).
_INTENT_OF: dict[str, tuple[actions.Verb, str]] = {
    intent: (verb if verb in _GERUNDS else actions.Verb.UPDATE, done)
    for verb, (intent, done) in [
        *_GERUNDS.items(),
        *((actions.Verb.UPDATE, reasons) for reasons in _POWER.values()),
        (actions.Verb.UPDATE, ("Restarting", "Restarted")),
        (actions.Verb.UPDATE, ("Updating", "Updated")),
    ]
}


def intent_reasons(change: actions.Change) -> tuple[str, str] | None:
    """(intent, outcome) reasons, e.g. ``("Stopping", "Stopped")``; ``None``: no libvirt action."""
    if change.verb in (actions.Verb.CONFLICT, actions.Verb.PROTECTED, actions.Verb.UNKNOWN):
        return None
    # A template lives only in the record, and a record-only update touches no libvirt
    # object: the record write itself is the whole action, nothing to announce first.
    if change.key.kind == kinds.Kind.TEMPLATE.value or (
        change.verb is actions.Verb.UPDATE
        and change.fields
        and all(f.impact is actions.Impact.RECORD for f in change.fields)
    ):
        return None
    if change.verb in _GERUNDS:
        return _GERUNDS[change.verb]
    powers = change.intended(actions.Power)
    only_power = all(
        isinstance(i, actions.Power | actions.Restart) for i in change.intents
    ) and all(f.impact is not actions.Impact.RECORD for f in change.fields)
    if powers and only_power:
        old, new = powers[0].current, powers[0].want
        return _POWER.get((old, new)) or _POWER[(None, new)]
    if change.intents and only_power:
        return "Restarting", "Restarted"
    return "Updating", "Updated"


@dataclasses.dataclass(frozen=True)
class Intent:
    id: str
    key: record.ResourceKey
    verb: actions.Verb
    reason: str  # Creating, Stopping, ...
    done: str  # the outcome that closes it: Created, Stopped, ...
    run_id: record.RunId | None
    revision: str | None

    def as_json(self) -> dict[str, Any]:
        return {
            "op": "intent",
            "id": self.id,
            "kind": self.key.kind,
            "name": self.key.name,
            "verb": self.verb.value,
            "reason": self.reason,
            "done": self.done,
            "run": self.run_id,
            "revision": self.revision,
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Intent:
        run = data.get("run")
        return cls(
            id=str(data["id"]),
            key=record.ResourceKey(str(data["kind"]), str(data["name"])),
            verb=actions.Verb(data["verb"]),
            reason=str(data["reason"]),
            done=str(data["done"]),
            run_id=record.RunId(int(run)) if run is not None else None,
            revision=data.get("revision"),
        )


@dataclasses.dataclass
class _Queued:
    """Record writes not yet in the record: events, then tombstones."""

    events: list[record.NewEvent]
    tombstones: list[record.ResourceKey]


def _event_json(event: record.NewEvent) -> dict[str, Any]:
    return {
        "kind": event.key.kind,
        "name": event.key.name,
        "type": event.type.value,
        "reason": event.reason,
        "message": event.message,
        "diff": event.diff,
        "revision": event.revision,
        "run": event.run_id,
    }


def _event_from_json(data: dict[str, Any]) -> record.NewEvent:
    run = data.get("run")
    return record.NewEvent(
        key=record.ResourceKey(str(data["kind"]), str(data["name"])),
        type=record.EventType(data["type"]),
        reason=str(data["reason"]),
        message=str(data["message"]),
        diff=data.get("diff"),
        revision=data.get("revision"),
        run_id=record.RunId(int(run)) if run is not None else None,
    )


def _exists(world: observed.World, key: record.ResourceKey, name: str) -> bool | None:
    """Whether libvirt has the object ``name`` of ``key``; ``None`` for kinds without one."""
    match kinds.Kind(key.kind):
        case kinds.Kind.VIRTUAL_MACHINE:
            return name in world.domains
        case kinds.Kind.NETWORK:
            return name in world.networks
        case kinds.Kind.STORAGE_POOL:
            return name in world.pools
        case (
            kinds.Kind.TEMPLATE
            | kinds.Kind.DEPARTMENT
            | kinds.Kind.FIREWALL_POLICY
            | kinds.Kind.HOST
        ):
            return None
        case unreachable:
            typing.assert_never(unreachable)


def _closing(intent: Intent, plan: actions.Plan, world: observed.World) -> record.NewEvent:
    """The event that closes ``intent`` of a pass that stopped, from what is observed now."""
    name = plan.libvirt(intent.key)
    exists = _exists(world, intent.key, name)
    if intent.verb is actions.Verb.CREATE and exists is not None:
        done = exists
    elif intent.verb is actions.Verb.DELETE and exists is not None:
        done = not exists
    elif (power := _POWER_DONE.get(intent.done)) is not None and exists is not None:
        # Observed, not inferred: a fenced pass's "Stopping" of a guest that a new
        # leader keeps running is not planned any more, yet it never happened.
        domain = world.domains.get(name)
        done = domain is not None and domain.power is power
    else:
        done = all(c.key != intent.key for c in plan.changes)
    if done:
        return record.NewEvent(
            key=intent.key,
            type=record.EventType.NORMAL,
            reason=intent.done,
            message=f"{intent.key} {intent.done.lower()} ({OBSERVED})",
            revision=intent.revision,
            run_id=intent.run_id,
        )
    run = f"run {intent.run_id}" if intent.run_id is not None else "a pass"
    return record.NewEvent(
        key=intent.key,
        type=record.EventType.WARNING,
        reason=INTERRUPTED,
        message=(
            f"{intent.reason.lower()} {intent.key} was interrupted ({run} "
            "stopped before it ended); the next change takes it up"
        ),
        revision=intent.revision,
        run_id=intent.run_id,
    )


class Journal:
    """One pass's view of the journal file of one installation (see the module doc)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._open: dict[str, Intent] = {}
        self._queued: dict[str, _Queued] = {}
        self._by_key: dict[record.ResourceKey, str] = {}
        self._retry_at = 0.0
        self._disk = True
        self._dir_ready = False
        self._load()

    @classmethod
    def of(cls, installation: str) -> Journal:
        return cls(settings.state_dir() / "journal" / f"{installation}.jsonl")

    # -- the file ------------------------------------------------------------------

    def _load(self) -> None:
        try:
            lines = self.path.read_text().splitlines()
        except FileNotFoundError:
            return
        except OSError as exc:
            self._lost(exc)
            return
        for line in lines:
            try:
                self._replay(json.loads(line))
            except (ValueError, KeyError, TypeError):
                continue  # a line cut short by a kill: what it said was never acted on

    def _replay(self, entry: dict[str, Any]) -> None:
        op = entry["op"]
        if op == "intent":
            intent = Intent.from_json(entry)
            self._open[intent.id] = intent
        elif op == "closed":
            self._open.pop(str(entry["id"]), None)
        elif op == "queued":
            self._queued[str(entry["id"])] = _Queued(
                [_event_from_json(e) for e in entry["events"]],
                [record.ResourceKey(str(k), str(n)) for k, n in entry["tombstones"]],
            )
        elif op == "flushed":
            for done in entry["ids"]:
                self._queued.pop(str(done), None)

    def _append(self, entries: Iterable[dict[str, Any]]) -> None:
        if not self._disk:
            return
        text = "".join(json.dumps(e, default=str) + "\n" for e in entries)
        try:
            if not self._dir_ready:
                settings.private_dir(self.path.parent)
                self._dir_ready = True
            fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
            try:
                os.write(fd, text.encode())
            finally:
                os.close(fd)
        except OSError as exc:
            self._lost(exc)

    def _lost(self, exc: OSError) -> None:
        _log.warning(
            "the audit journal %s cannot be used (%s): what a record outage or a kill "
            "interrupts may go unrecorded",
            self.path,
            exc.strerror or exc,
        )
        self._disk = False

    def _compact(self) -> None:
        """Empty the file once nothing in it is still needed."""
        if self._disk and not self._open and not self._queued:
            try:
                with self.path.open("r+") as handle:
                    handle.truncate(0)
            except FileNotFoundError:
                pass
            except OSError as exc:
                self._lost(exc)

    def _queue(
        self, events: Sequence[record.NewEvent], tombstones: Sequence[record.ResourceKey]
    ) -> dict[str, Any]:
        queue_id = uuid.uuid4().hex
        self._queued[queue_id] = _Queued(list(events), list(tombstones))
        return {
            "op": "queued",
            "id": queue_id,
            "events": [_event_json(e) for e in events],
            "tombstones": [[k.kind, k.name] for k in tombstones],
        }

    # -- a pass --------------------------------------------------------------------

    @property
    def open_intents(self) -> list[Intent]:
        return list(self._open.values())

    @property
    def queued_events(self) -> list[record.NewEvent]:
        return [e for q in self._queued.values() for e in q.events]

    def begin(
        self, changes: Sequence[actions.Change], run_id: record.RunId, revision: str | None
    ) -> None:
        """Write the intents of ``changes``, which are about to start."""
        entries: list[dict[str, Any]] = []
        intent_events: list[record.NewEvent] = []
        for change in changes:
            reasons = intent_reasons(change)
            if reasons is None:
                continue
            intent = Intent(uuid.uuid4().hex, change.key, change.verb, *reasons, run_id, revision)
            self._open[intent.id] = intent
            self._by_key[change.key] = intent.id
            entries.append(intent.as_json())
            intent_events.append(
                record.NewEvent(
                    key=change.key,
                    type=record.EventType.NORMAL,
                    reason=intent.reason,
                    message=f"{change.key} {intent.reason.lower()}",
                    revision=revision,
                    run_id=run_id,
                )
            )
        if entries:
            entries.append(self._queue(intent_events, ()))
            self._append(entries)

    def finish(
        self,
        key: record.ResourceKey,
        events: Sequence[record.NewEvent],
        tombstones: Sequence[record.ResourceKey] = (),
    ) -> None:
        """Record the outcome of the change of ``key``: its events, and close its intent."""
        entries = [self._queue(events, tombstones)]
        intent_id = self._by_key.pop(key, None)
        if intent_id is not None:
            self._open.pop(intent_id, None)
            entries.append({"op": "closed", "id": intent_id})
        self._append(entries)

    def close_interrupted(self, plan: actions.Plan, world: observed.World) -> list[Intent]:
        """Close the intents an earlier pass left open with what this pass observes."""
        stale = [i for i in self._open.values() if i.id not in self._by_key.values()]
        for intent in stale:
            self._open.pop(intent.id, None)
            event = _closing(intent, plan, world)
            self._append([self._queue([event], ()), {"op": "closed", "id": intent.id}])
        return stale

    def close_unrecorded(
        self, events: Sequence[record.EventRecord], plan: actions.Plan, world: observed.World
    ) -> list[Intent]:
        """Close intents found only in the record: ``events`` of runs that were aborted.

        The journal of a daemon that died on another host is out of reach, but
        its intents reached the record: an intent event that no other event of
        the same object and run follows was never closed.
        """
        answered = {(e.key, e.run_id) for e in events if e.reason not in _INTENT_OF}
        found = [
            Intent(
                uuid.uuid4().hex,
                e.key,
                _INTENT_OF[e.reason][0],
                e.reason,
                _INTENT_OF[e.reason][1],
                record.RunId(e.run_id) if e.run_id is not None else None,
                e.revision,
            )
            for e in events
            if e.reason in _INTENT_OF and (e.key, e.run_id) not in answered
        ]
        if found:
            self._append([self._queue([_closing(i, plan, world) for i in found], ())])
        return found

    def flush(self, store: ports.Store, *, force: bool = False) -> bool:
        """Write what is queued to the record; False (logged) while the record is unreachable.

        After a failure, further attempts wait :data:`_RETRY_S` unless ``force``:
        a record that does not answer costs each outcome a connection timeout.
        A forced flush that fails tries each entry alone: when some are written
        and others still fail, those cannot be written at all (a run the record
        no longer has, say) and are dropped with an error, so that one bad
        entry never holds back every later event.
        """
        if not self._queued:
            self._compact()
            return True
        if not force and time.monotonic() < self._retry_at:
            return False
        ids = list(self._queued)
        try:
            self._write(store, ids)
        except errors.StoreError as exc:
            if not (force and len(ids) > 1 and self._write_each(store, ids)):
                self._retry_at = time.monotonic() + _RETRY_S
                _log.warning(
                    "%d events kept in the audit journal until the record answers: %s",
                    sum(len(self._queued[i].events) for i in ids),
                    exc,
                )
                return False
        self._flushed(ids)
        return True

    def _write(self, store: ports.Store, ids: Sequence[str]) -> None:
        store.record_events([e for i in ids for e in self._queued[i].events])
        store.tombstone([k for i in ids for k in self._queued[i].tombstones])

    def _write_each(self, store: ports.Store, ids: Sequence[str]) -> bool:
        """Write entry by entry; False when none could be written (the record is down)."""
        failed: list[tuple[str, errors.StoreError]] = []
        for entry in ids:
            try:
                self._write(store, [entry])
            except errors.StoreError as exc:
                failed.append((entry, exc))
        if len(failed) == len(ids):
            return False
        for entry, refusal in failed:
            _log.error(
                "dropping audit events the record refuses: %s (%s)",
                [f"{e.key} {e.reason}" for e in self._queued[entry].events],
                refusal,
            )
        return True

    def _flushed(self, ids: Sequence[str]) -> None:
        for done in ids:
            del self._queued[done]
        self._append([{"op": "flushed", "ids": list(ids)}])
        self._compact()
