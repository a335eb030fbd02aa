"""Shared fixtures live in plugin modules: one per real service, and the trust boundary."""

from hypothesis import settings

pytest_plugins = [
    "tests.fixtures.database",
    "tests.fixtures.libvirt",
    "tests.fixtures.second_libvirt",
    "tests.fixtures.boundary",
    "tests.fixtures.browser",
]

# No property test is a timing test: on a loaded 2-core CI machine one example may
# take longer than hypothesis's default 200 ms deadline without anything being wrong.
settings.register_profile("infinibay", deadline=None)
settings.load_profile("infinibay")
