"""Planning FirewallPolicies: one libvirt nwfilter each, owned through the record."""

from __future__ import annotations

from reconciler.models import kinds
from reconciler.planning.handlers.template import RecordOnlyPlanner

__all__ = ["HANDLER"]

HANDLER = RecordOnlyPlanner(kinds.Kind.FIREWALL_POLICY, lambda name, uses: name in uses.policies)
