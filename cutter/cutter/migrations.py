"""Numbered schema migrations: an existing database is upgraded in place, never rebuilt.

`schema_migrations` records the migrations a database has had. `migrate`
applies the missing ones in order, each in the same transaction as its
record, under an advisory lock (so cutters starting at once do not race), and
is a no-op on an up-to-date database.

Migration 1 is the original, idempotent `events` script (`jobs.SCHEMA`):
databases made before this table existed have it already and get it again
harmlessly, then every later migration. A new change is a new entry at the
end; entries already released are never edited.

How it fails: a migration that raises rolls back with its record, so the
database stays at the previous version and the error reaches the caller
(`cutter init-db` prints it; a cutter logs it and waits).
"""

from common.database import query, transaction

# An arbitrary constant for the advisory lock that serialises schema changes.
SCHEMA_LOCK_ID = 0x5354_5641  # "STVA"

# 2: editor accounts, their sessions, and who made and last moved each job.
EDITORS = r"""
CREATE TABLE editors (
    name        TEXT PRIMARY KEY CHECK (name ~ '^[A-Za-z0-9][A-Za-z0-9_.@-]{0,63}$'),
    -- SHA-256 of the editor's token (tokens are 256 random bits, so a fast
    -- hash is enough: there is nothing to guess from it).
    token_hash  TEXT NOT NULL UNIQUE,
    created_at  TIMESTAMPTZ NOT NULL DEFAULT now(),
    revoked_at  TIMESTAMPTZ
);

-- A signed-in browser. `method` says how the editor proved who they are
-- ('token' today; a single sign-on method adds its own name), so a later
-- sign-in method only adds a way to create rows here.
CREATE TABLE editor_sessions (
    token_hash  TEXT PRIMARY KEY,
    editor      TEXT NOT NULL REFERENCES editors (name) ON DELETE CASCADE,
    method      TEXT NOT NULL DEFAULT 'token',
    created_at  TIMESTAMPTZ NOT NULL DEFAULT now(),
    expires_at  TIMESTAMPTZ NOT NULL
);
CREATE INDEX editor_sessions_editor ON editor_sessions (editor);

ALTER TABLE events ADD COLUMN created_by TEXT;
ALTER TABLE events ADD COLUMN state_changed_by TEXT;
CREATE INDEX events_created_by ON events (created_by, created_at);
"""


def _migrations():
    from .jobs import SCHEMA

    return [
        (1, "the events table, its states and guard", SCHEMA),
        (2, "editor accounts and sessions; events.created_by, state_changed_by", EDITORS),
    ]


def latest():
    return _migrations()[-1][0]


def migrate(db):
    """Bring `db` (a `Database`) up to the latest migration; returns the versions applied."""
    applied = []
    with db.connection() as conn, transaction(conn):
        query(conn, "SELECT pg_advisory_xact_lock(%(id)s)", {"id": SCHEMA_LOCK_ID})
        query(
            conn,
            "CREATE TABLE IF NOT EXISTS schema_migrations ("
            " version INTEGER PRIMARY KEY, description TEXT NOT NULL,"
            " applied_at TIMESTAMPTZ NOT NULL DEFAULT now())",
        )
        done = {row["version"] for row in query(conn, "SELECT version FROM schema_migrations")}
        for version, description, sql in _migrations():
            if version in done:
                continue
            query(conn, sql)
            query(
                conn,
                "INSERT INTO schema_migrations (version, description) VALUES (%(v)s, %(d)s)",
                {"v": version, "d": description},
            )
            applied.append(version)
    return applied
