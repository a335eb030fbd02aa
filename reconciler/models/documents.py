"""Record values as JSON documents: the one shape ``infinibay get/events -o json`` and
the daemon's read-only API both serve, so a script reads either the same way."""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from typing import Any

from reconciler.models import kinds, record

__all__ = ["event", "metadata", "resource", "timestamp"]


def timestamp(moment: dt.datetime) -> str:
    """ISO 8601 in UTC to the second, e.g. ``2024-05-01T12:00:00+00:00`` (naive means UTC)."""
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=dt.UTC)
    return moment.astimezone(dt.UTC).isoformat(timespec="seconds")


def metadata(rec: record.ResourceRecord) -> dict[str, Any]:
    """A resource's ``metadata`` block, as in a manifest plus what the record adds."""
    return {
        "name": rec.key.name,
        "uid": rec.uid,
        "generation": rec.generation,
        "labels": dict(rec.labels),
        "annotations": dict(rec.annotations),
        "creationTimestamp": timestamp(rec.created_at),
    }


def resource(
    rec: record.ResourceRecord,
    status: Mapping[str, Any] | None = None,
    *,
    source: bool = True,
) -> dict[str, Any]:
    """One resource: an item of ``infinibay get -o json`` and of ``/api/v1/resources``.

    ``status`` is the record's unless the caller overlays what it observed (the
    CLI adds libvirt's view; the API serves the record as it is). ``source``
    adds where the manifest was read (file, document, revision), which the API
    serves; ``get -o json`` keeps its documented five keys and leaves it out.
    """
    spec = rec.spec.get("spec")
    document: dict[str, Any] = {
        "apiVersion": kinds.API_VERSION,
        "kind": rec.key.kind,
        "metadata": metadata(rec),
        "spec": dict(spec) if isinstance(spec, dict) else {},
        "status": dict(rec.status if status is None else status),
    }
    if source:
        document["source"] = {
            "file": rec.source_file,
            "document": rec.source_document,
            "revision": rec.source_revision,
        }
    return document


def event(item: record.EventRecord) -> dict[str, Any]:
    """One event: a line of ``infinibay events -o json``, an item of ``/api/v1/events``."""
    return {
        "id": item.id,
        "time": timestamp(item.last_seen),
        "firstSeen": timestamp(item.first_seen),
        "type": item.type.value,
        "reason": item.reason,
        "object": {"kind": item.key.kind, "name": item.key.name, "uid": item.uid},
        "message": item.message,
        "count": item.count,
        "diff": item.diff,
        "revision": item.revision,
        "run": item.run_id,
        "actor": item.actor,
    }
