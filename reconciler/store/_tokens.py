"""API tokens: their hashes, roles, owners, expiry and last use (SPEC §11).

The secret itself is never given to the store: callers pass its SHA-256
(:func:`reconciler.models.access.hash_secret`), so no code path here can log,
return or record a token.
"""

from __future__ import annotations

import datetime as dt

from sqlalchemy import bindparam, delete, select, update
from sqlalchemy.engine import CursorResult
from sqlalchemy.exc import IntegrityError

from reconciler import errors
from reconciler.models import record
from reconciler.store import _base, schema

__all__ = ["Tokens"]


def _token(row: schema.Token) -> record.TokenRecord:
    return record.TokenRecord(
        name=row.name,
        role=row.role,
        owner=row.owner,
        created_at=row.created_at,
        expires_at=row.expires_at,
        last_used_at=row.last_used_at,
    )


class Tokens(_base.Base):
    """The tokens table."""

    def create_token(
        self,
        name: str,
        secret_hash: str,
        role: str,
        owner: str | None,
        expires_at: dt.datetime | None,
    ) -> record.TokenRecord:
        """Keep a new token's hash; :class:`~reconciler.errors.UsageError` if ``name`` is taken."""
        exists = select(schema.Token.id).where(schema.Token.name == name)
        try:
            with self._session(f"creating the token {name}", write=True) as session:
                if session.execute(exists).first() is not None:
                    raise errors.UsageError(f"a token named {name} exists already")
                row = schema.Token(
                    name=name,
                    secret_hash=secret_hash,
                    role=role,
                    owner=owner,
                    created_at=_base.now(),
                    expires_at=expires_at,
                    last_used_at=None,
                )
                session.add(row)
                session.flush()
                return _token(row)
        except errors.StoreError as exc:
            if isinstance(exc.__cause__, IntegrityError):  # a concurrent create of the name
                raise errors.UsageError(f"a token named {name} exists already") from exc
            raise

    def tokens(self) -> list[record.TokenRecord]:
        """Every token, by name."""
        with self._session("reading the tokens") as session:
            return [_token(r) for r in session.scalars(select(schema.Token).order_by("name"))]

    def token_by_hash(self, secret_hash: str) -> tuple[record.TokenRecord, str] | None:
        """The token whose secret hashes to ``secret_hash``, and the stored hash."""
        stmt = select(schema.Token).where(schema.Token.secret_hash == secret_hash)
        with self._session("reading a token") as session:
            row = session.scalars(stmt).first()
            return None if row is None else (_token(row), row.secret_hash)

    def revoke_token(self, name: str) -> bool:
        """Delete the token ``name``; whether there was one."""
        with self._session(f"revoking the token {name}", write=True) as session:
            done = session.execute(
                delete(schema.Token)
                .where(schema.Token.name == name)
                .execution_options(synchronize_session=False)
            )
            assert isinstance(done, CursorResult)
            return bool(done.rowcount)

    def touch_tokens(self, used: dict[str, dt.datetime]) -> None:
        """Record when each named token was last used: one statement for the batch."""
        if not used:
            return
        rows = [{"token_name": name, "used": when} for name, when in used.items()]
        stmt = (
            update(schema.Token)
            .where(schema.Token.name == bindparam("token_name"))
            .values(last_used_at=bindparam("used", type_=schema.UTCDateTime()))
        )
        with self._session("recording token use", write=True) as session:
            session.connection().execute(stmt, rows)
