"""What a change's steps report, and the options they run with."""

from __future__ import annotations

import dataclasses
import threading
from collections.abc import Callable

from reconciler import errors, settings
from reconciler.models import record
from reconciler.planning import actions

__all__ = ["Options", "Outcome", "describe"]


def _no_wait(_key: record.ResourceKey, _deadline: float | None) -> None:
    """The default listener of :attr:`Options.on_wait`: nobody shows the waits."""


@dataclasses.dataclass(frozen=True)
class Options:
    # Starting or forcing off a guest is mostly waiting on QEMU: on 2 cores, 8 at once
    # start and stop 20 guests about a third faster than 4 did.
    workers: int = 8
    shutdown_timeout: float = 60.0
    allow_data_loss: bool = False
    # A deletion asked for by name (``infinibay delete``) that is protected or still in
    # use is a failure; the same deletion found by a prune is the expected outcome.
    refusal_fails: bool = False
    # Read when the plan runs, not when it was validated: a symlink on a pool's path
    # can be swapped in between (SPEC §13).
    boundary: settings.Boundary = dataclasses.field(default_factory=settings.Boundary.from_environ)
    # Set (Ctrl-C) to start nothing more: what is in flight finishes and is recorded.
    interrupt: threading.Event = dataclasses.field(default_factory=threading.Event, compare=False)
    # Told, from a worker, when a change starts waiting on a guest's ACPI shutdown (the
    # time.monotonic() deadline at which it is forced off) and when the wait ends (None).
    on_wait: Callable[[record.ResourceKey, float | None], None] = dataclasses.field(
        default=_no_wait, compare=False
    )


@dataclasses.dataclass
class Outcome:
    change: actions.Change
    ok: bool = True
    steps: list[str] = dataclasses.field(default_factory=list)
    events: list[record.NewEvent] = dataclasses.field(default_factory=list)
    error: str = ""
    # The typed error a failed change ended with; what it means is decided from it
    # alone (reconciler.engine.decision.decide).
    failure: errors.InfinibayError | None = None
    uuid: str | None = None
    # Inventory rows to drop once this outcome is recorded: volumes deleted, or a
    # claimed name that turned out to be someone else's volume.
    released: list[record.VolumeRecord] = dataclasses.field(default_factory=list)

    def event(
        self, reason: str, message: str, *, warning: bool = False, diff: bool = False
    ) -> None:
        self.events.append(
            record.NewEvent(
                key=self.change.key,
                type=record.EventType.WARNING if warning else record.EventType.NORMAL,
                reason=reason,
                message=message,
                diff={"changes": [f.as_json() for f in self.change.fields]} if diff else None,
            )
        )

    def step(self, word: str, reason: str, message: str) -> None:
        self.steps.append(word)
        self.event(reason, message)

    def done(self) -> None:
        """The step and event that end a create, update or replace."""
        change = self.change
        if change.verb is actions.Verb.CREATE:
            self.step("created", "Created", f"{change.key} created")
        else:
            word = "replaced" if change.verb is actions.Verb.REPLACE else "updated"
            self.steps.append(word)
            self.event(word.capitalize(), f"{change.key} {word}: {describe(change)}", diff=True)


def describe(change: actions.Change) -> str:
    """The change's field diffs in one line; drift reads ``declared X, found Y``."""
    if change.drift:
        parts = [f"{f.path}: declared {f.new}, found {f.old}" for f in change.fields]
    else:
        parts = [f"{f.path}: {f.old} -> {f.new}" for f in change.fields]
    return "; ".join(parts) if parts else change.verb.value
