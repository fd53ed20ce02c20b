"""common.database against real PostgreSQL: pooling, broken connections, waiting for the server."""

import gevent
import gevent.event
import psycopg2
import pytest

from common.database import Database, transaction


def backend_pid(db):
    return db.query("SELECT pg_backend_pid() AS pid").rows[0]["pid"]


def test_pool_reuses_connections(dsn):
    db = Database(dsn)
    assert backend_pid(db) == backend_pid(db)
    db.close()


def test_concurrent_greenlets_get_their_own_connections(dsn):
    db = Database(dsn)
    pids = gevent.joinall(
        [
            gevent.spawn(lambda: db.query("SELECT pg_backend_pid() AS p, pg_sleep(0.2)"))
            for _ in range(3)
        ],
        raise_error=True,
    )
    assert len({g.value.rows[0]["p"] for g in pids}) == 3
    db.close()


def test_a_broken_connection_is_discarded(dsn):
    db = Database(dsn)
    pid = backend_pid(db)
    killer = Database(dsn)
    killer.query("SELECT pg_terminate_backend(%(pid)s)", {"pid": pid})
    with pytest.raises(psycopg2.OperationalError):
        db.query("SELECT 1")
    assert backend_pid(db) != pid  # a fresh connection, not the dead one
    db.close()
    killer.close()


def test_transaction_rolls_back(dsn, jobs):
    db = jobs.db
    with pytest.raises(RuntimeError), db.connection() as conn, transaction(conn):
        conn.cursor().execute("UPDATE events SET title = 'x'")
        conn.cursor().execute("CREATE TABLE scratch (n int)")
        raise RuntimeError("changed my mind")
    assert db.query("SELECT to_regclass('scratch') AS t").rows[0]["t"] is None


def test_wait_until_up(dsn):
    assert Database(dsn).wait_until_up() is True
    stopping = gevent.event.Event()
    down = Database("host=127.0.0.1 port=1 dbname=x")
    waiter = gevent.spawn(down.wait_until_up, stopping, backoff=(0.01, 0.05))
    gevent.sleep(0.1)
    assert not waiter.ready()  # still trying
    stopping.set()
    assert waiter.get(timeout=5) is False
