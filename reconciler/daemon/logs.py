"""Log lines of the daemon: human text, or one JSON object per line.

``--log-format json`` writes objects with ``time`` (RFC 3339, UTC), ``level``,
``logger``, ``message``, and — when known — ``run_id``, ``resource`` and
``revision``, ready for journald, Loki or Elasticsearch. Those three come
from the call's ``extra=`` or, for every line logged while a pass runs
(the engine's included), from :func:`bound` — a context variable, so each
thread sees only its own pass.

Both formats pass every line, tracebacks included, through
:func:`reconciler.settings.redact`, so no password or token reaches the log
whichever library wrote the message.
"""

from __future__ import annotations

import contextlib
import contextvars
import datetime as dt
import json
import logging
import sys
from collections.abc import Iterator
from typing import Any

from reconciler import settings

__all__ = ["CONTEXT_FIELDS", "JsonFormatter", "TextFormatter", "bound", "configure"]

CONTEXT_FIELDS = ("run_id", "resource", "revision")
_context: contextvars.ContextVar[dict[str, Any] | None] = contextvars.ContextVar(
    "infinibay_log_context", default=None
)


@contextlib.contextmanager
def bound(**fields: Any) -> Iterator[None]:
    """Attach ``fields`` (e.g. ``revision=...``) to every line logged in the block."""
    token = _context.set({**(_context.get() or {}), **fields})
    try:
        yield
    finally:
        _context.reset(token)


def _fields(rec: logging.LogRecord) -> dict[str, Any]:
    context = _context.get() or {}
    values = {}
    for name in CONTEXT_FIELDS:
        value = getattr(rec, name, context.get(name))
        if value is not None:
            values[name] = value
    return values


class JsonFormatter(logging.Formatter):
    def format(self, rec: logging.LogRecord) -> str:
        line: dict[str, Any] = {
            "time": dt.datetime.fromtimestamp(rec.created, dt.UTC).isoformat(
                timespec="milliseconds"
            ),
            "level": rec.levelname.lower(),
            "logger": rec.name,
            "message": settings.redact(rec.getMessage()),
            **_fields(rec),
        }
        if rec.exc_info:
            line["exception"] = settings.redact(self.formatException(rec.exc_info))
        return json.dumps(line, default=str)


class TextFormatter(logging.Formatter):
    def __init__(self) -> None:
        super().__init__("%(asctime)s %(levelname)s %(message)s")

    def format(self, rec: logging.LogRecord) -> str:
        text = settings.redact(super().format(rec))
        extra = " ".join(f"{k}={v}" for k, v in _fields(rec).items())
        return f"{text} [{extra}]" if extra else text


def configure(log_format: str, verbose: bool) -> None:
    """Route every logger to stderr in ``log_format``; INFO, or DEBUG with ``verbose``."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter() if log_format == "json" else TextFormatter())
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(logging.DEBUG if verbose else logging.INFO)
    # Third-party chatter stays at WARNING even with -v.
    for name in ("watchfiles", "sqlalchemy", "alembic", "urllib3"):
        logging.getLogger(name).setLevel(logging.WARNING)
