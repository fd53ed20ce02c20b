"""Fixtures for the cutter: real PostgreSQL databases, a store with the shared media.

Databases: the schema is built once per run into a template database, and each
test gets a fresh copy (`CREATE DATABASE ... TEMPLATE`, as procrastinate's
tests do), dropped when the test ends. They are made over the local socket as
the current user, which works with `trust` (this machine) and with `peer`
authentication (a fresh Debian, once tools/setup has made the root role).

Several test runs may share this machine's cluster, and one test restarts it.
Tests that use the database hold a shared lock on `PG_LOCK` for their
duration; the restart test holds it exclusively, so it never pulls the
cluster from under another run's test.
"""

import contextlib
import datetime
import fcntl
import os
import re
import secrets
import subprocess
import sys

import psycopg2
import pytest

from cutter.jobs import Jobs
from tests import util
from tests.conftest import MEDIA_START
from tests.media import add_to_store

PG_LOCK = "/tmp/streamvault-tests-postgres.lock"
CHANNEL, QUALITY = "desertbus", "source"
# Bounded waits when polling for something to happen (seconds).
WAIT = 60


@contextlib.contextmanager
def pg_lock(exclusive=False):
    with open(PG_LOCK, "a") as f:
        fcntl.flock(f, fcntl.LOCK_EX if exclusive else fcntl.LOCK_SH)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


def admin(sql):
    """Run one statement in the `postgres` database (CREATE/DROP DATABASE)."""
    conn = psycopg2.connect("dbname=postgres", connect_timeout=10)
    conn.autocommit = True
    try:
        with conn.cursor() as cursor:
            cursor.execute(sql)
    finally:
        conn.close()


def new_db_name(tag):
    return f"streamvault_test_{tag}_{os.getpid()}_{secrets.token_hex(4)}"


def drop_leftovers():
    """Drop test databases whose run is gone (killed before it could drop them).

    Names carry the pid of the run that made them; a live pid keeps its databases.
    """
    conn = psycopg2.connect("dbname=postgres", connect_timeout=10)
    try:
        with conn.cursor() as cursor:
            cursor.execute(
                "SELECT datname FROM pg_database WHERE datname LIKE 'streamvault_test_%'"
            )
            names = [row[0] for row in cursor.fetchall()]
    finally:
        conn.close()
    for name in names:
        match = re.fullmatch(r"streamvault_test_[a-z]+_(\d+)_[0-9a-f]+", name)
        if match and not os.path.exists(f"/proc/{match[1]}"):
            admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture(scope="session")
def db_template():
    """A database with the schema applied, to copy for each test."""
    name = new_db_name("template")
    with pg_lock():
        drop_leftovers()
        admin(f'CREATE DATABASE "{name}"')
        jobs = Jobs(f"dbname={name}")
        jobs.init_schema()
        jobs.db.close()
    yield name
    with pg_lock():
        admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@contextlib.contextmanager
def fresh_database(template):
    name = new_db_name("t")
    admin(f'CREATE DATABASE "{name}" TEMPLATE "{template}"')
    try:
        yield f"dbname={name}"
    finally:
        # The cluster may have just been restarted by the test: retry briefly.
        def dropped():
            try:
                admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
                return True
            except psycopg2.OperationalError:
                return False

        wait_for(dropped, interval=0.2, what=f"dropping database {name}")


@pytest.fixture
def dsn(db_template):
    """A fresh database with the schema, for this test only."""
    with pg_lock(), fresh_database(db_template) as dsn:
        yield dsn


@pytest.fixture(scope="module")
def shared_jobs(db_template):
    """One database for a whole module, for tests that only touch rows they made."""
    with pg_lock(), fresh_database(db_template) as dsn:
        jobs = Jobs(dsn)
        yield jobs
        jobs.db.close()


@pytest.fixture
def jobs(dsn):
    jobs = Jobs(dsn)
    yield jobs
    jobs.db.close()


@pytest.fixture(scope="session")
def store(media, tmp_path_factory):
    """A store holding the shared media as desertbus/source from MEDIA_START (30 s)."""
    base = str(tmp_path_factory.mktemp("cutter-store"))
    add_to_store(base, CHANNEL, QUALITY, MEDIA_START, media)
    return base


def at(seconds):
    """MEDIA_START + seconds."""
    return MEDIA_START + datetime.timedelta(seconds=seconds)


def job_fields(start=3.5, end=9.25, **overrides):
    """Fields for a job over the shared media (times in seconds from MEDIA_START)."""
    fields = {
        "channel": CHANNEL,
        "quality": QUALITY,
        "start": at(start) if isinstance(start, (int, float)) else start,
        "end": at(end) if isinstance(end, (int, float)) else end,
        "title": "A clip",
        "upload_location": "clips",
    }
    fields.update(overrides)
    return fields


def wait_for(condition, timeout=WAIT, interval=0.05, what="condition"):
    """`tests.util.wait_for`, with this package's longer default timeout."""
    return util.wait_for(condition, timeout, interval, what)


def probe(path):
    """(seconds of video, decode errors) of a file, judged by ffprobe and ffmpeg.

    The video's length is its frame count times the frame duration: the
    container's duration also counts audio, which may start a packet early.
    """
    frames = subprocess.run(
        [
            "ffprobe", "-v", "error", "-select_streams", "v:0", "-count_packets",
            "-show_entries", "stream=nb_read_packets", "-of", "csv=p=0", path,
        ],
        check=True,
        capture_output=True,
        text=True,
    ).stdout.strip()  # fmt: skip
    errors = subprocess.run(
        ["ffmpeg", "-nostdin", "-v", "error", "-i", path, "-f", "null", "-"],
        capture_output=True,
        text=True,
    ).stderr.strip()
    return int(frames.split()[0]) * FRAME, errors  # listed per program and per stream


FRAME = 1 / 30  # the shared media's frame duration


def within_a_frame(duration, expected):
    return abs(duration - expected) <= FRAME + 1e-9


def cutter_command(dsn, base_dir, name, *locations, poll_interval=0.5, extra=()):
    command = [
        sys.executable, "-m", "cutter", "run",
        "--db", dsn, "--base-dir", base_dir, "--name", name,
        "--metrics-port", "0", "--poll-interval", str(poll_interval),
        "--processing-interval", "0.2",
    ]  # fmt: skip
    for location in locations:
        command += ["--location", location]
    return command + list(extra)
