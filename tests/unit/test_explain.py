"""``infinibay explain``: fields, types and descriptions straight from the models."""

from __future__ import annotations

import pytest
from click.testing import CliRunner

from reconciler import errors
from reconciler.cli import explain, main


def test_a_list_of_rules_is_explained_field_by_field() -> None:
    lines = explain.describe("firewallpolicy.spec.rules")
    assert lines[0] == "FIELD: FirewallPolicy.spec.rules <[]object>"
    assert "  ports <str>" in lines
    assert "      tcp/udp only: ports and inclusive ranges, e.g. '80,443,8000-8080'." in lines
    assert "  action <Accept | Drop | Reject> (required)" in lines


def test_a_scalar_field_shows_its_type_and_description() -> None:
    assert explain.describe("department.spec.network") == [
        "FIELD: Department.spec.network <str>",
        "",
        "A Network: the department's VMs attach to it when they list no networks.",
    ]


def test_an_unknown_field_names_the_fields_there_are() -> None:
    with pytest.raises(errors.UsageError, match=r"has no field 'bogus'.*department"):
        explain.describe("vm.spec.bogus")


def test_the_command_prints_it() -> None:
    result = CliRunner().invoke(main.cli, ["explain", "fw.spec.defaultAction"])
    assert result.exit_code == 0, result.output
    assert result.output.startswith("FIELD: FirewallPolicy.spec.defaultAction <Drop | Accept>")
