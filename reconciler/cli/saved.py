"""Saved plans: ``plan -out FILE`` writes one, ``apply FILE`` carries out exactly it.

The file is JSON (mode 0600): the options the plan was made with, the absolute
paths of its manifests, the plan as ``plan -o json`` shows it, and the digests
of :mod:`reconciler.planning.fingerprint`. ``apply FILE`` loads the same paths
with the same options under the writer lock and refuses, changing nothing,
when the manifests, the record, the libvirt objects the plan is about, or the
plan itself differ from what the file says. Secrets never reach the file: a
manifest holds none, and the database URL is not stored (the installation id
is, so a plan is not applied to another record).
"""

from __future__ import annotations

import dataclasses
import json
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from reconciler import errors
from reconciler.models import desired, kinds, observed, record, selectors
from reconciler.planning import actions, fingerprint

__all__ = ["FORMAT", "Saved", "read", "write"]

FORMAT = "SavedPlan"


@dataclasses.dataclass(frozen=True)
class Saved:
    path: str
    paths: tuple[str, ...]
    prune: bool
    adopt: bool
    selector: selectors.Selector | None
    installation: str  # "" when made before the record existed
    hashes: dict[str, str]

    def check_inputs(
        self,
        installation: str,
        state: desired.DesiredState,
        records: Sequence[record.ResourceRecord],
        world: observed.World,
    ) -> None:
        """Raise :class:`RefusedError` when what a pass read is not what the plan was made of."""
        if self.installation and installation != self.installation:
            self._stale("it was made against another record (installation differs)")
        found = hashes(installation, state, records, world)
        for part, what in (
            ("manifests", "the manifests changed"),
            ("record", "the record changed"),
            ("world", "libvirt changed"),
        ):
            if found[part] != self.hashes.get(part):
                self._stale(f"{what} since it was made")

    def check_plan(self, plan: actions.Plan) -> None:
        if fingerprint.plan(plan) != self.hashes.get("plan"):
            self._stale("planning again gives another plan")

    def _stale(self, why: str) -> None:
        raise errors.RefusedError(
            f"saved plan {self.path} is stale: {why}; nothing was applied (run plan -out again)"
        )


def hashes(
    installation: str,
    state: desired.DesiredState,
    records: Sequence[record.ResourceRecord],
    world: observed.World,
) -> dict[str, str]:
    return {
        "manifests": fingerprint.manifests(state),
        "record": fingerprint.records(records),
        "world": fingerprint.world(world, state, records, installation),
    }


def write(
    path: str,
    *,
    paths: Sequence[str],
    prune: bool,
    adopt: bool,
    selector: selectors.Selector | None,
    installation: str,
    inputs: dict[str, str],
    plan: actions.Plan,
    shown: dict[str, Any],
) -> None:
    if "-" in paths:
        raise errors.UsageError("a saved plan cannot be made from stdin (-f -): give files")
    document = {
        "apiVersion": kinds.API_VERSION,
        "kind": FORMAT,
        "paths": [os.path.abspath(p) for p in paths],
        "prune": prune,
        "adopt": adopt,
        "selector": selector.text if selector is not None else None,
        "installation": installation,
        "hashes": {**inputs, "plan": fingerprint.plan(plan)},
        "plan": shown,
    }
    target = Path(path)
    try:
        fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as out:
            json.dump(document, out, indent=2)
            out.write("\n")
    except OSError as exc:
        raise errors.InfinibayError(f"cannot write the saved plan {path}: {exc.strerror}") from exc


def read(path: str) -> Saved:
    try:
        document = json.loads(Path(path).read_text())
    except OSError as exc:
        raise errors.InfinibayError(f"cannot read the saved plan {path}: {exc.strerror}") from exc
    except (ValueError, UnicodeDecodeError) as exc:
        raise errors.InfinibayError(f"{path} is not a saved plan (not JSON: {exc})") from exc
    if not isinstance(document, dict) or document.get("kind") != FORMAT:
        raise errors.InfinibayError(f"{path} is not a saved plan (made by plan -out FILE)")
    try:
        selector = document.get("selector")
        return Saved(
            path=path,
            paths=tuple(str(p) for p in document["paths"]),
            prune=bool(document["prune"]),
            adopt=bool(document["adopt"]),
            selector=selectors.parse(selector) if selector else None,
            installation=str(document["installation"]),
            hashes={str(k): str(v) for k, v in document["hashes"].items()},
        )
    except (KeyError, TypeError, AttributeError, errors.UsageError) as exc:
        raise errors.InfinibayError(f"{path} is not a saved plan (missing {exc})") from exc
