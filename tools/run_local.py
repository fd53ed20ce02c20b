"""./run-local: a whole streamvault node on this machine, from the checkout, no Docker.

Starts, as child processes of this one:
- the built-in test stream (`devtools.teststream`: a live HLS origin on 127.0.0.1
  made by ffmpeg), unless `--channel` names real channels;
- per node: downloader, restreamer, cutter, and a backfiller when the node has
  peers (`--peer URL`, or the other node with `--nodes 2`);
- a PostgreSQL for the cutters: the system one when it answers (a database of
  its own per data directory), else a private cluster under the data directory.

Everything lives under `--data-dir` (default ./data): each node's store and
uploads, the logs of every process, the private cluster.

How it fails, and what it does about it:
- A port already in use: refused before anything starts, naming the port and
  `--port-base`. A service that exits or does not answer while starting: every
  process is stopped, and the last lines of its log are shown.
- A service that dies while running: the same, exit status 1. Nothing restarts
  on its own: this is a demonstration and a development tool, and a silent
  restart would hide the bug.
- Ctrl-C or SIGTERM: every service gets SIGTERM at once (each stops within a
  few seconds, leaving no temp files), then the test stream, then a private
  PostgreSQL. Each child runs in a session of its own, so whatever it started
  (ffmpeg) goes with it: stragglers get SIGKILL by process group. Children also
  get SIGTERM if this process dies without cleaning up (PR_SET_PDEATHSIG).
  Then a summary of what was recorded.
"""

import argparse
import ctypes
import datetime
import hashlib
import json
import os
import re
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.parse

import requests
from prometheus_client.parser import text_string_to_metric_families

from common.segments import list_segments
from devtools.ports import free_ports

# Starting: how long a service gets to answer on its port (imports and the first
# database connection take a second or two on a busy machine; allow for a slow CI
# box), and how long the first segment may take (the test stream's first segment
# is ready a segment duration after it starts; a Twitch channel may need an ad or
# two to pass first).
START_TIMEOUT = 30  # seconds
FIRST_SEGMENT_TIMEOUT = 90  # seconds
POLL_INTERVAL = 0.2  # seconds, while waiting for something to start
WATCH_INTERVAL = 1  # seconds, between checks that every child is alive
# Stopping: services stop within common.service.STOP_TIMEOUT (5 s); beyond this
# a child is killed with its whole process group.
STOP_TIMEOUT = 10  # seconds

DEFAULT_PORT_BASE = 8000
# Ports of node N (from 1) start at port_base + (N - 1) * NODE_PORT_STRIDE; the
# offsets keep the services' usual numbers (DESIGN §2) for node 1.
NODE_PORT_STRIDE = 10
PORT_OFFSETS = {
    "restreamer": 0,
    "downloader": 1,
    "backfiller": 2,
    "cutter": 3,
    "restreamer-backdoor": 5,
    "downloader-backdoor": 6,
    "backfiller-backdoor": 7,
    "cutter-backdoor": 8,
}
TESTSTREAM_PORT_OFFSET = 9  # in node 1's block

TEST_CHANNEL = "test"
# The test stream's two qualities (its default), as the downloader names them.
TEST_QUALITIES = ["source", "240p"]
UPLOAD_LOCATION = "local"
# The backfiller's counter of segments fetched (its family name, without _total).
BACKFILLED_METRIC = "backfiller_segments"

# The backfiller leaves segments younger than this to the local downloader. Its
# default (120 s) suits real streams; on one machine both nodes read the same
# origin, so a short one lets replication show within a minute.
RECENT_CUTOFF = 10  # seconds
# With --nodes 2, node 2 starts recording (downloader and backfiller) this long
# after node 1's first segment, like a node joining an event late. Longer than
# the test stream's playlist window (10 segments of 2 s), so the start of the
# recording reaches node 2 only through its backfiller: replication, visibly.
SECOND_NODE_DELAY = 25  # seconds

# PostgreSQL: the private cluster's socket lives in its directory (no TCP port,
# so no clash with anything); the server refuses to run as root.
PG_PORT = 5432
PG_USER = "streamvault"
PG_DATABASE = "streamvault"
SOCKET_PATH_MAX = 107  # bytes, sun_path on Linux, including .s.PGSQL.PORT

PR_SET_PDEATHSIG = 1


class Failed(Exception):
    """Starting or running failed; the message says what, for the user."""


class Interrupted(Exception):
    """A signal asked us to stop while starting."""


def say(message=""):
    print(message, flush=True)


def progress(message):
    say(f"run-local: {message}")


def _die_with_parent():
    """In the child, before exec: get SIGTERM if run-local dies without stopping us."""
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(PR_SET_PDEATHSIG, signal.SIGTERM)
    except Exception:
        pass


class Child:
    """One child process: its own session, output to a log file, stopped by group.

    `stop()` sends SIGTERM and waits; a child still there after `timeout` is
    killed with its whole process group, and so is anything it left behind.
    """

    def __init__(self, name, argv, log_path, cwd):
        self.name = name
        self.argv = argv
        self.log_path = log_path
        # Not the checkout: there `python -m cutter` would find the project
        # folder `cutter/` (no __init__.py) before the installed package.
        self.cwd = cwd
        self.proc = None

    def start(self):
        argv = self.argv
        with open(self.log_path, "ab") as log:
            log.write(f"\n=== run-local: {shlex.join(argv)}\n".encode())
            log.flush()
            self.proc = subprocess.Popen(
                argv,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
                preexec_fn=_die_with_parent,
                cwd=self.cwd,
            )

    @property
    def pid(self):
        return self.proc.pid

    def poll(self):
        return self.proc.poll()

    def signal(self, signum):
        if self.proc.poll() is None:
            try:
                self.proc.send_signal(signum)
            except ProcessLookupError:
                pass

    def wait(self, timeout):
        """Wait for the child to exit; kill its group if it does not. Returns its code."""
        try:
            code = self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            progress(f"{self.name} did not stop in {timeout}s; killing it")
            self.kill_group()
            code = self.proc.wait()
        # Whatever it started and left running (it shares the group) goes too.
        self.kill_group()
        return code

    def kill_group(self):
        try:
            os.killpg(self.proc.pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass

    def log_tail(self, lines=15):
        try:
            with open(self.log_path, "rb") as f:
                f.seek(0, os.SEEK_END)
                f.seek(max(0, f.tell() - 8192))
                text = f.read().decode(errors="replace")
        except OSError:
            return ""
        return "\n".join(text.splitlines()[-lines:])


def port_in_use(port, host="127.0.0.1"):
    with socket.socket() as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((host, port))
        except OSError:
            return True
    return False


def parse_channel(text):
    """`NAME` (Twitch) or `NAME=URL` (any HLS) → (name, spec for the downloader)."""
    name, _, url = text.partition("=")
    if not re.fullmatch(r"[A-Za-z0-9_][A-Za-z0-9_-]*", name):
        raise argparse.ArgumentTypeError(f"bad channel name {name!r}")
    if url and not url.startswith(("http://", "https://")):
        raise argparse.ArgumentTypeError(f"channel {name}: {url!r} is not an http(s) URL")
    return name, text


class Database:
    """The PostgreSQL the cutters share: the system one, else a private cluster.

    `mode` is `auto` (system if it answers, else private), `system` or `private`.
    The system cluster gets a database per data directory (so two checkouts do
    not share jobs; the same data directory finds its jobs again). The private
    cluster lives in DATA/postgres, listens on a socket there only, and trusts
    local connections (nothing else can reach it). As root it runs as the
    `postgres` user, which must be able to reach the data directory.
    """

    def __init__(self, data_dir, mode="auto"):
        self.data_dir = data_dir
        self.mode = mode
        self.dir = os.path.join(data_dir, "postgres")
        self.pgdata = os.path.join(self.dir, "data")
        self.private = False
        self.dsn = None
        self.description = None
        self.user = None

    def start(self):
        if self.mode in ("auto", "system"):
            error = self._try_system()
            if error is None:
                return self.dsn
            if self.mode == "system":
                raise Failed(f"the system PostgreSQL does not answer: {error}")
        self._start_private()
        return self.dsn

    def _try_system(self):
        import psycopg2

        digest = hashlib.sha256(os.path.abspath(self.data_dir).encode()).hexdigest()[:8]
        name = f"streamvault_local_{digest}"
        try:
            conn = psycopg2.connect("dbname=postgres", connect_timeout=5)
        except psycopg2.Error as e:
            return str(e).strip().splitlines()[0]
        try:
            conn.autocommit = True
            with conn.cursor() as cur:
                cur.execute("SELECT 1 FROM pg_database WHERE datname = %(name)s", {"name": name})
                if cur.fetchone() is None:
                    # Names cannot be parameters; this one is made of [a-z0-9_] only.
                    cur.execute(f'CREATE DATABASE "{name}"')
        finally:
            conn.close()
        self.dsn = f"dbname={name}"
        self.description = f"the system PostgreSQL, database {name}"
        return None

    def _bin(self, name):
        found = shutil.which(name)
        if found:
            return found
        candidates = sorted(
            (d for d in _listdir("/usr/lib/postgresql") if d.replace(".", "").isdigit()),
            key=lambda v: [int(p) for p in v.split(".")],
        )
        for version in reversed(candidates):
            path = os.path.join("/usr/lib/postgresql", version, "bin", name)
            if os.access(path, os.X_OK):
                return path
        raise Failed(f"{name} not found: install PostgreSQL (tools/setup does) or start it")

    def _run(self, argv, **kwargs):
        if self.user:
            argv = ["runuser", "-u", self.user, "--", *argv]
        return subprocess.run(argv, capture_output=True, text=True, **kwargs)

    def _start_private(self):
        socket_path = os.path.join(os.path.abspath(self.dir), f".s.PGSQL.{PG_PORT}")
        if len(socket_path.encode()) > SOCKET_PATH_MAX:
            raise Failed(
                f"data directory path too long for PostgreSQL's socket ({socket_path}): "
                "use a shorter --data-dir"
            )
        os.makedirs(self.dir, exist_ok=True)
        if os.geteuid() == 0:
            # initdb and postgres refuse to run as root.
            self.user = "postgres"
            shutil.chown(self.dir, user=self.user, group=self.user)
            if self._run(["test", "-w", self.dir]).returncode != 0:
                raise Failed(
                    f"PostgreSQL cannot run as root, and user {self.user} cannot reach "
                    f"{self.dir}: use a --data-dir it can reach (e.g. under /var/tmp), or "
                    "start the system PostgreSQL (tools/setup does)"
                )
        self.private = True
        self.description = f"a private PostgreSQL in {self.dir}"
        if not os.path.exists(os.path.join(self.pgdata, "PG_VERSION")):
            progress(f"creating {self.description}")
            result = self._run(
                [self._bin("initdb"), "-D", self.pgdata, "-U", PG_USER,
                 "--auth=trust", "-E", "UTF8", "--no-instructions"],
                timeout=120,
            )  # fmt: skip
            if result.returncode != 0:
                raise Failed(f"initdb failed: {result.stderr.strip() or result.stdout.strip()}")
        status = self._run([self._bin("pg_ctl"), "-D", self.pgdata, "status"])
        if status.returncode != 0:
            options = f"-c listen_addresses= -k {self.dir} -p {PG_PORT}"
            result = self._run(
                [self._bin("pg_ctl"), "-D", self.pgdata, "-l",
                 os.path.join(self.dir, "postgres.log"), "-o", options, "-w", "-t", "60", "start"],
                timeout=90,
                start_new_session=True,  # Ctrl-C in the terminal must not reach postgres
            )  # fmt: skip
            if result.returncode != 0:
                raise Failed(
                    f"PostgreSQL did not start: {result.stdout.strip()} {result.stderr.strip()} "
                    f"(see {self.dir}/postgres.log)"
                )
        import psycopg2

        base = f"host={self.dir} port={PG_PORT} user={PG_USER}"
        conn = psycopg2.connect(f"{base} dbname=postgres", connect_timeout=10)
        try:
            conn.autocommit = True
            with conn.cursor() as cur:
                cur.execute(
                    "SELECT 1 FROM pg_database WHERE datname = %(name)s", {"name": PG_DATABASE}
                )
                if cur.fetchone() is None:
                    cur.execute(f"CREATE DATABASE {PG_DATABASE}")
        finally:
            conn.close()
        self.dsn = f"{base} dbname={PG_DATABASE}"

    def stop(self):
        if not self.private:
            return
        result = self._run(
            [self._bin("pg_ctl"), "-D", self.pgdata, "-m", "fast", "-w", "stop"], timeout=60
        )
        if result.returncode != 0:
            progress(f"stopping PostgreSQL: {result.stderr.strip() or result.stdout.strip()}")

    def job_counts(self):
        """{state: count} of the cut jobs, or None when they cannot be read."""
        import psycopg2

        try:
            conn = psycopg2.connect(self.dsn, connect_timeout=5)
        except psycopg2.Error:
            return None
        try:
            with conn.cursor() as cur:
                cur.execute("SELECT state, count(*) FROM events GROUP BY state")
                return dict(cur.fetchall())
        except psycopg2.Error:
            return None
        finally:
            conn.close()


def _listdir(path):
    try:
        return os.listdir(path)
    except OSError:
        return []


class Node:
    """One node's directories, ports and service command lines."""

    def __init__(self, index, data_dir, ports, host):
        self.index = index
        self.name = f"node{index}"
        self.dir = os.path.join(data_dir, self.name)
        self.store = os.path.join(self.dir, "store")
        self.uploads = os.path.join(self.dir, "uploads")
        self.ports = ports
        self.host = host
        self.peers = []

    @property
    def url(self):
        return f"http://{self.host}:{self.ports['restreamer']}"

    def url_for(self, service):
        return f"http://{self.host}:{self.ports[service]}"

    def commands(self, channels, qualities, dsn):
        """{service: argv}, in start order."""
        python = [sys.executable, "-m"]
        names = [name for name, _ in channels]
        commands = {
            "restreamer": python + [
                "restreamer", "--base-dir", self.store,
                "--host", self.host, "--port", str(self.ports["restreamer"]),
            ],
            "cutter": python + [
                "cutter", "run", "--db", dsn, "--base-dir", self.store, "--name", self.name,
                "--location", f"{UPLOAD_LOCATION}=local:{self.uploads}",
                "--metrics-port", str(self.ports["cutter"]),
            ],
            "downloader": python + [
                "downloader", *[spec for _, spec in channels],
                "--qualities", ",".join(qualities), "--base-dir", self.store,
                "--metrics-port", str(self.ports["downloader"]),
            ],
        }  # fmt: skip
        if self.peers:
            commands["backfiller"] = python + [
                "backfiller", "--base-dir", self.store,
                "--channels", ",".join(names), "--qualities", ",".join(qualities),
                "--nodes", ",".join(self.peers), "--recent-cutoff", str(RECENT_CUTOFF),
                "--metrics-port", str(self.ports["backfiller"]),
            ]  # fmt: skip
        for service, argv in commands.items():
            argv += ["--backdoor-port", str(self.ports[f"{service}-backdoor"])]
        return commands

    def health_url(self, service):
        return self.url_for(service) + "/metrics"


class RunLocal:
    def __init__(self, args):
        self.args = args
        self.data_dir = os.path.abspath(args.data_dir)
        self.logs = os.path.join(self.data_dir, "logs")
        self.state_path = os.path.join(self.data_dir, "run-local.json")
        self.stopping = threading.Event()
        self.children = []  # (Child, kind) in start order; kind: service/teststream
        self.database = Database(self.data_dir, args.db)
        self.channels = args.channel or []
        self.test_stream = not self.channels
        self.qualities = args.qualities or (TEST_QUALITIES if self.test_stream else ["source"])
        self.nodes = []
        self.teststream_port = None
        self.first_segment_start = None
        self.services_started = None
        self.backfilled = {}  # node name -> segments its backfiller fetched
        # Downloaders started late (--nodes 2): [(name, argv, node)], and when.
        self.delayed = []
        self.delayed_at = None

    # -- starting --------------------------------------------------------------

    def plan_ports(self):
        """Ports for every node and the test stream; refuses ports already in use."""
        needed = len(PORT_OFFSETS) * self.args.nodes + 1
        if self.args.port_base == 0:
            ports = free_ports(needed, self.args.host)
            self.teststream_port = ports.pop()
            blocks = [
                dict(zip(PORT_OFFSETS, ports[i * len(PORT_OFFSETS) :], strict=False))
                for i in range(self.args.nodes)
            ]
        else:
            base = self.args.port_base
            blocks = [
                {k: base + i * NODE_PORT_STRIDE + off for k, off in PORT_OFFSETS.items()}
                for i in range(self.args.nodes)
            ]
            self.teststream_port = base + TESTSTREAM_PORT_OFFSET
            wanted = [p for block in blocks for p in block.values()]
            if self.test_stream:
                wanted.append(self.teststream_port)
            busy = [p for p in wanted if port_in_use(p, self.args.host)]
            if busy:
                raise Failed(
                    f"port{'s' if len(busy) > 1 else ''} {', '.join(map(str, busy))} already "
                    "in use (another ./run-local?): choose others with --port-base N, or "
                    "--port-base 0 for any free ones"
                )
        self.nodes = [
            Node(i + 1, self.data_dir, block, self.args.host) for i, block in enumerate(blocks)
        ]
        for node in self.nodes:
            node.peers = [n.url for n in self.nodes if n is not node] + list(self.args.peer)

    def start(self):
        os.makedirs(self.logs, exist_ok=True)
        self.plan_ports()
        for node in self.nodes:
            os.makedirs(node.store, exist_ok=True)
            os.makedirs(node.uploads, exist_ok=True)

        progress("starting PostgreSQL" if self.database.mode == "private" else "finding PostgreSQL")
        dsn = self.database.start()
        progress(f"jobs database: {self.database.description}")

        if self.test_stream:
            self.start_test_stream()

        # Start every service at once, then wait for each: imports take a second
        # or two apiece, so one at a time would add up.
        starting = []
        self.services_started = time.monotonic()
        for node in self.nodes:
            for service, argv in node.commands(self.channels, self.qualities, dsn).items():
                name = f"{node.name} {service}"
                if service in ("downloader", "backfiller") and node.index > 1:
                    self.delayed.append((name, argv, node))
                    continue
                progress(f"starting {name}")
                starting.append((self.start_child(name, argv, "service"), node.health_url(service)))
        for child, health_url in starting:
            self.wait_until(
                lambda url=health_url: answers(url),
                START_TIMEOUT,
                f"{child.name} to answer on {health_url}",
                child,
            )
        self.write_state(dsn)
        self.wait_for_first_segment(self.nodes[0])
        self.delayed_at = time.monotonic() + SECOND_NODE_DELAY

    def start_child(self, name, argv, kind):
        log = os.path.join(self.logs, name.replace(" ", "-") + ".log")
        child = Child(name, argv, log, cwd=self.data_dir)
        child.start()
        self.children.append((child, kind))
        return child

    def start_test_stream(self):
        progress(f"starting the built-in test stream on port {self.teststream_port}")
        work_dir = os.path.join(self.data_dir, "teststream")
        os.makedirs(work_dir, exist_ok=True)
        child = self.start_child(
            "teststream",
            [sys.executable, "-m", "devtools.teststream", "--host", "127.0.0.1",
             "--port", str(self.teststream_port), "--work-dir", work_dir,
             "--channel", TEST_CHANNEL, "--qualities", ",".join(self.qualities)],
            "teststream",
        )  # fmt: skip
        pattern = re.compile(r"teststream: serving (\S+)")
        found = []

        def ready():
            match = pattern.search(_read(child.log_path))
            if match:
                found.append(match[1])
            return bool(match)

        self.wait_until(ready, START_TIMEOUT, "the test stream to start", child)
        self.channels = [(TEST_CHANNEL, f"{TEST_CHANNEL}={found[0]}")]
        progress(f"test stream: {found[0]}")

    def start_service(self, name, argv, health_url):
        progress(f"starting {name}")
        child = self.start_child(name, argv, "service")
        self.wait_until(
            lambda: answers(health_url), START_TIMEOUT, f"{name} to answer on {health_url}", child
        )
        return child

    def write_state(self, dsn):
        """DATA/run-local.json: where everything is, for scripts (and the tests)."""
        state = {
            "pid": os.getpid(),
            "database": dsn,
            "channels": [name for name, _ in self.channels],
            "qualities": self.qualities,
            "nodes": [
                {
                    "name": node.name,
                    "url": node.url,
                    "store": node.store,
                    "uploads": node.uploads,
                    "upload_location": UPLOAD_LOCATION,
                    "peers": node.peers,
                    **{f"{s}_url": node.url_for(s) for s in ("downloader", "backfiller", "cutter")},
                    "backdoor_ports": {
                        s: node.ports[f"{s}-backdoor"] for s in self.services_of(node)
                    },
                }
                for node in self.nodes
            ],
        }
        tmp = self.state_path + ".tmp"
        with open(tmp, "w") as f:
            json.dump(state, f, indent=2)
        os.replace(tmp, self.state_path)

    def wait_for_first_segment(self, node):
        progress(f"{node.name}: waiting for the first segment")
        started = self.services_started
        found = []

        def recorded():
            segments = self.recorded(node)
            if segments:
                found.append(min(s.start for s in segments))
            return bool(segments)

        self.wait_until(recorded, FIRST_SEGMENT_TIMEOUT, f"{node.name}'s first segment")
        self.first_segment_start = found[0]
        progress(f"{node.name}: recording (first segment after {time.monotonic() - started:.1f} s)")

    def wait_until(self, condition, timeout, what, child=None):
        """Poll `condition` until true; Failed on timeout or when a child exits."""
        deadline = time.monotonic() + timeout
        while True:
            if self.stopping.is_set():
                raise Interrupted()
            if condition():
                return
            self.check_children()
            if time.monotonic() > deadline:
                detail = ""
                if child is not None:
                    detail = f"\nlast lines of {child.log_path}:\n{child.log_tail()}"
                raise Failed(f"gave up waiting for {what} after {timeout}s{detail}")
            self.stopping.wait(POLL_INTERVAL)

    def check_children(self):
        for child, _ in self.children:
            code = child.poll()
            if code is not None:
                raise Failed(
                    f"{child.name} exited with status {code}; last lines of "
                    f"{child.log_path}:\n{child.log_tail()}"
                )

    # -- running ----------------------------------------------------------------

    def run(self):
        """Watch the children until a signal comes; start late downloaders on time."""
        while not self.stopping.wait(WATCH_INTERVAL):
            self.check_children()
            if self.delayed and time.monotonic() >= self.delayed_at:
                for name, argv, node in self.delayed:
                    self.start_service(name, argv, node.health_url(name.split()[-1]))
                self.delayed = []

    # -- the banner and the summary ---------------------------------------------

    def banner(self):
        node = self.nodes[0]
        channel = self.channels[0][0]
        quality = self.qualities[0]
        # The first whole second recorded, so the example cut has no hole at its start.
        first = self.first_segment_start
        start = first.replace(microsecond=0) + datetime.timedelta(
            seconds=1 if first.microsecond else 0
        )
        end = start + datetime.timedelta(seconds=10)
        fmt = "%Y-%m-%dT%H:%M:%S"
        query = f"start={start.strftime(fmt)}&end={end.strftime(fmt)}"
        names = [name for name, _ in self.channels]
        if self.test_stream:
            what = f'the built-in test stream (channel "{channel}")'
        else:
            what = ("channel " if len(names) == 1 else "channels ") + ", ".join(names)
        job = (
            f'{{"channel": "{channel}", "quality": "{quality}", '
            f'"start": "{start.strftime(fmt)}", "end": "{end.strftime(fmt)}", '
            f'"title": "My first clip", "upload_location": "{UPLOAD_LOCATION}"}}'
        )
        lines = [
            "",
            f"streamvault is running: {len(self.nodes)} node{'s' if len(self.nodes) > 1 else ''} "
            f"recording {what} in {' and '.join(self.qualities)}.",
            "",
            f"  Watch     ffplay {node.url}/playlist/{channel}.m3u8     (or mpv, VLC)",
        ]
        if self.editor_exists(node):
            # The page is on the restreamer's port; its cutter API is on another.
            editor = f"{node.url}/editor?{urllib.parse.urlencode({'api': node.url_for('cutter')})}"
            lines.append(f"  Edit      {editor}     (in a browser: mark a range, cut it)")
        lines += [
            f"  Cut       curl -o clip.ts '{node.url}/cut/{channel}/{quality}.ts?{query}'",
            "            (10 s from the start of the recording; once that much is recorded)",
            f"  Submit    curl -X POST {node.url_for('cutter')}/jobs "
            f"-H 'Content-Type: application/json' \\",
            f"              -d '{job}'",
            f"            then: curl {node.url_for('cutter')}/jobs   (uploads land in {node.uploads})",
            "  Metrics   "
            + "  ".join(f"{s} {node.url_for(s)}/metrics" for s in self.services_of(node)),
            "  Backdoor  "
            + "  ".join(
                f"{s} telnet 127.0.0.1 {node.ports[s + '-backdoor']}"
                for s in self.services_of(node)
            ),
        ]
        for other in self.nodes[1:]:
            lines.append(
                f"  {other.name}     {other.url} (restreamer), {other.url_for('cutter')} (jobs);\n"
                f"            it starts recording {SECOND_NODE_DELAY} s late, like a node joining "
                f"an event late:\n            what it missed is backfilled from {node.name}"
            )
        lines += [
            f"  Data      {self.data_dir}   (logs in {self.logs})",
            f"  Jobs DB   {self.database.description}",
            "",
            "Ctrl-C stops everything and says what was recorded.",
            "",
        ]
        say("\n".join(lines))

    def services_of(self, node):
        order = ["restreamer", "downloader", "backfiller", "cutter"]
        return [s for s in order if s != "backfiller" or node.peers]

    def editor_exists(self, node):
        try:
            return requests.get(node.url + "/editor", timeout=2).status_code == 200
        except requests.RequestException:
            return False

    def recorded(self, node):
        """Every segment in a node's store (any type but temp)."""
        segments = []
        for channel in _listdir(node.store):
            for quality in _listdir(os.path.join(node.store, channel)):
                quality_dir = os.path.join(node.store, channel, quality)
                for hour in _listdir(quality_dir):
                    segments += list_segments(os.path.join(quality_dir, hour))
        return segments

    def summary(self):
        lines = ["", "What was recorded:"]
        for node in self.nodes:
            segments = self.recorded(node)
            by_key = {}
            for segment in segments:
                by_key.setdefault((segment.channel, segment.quality), []).append(segment)
            if not by_key:
                lines.append(f"  {node.name}: nothing ({node.store})")
            for (channel, quality), group in sorted(by_key.items()):
                full = [s for s in group if s.type == "full"]
                other = len(group) - len(full)
                size = sum(_size(s.path) for s in group)
                first = min(s.start for s in group)
                last = max(s.end for s in group)
                lines.append(
                    f"  {node.name} {channel}/{quality}: {len(full)} segments"
                    + (f" (+{other} partial or suspect)" if other else "")
                    + f", {first:%H:%M:%S}–{last:%H:%M:%S} UTC, {size / 1e6:.1f} MB"
                )
            if self.backfilled.get(node.name):
                lines.append(
                    f"  {node.name}: {self.backfilled[node.name]} of these segments backfilled "
                    "from peers"
                )
            uploads = [n for n in _listdir(node.uploads) if not n.startswith(".")]
            if uploads:
                lines.append(f"  {node.name} uploads: {len(uploads)} videos in {node.uploads}")
        counts = self.database.job_counts() if self.database.dsn else None
        if counts:
            jobs = ", ".join(f"{n} {state}" for state, n in sorted(counts.items()))
            lines.append(f"  cut jobs: {jobs}")
        lines.append(f"  store: {self.data_dir}")
        say("\n".join(lines))

    # -- stopping -----------------------------------------------------------------

    def count_backfilled(self):
        """Segments each node's backfiller fetched, from its metrics (gone once it stops)."""
        for node in self.nodes:
            if not node.peers:
                continue
            try:
                text = requests.get(node.health_url("backfiller"), timeout=2).text
            except requests.RequestException:
                continue
            total = 0
            for family in text_string_to_metric_families(text):
                if family.name == BACKFILLED_METRIC:
                    total += sum(s.value for s in family.samples if s.name.endswith("_total"))
            self.backfilled[node.name] = int(total)

    def stop(self):
        self.count_backfilled()
        services = [c for c, kind in self.children if kind == "service"]
        others = [c for c, kind in self.children if kind != "service"]
        if services:
            progress("stopping " + ", ".join(c.name for c in services))
        for group in (services, others):
            for child in group:
                child.signal(signal.SIGTERM)
            for child in group:
                code = child.wait(STOP_TIMEOUT)
                if code not in (0, -signal.SIGTERM):
                    progress(f"{child.name} exited with status {code} (see {child.log_path})")
        try:
            os.remove(self.state_path)
        except FileNotFoundError:
            pass
        if self.nodes:
            self.summary()  # before a private database stops: it counts the jobs
        self.database.stop()


def answers(url):
    """True when `url` answers 200 (a service is up)."""
    try:
        return requests.get(url, timeout=2).status_code == 200
    except requests.RequestException:
        return False


def _read(path):
    try:
        with open(path, errors="replace") as f:
            return f.read()
    except OSError:
        return ""


def _size(path):
    try:
        return os.stat(path).st_size
    except OSError:
        return 0


def parse_args(argv=None):
    parser = argparse.ArgumentParser(
        prog="run-local",
        description="Run a whole streamvault node on this machine, on a built-in test stream "
        "or real channels. Ctrl-C stops it.",
    )
    parser.add_argument(
        "--data-dir", default="data",
        help="where stores, uploads, logs and a private PostgreSQL live (default: ./data)",
    )  # fmt: skip
    parser.add_argument(
        "--channel", action="append", type=parse_channel, metavar="NAME[=URL]",
        help="record a Twitch channel (NAME) or any HLS stream (NAME=URL) instead of the "
        "built-in test stream; repeat for several",
    )  # fmt: skip
    parser.add_argument(
        "--qualities", type=lambda s: [q for q in s.split(",") if q],
        help="qualities to record, comma-separated (default: the test stream's two, or "
        "'source' for real channels)",
    )  # fmt: skip
    parser.add_argument(
        "--peer", action="append", default=[], metavar="URL",
        help="another node's restreamer to backfill from; repeat for several",
    )  # fmt: skip
    parser.add_argument(
        "--nodes", type=int, choices=(1, 2), default=1,
        help="2 runs a second node that backfills from the first and vice versa (default: 1)",
    )  # fmt: skip
    parser.add_argument(
        "--port-base", type=int, default=DEFAULT_PORT_BASE,
        help="node 1 uses ports N (restreamer) to N+9, node 2 N+10 to N+19; 0 picks free "
        f"ports (default: {DEFAULT_PORT_BASE})",
    )  # fmt: skip
    parser.add_argument(
        "--host", default="127.0.0.1",
        help="address the restreamers listen on and are reached at (default: 127.0.0.1)",
    )  # fmt: skip
    parser.add_argument(
        "--db", choices=("auto", "system", "private"), default="auto",
        help="PostgreSQL for the jobs: the system one if it answers, else a private one "
        "under the data directory (default: auto)",
    )  # fmt: skip
    return parser.parse_args(argv)


def main(argv=None):
    args = parse_args(argv)
    run = RunLocal(args)

    def on_signal(signum, frame):
        run.stopping.set()

    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGTERM, on_signal)
    status = 0
    try:
        run.start()
        run.banner()
        run.run()
        progress("stopping")
    except Interrupted:
        progress("interrupted while starting; stopping")
    except Failed as e:
        say(f"run-local: {e}")
        status = 1
    except Exception:
        import traceback

        traceback.print_exc()
        status = 1
    finally:
        # A second Ctrl-C while stopping must not leave half the children running.
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        run.stop()
    return status


if __name__ == "__main__":
    sys.exit(main())
