"""Shared fixtures live in plugin modules, one per real service they provide."""

pytest_plugins = ["tests.fixtures.database", "tests.fixtures.libvirt"]
