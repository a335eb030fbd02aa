"""The record (SPEC §2): the only package that talks to the SQL database.

:class:`Store` is the whole interface; it accepts and returns the plain values
of :mod:`reconciler.models.record`. ``schema`` holds the table models (used by
``migrations/env.py``), ``_engine`` the backends, ``_migrate`` Alembic,
``_locks`` the writer lock and leadership leases (``_pg_lease`` on PostgreSQL,
``_file_lock`` on SQLite, ``_lease_common`` what they share). ``Store`` is put
together in ``store`` from one part per job: ``_resources``, ``_history``,
``_runs``, ``_volumes``, ``_tokens`` and ``_leases``, on the sessions of ``_base``.
"""

from reconciler.store.store import (
    MigrationState,
    Store,
    missing_record,
    schema_state,
    upgrade_schema,
)

__all__ = ["MigrationState", "Store", "missing_record", "schema_state", "upgrade_schema"]
