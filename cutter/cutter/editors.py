"""Editor accounts and their sessions (tables from migration 2, see migrations.py).

An operator adds an editor with `cutter editors add NAME`, which prints a
token once; only its SHA-256 is stored, so a leaked database does not leak a
way in. The editor signs in on the editor page with the token and gets a
session: a second random token in an HttpOnly cookie, also stored hashed,
that expires after `SESSION_LIFETIME`. Revoking an editor ends their sessions
at once (the next request is refused) and their token stops working.

The token is a credential only for signing in (and for scripts, as a bearer
token); the session cookie is what the browser carries. A single sign-on
method (OIDC) would be another way to reach `start_session` for an editor
name, recorded in the session's `method`.
"""

import datetime
import hashlib
import re
import secrets
from typing import NamedTuple

from .jobs import BadJob, JobError

# How long a sign-in lasts: a long editing session, not a week-old laptop.
SESSION_LIFETIME = datetime.timedelta(hours=12)
# 256 bits: unguessable, and short enough to paste.
TOKEN_BYTES = 32
NAME_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.@-]{0,63}")

ADD_EDITOR = """
INSERT INTO editors (name, token_hash) VALUES (%(name)s, %(token_hash)s)
ON CONFLICT (name) DO UPDATE SET token_hash = EXCLUDED.token_hash, revoked_at = NULL,
    created_at = now()
    WHERE editors.revoked_at IS NOT NULL
RETURNING name
"""
LIST_EDITORS = """
SELECT e.name, e.created_at, e.revoked_at,
       (SELECT count(*) FROM editor_sessions s
        WHERE s.editor = e.name AND s.expires_at > now()) AS sessions
FROM editors e ORDER BY e.name
"""
REVOKE_EDITOR = """
UPDATE editors SET revoked_at = now() WHERE name = %(name)s AND revoked_at IS NULL
RETURNING name
"""
END_EDITOR_SESSIONS = "DELETE FROM editor_sessions WHERE editor = %(name)s"
EDITOR_BY_TOKEN = """
SELECT name FROM editors WHERE token_hash = %(token_hash)s AND revoked_at IS NULL
"""
START_SESSION = """
INSERT INTO editor_sessions (token_hash, editor, method, expires_at)
VALUES (%(token_hash)s, %(editor)s, %(method)s, now() + %(seconds)s * interval '1 second')
"""
EDITOR_BY_SESSION = """
SELECT e.name FROM editor_sessions s JOIN editors e ON e.name = s.editor
WHERE s.token_hash = %(token_hash)s AND s.expires_at > now() AND e.revoked_at IS NULL
"""
END_SESSION = "DELETE FROM editor_sessions WHERE token_hash = %(token_hash)s"
DROP_EXPIRED_SESSIONS = "DELETE FROM editor_sessions WHERE expires_at <= now()"


def token_hash(token):
    return hashlib.sha256(token.encode("utf-8", "surrogatepass")).hexdigest()


class Editor(NamedTuple):
    name: str
    created_at: datetime.datetime
    revoked_at: datetime.datetime | None
    sessions: int


class Editors:
    """The queries above on a `Database`. Connection errors propagate."""

    def __init__(self, db, session_lifetime=SESSION_LIFETIME):
        self.db = db
        self.session_lifetime = session_lifetime

    def add(self, name):
        """A new editor (or a revoked one again); returns their token, shown only once."""
        if not isinstance(name, str) or not NAME_RE.fullmatch(name):
            raise BadJob(
                f"bad editor name {name!r}: 1-64 letters, digits, _ . @ or -, "
                "starting with a letter or digit"
            )
        token = secrets.token_urlsafe(TOKEN_BYTES)
        rows = self.db.query(ADD_EDITOR, {"name": name, "token_hash": token_hash(token)}).rows
        if not rows:
            raise JobError(f"editor {name} exists; revoke them first to issue a new token")
        return token

    def list(self):
        return [Editor(**row) for row in self.db.query(LIST_EDITORS).rows]

    def revoke(self, name):
        """Revoke `name`'s token and end their sessions. JobError if no such active editor."""
        if not self.db.query(REVOKE_EDITOR, {"name": name}).rows:
            raise JobError(f"no active editor {name}")
        self.db.query(END_EDITOR_SESSIONS, {"name": name})

    def by_token(self, token):
        """The active editor whose token this is, or None."""
        if not token:
            return None
        rows = self.db.query(EDITOR_BY_TOKEN, {"token_hash": token_hash(token)}).rows
        return rows[0]["name"] if rows else None

    def start_session(self, editor, method="token"):
        """A new session for `editor`; returns the cookie's value."""
        self.db.query(DROP_EXPIRED_SESSIONS)
        session = secrets.token_urlsafe(TOKEN_BYTES)
        self.db.query(
            START_SESSION,
            {
                "token_hash": token_hash(session),
                "editor": editor,
                "method": method,
                "seconds": self.session_lifetime.total_seconds(),
            },
        )
        return session

    def by_session(self, session):
        """The editor signed in with this session cookie, or None (expired, revoked, unknown)."""
        if not session:
            return None
        rows = self.db.query(EDITOR_BY_SESSION, {"token_hash": token_hash(session)}).rows
        return rows[0]["name"] if rows else None

    def end_session(self, session):
        if session:
            self.db.query(END_SESSION, {"token_hash": token_hash(session)})
