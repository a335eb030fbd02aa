"""Where a running guest's display listens, and how a client is told: a URI or a ``.vv`` file.

``infinibay console`` is the only place the password is shown (SPEC §9); the value
is read from libvirt (:mod:`reconciler.hypervisor.graphics`) and never kept.
"""

from __future__ import annotations

import dataclasses
import urllib.parse

from reconciler.models import kinds

__all__ = ["Console"]


@dataclasses.dataclass(frozen=True)
class Console:
    """Where a running guest's display listens, and its password ("" for none)."""

    type: kinds.GraphicsType
    host: str
    port: int
    password: str = dataclasses.field(repr=False)

    @property
    def uri(self) -> str:
        """``vnc://HOST:PORT`` or ``spice://HOST:PORT``, with ``?password=`` when there is one.

        remote-viewer (virt-viewer) opens both; it logs in to SPICE with the
        URI's password and asks for a VNC one (or use a ``.vv`` file).
        """
        host = f"[{self.host}]" if ":" in self.host else self.host
        base = f"{self.type.value}://{host}:{self.port}"
        if not self.password:
            return base
        return f"{base}?{urllib.parse.urlencode({'password': self.password})}"

    def vv(self, title: str) -> str:
        """A virt-viewer connection file (``remote-viewer FILE``) that logs in by itself."""
        lines = [
            "[virt-viewer]",
            f"type={self.type.value}",
            f"host={self.host}",
            f"port={self.port}",
            f"title={title}",
            "delete-this-file=0",
        ]
        if self.password:
            lines.append(f"password={self.password}")
        return "\n".join(lines) + "\n"
