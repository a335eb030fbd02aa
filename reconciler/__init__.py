"""Infinibay reconciler: a declarative, GitOps-style controller for libvirt/KVM.

Layers, top to bottom (enforced by import-linter contracts in ``pyproject.toml``)::

    cli -> daemon -> engine -> planning -> manifests -> models
    store, hypervisor  (adapters: depend only on models and errors)

``models`` holds the manifest kinds and the plain value types that the planner
compares; ``planning`` is pure; ``engine`` carries a plan out through the
adapters; ``store`` alone opens database sessions; ``hypervisor`` alone imports
``libvirt``.
"""

__all__ = ["__version__"]

__version__ = "0.1.0"
