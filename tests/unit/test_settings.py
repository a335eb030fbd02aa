"""Settings: where the record lives by default, and that passwords never show."""

from __future__ import annotations

import os
import stat
import time
from pathlib import Path

import pytest

from reconciler import errors, settings


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


@pytest.mark.parametrize(
    ("text", "secret", "kept"),
    [
        ("postgresql://u@h/db?password=qu3ry-pw&sslmode=require", "qu3ry-pw", "sslmode=require"),
        ("postgresql://u:p@ss-after-at@h/db", "ss-after-at", "@h/db"),
        ("postgresql://u:pa/ss@word@h/db", "ss@word", "@h/db"),
        ("postgresql://u:sec-ret@[::1/db", "sec-ret", "postgresql://***@"),
        ("https://x:tok-en@host:notaport/repo.git", "tok-en", "https://***@host"),
        ("host=h user=u password=conn-info-pw dbname=d", "conn-info-pw", "password=***"),
        ("password='quoted pw' host=h", "quoted pw", "host=h"),
    ],
)
def test_redact_parses_urls_query_strings_raw_at_signs_and_conninfo(
    text: str, secret: str, kept: str
) -> None:
    redacted = settings.redact(text)
    assert secret not in redacted
    assert "***" in redacted
    assert kept in redacted


def test_redact_takes_linear_time_on_long_runs_of_scheme_characters() -> None:
    text = "x" * 1_000_000 + " postgresql://u:pw@h/db " + "y.z-" * 250_000
    # CPU time of this process, so a loaded machine (parallel test workers) cannot
    # fail it; quadratic scanning took minutes.
    started = time.process_time()
    redacted = settings.redact(text)
    assert time.process_time() - started < 2.0
    assert "pw@" not in redacted and "postgresql://u:***@h/db" in redacted


def test_a_remembered_secret_is_masked_anywhere_also_percent_encoded() -> None:
    settings.remember_secret("s3cr@t w0rd")
    text = "missing '=' after 's3cr@t w0rd' in 'postgresql://u:s3cr%40t%20w0rd@h/db'"
    assert "s3cr" not in settings.redact(text)


def test_the_password_file_is_read_without_its_trailing_newline(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    secret_file = tmp_path / "pw"
    secret_file.write_text("from-a-file \n")
    monkeypatch.setenv(settings.PASSWORD_FILE_ENV, str(secret_file))
    assert settings.secret_from_file(settings.PASSWORD_FILE_ENV) == "from-a-file "
    assert "from-a-file" not in settings.redact("connection for from-a-file failed")


def test_an_unreadable_password_file_is_a_config_error_naming_it(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv(settings.PASSWORD_FILE_ENV, str(tmp_path / "missing"))
    with pytest.raises(errors.ConfigError, match=r"INFINIBAY_DATABASE_PASSWORD_FILE .*missing"):
        settings.secret_from_file(settings.PASSWORD_FILE_ENV)


def test_private_directories_are_0700_even_under_umask_000(tmp_path: Path) -> None:
    old = os.umask(0)
    try:
        settings.private_dir(tmp_path / "a" / "b")
    finally:
        os.umask(old)
    assert stat.S_IMODE((tmp_path / "a").stat().st_mode) == 0o700
    assert stat.S_IMODE((tmp_path / "a" / "b").stat().st_mode) == 0o700
