"""Steps of the kinds that live only in the record (Template, Department): none in libvirt."""

from __future__ import annotations

from reconciler.engine.outcome import Outcome
from reconciler.planning import actions

__all__ = ["TemplateSteps"]


class TemplateSteps:
    def apply(self, change: actions.Change, out: Outcome) -> None:
        word = "created" if change.verb is actions.Verb.CREATE else "updated"
        out.step(word, word.capitalize(), f"{change.key} {word}")

    def undefine(self, change: actions.Change) -> None:
        return None  # its record is tombstoned by the caller; libvirt never had it
