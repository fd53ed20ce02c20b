"""Whole cutter processes against real PostgreSQL: the claim race, kill -9, a database restart."""

import collections
import contextlib
import os
import re
import signal
import subprocess
import threading

import psycopg2
import pytest
import requests

from common.database import CONNECTION_ERRORS
from cutter.editors import Editors
from cutter.jobs import Jobs, State
from tests.cutter.conftest import (
    WAIT,
    cutter_command,
    fresh_database,
    job_fields,
    pg_lock,
    probe,
    wait_for,
    within_a_frame,
)
from tests.cutter.fake_youtube import CHUNK_QUANTUM, FakeYouTube, Fault
from tests.util import free_port

# Every test here runs cutter processes (and kills them, or the database).
pytestmark = pytest.mark.slow


class Cutters:
    """Cutter processes started by a test; each one's stderr goes to a file."""

    def __init__(self, tmp_path):
        self.tmp_path = tmp_path
        self.procs = []

    def start(self, command):
        log = self.tmp_path / f"cutter-{len(self.procs)}.log"
        with open(log, "wb") as f:
            proc = subprocess.Popen(command, stdout=f, stderr=subprocess.STDOUT)
        self.procs.append((proc, log))
        return proc

    def logs(self):
        return "".join(log.read_text() for _, log in self.procs)

    def stop_all(self):
        """SIGTERM every live process; returns their exit codes."""
        codes = []
        for proc, _ in self.procs:
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
            try:
                codes.append(proc.wait(timeout=20))
            except subprocess.TimeoutExpired:
                proc.kill()
                codes.append(proc.wait())
        return codes


@pytest.fixture
def cutters(tmp_path):
    cutters = Cutters(tmp_path)
    yield cutters
    for proc, _ in cutters.procs:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def listeners(jobs):
    rows = jobs.db.query(
        "SELECT count(*) AS n FROM pg_stat_activity WHERE datname = current_database() "
        "AND state = 'idle' AND query LIKE 'LISTEN %%'"
    ).rows
    return rows[0]["n"]


def safely(fn):
    """fn() for wait_for, counting a lost database connection as "not yet"."""

    def check():
        try:
            return fn()
        except CONNECTION_ERRORS:
            return False

    return check


def count_lines(logs, pattern):
    return collections.Counter(int(m) for m in re.findall(pattern, logs))


def test_three_cutters_race(jobs, dsn, store, tmp_path, cutters):
    """30 jobs, 3 cutter processes woken at once: every job cut and uploaded exactly once."""
    outdir = tmp_path / "clips"
    for n in (1, 2, 3):
        cutters.start(cutter_command(dsn, store, f"node{n}", f"clips=local:{outdir}"))
    wait_for(lambda: listeners(jobs) == 3, what="three cutters to LISTEN")
    submitted = []
    for i in range(30):
        start = 0.4 + (i % 12) * 2.1  # over every segment, often across a join
        submitted.append(
            jobs.submit(**job_fields(start=start, end=start + 1.5, title=f"Race {i}")).id
        )
    wait_for(
        lambda: (
            jobs.counts()[State.DONE] == 30 or any(p.poll() is not None for p, _ in cutters.procs)
        ),
        what="every job to be DONE",
    )
    assert cutters.stop_all() == [0, 0, 0], cutters.logs()
    logs = cutters.logs()
    done = [jobs.get(job_id) for job_id in submitted]
    assert all(job.state == State.DONE and job.attempts == 1 for job in done), logs
    files = sorted(os.listdir(outdir))
    assert files == sorted(job.video_id for job in done)  # 30 files, no spool files left
    claims = count_lines(logs, r"Job (\d+): claimed")
    uploads = count_lines(logs, r"Uploaded job (\d+) to")
    assert claims == uploads == dict.fromkeys(submitted, 1)
    by_node = collections.Counter(re.findall(r"cutter\.cutter\((node\d)\): Job \d+: claimed", logs))
    print(
        f"\nrace: {len(submitted)} jobs, {sum(uploads.values())} uploads, "
        f"{sum(n - 1 for n in uploads.values())} duplicates, "
        f"{len(files)} files; claims by node: {dict(sorted(by_node.items()))}"
    )
    for job in done[:3]:
        duration, errors = probe(str(outdir / job.video_id))
        assert within_a_frame(duration, 1.5) and errors == ""


def test_kill_9_during_uploads(jobs, dsn, store, tmp_path, cutters):
    """A cutter killed mid-upload: CLAIMED work is redone, FINALIZING waits for an operator,
    and no job is ever uploaded twice."""
    fake = FakeYouTube(processing_polls=0)
    try:
        creds = fake.credentials(tmp_path / "creds.json")
        spool = tmp_path / "spool"
        spool.mkdir()
        command = cutter_command(
            dsn, store, "node1", f"yt=youtube:{creds},chunk_size={CHUNK_QUANTUM}",
            extra=["--spool-dir", str(spool)],
        )  # fmt: skip
        fields = {"start": 4, "end": 16, "upload_location": "yt"}

        # 1. Killed while sending a non-final chunk: the job is CLAIMED.
        fake.script.append(Fault("chunk", "hold"))
        a = jobs.submit(**job_fields(title="A", **fields))
        proc = cutters.start(command)
        wait_for(fake.holding.is_set, what="the first chunk of A")
        assert jobs.get(a.id).state == State.CLAIMED
        proc.kill()
        proc.wait()
        release(fake)

        assert len(os.listdir(spool)) == 1  # the cut the killed cutter was sending

        # 2. A restart gives A back and does it again, from a new session.
        proc = cutters.start(command)
        wait_for(lambda: jobs.get(a.id).state == State.DONE, what="A to be done")

        # 3. Killed while the final request is out: the job is FINALIZING.
        # The server got every byte and made the video; the cutter never heard.
        fake.script.append(Fault("final", "hold"))
        b = jobs.submit(**job_fields(title="B", **fields))
        wait_for(fake.holding.is_set, what="the final request of B")
        assert jobs.get(b.id).state == State.FINALIZING
        proc.kill()
        proc.wait()
        release(fake)

        # 4. After a restart B is flagged for an operator and left alone,
        # while new work (C) goes on.
        cutters.start(command)
        wait_for(lambda: jobs.get(b.id).error, what="B to be flagged")
        c = jobs.submit(**job_fields(title="C", **fields))
        wait_for(lambda: jobs.get(c.id).state == State.DONE, what="C to be done")
        assert cutters.stop_all()[-1] == 0
        flagged = jobs.get(b.id)
        assert flagged.state == State.FINALIZING and flagged.uploader == "node1"
        assert "restarted while finalizing" in flagged.error

        titles = collections.Counter(v.resource["snippet"]["title"] for v in fake.videos.values())
        sessions = collections.Counter(
            s.resource["snippet"]["title"] for s in fake.sessions.values()
        )
        assert titles == {"A": 1, "B": 1, "C": 1}  # no video made twice
        assert os.listdir(spool) == []  # what the kills left was cleaned up on restart
        assert sessions == {"A": 2, "B": 1, "C": 1}  # A's first session was abandoned
        print(
            f"\ncrash: 3 jobs, 2 kills, {sum(titles.values())} videos, "
            f"{sum(n - 1 for n in titles.values())} duplicates; "
            f"B left FINALIZING for an operator"
        )
    finally:
        fake.close()


def release(fake):
    """Let a held request answer (to a dead client), and arm a fresh hold."""
    fake.release.set()
    fake.release = threading.Event()
    fake.holding.clear()


def cluster_of(dsn):
    """(version, name) of the local cluster serving `dsn`."""
    conn = psycopg2.connect(dsn)
    try:
        with conn.cursor() as cursor:
            cursor.execute("SHOW port")
            port = cursor.fetchone()[0]
    finally:
        conn.close()
    for line in subprocess.run(
        ["pg_lsclusters", "--no-header"], check=True, capture_output=True, text=True
    ).stdout.splitlines():
        version, name, cluster_port, *_ = line.split()
        if cluster_port == port:
            return version, name
    pytest.fail(f"no local cluster on port {port}")


def pg_ctl(action, version, name):
    return subprocess.run(
        ["pg_ctlcluster", "--skip-systemctl-redirect", version, name, action],
        capture_output=True,
        text=True,
        timeout=120,
    )


@contextlib.contextmanager
def cluster_running_after(version, name):
    """Whatever happens in the block, leave the cluster running."""
    try:
        yield
    finally:
        status = subprocess.run(
            ["pg_lsclusters", "--no-header", version, name], capture_output=True, text=True
        ).stdout
        if "online" not in status:
            pg_ctl("start", version, name)


def test_database_restart(db_template, store, tmp_path, cutters):
    """The cluster restarts mid-run: the cutter waits, reconnects and finishes every job."""
    outdir = tmp_path / "clips"
    with pg_lock(exclusive=True), fresh_database(db_template) as dsn:
        jobs = Jobs(dsn)

        def submit(i):
            return jobs.submit(**job_fields(start=1 + i * 2, end=3.5 + i * 2, title=f"R{i}")).id

        ids = [submit(i) for i in range(6)]
        cutters.start(cutter_command(dsn, store, "node1", f"clips=local:{outdir}"))
        wait_for(lambda: jobs.counts()[State.DONE] >= 2, what="two jobs to be done")
        version, name = cluster_of(dsn)
        with cluster_running_after(version, name):
            restarted = pg_ctl("restart", version, name)
            assert restarted.returncode == 0, restarted.stderr
        # Jobs submitted after the restart can only be done by a cutter that recovered.
        wait_for(safely(jobs.counts), what="the database to be back")
        ids += [submit(i) for i in range(6, 10)]
        wait_for(
            safely(lambda: jobs.counts()[State.DONE] == 10), timeout=WAIT, what="every job done"
        )
        assert cutters.stop_all() == [0]
        logs = cutters.logs()
        assert "Lost the database" in logs  # the restart really hit the cutter
        assert count_lines(logs, r"Uploaded job (\d+) to") == dict.fromkeys(ids, 1)
        assert len(os.listdir(outdir)) == 10
        jobs.db.close()


def test_service_serves_the_api_and_metrics(jobs, dsn, store, tmp_path, cutters):
    """`cutter run` end to end over HTTP: submit through the API, watch it get DONE, read /metrics."""
    outdir = tmp_path / "clips"

    def up(proc, base):
        if proc.poll() is not None:
            return "exited"
        try:
            return requests.get(base + "/locations", timeout=5).json()
        except requests.ConnectionError:
            return None

    for _ in range(3):  # a free port may be taken before the cutter binds it: try another
        port = free_port()
        command = cutter_command(
            dsn, store, "node1", f"clips=local:{outdir}", extra=["--metrics-port", str(port)]
        )
        proc = cutters.start(command)
        base = f"http://127.0.0.1:{port}"
        if wait_for(lambda: up(proc, base), what="the API") != "exited":  # noqa: B023
            break
    assert up(proc, base) == {"locations": ["clips"]}
    auth = {"Authorization": f"Bearer {Editors(jobs.db).add('ops')}"}
    created = requests.post(
        base + "/jobs", json=job_fields(start="2026-11-28T13:59:45", end="2026-11-28T13:59:47"),
        headers=auth, timeout=10,
    )  # fmt: skip
    assert created.status_code == 201, created.text
    url = f"{base}/jobs/{created.json()['id']}"
    done = wait_for(
        lambda: (
            (job := requests.get(url, headers=auth, timeout=5).json())["state"] == "DONE" and job
        ),
        what="the job to be done",
    )
    assert done["video_link"].startswith("file://")
    metrics = requests.get(base + "/metrics", timeout=5).text
    assert 'cutter_jobs_uploaded_total{location="clips",state="DONE"} 1.0' in metrics
    assert (
        'http_request_latency_all_count{endpoint="submit_job",method="POST",status="201"}'
        in metrics
    )
    assert cutters.stop_all() == [0]


def test_db_file_keeps_the_password_out_of_the_command_line(jobs, dsn, store, tmp_path, cutters):
    """`--db-file`: the DSN (with its password) is read from a 0600 file, not argv."""
    secret = f"not-in-argv-{os.getpid()}"
    path = tmp_path / "db.dsn"
    path.write_text(f"{dsn} password={secret}\n")  # trust auth here: the password is unused
    path.chmod(0o600)
    command = cutter_command("x", store, "node1", f"clips=local:{tmp_path / 'clips'}")
    at = command.index("--db")
    command[at : at + 2] = ["--db-file", str(path)]
    proc = cutters.start(command)
    wait_for(lambda: listeners(jobs) == 1 or proc.poll() is not None, what="the cutter to LISTEN")
    assert proc.poll() is None, cutters.logs()
    with open(f"/proc/{proc.pid}/cmdline", "rb") as f:
        argv = f.read().decode()
    assert secret not in argv and "dbname" not in argv and str(path) in argv
    assert cutters.stop_all() == [0]
    assert secret not in cutters.logs()
