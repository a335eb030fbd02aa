"""Carrying plans out: the executor (libvirt steps) and the reconcile pass (record, run)."""
