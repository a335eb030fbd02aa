"""The protocol every kind's steps implement."""

from __future__ import annotations

from typing import Protocol

from reconciler.engine.outcome import Outcome
from reconciler.planning import actions

__all__ = ["KindSteps"]


class KindSteps(Protocol):
    """The libvirt steps of one kind's changes, each idempotent by name."""

    def apply(self, change: actions.Change, out: Outcome) -> None:
        """Carry out a create, update or replace, as its intents say."""

    def undefine(self, change: actions.Change) -> None:
        """Remove the libvirt object of a deletion; ``NotFoundError`` when it is gone."""
