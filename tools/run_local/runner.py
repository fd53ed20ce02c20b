"""Starting, watching and stopping everything run-local runs (see the package docstring)."""

import fcntl
import json
import os
import re
import signal
import sys
import threading
import time

import requests
from prometheus_client.parser import text_string_to_metric_families

from . import report
from .children import Child, Failed, Interrupted, answers, progress, responds
from .cli import TEST_STREAM_FORMATS
from .database import Database
from .nodes import UPLOAD_LOCATION, plan_nodes

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

TEST_CHANNEL = "test"
# The test stream's two qualities (its default), as the downloader names them.
TEST_QUALITIES = ["source", "240p"]
# The backfiller's counter of segments fetched (its family name, without _total).
BACKFILLED_METRIC = "backfiller_segments"
# With --nodes 2, node 2 starts recording (downloader and backfiller) this long
# after node 1's first segment, like a node joining an event late. Longer than
# the test stream's playlist window (10 segments of 2 s), so the start of the
# recording reaches node 2 only through its backfiller: replication, visibly.
SECOND_NODE_DELAY = 25  # seconds


class RunLocal:
    """One run: `start()`, `run()` until a signal sets `stopping`, then `stop()`."""

    second_node_delay = SECOND_NODE_DELAY

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
        self.started_at = None  # wall clock (time.time()) when this run began
        self.lock = None
        # Downloaders started late (--nodes 2): [(name, argv, node)], and when.
        self.delayed = []
        self.delayed_at = None

    # -- starting --------------------------------------------------------------

    def start(self):
        """Start everything and wait until node 1 records; Failed or Interrupted if not."""
        # Segments are written seconds after this, so a file system clock a few
        # milliseconds behind time.time() cannot make this run's first one look old.
        self.started_at = time.time()
        os.makedirs(self.logs, exist_ok=True)
        self.lock = DataDirLock(self.data_dir)
        self.lock.acquire()
        self.nodes, self.teststream_port = plan_nodes(
            self.data_dir,
            self.args.nodes,
            self.args.port_base,
            self.args.host,
            self.args.peer,
            self.test_stream,
            backdoor=self.args.backdoor,
        )
        for node in self.nodes:
            os.makedirs(node.store, exist_ok=True)
            os.makedirs(node.uploads, exist_ok=True)

        progress("starting PostgreSQL" if self.database.mode == "private" else "finding PostgreSQL")
        dsn = self.database.start()
        progress(f"jobs database: {self.database.description}")
        # Only editors make jobs: this run's token signs the page and the banner's curl in.
        self.editor_token = self.database.editor_token()

        if self.test_stream:
            self.start_test_stream()

        # Start the services in two waves, each all at once (imports take a
        # second or two apiece, so one at a time would add up): first all but
        # the backfillers, then, once every restreamer answers, the backfillers,
        # so that their first pass finds their peers up instead of warning.
        self.services_started = time.monotonic()
        first, second = [], []
        for node in self.nodes:
            url = node.url_for("uploads") + "/"
            first.append((f"{node.name} uploads", node.uploads_server(), lambda u=url: responds(u)))
            for service, argv in node.commands(self.channels, self.qualities, dsn).items():
                name = f"{node.name} {service}"
                if service in ("downloader", "backfiller") and node.index > 1:
                    self.delayed.append((name, argv, node))
                else:
                    wave = second if service == "backfiller" else first
                    url = node.health_url(service)
                    wave.append((name, argv, lambda u=url: answers(u)))
        for wave in (first, second):
            starting = []
            for name, argv, up in wave:
                progress(f"starting {name}")
                starting.append((self.start_child(name, argv, "service"), up))
            for child, up in starting:
                self.wait_until(up, START_TIMEOUT, f"{child.name} to answer", child)
        self.write_state(dsn)
        self.wait_for_first_segment(self.nodes[0])
        self.delayed_at = time.monotonic() + SECOND_NODE_DELAY

    def start_child(self, name, argv, kind):
        """Start a child logging to LOGS/NAME.log, and remember it for stopping."""
        log = os.path.join(self.logs, name.replace(" ", "-") + ".log")
        child = Child(name, argv, log, cwd=self.data_dir)
        child.start()
        self.children.append((child, kind))
        return child

    def start_test_stream(self):
        """Start the built-in test stream; the channel list becomes its one channel."""
        container, codec = TEST_STREAM_FORMATS[self.args.test_stream]
        progress(
            f"starting the built-in test stream ({self.args.test_stream}) "
            f"on port {self.teststream_port}"
        )
        work_dir = os.path.join(self.data_dir, "teststream")
        os.makedirs(work_dir, exist_ok=True)
        child = self.start_child(
            "teststream",
            [sys.executable, "-m", "devtools.teststream", "--host", "127.0.0.1",
             "--port", str(self.teststream_port), "--work-dir", work_dir,
             "--channel", TEST_CHANNEL, "--qualities", ",".join(self.qualities),
             "--container", container, "--codec", codec],
            "teststream",
        )  # fmt: skip
        pattern = re.compile(r"teststream: serving (\S+)")
        found = []

        def ready():
            # This run's output only: the log keeps earlier runs' lines, whose
            # URL (another --port-base) would send the downloader nowhere.
            match = pattern.search(child.output())
            if match:
                found.append(match[1])
            return bool(match)

        self.wait_until(ready, START_TIMEOUT, "the test stream to start", child)
        self.channels = [(TEST_CHANNEL, f"{TEST_CHANNEL}={found[0]}")]
        progress(f"test stream: {found[0]}")

    def start_service(self, name, argv, health_url):
        """Start one service and wait until it answers."""
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
            "editor_token": self.editor_token,
            "channels": [name for name, _ in self.channels],
            "qualities": self.qualities,
            "nodes": [
                {
                    "name": node.name,
                    "url": node.url,
                    "store": node.store,
                    "uploads": node.uploads,
                    "uploads_url": node.url_for("uploads") + "/",
                    "upload_location": UPLOAD_LOCATION,
                    "peers": node.peers,
                    **{f"{s}_url": node.url_for(s) for s in ("downloader", "backfiller", "cutter")},
                    "backdoor_sockets": {s: node.backdoor_socket(s) for s in node.services()}
                    if node.backdoor
                    else {},
                }
                for node in self.nodes
            ],
        }
        tmp = self.state_path + ".tmp"
        with open(tmp, "w") as f:
            json.dump(state, f, indent=2)
        os.replace(tmp, self.state_path)

    def wait_for_first_segment(self, node):
        """Wait until `node` records a segment in this run; remember when it starts.

        Segments an earlier run left in the store do not count: only files
        written since this run began (by mtime) show that it records.
        """
        progress(f"{node.name}: waiting for the first segment")
        started = self.services_started
        found = []

        def recorded():
            segments = [s for s in report.recorded(node.store) if _mtime(s.path) >= self.started_at]
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
        """Failed, with the end of its log, if any child has exited."""
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
        """Stop every child (services first), print the summary, stop a private database."""
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
        if self.lock is None or not self.lock.held:
            return  # another run owns this data directory: touch nothing of it
        try:
            os.remove(self.state_path)
        except FileNotFoundError:
            pass
        if self.nodes:
            report.summary(self)  # before a private database stops: it counts the jobs
        self.database.stop()
        self.lock.release()


class DataDirLock:
    """DATA/run-local.lock, held (flock) for as long as a run uses the data directory.

    Two runs on one data directory would record twice into one store, share
    logs, and the first to stop would delete the other's run-local.json. The
    lock is the kernel's: it goes when the process does, however it ends, so a
    killed run never leaves a stale lock. The file holds the owner's pid, for
    the message the second run prints.
    """

    def __init__(self, data_dir):
        self.path = os.path.join(data_dir, "run-local.lock")
        self.file = None

    @property
    def held(self):
        """True while this process holds the lock."""
        return self.file is not None

    def acquire(self):
        """Take the lock, or Failed naming the run that holds it."""
        f = open(self.path, "a+")
        try:
            fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            f.seek(0)
            owner = f.read().strip() or "unknown"
            f.close()
            raise Failed(
                f"another run-local (pid {owner}) is using {os.path.dirname(self.path)}: "
                "stop it first, or give this one another --data-dir"
            ) from None
        f.seek(0)
        f.truncate()
        f.write(f"{os.getpid()}\n")
        f.flush()
        self.file = f

    def release(self):
        """Let go of the lock (the file stays; its lock is what counts)."""
        if self.file is not None:
            self.file.close()
            self.file = None


def _mtime(path):
    try:
        return os.stat(path).st_mtime
    except OSError:
        return 0
