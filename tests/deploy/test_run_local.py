"""./run-local, end to end: the README's first command, run as a user would.

One short run of two nodes on the built-in test stream, judged from outside:
the store on disk, the restreamer's playlist and /cut through ffprobe/ffmpeg, a
job submitted to the cutter's API, node 2's store after backfill, the
dashboard's metric names against what the services export, and after SIGTERM,
no process left that run-local started.
"""

import datetime
import json
import os
import re
import shutil
import signal
import socket
import stat
import subprocess
import tempfile
import threading
import time
import urllib.parse

import psycopg2
import pytest
import requests

from common.segments import list_segments
from tests import util
from tools.run_local.database import Database

from .conftest import ROOT
from .test_compose import dashboard_exprs

# Bounded waits; generous for a busy 2-core CI box. None of them is a sleep: each
# polls until what it waits for is there.
BANNER_TIMEOUT = 90  # seconds: tools/setup, PostgreSQL, test stream, services, first segment
RECORD_TIMEOUT = 60  # seconds: until 10 s of video are recorded
JOB_TIMEOUT = 60  # seconds: until a submitted job is DONE
BACKFILL_TIMEOUT = 60  # seconds: until node 2 holds what node 1 recorded first
STOP_TIMEOUT = 40  # seconds: run-local stops everything (services take up to ~10 s)
CUT_SECONDS = 10


def wait_for(condition, timeout, what):
    return util.wait_for(condition, timeout, interval=0.25, what=what)


def processes_mentioning(text):
    """PIDs of live processes whose command line contains `text`."""
    found = []
    for pid in os.listdir("/proc"):
        if not pid.isdigit() or int(pid) == os.getpid():
            continue
        try:
            with open(f"/proc/{pid}/cmdline", "rb") as f:
                cmdline = f.read().replace(b"\0", b" ").decode(errors="replace")
            with open(f"/proc/{pid}/stat") as f:
                state = f.read().rsplit(")", 1)[1].split()[0]
        except OSError:
            continue
        if text in cmdline and state != "Z":
            found.append((int(pid), cmdline))
    return found


def listening_addresses(pids):
    """{(address, port)} of the TCP sockets the processes `pids` listen on."""
    inodes = set()
    for pid in pids:
        try:
            for fd in os.listdir(f"/proc/{pid}/fd"):
                target = os.readlink(f"/proc/{pid}/fd/{fd}")
                if target.startswith("socket:["):
                    inodes.add(target[len("socket:[") : -1])
        except OSError:
            continue
    found = set()
    for table, family in (("/proc/net/tcp", socket.AF_INET), ("/proc/net/tcp6", socket.AF_INET6)):
        with open(table) as f:
            next(f)
            for line in f:
                fields = line.split()
                local, state, inode = fields[1], fields[3], fields[9]
                if state != "0A" or inode not in inodes:  # 0A: LISTEN
                    continue
                hex_address, hex_port = local.split(":")
                raw = bytes.fromhex(hex_address)
                # /proc prints each 32-bit word in host (little-endian) order.
                raw = b"".join(raw[i : i + 4][::-1] for i in range(0, len(raw), 4))
                found.add((socket.inet_ntop(family, raw), int(hex_port, 16)))
    return found


def segments_in(store, channel, quality):
    quality_dir = os.path.join(store, channel, quality)
    segments = []
    for hour in sorted(os.listdir(quality_dir)) if os.path.isdir(quality_dir) else []:
        segments += list_segments(os.path.join(quality_dir, hour))
    return sorted(segments, key=lambda s: s.start)


def iso(t):
    return t.strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3]


def ffprobe(target):
    result = subprocess.run(
        ["ffprobe", "-v", "error", "-show_format", "-show_streams", "-of", "json", target],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def metric_names(text):
    """Every metric name a /metrics page can be queried by (histograms' suffixes too)."""
    names = set()
    for line in text.splitlines():
        if line.startswith("# TYPE "):
            _, _, name, kind = line.split()[:4]
            names.add(name)
            if kind == "histogram":
                names.update(name + suffix for suffix in ("_bucket", "_count", "_sum"))
            if kind == "counter" and not name.endswith("_total"):
                names.add(name + "_total")
        elif line and not line.startswith("#"):
            names.add(re.split(r"[{ ]", line, maxsplit=1)[0])
    return names


@pytest.fixture
def data_dir():
    """A data directory outside pytest's private tmp tree.

    As root, a private PostgreSQL would run as `postgres`, which cannot enter
    pytest's 0700 directories; a directory of its own under /var/tmp can be.
    """
    path = tempfile.mkdtemp(prefix="streamvault-run-local-", dir="/var/tmp")
    os.chmod(path, 0o755)
    yield os.path.join(path, "data")
    shutil.rmtree(path, ignore_errors=True)


@pytest.mark.slow
def test_run_local_two_nodes(data_dir):
    proc = subprocess.Popen(
        [
            str(ROOT / "run-local"),
            "--data-dir",
            data_dir,
            "--port-base",
            "0",
            "--nodes",
            "2",
            "--backdoor",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    output = []
    reader = threading.Thread(target=lambda: output.extend(proc.stdout), daemon=True)
    reader.start()
    state_path = os.path.join(data_dir, "run-local.json")
    database = None
    try:
        wait_for(
            lambda: "streamvault is running" in "".join(output) or proc.poll() is not None,
            BANNER_TIMEOUT,
            "the banner",
        )
        assert proc.poll() is None, "".join(output)
        banner = "".join(output)
        with open(state_path) as f:
            state = json.load(f)
        database = state["database"]
        node1, node2 = state["nodes"]
        channel = state["channels"][0]
        quality = state["qualities"][0]
        assert f"{node1['url']}/playlist/{channel}.m3u8" in banner
        assert f"{node1['cutter_url']}/jobs" in banner
        # Asked for (--backdoor): each service's backdoor is a 0600 Unix socket the
        # banner names, and the client it prints reaches a Python prompt there.
        sockets = node1["backdoor_sockets"]
        assert set(sockets) == {"restreamer", "downloader", "backfiller", "cutter"}
        for path in sockets.values():
            assert path in banner
            wait_for(lambda p=path: os.path.exists(p), 10, f"{path}")
            assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
        session = subprocess.run(
            [str(ROOT / ".venv/bin/python"), "-m", "common.backdoor", sockets["cutter"]],
            input="print(6 * 7, sorted(backends))\n", capture_output=True, text=True, timeout=30,
        )  # fmt: skip
        assert "42 ['local']" in session.stdout, session.stdout + session.stderr

        # Every socket anything run-local started listens on is where --host
        # (127.0.0.1, the default) says: none on all interfaces.
        listening = listening_addresses([pid for pid, _ in processes_mentioning(data_dir)])
        # (Node 2's downloader and backfiller start later, like a node joining late.)
        started = [node1[k] for k in ("url", "cutter_url", "downloader_url", "backfiller_url")]
        started += [node2[k] for k in ("url", "cutter_url")]
        for url in started + [node1["uploads_url"], node2["uploads_url"]]:
            assert ("127.0.0.1", urllib.parse.urlsplit(url).port) in listening, url
        assert {address for address, _ in listening} == {"127.0.0.1"}, listening

        # Recorded: wait for 10 s of video after the first segment's start.
        first = wait_for(
            lambda: segments_in(node1["store"], channel, quality), RECORD_TIMEOUT, "a segment"
        )[0]
        start = first.start + datetime.timedelta(seconds=0.5)
        end = start + datetime.timedelta(seconds=CUT_SECONDS)
        wait_for(
            lambda: segments_in(node1["store"], channel, quality)[-1].end > end,
            RECORD_TIMEOUT,
            f"{CUT_SECONDS} s recorded",
        )
        segments = segments_in(node1["store"], channel, quality)
        assert all(s.type == "full" for s in segments), segments
        for a, b in zip(segments, segments[1:], strict=False):
            assert a.end == b.start, f"gap between {a.name} and {b.name}"

        # The playlist plays.
        range_query = f"start={iso(start)}&end={iso(end)}"
        playlist = ffprobe(f"{node1['url']}/playlist/{channel}/{quality}.m3u8?{range_query}")
        kinds = sorted(s["codec_type"] for s in playlist["streams"])
        assert kinds == ["audio", "video"]
        assert float(playlist["format"]["duration"]) >= CUT_SECONDS

        # A 10 s cut, judged by ffprobe: duration within one frame, no decode error.
        response = requests.get(
            f"{node1['url']}/cut/{channel}/{quality}.ts?{range_query}", timeout=60
        )
        assert response.status_code == 200, response.text
        clip = os.path.join(os.path.dirname(data_dir), "clip.ts")
        with open(clip, "wb") as f:
            f.write(response.content)
        probe = ffprobe(clip)
        video = next(s for s in probe["streams"] if s["codec_type"] == "video")
        num, den = map(int, video["r_frame_rate"].split("/"))
        assert abs(float(probe["format"]["duration"]) - CUT_SECONDS) <= den / num + 1e-3
        decode = subprocess.run(
            ["ffmpeg", "-v", "error", "-nostdin", "-i", clip, "-f", "null", "-"],
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert decode.returncode == 0 and decode.stderr == "", decode.stderr

        # A job submitted to the cutter's API reaches DONE, and its video exists.
        job = {
            "channel": channel,
            "quality": quality,
            "start": iso(start),
            "end": iso(end),
            "title": "run-local test",
            "upload_location": node1["upload_location"],
        }
        auth = {"Authorization": f"Bearer {state['editor_token']}"}
        response = requests.post(f"{node1['cutter_url']}/jobs", json=job, headers=auth, timeout=10)
        assert response.status_code in (200, 201), response.text
        job_id = response.json()["id"]

        def done():
            job = requests.get(
                f"{node1['cutter_url']}/jobs/{job_id}", headers=auth, timeout=10
            ).json()
            assert job["state"] not in ("UNEDITED",), job
            return job if job["state"] == "DONE" else None

        finished = wait_for(done, JOB_TIMEOUT, f"job {job_id} to be DONE")
        # The link is served over HTTP (a page cannot open file://), as in Docker.
        # (Either node's cutter may have claimed it: they share the database.)
        link = finished["video_link"]
        assert link.startswith((node1["uploads_url"], node2["uploads_url"])), finished
        video = requests.get(link, timeout=10)
        assert video.status_code == 200
        uploads = [
            os.path.join(n["uploads"], name)
            for n in (node1, node2)
            for name in os.listdir(n["uploads"])
        ]
        assert len(uploads) == 1, uploads
        assert video.content == open(uploads[0], "rb").read()
        uploaded = ffprobe(uploads[0])
        assert abs(float(uploaded["format"]["duration"]) - CUT_SECONDS) <= den / num + 1e-3

        # Node 2's downloader started late: what it missed came from node 1.
        def backfilled():
            path = os.path.join(node2["store"], os.path.relpath(first.path, node1["store"]))
            return os.path.exists(path) and open(path, "rb").read() == open(first.path, "rb").read()

        wait_for(backfilled, BACKFILL_TIMEOUT, f"node 2 to backfill {first.name}")

        # Every metric the dashboard graphs is one a service exports.
        exported = set()
        for node in (node1, node2):
            for url in (node["url"], node["downloader_url"], node["backfiller_url"], node["cutter_url"]):  # fmt: skip
                exported |= metric_names(requests.get(url + "/metrics", timeout=10).text)
        queried = {
            name
            for expr in dashboard_exprs()
            for name in re.findall(r"([a-zA-Z_:][a-zA-Z0-9_:]*)\{", expr)
        } - {"up"}  # made by Prometheus itself
        assert queried - exported == set()
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
        try:
            code = proc.wait(timeout=STOP_TIMEOUT)
        except subprocess.TimeoutExpired:
            proc.kill()
            code = "killed"
        reader.join(timeout=5)
        if database and "dbname=streamvault_local_" in database:
            drop_database(database)
    text = "".join(output)
    assert code == 0, text
    assert "What was recorded:" in text
    assert re.search(
        r"node1 test/source: \d+ segments, .* UTC, (no holes|\d+ holes?, longest )", text
    ), text
    assert re.search(r"cut jobs: 1 DONE", text), text
    assert not os.path.exists(state_path)
    assert processes_mentioning(data_dir) == []
    # Node 1's backfiller started once node 2's restreamer answered: no pass
    # abandoned for a peer that was not up yet.
    with open(os.path.join(data_dir, "logs", "node1-backfiller.log")) as f:
        assert "Connection refused" not in f.read()


def drop_database(dsn):
    name = dsn.split("dbname=")[1].split()[0]
    conn = psycopg2.connect("dbname=postgres")
    conn.autocommit = True
    with conn.cursor() as cur:
        cur.execute(f'DROP DATABASE IF EXISTS "{name}"')
    conn.close()


@pytest.mark.slow
def test_run_local_refuses_a_port_in_use(tmp_path):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        port = s.getsockname()[1]
        result = subprocess.run(
            [
                str(ROOT / ".venv/bin/python"), "-m", "tools.run_local",
                "--data-dir", str(tmp_path / "data"), "--port-base", str(port),
            ],
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=60,
        )  # fmt: skip
    assert result.returncode == 1
    assert re.search(rf"ports? ([0-9, ]+, )?{port}\b.* already in use", result.stdout), (
        result.stdout
    )
    assert "--port-base" in result.stdout
    assert processes_mentioning(str(tmp_path)) == []


@pytest.mark.slow
def test_private_database_starts_serves_and_stops(data_dir):
    database = Database(data_dir, "private")
    dsn = database.start()
    try:
        assert dsn.startswith(f"host={data_dir}/postgres ")
        conn = psycopg2.connect(dsn)
        with conn, conn.cursor() as cur:
            cur.execute("CREATE TABLE t (x int)")
            cur.execute("INSERT INTO t VALUES (42)")
        conn.close()
        assert processes_mentioning(f"{data_dir}/postgres")
    finally:
        database.stop()
    assert processes_mentioning(f"{data_dir}/postgres") == []
    # The same data directory finds its cluster, and its data, again.
    again = Database(data_dir, "private")
    assert again.start() == dsn
    try:
        conn = psycopg2.connect(dsn)
        with conn.cursor() as cur:
            cur.execute("SELECT x FROM t")
            assert cur.fetchall() == [(42,)]
        conn.close()
    finally:
        again.stop()


class RunLocalProcess:
    """`./run-local ARGS` in the background, its output collected as it comes."""

    def __init__(self, data_dir, *args):
        self.data_dir = data_dir
        self.proc = subprocess.Popen(
            [str(ROOT / "run-local"), "--data-dir", data_dir, "--port-base", "0", *args],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        self.lines = []
        self.reader = threading.Thread(target=lambda: self.lines.extend(self.proc.stdout))
        self.reader.start()

    @property
    def output(self):
        return "".join(self.lines)

    def wait_for_banner(self):
        wait_for(
            lambda: "streamvault is running" in self.output or self.proc.poll() is not None,
            BANNER_TIMEOUT,
            "the banner",
        )
        assert self.proc.poll() is None, self.output

    def stop(self):
        """SIGTERM, wait; returns the exit status."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        try:
            code = self.proc.wait(timeout=STOP_TIMEOUT)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            code = "killed"
        self.reader.join(timeout=5)
        return code

    def test_stream_url(self):
        return re.search(r"run-local: test stream: (\S+)", self.output)[1]


def new_segments(store, since):
    """Segments in `store` whose files were written at or after `since` (time.time())."""
    found = []
    for channel in os.listdir(store) if os.path.isdir(store) else []:
        for quality in os.listdir(os.path.join(store, channel)):
            found += [
                s for s in segments_in(store, channel, quality) if os.stat(s.path).st_mtime >= since
            ]
    return found


@pytest.mark.slow
def test_a_second_run_on_other_ports_records_and_says_so_only_then(data_dir):
    first = RunLocalProcess(data_dir)
    try:
        first.wait_for_banner()
    finally:
        assert first.stop() == 0, first.output
    store = os.path.join(data_dir, "node1", "store")
    assert new_segments(store, 0), "the first run recorded nothing"

    since = time.time()
    second = RunLocalProcess(data_dir)
    try:
        second.wait_for_banner()
        # Other ports, so another test stream URL: the one this run started.
        assert second.test_stream_url() != first.test_stream_url()
        # "recording" means this run's downloader wrote a segment, and it keeps
        # recording (the old run's URL would give it nothing to record).
        assert new_segments(store, since), second.output
        count = len(new_segments(store, since))
        wait_for(lambda: len(new_segments(store, since)) > count, RECORD_TIMEOUT, "more segments")
    finally:
        code = second.stop()
        if os.path.exists(os.path.join(data_dir, "logs", "node1-downloader.log")):
            log = open(os.path.join(data_dir, "logs", "node1-downloader.log")).read()
            this_run = log.rsplit("=== run-local:", 1)[-1]
            assert first.test_stream_url() not in this_run
        drop_database_of(data_dir)
    assert code == 0, second.output


@pytest.mark.slow
def test_a_second_run_on_the_same_data_dir_is_refused(data_dir):
    first = RunLocalProcess(data_dir)
    try:
        first.wait_for_banner()
        state_path = os.path.join(data_dir, "run-local.json")
        assert os.path.exists(state_path)
        result = subprocess.run(
            [str(ROOT / "run-local"), "--data-dir", data_dir, "--port-base", "0"],
            capture_output=True,
            text=True,
            timeout=BANNER_TIMEOUT,
        )
        assert result.returncode == 1, result.stdout
        assert f"another run-local (pid {first.proc.pid}) is using {data_dir}" in result.stdout
        assert "starting" not in result.stdout  # refused before anything started
        # The running one is untouched: its state file, and it still runs.
        assert os.path.exists(state_path)
        assert first.proc.poll() is None
    finally:
        code = first.stop()
        drop_database_of(data_dir)
    assert code == 0, first.output
    assert processes_mentioning(data_dir) == []


def drop_database_of(data_dir):
    """Drop the system PostgreSQL database run-local made for `data_dir`, if any."""
    from tools.run_local.database import system_database_name

    name = system_database_name(data_dir)
    conn = psycopg2.connect("dbname=postgres")
    conn.autocommit = True
    with conn.cursor() as cur:
        cur.execute(f'DROP DATABASE IF EXISTS "{name}"')
    conn.close()
