"""``infinibay token`` through click's runner on a real SQLite record: the secret is
printed once, alone on stdout, and never again; refusals are one line and exit 1."""

from __future__ import annotations

import json
from pathlib import Path

from click.testing import CliRunner, Result

from reconciler.cli import main
from reconciler.models import access
from reconciler.store import store as store_module


def _run(db: str, *args: str) -> Result:
    return CliRunner().invoke(main.cli, ["--db", db, *args])


def test_create_prints_the_secret_once_and_list_shows_everything_but_it(tmp_path: Path) -> None:
    db = f"sqlite:///{tmp_path / 'state.db'}"
    created = _run(
        db, "token", "create", "alice", "--role", "user", "--owner", "alice", "--ttl", "30d"
    )
    assert created.exit_code == 0, created.output
    secret = created.stdout.strip()
    assert created.stdout == secret + "\n" and secret.startswith("ib_")
    assert "token alice (user) created; expires 20" in created.stderr
    assert secret not in created.stderr

    listed = _run(db, "token", "list")
    as_json = _run(db, "token", "list", "-o", "json")
    assert listed.exit_code == as_json.exit_code == 0
    (row,) = listed.stdout.splitlines()[1:]
    assert row.split()[:3] == ["alice", "user", "alice"] and row.endswith("-")
    (item,) = json.loads(as_json.stdout)["items"]
    assert (item["name"], item["role"], item["owner"], item["lastUsed"]) == (
        "alice", "user", "alice", None,
    )  # fmt: skip
    for text in (listed.output, as_json.output):
        assert secret not in text and access.hash_secret(secret) not in text

    with store_module.Store.open(db) as store:  # the record knows it by its hash
        found = store.token_by_hash(access.hash_secret(secret))
    assert found is not None and found[0].name == "alice"

    assert _run(db, "token", "revoke", "alice").stdout == "token alice revoked\n"
    assert _run(db, "token", "list", "-o", "json").stdout.strip() == '{\n  "items": []\n}'


def test_refusals_are_one_line_and_exit_1(tmp_path: Path) -> None:
    db = f"sqlite:///{tmp_path / 'state.db'}"
    assert _run(db, "token", "create", "ops", "--role", "admin").exit_code == 0
    taken = _run(db, "token", "create", "ops", "--role", "viewer")
    assert (taken.exit_code, taken.stderr) == (1, "error: a token named ops exists already\n")
    assert taken.stdout == ""
    gone = _run(db, "token", "revoke", "nobody")
    assert (gone.exit_code, gone.stderr) == (1, "error: there is no token named nobody\n")
    for args, message in [
        (("--role", "user"), "a user token needs --owner"),
        (("--role", "admin", "--owner", "x"), "only a user token has an owner"),
        (("--role", "viewer", "--ttl", "soon"), "cannot read the duration 'soon'"),
        (("--role", "root"), "'root' is not one of 'admin', 'viewer', 'user'"),
    ]:
        refused = _run(db, "token", "create", "other", *args)
        assert refused.exit_code == 1 and refused.stdout == "", args
        assert message in refused.stderr, refused.stderr
    bad_name = _run(db, "token", "create", "a b", "--role", "admin")
    assert bad_name.exit_code == 1 and "use letters, digits" in bad_name.stderr
