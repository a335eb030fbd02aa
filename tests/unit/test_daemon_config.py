"""The daemon's option parsers: durations as operators write them, listen addresses."""

from __future__ import annotations

import pytest
from click.testing import CliRunner

from reconciler import errors
from reconciler.cli import main
from reconciler.daemon import config


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        ("30s", 30.0),
        ("5m", 300.0),
        ("1h", 3600.0),
        ("1h30m", 5400.0),
        ("500ms", 0.5),
        ("1.5s", 1.5),
        ("45", 45.0),
        (" 2M ", 120.0),
    ],
)
def test_duration_accepts_units_and_bare_seconds(text: str, seconds: float) -> None:
    assert config.parse_duration(text) == seconds


@pytest.mark.parametrize("text", ["", "s", "5x", "m5", "5m junk", "-5s", "1h-3m"])
def test_duration_refuses_what_it_cannot_read(text: str) -> None:
    with pytest.raises(errors.ConfigError):
        config.parse_duration(text)


@pytest.mark.parametrize(
    ("text", "address"),
    [
        ("127.0.0.1:9180", ("127.0.0.1", 9180)),
        ("[::1]:9180", ("::1", 9180)),
        (":0", ("127.0.0.1", 0)),
    ],
)
def test_listen_address_is_host_and_port(text: str, address: tuple[str, int]) -> None:
    assert config.parse_listen(text) == address


@pytest.mark.parametrize("text", ["9180", "localhost", "host:http", "host:70000"])
def test_listen_address_without_a_port_is_refused(text: str) -> None:
    with pytest.raises(errors.ConfigError, match="HOST:PORT"):
        config.parse_listen(text)


def test_daemon_command_reports_a_bad_duration_as_a_usage_error() -> None:
    result = CliRunner().invoke(
        main.cli, ["--db", "sqlite://", "daemon", "--source", ".", "--interval", "soon"]
    )
    assert result.exit_code == 1
    assert "cannot read the duration 'soon'" in result.output


def test_daemon_command_documents_its_options() -> None:
    result = CliRunner().invoke(main.cli, ["daemon", "--help"])
    assert result.exit_code == 0
    for option in (
        "--source",
        "--ref",
        "--path",
        "--interval",
        "--git-interval",
        "--prune",
        "--listen",
        "--workers",
        "--shutdown-timeout",
        "--drain-timeout",
        "--lease",
    ):
        assert option in result.output


def test_unhealthy_after_is_a_documented_duration() -> None:
    result = CliRunner().invoke(main.cli, ["daemon", "--help"])
    assert result.exit_code == 0
    assert "--unhealthy-after" in result.output and "[default: 60s]" in result.output
    result = CliRunner().invoke(
        main.cli, ["--db", "sqlite://", "daemon", "--source", ".", "--unhealthy-after", "later"]
    )
    assert result.exit_code == 1
    assert "cannot read the duration 'later'" in result.output
    assert config.Config(source=".").unhealthy_after == 60.0
