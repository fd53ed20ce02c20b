"""Benchmark: concurrent `/cut` load on a node that is recording, beside no cuts at all.

    .venv/bin/python bench/cut_load.py [--seconds 20] [--levels 4,16,64]

Three real processes on 127.0.0.1 share one store: the built-in test stream
(`python -m devtools.teststream`, one quality), a downloader recording it, and
a restreamer (`python -m restreamer`, its cut bounds at their defaults: one
cut per core for the node, two per client address). The store also holds
24 s of tiny generated media (320x180, 2 s segments) to cut from.
`--max-cuts` sets the node's bound: with `--max-cuts 8 --addresses 3` the
per-client bound (3 x 2 cuts) answers first, 429s instead of 503s.

For each N (0, the baseline, then each of `--levels`), for `--seconds`:

- N clients each loop on a cut of 3-5 s of the generated media, `type=full`
  and `type=fast` in turn, reading the whole body. Client i connects from
  127.0.0.(2 + i mod `--addresses`) when those addresses can be bound, so
  the per-client bound (429) does not hide the node's bound (503). A refused client waits
  `REFUSED_WAIT` (shorter than the Retry-After it is sent: the pressure stays
  on) and tries again;
- one client, a process of its own, lists `/files/...` (the recording's and
  the media's hours and segments, a new connection each time,
  `LISTING_PAUSE` apart), timed;
- a sampler counts the restreamer's ffmpeg children and sums the RSS of the
  restreamer and those children.

The table prints one column per N: `/files` p50/p99, peak ffmpegs, peak
memory, cuts answered 200 / 503 / 429 / otherwise, and the segments the test
stream published during that N (as its playlist listed them, polled here)
against those the downloader stored as `full` by the end of the run. Targets
(issue 19): ffmpegs and memory flat beyond the node's bound, `/files` p99
close to the baseline, nothing missed. Everything shares this machine's
cores, so read the columns against the N = 0 one, not as absolute numbers.
`tests/restreamer/test_cut_flood.py` keeps the verdict (bounds held, nothing
missed) as a test at one size.
"""

import argparse
import datetime
import http.client
import multiprocessing
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time

# This directory holds bench/restreamer.py, named like the package it runs:
# keep it off the import path.
HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path[:] = [p for p in sys.path if os.path.abspath(p or ".") != HERE]
sys.path.insert(0, ROOT)

from common.segments import parse_segment_path  # noqa: E402
from common.times import UTC, format_time, parse_time  # noqa: E402
from devtools.ports import free_ports  # noqa: E402
from tests.load import children, client_addresses, request  # noqa: E402
from tests.media import add_to_store, make_media  # noqa: E402

MEDIA_START = datetime.datetime(2026, 11, 28, 0, 0, tzinfo=UTC)
MEDIA_SECONDS = 24
CLIENT_ADDRESSES = 16
REFUSED_WAIT = 1.0  # seconds
LISTING_PAUSE = 0.05  # seconds between listings
SAMPLE_EVERY = 0.2  # seconds
POLL_EVERY = 1.0  # seconds between reads of the test stream's playlist
STARTUP_TIMEOUT = 30  # seconds
DRAIN_TIMEOUT = 30  # seconds for in-flight cuts once a level ends
SETTLE = 8  # seconds after the last level for the downloader's last segments


def percentile(values, fraction):
    if not values:
        return float("nan")
    values = sorted(values)
    return values[min(len(values) - 1, int(round(fraction * (len(values) - 1))))]


def rss_bytes(pid):
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 0


def wait_for_line(stream, pattern, what):
    """Read `stream` until a line matches `pattern`: the match, or exit."""
    lines = []
    for line in stream:
        lines.append(line)
        match = re.search(pattern, line)
        if match:
            # Keep draining the pipe so the process never blocks on a full one.
            threading.Thread(target=lambda: [None for _ in stream], daemon=True).start()
            return match
    sys.exit(f"cut_load: {what} did not start: {''.join(lines[-5:])}")


class Node:
    """The test stream, a downloader and a restreamer over one store in `work`."""

    def __init__(self, work, max_cuts=None):
        self.work = work
        self.max_cuts = max_cuts
        self.store = os.path.join(work, "store")
        self.processes = []
        self.published = {}  # segment start -> when the playlist first listed it
        self.samples = []  # (monotonic time, ffmpeg count, RSS bytes)
        self.stopping = threading.Event()

    def _spawn(self, command, **options):
        """Start `command`; its stderr (warnings and worse) goes to a log file in `work`."""
        env = dict(os.environ, STREAMVAULT_LOG_LEVEL="WARNING")
        log = open(os.path.join(self.work, f"{command[2]}.log"), "w")
        process = subprocess.Popen(command, cwd=ROOT, env=env, text=True, stderr=log, **options)
        log.close()
        self.processes.append(process)
        return process

    def log_tail(self, process, lines=5):
        with open(os.path.join(self.work, f"{process.args[2]}.log")) as f:
            return "".join(f.readlines()[-lines:])

    def start(self):
        media = make_media(
            os.path.join(self.work, "media"), seconds=MEDIA_SECONDS, segment_seconds=2
        )
        add_to_store(self.store, "vod", "source", MEDIA_START, media)

        (stream_port,) = free_ports(1)
        stream = self._spawn(
            [sys.executable, "-m", "devtools.teststream", "--port", str(stream_port),
             "--work-dir", os.path.join(self.work, "teststream"), "--qualities", "source"],
            stdout=subprocess.PIPE,
        )  # fmt: skip
        url = wait_for_line(stream.stdout, r"serving (\S+)", "the test stream").group(1)
        self.media_url = url.rsplit("/", 1)[0] + "/source/index.m3u8"
        self.stream_port = stream_port
        threading.Thread(target=self._poll_playlist, daemon=True).start()

        self._spawn(
            [sys.executable, "-m", "downloader", "--base-dir", self.store, "--metrics-port", "0",
             "--qualities", "source", f"test={url}"],
        )  # fmt: skip
        (self.port,) = free_ports(1)
        restreamer = self._spawn(
            [sys.executable, "-m", "restreamer", "--base-dir", self.store,
             "--host", "127.0.0.1", "--port", str(self.port)]
            + (["--max-cuts", str(self.max_cuts)] if self.max_cuts else []),
        )  # fmt: skip
        deadline = time.monotonic() + STARTUP_TIMEOUT
        while True:
            try:
                if request(self.port, "/files")[0] == 200:
                    break
            except OSError:
                pass
            if restreamer.poll() is not None or time.monotonic() > deadline:
                sys.exit(f"cut_load: the restreamer did not start: {self.log_tail(restreamer)}")
            time.sleep(0.2)
        self.restreamer_pid = restreamer.pid
        threading.Thread(target=self._sample, daemon=True).start()
        # Wait for the downloader's first segment: from then on, nothing should be missed.
        deadline = time.monotonic() + STARTUP_TIMEOUT
        while not self.recorded() and time.monotonic() < deadline:
            time.sleep(0.5)
        if not self.recorded():
            sys.exit("cut_load: the downloader recorded nothing")
        self.recording_since = time.monotonic()

    def _poll_playlist(self):
        while not self.stopping.is_set():
            try:
                connection = http.client.HTTPConnection("127.0.0.1", self.stream_port, timeout=5)
                connection.request("GET", "/test/source/index.m3u8")
                text = connection.getresponse().read().decode()
                connection.close()
            except OSError:
                text = ""
            now = time.monotonic()
            for line in text.splitlines():
                if line.startswith("#EXT-X-PROGRAM-DATE-TIME:"):
                    start = parse_time(line.split(":", 1)[1])
                    self.published.setdefault(start, now)
            self.stopping.wait(POLL_EVERY)

    def _sample(self):
        while not self.stopping.is_set():
            ffmpegs = children(self.restreamer_pid)
            rss = rss_bytes(self.restreamer_pid) + sum(rss_bytes(pid) for pid in ffmpegs)
            self.samples.append((time.monotonic(), len(ffmpegs), rss))
            self.stopping.wait(SAMPLE_EVERY)

    def recorded(self):
        """Starts of the `full` segments the downloader stored for the test stream."""
        starts = set()
        for root, _, files in os.walk(os.path.join(self.store, "test")):
            for name in files:
                try:
                    segment = parse_segment_path(os.path.join(root, name))
                except ValueError:
                    continue  # a temporary file
                if segment.type == "full":
                    starts.add(segment.start)
        return starts

    def stop(self):
        self.stopping.set()
        errors = []
        for process in self.processes:
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)
        for process in self.processes:
            try:
                code = process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                process.kill()
                code = process.wait()
            if code not in (0, -signal.SIGTERM):
                errors.append(f"{process.args[2]} exited {code}")
        return errors


def cut_client(node, index, source, until, results):
    """Loop on short cuts until `until`, full and fast in turn; count their statuses."""
    count = 0
    while time.monotonic() < until:
        type = "full" if (index + count) % 2 == 0 else "fast"
        # Starts off the 2 s keyframes, so a fast cut re-encodes both ends.
        offset = 0.5 + (index * 7 + count * 3) % (MEDIA_SECONDS - 6) + 0.25 * (count % 3)
        start = MEDIA_START + datetime.timedelta(seconds=offset)
        end = start + datetime.timedelta(seconds=3 + count % 3)
        path = f"/cut/vod/source.ts?type={type}&start={format_time(start)}&end={format_time(end)}"
        count += 1
        began = time.monotonic()
        try:
            status, _, size = request(node.port, path, source)
        except OSError as e:
            results.append(("error", type, time.monotonic() - began, repr(e)))
            time.sleep(REFUSED_WAIT)
            continue
        results.append((status, type, time.monotonic() - began, size))
        if status != 200:
            time.sleep(REFUSED_WAIT)


def listing_client(port, until, queue):
    """Time `/files` listings until `until`; put (latencies, failures) on `queue`.

    Runs in a process of its own, so the cut clients' threads in this one
    (and its GIL) do not delay it: what it measures is the restreamer.
    """
    hour = MEDIA_START.strftime("%Y-%m-%dT%H")
    latencies, failures = [], []
    count = 0
    while time.monotonic() < until:
        now_hour = datetime.datetime.now(UTC).strftime("%Y-%m-%dT%H")
        path = [
            "/files/test/source",
            f"/files/test/source/{now_hour}",
            "/files/vod/source",
            f"/files/vod/source/{hour}",
        ][count % 4]
        count += 1
        began = time.monotonic()
        try:
            status, _, _ = request(port, path)
        except OSError:
            status = "error"
        latencies.append(time.monotonic() - began)
        if status != 200:
            failures.append(status)
        time.sleep(LISTING_PAUSE)
    queue.put((latencies, failures))


def measure(node, level, seconds, addresses):
    began = time.monotonic()
    until = began + seconds
    results = []
    context = multiprocessing.get_context("spawn")
    queue = context.Queue()
    lister = context.Process(target=listing_client, args=(node.port, until, queue), daemon=True)
    lister.start()
    threads = []
    for i in range(level):
        source = addresses[i % len(addresses)]
        threads.append(threading.Thread(target=cut_client, args=(node, i, source, until, results)))
    for thread in threads:
        thread.daemon = True
        thread.start()
    for thread in threads:
        thread.join(timeout=max(0, until - time.monotonic()) + DRAIN_TIMEOUT)
    latencies, failures = queue.get(timeout=max(0, until - time.monotonic()) + DRAIN_TIMEOUT)
    lister.join()
    ended = time.monotonic()
    window = [s for s in node.samples if began <= s[0] <= ended]
    statuses = [r[0] for r in results]
    cut_times = [r[2] for r in results if r[0] == 200]
    return {
        "began": began,
        "ended": ended,
        "/files requests": f"{len(latencies)}",
        "/files p50 (ms)": f"{percentile(latencies, 0.5) * 1000:.1f}",
        "/files p99 (ms)": f"{percentile(latencies, 0.99) * 1000:.1f}",
        "/files max (ms)": f"{max(latencies, default=float('nan')) * 1000:.1f}",
        "/files failures": f"{len(failures)}",
        "cuts 200": f"{statuses.count(200)}",
        "cut p50 (s)": f"{percentile(cut_times, 0.5):.2f}" if cut_times else "-",
        "503 (node busy)": f"{statuses.count(503)}",
        "429 (client busy)": f"{statuses.count(429)}",
        "other answers": f"{len([s for s in statuses if s not in (200, 503, 429)])}",
        "peak ffmpegs": f"{max((s[1] for s in window), default=0)}",
        "peak RSS restreamer+ffmpeg (MB)": f"{max((s[2] for s in window), default=0) / 1e6:.0f}",
        "drain after the load (s)": f"{ended - until:.1f}",
        "load average (1 min)": f"{os.getloadavg()[0]:.1f}",
        "_others": [r for r in results if r[0] not in (200, 503, 429)],
    }


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=20, help="per level (default 20)")
    parser.add_argument("--levels", default="4,16,64", help="concurrent cuts, beside N = 0")
    parser.add_argument(
        "--addresses",
        type=int,
        default=CLIENT_ADDRESSES,
        choices=range(1, 250),
        metavar="1-249",
        help=f"client addresses the cut clients share (default {CLIENT_ADDRESSES})",
    )
    parser.add_argument(
        "--max-cuts",
        type=int,
        default=None,
        help="the restreamer's --max-cuts (default: its own, one per core); above its "
        "two per client, the per-client bound (429) shows too",
    )
    args = parser.parse_args()
    try:
        levels = [0] + [int(n) for n in args.levels.split(",") if n]
    except ValueError:
        parser.error("--levels: comma-separated integers")

    addresses = client_addresses(args.addresses)
    work = tempfile.mkdtemp(prefix="cut-load-bench-")
    node = Node(work, args.max_cuts)
    try:
        node.start()
        results = {}
        for level in levels:
            results[level] = measure(node, level, args.seconds, addresses)
        time.sleep(SETTLE)
        recorded = node.recorded()
        published = dict(node.published)
    finally:
        errors = node.stop()
        shutil.rmtree(work, ignore_errors=True)

    for level in levels:
        result = results[level]
        # A segment belongs to the level whose window its first listing fell in.
        starts = [
            start
            for start, seen in published.items()
            if max(result["began"], node.recording_since) <= seen < result["ended"]
        ]
        missed = [start for start in starts if start not in recorded]
        result["segments published"] = f"{len(starts)}"
        result["segments missed"] = f"{len(missed)}"
        result["_missed"] = len(missed)

    rows = [[""] + [f"N = {level}" + (" (baseline)" if level == 0 else "") for level in levels]]
    for key in results[levels[0]]:
        if not key.startswith("_") and key not in ("began", "ended"):
            rows.append([key] + [results[level][key] for level in levels])
    width = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    print(
        f"cut_load: {args.seconds:g} s per level, cuts of 3-5 s of 320x180 (full and fast "
        f"in turn) from {len(addresses)} client address(es); restreamer --max-cuts "
        f"{args.max_cuts or f'default ({os.cpu_count()} cores)'}, other cut bounds at their "
        "defaults; the test stream recorded beside"
    )
    for row in rows:
        print("  ".join(cell.ljust(width[i]) for i, cell in enumerate(row)))
    for level in levels:
        for other in results[level]["_others"][:3]:
            print(f"N = {level}: unexpected answer {other}")
    for error in errors:
        print(f"cut_load: {error}")
    return 0 if not errors and all(results[level]["_missed"] == 0 for level in levels) else 1


if __name__ == "__main__":
    sys.exit(main())
