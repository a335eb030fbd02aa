"""Settings: where the record lives by default, and that passwords never show."""

from __future__ import annotations

from pathlib import Path

import pytest

from reconciler import settings


def test_default_database_is_state_db_under_xdg_state_home(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path))
    assert settings.default_database_url() == f"sqlite:///{tmp_path}/infinibay/state.db"


@pytest.mark.parametrize("xdg", [None, ""])
def test_default_database_falls_back_to_local_state_in_home(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, xdg: str | None
) -> None:
    if xdg is None:
        monkeypatch.delenv("XDG_STATE_HOME", raising=False)
    else:
        monkeypatch.setenv("XDG_STATE_HOME", xdg)
    monkeypatch.setenv("HOME", str(tmp_path))
    expected = f"sqlite:///{tmp_path}/.local/state/infinibay/state.db"
    assert settings.default_database_url() == expected


def test_settings_default_to_the_default_database_and_qemu_system(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path))
    defaults = settings.Settings()
    assert defaults.database_url == settings.default_database_url()
    assert defaults.libvirt_uri == "qemu:///system"
    assert defaults.lock_timeout == 60.0


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (
            "postgresql+psycopg://infinibay:s3cret@db.example:5432/infinibay",
            "postgresql+psycopg://infinibay:***@db.example:5432/infinibay",
        ),
        (
            "could not connect to postgresql://u:p%40ss@10.0.0.1/x: refused",
            "could not connect to postgresql://u:***@10.0.0.1/x: refused",
        ),
        ("postgresql://user@host/db", "postgresql://user@host/db"),
        ("sqlite:////var/lib/infinibay/state.db", "sqlite:////var/lib/infinibay/state.db"),
        ("no url here", "no url here"),
    ],
)
def test_redact_hides_only_the_password(text: str, expected: str) -> None:
    assert settings.redact(text) == expected


def test_redact_hides_every_url_in_a_message() -> None:
    text = "from postgresql://a:one@h1/db to postgres://b:two@h2/db"
    redacted = settings.redact(text)
    assert ":one@" not in redacted
    assert ":two@" not in redacted
    assert redacted.count("***") == 2
