"""The declared hosts' connections: opened once, observed concurrently, each failing alone.

A pass with ``Host`` manifests observes every host at once, on one thread per
host, so its cost is the slowest host's, not the sum; a host that cannot be
reached (connection refused, libvirtd stopped, a timeout) is a
:class:`~reconciler.planning.fleet.HostState` without a world, and only its
own resources are held back (SPEC §10). The connection to the ``-c`` URI is
the caller's; every other is opened through ``connect`` when first needed,
kept for the next pass, and opened again after it fails.
"""

from __future__ import annotations

import concurrent.futures as cf
import logging
import os
import threading
from collections.abc import Callable, Collection

from reconciler import errors
from reconciler.engine import ports
from reconciler.models import desired, kinds, observed
from reconciler.planning import fleet, placement

__all__ = ["Connect", "Hosts", "placement_strategy"]

_log = logging.getLogger(__name__)

Connect = Callable[[str], ports.Hypervisor]
"""Open a connection to a libvirt URI; raises :class:`~reconciler.errors.HypervisorError`."""


class Hosts:
    def __init__(self, local: ports.Hypervisor, connect: Connect | None = None) -> None:
        self.local = local
        self._connect = connect
        self._open: dict[str, ports.Hypervisor] = {}
        self._guard = threading.Lock()

    def hypervisor(self, uri: str) -> ports.Hypervisor:
        """The connection to ``uri``: the caller's for ``-c``, else one opened for it."""
        if uri == self.local.uri:
            return self.local
        with self._guard:
            found = self._open.get(uri)
        if found is not None:
            return found
        if self._connect is None:
            raise errors.HypervisorError("connect to", uri, "no connection to other hosts")
        opened = self._connect(uri)
        with self._guard:
            self._open[uri] = opened
        return opened

    def forget(self, uri: str) -> None:
        """Drop a failed connection: the next pass opens a new one."""
        with self._guard:
            dropped = self._open.pop(uri, None)
        close = getattr(dropped, "close", None)
        if callable(close):
            try:
                close()
            except Exception:  # a dead connection may fail to close; it is gone either way
                _log.debug("closing the connection to %s failed", uri, exc_info=True)

    def close(self) -> None:
        with self._guard:
            uris = list(self._open)
        for uri in uris:
            self.forget(uri)

    def of(self, state: desired.DesiredState) -> dict[str, str]:
        """Host name -> URI, of the declared hosts."""
        return {
            name: loaded.manifest.spec.uri
            for name, loaded in state.hosts.items()
            if isinstance(loaded.manifest, kinds.Host)
        }

    def observe(
        self,
        state: desired.DesiredState,
        *,
        refresh: Collection[str] = (),
    ) -> list[fleet.HostState]:
        """Every declared host as it is now; concurrently, an unreachable one without a world."""
        declared = [
            (name, loaded.manifest)
            for name, loaded in sorted(state.hosts.items())
            if isinstance(loaded.manifest, kinds.Host)
        ]

        def one(manifest: kinds.Host) -> tuple[observed.World | None, str]:
            uri = manifest.spec.uri
            try:
                hv = self.hypervisor(uri)
                return hv.observe(refresh=refresh), ""
            except errors.HypervisorError as exc:
                if uri != self.local.uri:
                    self.forget(uri)
                return None, str(exc)

        if len(declared) == 1:
            found = [one(declared[0][1])]
        else:
            with cf.ThreadPoolExecutor(
                max_workers=min(len(declared), 16), thread_name_prefix="observe-host"
            ) as pool:
                found = list(pool.map(lambda item: one(item[1]), declared))
        return [
            fleet.HostState(name, manifest, world, error)
            for (name, manifest), (world, error) in zip(declared, found, strict=True)
        ]


def placement_strategy() -> placement.Strategy:
    """How new VMs are placed among the hosts: ``INFINIBAY_PLACEMENT`` (spread, or pack)."""
    raw = os.environ.get("INFINIBAY_PLACEMENT", "spread").strip().lower() or "spread"
    try:
        return placement.Strategy(raw)
    except ValueError:
        raise errors.ConfigError(f"INFINIBAY_PLACEMENT={raw!r}: expected spread or pack") from None
