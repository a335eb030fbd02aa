"""The project's exception tree.

Every error a user can see derives from :class:`InfinibayError`; the CLI catches
that base once, prints its one-sentence message and exits non-zero. Library
errors (libvirt, SQLAlchemy, YAML) are translated at the adapter boundary with
``raise ... from exc`` so nothing above an adapter ever handles them. What a
failure *means* (retry it, or wait for a new spec) is decided from these types
alone, in :func:`reconciler.engine.decision.decide`::

    InfinibayError
    ├── ManifestError        invalid manifests; carries every located message
    ├── ConfigError          bad option or environment value
    ├── UsageError           a word given by a user names nothing (kind, KIND/NAME)
    ├── StoreError           the record cannot be read or written
    │   ├── LockTimeout      another reconciler holds the writer lock
    │   └── RecordCorrupt    a row or document of the record does not hold what it should
    ├── HypervisorError      a libvirt operation failed (object and operation named);
    │   │                    ``retryable`` says whether trying again can help
    │   ├── NotFoundError    the libvirt object does not exist
    │   └── ExistsError      an object of that name exists already
    ├── RefusedError         a safety gate refused the request (empty prune, protection)
    │   ├── ConflictError    the object is not ours (unowned, or another installation's)
    │   └── DataLossRefused  the change would destroy data and --allow-data-loss is unset
    ├── Fenced               this reconciler's lease is gone: it must not act or write any more
    ├── SourceError          the daemon cannot read its source (git fetch, checkout)
    └── NotFound             a resource asked for by name is not in the record
"""

from __future__ import annotations

from collections.abc import Sequence

__all__ = [
    "ConfigError",
    "ConflictError",
    "DataLossRefused",
    "ExistsError",
    "Fenced",
    "HypervisorError",
    "InfinibayError",
    "LockTimeout",
    "ManifestError",
    "NotFound",
    "NotFoundError",
    "RecordCorrupt",
    "RefusedError",
    "SourceError",
    "StoreError",
    "UsageError",
]


class InfinibayError(Exception):
    """Base of every error the project raises on purpose."""


class ManifestError(InfinibayError):
    """One or more manifests are invalid; ``messages`` holds one line per problem."""

    def __init__(self, messages: Sequence[str]) -> None:
        self.messages = list(messages)
        count = len(self.messages)
        super().__init__(f"{count} invalid manifest {'entry' if count == 1 else 'entries'}")


class ConfigError(InfinibayError):
    """An option, URL or environment value cannot be used."""


class UsageError(InfinibayError):
    """A word a user gave cannot be read: an unknown kind, a reference that is not KIND/NAME.

    Raised by pure parsers (:mod:`reconciler.models.catalog`); the CLI shows it as a
    usage error (exit 2), the HTTP API answers it with 400.
    """


class StoreError(InfinibayError):
    """The record (SQL database) cannot be read or written."""


class LockTimeout(StoreError):
    """The writer lock stayed held by another reconciler for longer than allowed."""


class RecordCorrupt(StoreError):
    """A row or document read back from the record is not what was written there.

    Raised where the record's values are parsed (a recorded spec into its
    manifest, a column into its enum), naming the resource and the field, so a
    validation error of the parsing library never crosses a layer. Retrying
    cannot help until the record is repaired or the resource applied again.
    """


class HypervisorError(InfinibayError):
    """A libvirt operation failed; the message names the object and the operation.

    ``retryable`` is False when libvirt refused the request itself (invalid XML,
    an unsupported setting): the same request fails the same way until the spec
    changes. It is set at the adapter boundary from libvirt's error code; a code
    we do not know is retryable, so an unknown failure is never given up on.
    """

    def __init__(self, operation: str, obj: str, detail: str, *, retryable: bool = True) -> None:
        self.operation = operation
        self.obj = obj
        self.detail = detail
        self.retryable = retryable
        super().__init__(f"{operation} {obj} failed: {detail}")


class NotFoundError(HypervisorError):
    """The libvirt object does not exist."""


class ExistsError(HypervisorError):
    """An object of that name exists already."""


class RefusedError(InfinibayError):
    """A safety gate refused the request (data loss, an empty prune, protection)."""


class ConflictError(RefusedError):
    """The object exists in libvirt but is not ours: unowned, or another installation's."""


class DataLossRefused(RefusedError):
    """The change would destroy data and ``--allow-data-loss`` was not given."""


class Fenced(InfinibayError):
    """This reconciler's writer lock or leadership lapsed or was taken over (SPEC §5).

    Raised before a libvirt action or a record write that it would no longer be
    entitled to; the pass in flight stops there and is recorded as ``fenced``.
    Not a :class:`StoreError`: the record may be perfectly reachable, and
    retrying the same write can never succeed.
    """


class SourceError(InfinibayError):
    """The daemon's source (a directory or a git repository) cannot be read."""


class NotFound(InfinibayError):
    """A resource asked for by kind and name is not in the record."""
