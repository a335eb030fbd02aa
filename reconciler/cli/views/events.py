"""How ``events`` shows the event log: table rows and JSON Lines."""

from __future__ import annotations

import datetime as dt
from typing import Any

from reconciler.cli import output
from reconciler.models import documents, record

__all__ = ["EVENT_HEADERS", "event_json", "event_row"]

EVENT_HEADERS = ("LAST SEEN", "TYPE", "REASON", "OBJECT", "COUNT", "ACTOR", "MESSAGE")


def event_row(event: record.EventRecord, now: dt.datetime) -> list[str]:
    return [
        output.age(event.last_seen, now),
        event.type.value,
        event.reason,
        str(event.key),
        str(event.count),
        event.actor or "-",
        event.message,
    ]


def event_json(event: record.EventRecord) -> dict[str, Any]:
    """One line of ``infinibay events -o json``."""
    return documents.event(event)
