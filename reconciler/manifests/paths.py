"""Which files are manifests: the one rule the loader and the daemon's watcher share.

Under a source directory, a manifest is a ``*.yaml`` or ``*.yml`` file none of
whose path parts (relative to the directory) is hidden. Hidden means starting
with ``.`` (``.git``, ``.github``, emacs' ``.#x.yaml`` lock links) or ``#``
(emacs' ``#x.yaml#`` auto-saves), or ending with ``~`` (backups). So an editor
saving a file never makes the daemon read a half-written copy, and a change
the loader would not read never triggers a pass.
"""

from __future__ import annotations

from pathlib import PurePath

__all__ = ["SUFFIXES", "hidden", "is_manifest"]

SUFFIXES = (".yaml", ".yml")


def hidden(name: str) -> bool:
    """A file or directory name that is never read: ``.git``, ``#x.yaml#``, ``x.yaml~``."""
    return name.startswith((".", "#")) or name.endswith("~")


def is_manifest(relative: PurePath) -> bool:
    """Whether ``relative`` (a path under a source directory) names a manifest file."""
    parts = relative.parts
    if not parts or relative.is_absolute() or any(hidden(part) for part in parts):
        return False
    return parts[-1].endswith(SUFFIXES)
