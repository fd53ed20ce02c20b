"""PostgreSQL connections for gevent services: cooperative, pooled, and reconnecting.

psycopg2 blocks the whole process while it waits for the server, unless a
wait callback hands the waiting to gevent; `patch()` installs psycogreen's, so
a slow query (or a server that went away) only blocks the greenlet asking.

How the database fails, and what this module does about it:

- The server restarts or the network drops: the next use of a connection
  raises `psycopg2.OperationalError` or `InterfaceError` (both in
  `CONNECTION_ERRORS`). `Database.connection()` throws such a connection away
  instead of returning it to the pool, so the next caller gets a fresh one.
- The server is down for a while: `connect` fails with `OperationalError`.
  `Database.wait_until_up` retries with a capped, jittered backoff, sleeping
  on the caller's stop event, so a service pauses during an outage and carries
  on when it is back, instead of crashing in a loop.
- A statement sent just before the connection broke may or may not have been
  committed. Callers that change state must check which after reconnecting
  (the cutter re-reads the row); this module cannot know.

Connections are in autocommit mode: every statement is its own transaction,
which is what single guarded UPDATEs want. `transaction(conn)` groups several.

Only the services that use PostgreSQL import this module (it needs psycopg2);
`common/__init__.py` never does.
"""

import contextlib
import logging
from typing import NamedTuple

import gevent
import gevent.lock
import psycogreen.gevent
import psycopg2
import psycopg2.extensions
import psycopg2.extras

from .backoff import Backoff

logger = logging.getLogger(__name__)

# What a lost or refused connection raises. Errors in the SQL itself
# (ProgrammingError, IntegrityError...) are not here: retrying them is useless.
CONNECTION_ERRORS = (psycopg2.OperationalError, psycopg2.InterfaceError)

# Seconds to wait for the server to accept a connection. A cluster restarting
# takes 1-3 s here; a host that is gone should not hang a caller for minutes.
# (libpq's own connect_timeout does not apply to the asynchronous connections
# a wait callback makes, so a gevent timeout enforces it.)
CONNECT_TIMEOUT = 10
# TCP keepalives (seconds, count), so that a server that vanished without
# closing the connection (a host or network failure) is noticed in about a
# minute instead of the kernel's two hours. Ignored on the local socket.
KEEPALIVES = {"keepalives": 1, "keepalives_idle": 30, "keepalives_interval": 10,
              "keepalives_count": 3}  # fmt: skip
# Reconnect backoff: seconds, doubling from the first to the cap. The cap keeps
# an outage of minutes from turning into an extra minute of downtime.
RECONNECT_BACKOFF = (0.2, 10)
# Idle connections kept per Database; more may be open while busy.
POOL_SIZE = 4

_patched = False


class Result(NamedTuple):
    """What one statement gave: its rows (dicts; [] if it returns none) and row count."""

    rows: list
    rowcount: int


def patch():
    """Make psycopg2 cooperate with gevent (idempotent; done by `connect`)."""
    global _patched
    if not _patched:
        psycogreen.gevent.patch_psycopg()
        _patched = True


def connect(dsn, connect_timeout=CONNECT_TIMEOUT, **kwargs):
    """A new autocommit connection whose cursors return rows as dicts.

    `dsn` is a libpq connection string (`dbname=streamvault`, or
    `postgresql://user@host/db`); with no host, libpq uses the local socket.
    """
    patch()
    timeout = gevent.Timeout(
        connect_timeout, psycopg2.OperationalError(f"no connection after {connect_timeout}s")
    )
    with timeout:
        conn = psycopg2.connect(
            dsn,
            connect_timeout=connect_timeout,
            cursor_factory=psycopg2.extras.RealDictCursor,
            **dict(KEEPALIVES, **kwargs),
        )
    conn.autocommit = True
    return conn


def query(conn, sql, params=None):
    """Execute one statement; returns the cursor (read `.rowcount`, `.fetchall()`)."""
    cursor = conn.cursor()
    cursor.execute(sql, params)
    return cursor


@contextlib.contextmanager
def transaction(conn):
    """Run the block in one transaction on an autocommit connection.

    Commits when the block ends, rolls back if it raises.
    """
    query(conn, "BEGIN")
    try:
        yield conn
    except BaseException:
        if not conn.closed:
            try:
                query(conn, "ROLLBACK")
            except CONNECTION_ERRORS:
                pass
        raise
    query(conn, "COMMIT")


class Database:
    """A DSN and a small pool of connections to it, safe to share between greenlets.

    One psycopg2 connection cannot run two queries at once (under gevent the
    second raises), so each greenlet borrows its own with `connection()`.
    """

    def __init__(self, dsn, pool_size=POOL_SIZE):
        self.dsn = dsn
        self.pool_size = pool_size
        self._idle = []
        self._lock = gevent.lock.RLock()

    def __repr__(self):
        return f"<Database {self.dsn!r}>"

    @contextlib.contextmanager
    def connection(self):
        """Borrow a connection for the block; connect if none is idle.

        A connection that raised a `CONNECTION_ERRORS` error (or was closed)
        is discarded, not returned to the pool. Raises `CONNECTION_ERRORS`
        when the server cannot be reached.
        """
        with self._lock:
            conn = self._idle.pop() if self._idle else None
        if conn is None or conn.closed:
            conn = connect(self.dsn)
        broken = False
        try:
            yield conn
        except CONNECTION_ERRORS:
            broken = True
            raise
        finally:
            in_transaction = (
                not conn.closed
                and conn.info.transaction_status != psycopg2.extensions.TRANSACTION_STATUS_IDLE
            )
            if broken or conn.closed or in_transaction:
                self._discard(conn)
            else:
                with self._lock:
                    if len(self._idle) < self.pool_size:
                        self._idle.append(conn)
                        conn = None
                if conn is not None:
                    self._discard(conn)

    def query(self, sql, params=None):
        """Run one statement on a pooled connection; returns a `Result`.

        The rows are fetched before the connection goes back to the pool.
        """
        with self.connection() as conn:
            cursor = query(conn, sql, params)
            rows = cursor.fetchall() if cursor.description is not None else []
            return Result(rows, cursor.rowcount)

    def _discard(self, conn):
        try:
            conn.close()
        except Exception:
            pass

    def close(self):
        """Close every idle connection (borrowed ones close when returned broken)."""
        with self._lock:
            idle, self._idle = self._idle, []
        for conn in idle:
            self._discard(conn)

    def wait_until_up(self, stopping=None, backoff=RECONNECT_BACKOFF, what="database"):
        """Block until a connection succeeds; True, or False if `stopping` was set first.

        Logs the first failure as a warning and the recovery as info, so an
        outage shows as two lines (and in the log-count metric), not hundreds.
        """
        waits = Backoff(backoff)
        while stopping is None or not stopping.is_set():
            try:
                with self.connection() as conn:
                    query(conn, "SELECT 1")
            except CONNECTION_ERRORS as e:
                waits.failure()
                if waits.failures == 1:
                    logger.warning("Cannot reach the %s, retrying: %s", what, one_line(e))
                else:
                    logger.debug("Still cannot reach the %s: %s", what, one_line(e))
            else:
                if waits.failures:
                    logger.info(
                        "Reached the %s again after %d failed attempts", what, waits.failures
                    )
                return True
            waits.wait(stopping)
        return False


def one_line(error):
    """An exception's message on one line (libpq's messages span several)."""
    text = " ".join(str(error).split())
    return text or type(error).__name__
