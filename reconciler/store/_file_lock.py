"""The SQLite leases: ``flock`` on a file next to the database, or a thread lock in memory.

Neither can be taken from a live holder, so neither has an epoch and a fence
over them is always valid (see :mod:`reconciler.store._locks`).
"""

from __future__ import annotations

import contextlib
import datetime as dt
import fcntl
import json
import os
import socket
import threading
from pathlib import Path

from reconciler import errors
from reconciler.store import _lease_common

__all__ = ["FileLock", "ThreadLock"]


class FileLock:
    """``flock`` on a file next to the SQLite database."""

    def __init__(self, path: Path, *, name: str = _lease_common.WRITER_ROW) -> None:
        self._path = path
        self._name = name
        self._fd: int | None = None

    @property
    def name(self) -> str:
        return self._name

    @property
    def epoch(self) -> int | None:
        return None  # a flock cannot be taken from a live holder: nothing to fence

    def acquire(self, timeout: float) -> None:
        try:
            fd = os.open(self._path, os.O_RDWR | os.O_CREAT, 0o600)
        except OSError as exc:
            raise errors.StoreError(
                f"cannot open the lock file {self._path}: {exc.strerror}"
            ) from exc

        def try_once() -> bool:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                return False
            return True

        if not _lease_common.poll(try_once, timeout):
            os.close(fd)
            raise _lease_common.timeout_error(self._read_holder(), timeout)
        holder = _lease_common.Holder.me()
        payload = json.dumps(
            {"pid": holder.pid, "host": holder.host, "since": holder.since.isoformat()}
        ).encode()
        os.ftruncate(fd, 0)
        os.pwrite(fd, payload, 0)
        self._fd = fd

    def release(self) -> None:
        if self._fd is None:
            return
        fd, self._fd = self._fd, None
        try:
            os.ftruncate(fd, 0)
        finally:
            os.close(fd)  # closing the descriptor drops the flock

    def renew(self) -> bool:
        return self._fd is not None  # an flock lives as long as its descriptor

    def stale(self) -> str | None:
        return None if self._fd is not None else "is not held"

    def holder(self) -> _lease_common.Holder | None:
        """Who holds the lock, from the lock file; ``None`` when free or unknown."""
        return self._read_holder()

    def close(self) -> None:
        self.release()

    def _read_holder(self) -> _lease_common.Holder | None:
        try:
            data = json.loads(self._path.read_text())
            return _lease_common.Holder(
                int(data["pid"]), str(data["host"]), dt.datetime.fromisoformat(data["since"])
            )
        except (OSError, ValueError, KeyError, TypeError):
            # Read between the holder's truncate and write, or not ours.
            return None


class ThreadLock:
    """For in-memory SQLite, which only one process can see anyway."""

    def __init__(self, *, name: str = _lease_common.WRITER_ROW) -> None:
        self._name = name
        self._lock = threading.Lock()
        self._since: dt.datetime | None = None

    @property
    def name(self) -> str:
        return self._name

    @property
    def epoch(self) -> int | None:
        return None

    def acquire(self, timeout: float) -> None:
        if not self._lock.acquire(timeout=max(timeout, 0.0)):
            since = self._since or dt.datetime.now(dt.UTC)
            raise _lease_common.timeout_error(
                _lease_common.Holder(os.getpid(), socket.gethostname(), since), timeout
            )
        self._since = dt.datetime.now(dt.UTC)

    def release(self) -> None:
        with contextlib.suppress(RuntimeError):  # not held
            self._lock.release()
        self._since = None

    def renew(self) -> bool:
        return self._since is not None

    def stale(self) -> str | None:
        return None if self._since is not None else "is not held"

    def holder(self) -> _lease_common.Holder | None:
        since = self._since
        return _lease_common.Holder(os.getpid(), socket.gethostname(), since) if since else None

    def close(self) -> None:
        self.release()
