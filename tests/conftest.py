"""Shared fixtures live in plugin modules: one per real service, and the trust boundary."""

pytest_plugins = [
    "tests.fixtures.database",
    "tests.fixtures.libvirt",
    "tests.fixtures.second_libvirt",
    "tests.fixtures.boundary",
    "tests.fixtures.browser",
]
