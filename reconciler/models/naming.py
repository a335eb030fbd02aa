"""Libvirt names: the one place a resource's libvirt object name is decided.

A resource's name is a DNS label (see :mod:`reconciler.models.fields`), and so
is the name of the libvirt object the reconciler makes for it. An object made by
someone else may be named anything libvirt accepts (``ubuntu22.04``,
``Win11``): its manifest then carries a DNS-label name of its own and the
annotation :data:`LIBVIRT_NAME` with the real one, and every libvirt call for
that resource (lookup, define, patch, delete, events) uses the real name.
:func:`libvirt_name` reads it; :func:`dns_label` makes the manifest name
``export`` writes for such an object.
"""

from __future__ import annotations

import re
from collections.abc import Collection, Mapping

from reconciler.models import fields

__all__ = ["LIBVIRT_NAME", "dns_label", "libvirt_name"]

LIBVIRT_NAME = "infinibay.io/libvirt-name"
"""Annotation: the name of the resource's libvirt object when it differs from its own."""

_MAX = 63
_INVALID = re.compile(r"[^a-z0-9-]+")


def libvirt_name(name: str, annotations: Mapping[str, str]) -> str:
    """The libvirt name of the resource ``name``: its annotation's, else its own."""
    return annotations.get(LIBVIRT_NAME) or name


def is_dns_label(name: str) -> bool:
    return len(name) <= _MAX and re.match(fields.DNS_LABEL, name) is not None


def dns_label(name: str, taken: Collection[str] = (), *, fallback: str = "x") -> str:
    """A DNS label for the libvirt name ``name``, not in ``taken``.

    Lower case; every run of characters a label cannot hold becomes one ``-``;
    no ``-`` at either end; at most 63 characters. A name that is one already is
    kept. A label already taken gets the first free ``-2``, ``-3``... suffix.
    ``fallback`` stands in for a name with nothing left (``...``).
    """
    label = _INVALID.sub("-", name.lower()).strip("-")[:_MAX].strip("-") or fallback
    candidate, number = label, 1
    while candidate in taken:
        number += 1
        suffix = f"-{number}"
        candidate = label[: _MAX - len(suffix)].rstrip("-") + suffix
    return candidate
