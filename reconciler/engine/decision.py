"""What a failure means, decided once, from the typed error alone.

Every consumer of an outcome — the daemon's backoff, its log lines, the
``Stalled`` and ``Reconciling`` conditions — asks :func:`decide` instead of
inspecting verbs, impacts or message text itself, so they can never disagree
about whether something is worth retrying:

* :class:`Done` — the change succeeded;
* :class:`Transient` — it failed in a way the next attempt may not (libvirt
  unreachable, an RPC or system error, an error code we do not know): retried
  with backoff, and the resource is ``Reconciling``;
* :class:`Waiting` — it did not run because something else must happen first
  (a dependency failed, the lease was lost): retried like a transient failure,
  named for what it waits on;
* :class:`Requeue` — it did not run because another reconciler holds the writer
  lock, which is held for one pass: tried again after a fixed delay, not an
  ever longer backoff;
* :class:`Terminal` — retrying the same spec cannot help (libvirt refused the
  definition, the object is another installation's, the change would destroy
  data without ``--allow-data-loss``): not retried until the spec or the
  source changes (or the resync timer fires), and the resource is ``Stalled``.

The mapping reads only :mod:`reconciler.errors` types, which the adapters set
at their boundary (``HypervisorError.retryable`` from libvirt's error code).
The warning event a failed change records is named from the decision too
(:func:`event_reason`).
"""

from __future__ import annotations

import dataclasses

from reconciler import errors
from reconciler.engine.outcome import Outcome
from reconciler.planning import actions

__all__ = [
    "REQUEUE_AFTER",
    "Decision",
    "Done",
    "Requeue",
    "Terminal",
    "Transient",
    "Waiting",
    "decide",
    "event_reason",
]

# How long a pass that found the writer lock taken waits before it tries again.
REQUEUE_AFTER = 5.0


@dataclasses.dataclass(frozen=True)
class Done:
    """Nothing left to do for this change."""


@dataclasses.dataclass(frozen=True)
class Transient:
    """Failed; the same attempt may succeed later: back off and retry."""

    reason: str
    message: str


@dataclasses.dataclass(frozen=True)
class Waiting:
    """Did not run for want of something else (a dependency, the lease): retry later."""

    reason: str
    message: str


@dataclasses.dataclass(frozen=True)
class Terminal:
    """Cannot succeed until the spec changes: do not retry."""

    reason: str
    message: str


@dataclasses.dataclass(frozen=True)
class Requeue:
    """Did not run, and will be free to after about ``after`` seconds: try again then."""

    after: float
    reason: str
    message: str


Decision = Done | Transient | Waiting | Requeue | Terminal


def decide(what: Outcome | BaseException) -> Decision:
    """The class of one change's outcome, or of an exception that ended a whole pass."""
    if isinstance(what, BaseException):
        return _of_error(what, str(what))
    if what.ok:
        return Done()
    if what.failure is not None:
        return _of_error(what.failure, what.error)
    if what.change.verb is actions.Verb.PROTECTED:  # a deletion asked for by name
        return Terminal("DeletionProtected", what.error)
    return Waiting("DependencyFailed", what.error)  # never ran: a dependency failed


def _of_error(exc: BaseException, message: str) -> Decision:
    if isinstance(exc, errors.ConflictError):
        return Terminal("Conflict", message)
    if isinstance(exc, errors.DataLossRefused):
        return Terminal("DataLossRefused", message)
    if isinstance(exc, errors.RefusedError):
        return Terminal("Refused", message)
    if isinstance(exc, errors.ManifestError):
        return Terminal("InvalidManifests", message)
    if isinstance(exc, errors.Fenced):
        return Waiting("Fenced", message)
    if isinstance(exc, errors.RecordCorrupt):
        return Terminal("RecordCorrupt", message)  # the same row reads the same next time
    if isinstance(exc, errors.LockTimeout):
        return Requeue(REQUEUE_AFTER, "Locked", message)
    if isinstance(exc, errors.HypervisorError) and not exc.retryable:
        return Terminal("InvalidConfiguration", message)
    return Transient("ApplyFailed", message)


def event_reason(exc: errors.InfinibayError) -> str:
    """The reason of the warning event a change that failed with ``exc`` records."""
    match _of_error(exc, str(exc)):
        case Terminal("Conflict", _):
            return "Conflict"
        case Terminal("DataLossRefused" | "Refused", _):
            return "ApplyRefused"
        case _:
            return "ApplyFailed"
