"""A flood of `/cut` beside a recording downloader: the node refuses, and records on.

Three real processes share one store, as on a node: the test stream
(`python -m devtools.teststream`), a downloader recording it, and a restreamer
(`python -m restreamer`) with a small cut bound, over a store that also holds
the shared test media to cut from. `CLIENTS` clients, from `ADDRESSES`
source addresses (more clients per address than the per-client bound), loop
on short cuts of that media, `type=full` and `type=fast` in turn (`PAUSE`
apart), for
`FLOOD_SECONDS`. Then:

- every segment the test stream published while the flood ran is in the
  store as `full`, and the recording over that time has no hole;
- every cut was answered 200, 503 (node busy) or 429 (client busy), and
  every refusal carried a `Retry-After`;
- the restreamer never ran more ffmpegs than its bound allows (sampled
  from /proc throughout).

`bench/cut_load.py` measures the same load at several sizes; this keeps its
verdict. Readiness is waited on by condition, never by a fixed sleep.
"""

import datetime
import http.client
import os
import re
import signal
import subprocess
import sys
import time

import gevent
import gevent.event
import pytest

from common.segments import get_best_segments, parse_segment_path
from common.times import format_time, parse_time
from devtools.ports import free_ports
from tests.conftest import MEDIA_START
from tests.load import children, client_addresses, request
from tests.media import add_to_store
from tests.util import wait_for

MAX_CUTS = 2  # the restreamer's --max-cuts
MAX_CUTS_PER_CLIENT = 1  # its --max-cuts-per-client: below MAX_CUTS, so a 429 can come first
CLIENTS = 24
ADDRESSES = 4  # six clients an address: the per-client bound answers too
FLOOD_SECONDS = 15
# A fast cut starts all its ffmpegs at once: at most four for a range over
# one run of segments (re-encode and remux at each end); a full cut runs one.
FFMPEGS_PER_CUT = 4
# Between a client's cuts; a refused one so tries again sooner than it is told
# to (the pressure stays on), and one whose cut was served lets the others at
# the slot it freed (else the first clients in keep the slots to themselves,
# and the per-client bound is never reached).
PAUSE = 1.0  # seconds
SAMPLE_EVERY = 0.05  # seconds between counts of the restreamer's ffmpegs
POLL_EVERY = 0.5  # seconds between reads of the test stream's playlist
STARTUP_TIMEOUT = 30  # seconds; generous on a loaded 2-core machine
# In-flight cuts when the flood ends, and the downloader's last segments of
# the window (a segment is stored once the next one is published).
DRAIN_TIMEOUT = 30  # seconds
SEGMENT = datetime.timedelta(seconds=2)  # the test stream's segment length


class Node:
    """The three processes over `store`, their logs in `work`."""

    def __init__(self, work, store):
        self.work = work
        self.store = store
        self.processes = {}

    def spawn(self, name, command, **options):
        log = open(os.path.join(self.work, f"{name}.log"), "w")
        env = dict(os.environ, STREAMVAULT_LOG_LEVEL="WARNING")
        self.processes[name] = subprocess.Popen(
            [sys.executable, "-m"] + command, env=env, stderr=log, **options
        )
        log.close()
        return self.processes[name]

    def log(self, name):
        with open(os.path.join(self.work, f"{name}.log")) as f:
            return f.read()

    def assert_running(self):
        for name, process in self.processes.items():
            assert process.poll() is None, f"{name} exited: {self.log(name)[-2000:]}"

    def stop(self):
        """SIGTERM all; {name: exit code}."""
        for process in self.processes.values():
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)
        codes = {}
        for name, process in self.processes.items():
            try:
                codes[name] = process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                process.kill()
                codes[name] = process.wait()
        return codes


def recorded(store):
    """Starts of the `full` segments stored for the test stream."""
    starts = set()
    for root, _, files in os.walk(os.path.join(store, "test")):
        for name in files:
            try:
                segment = parse_segment_path(os.path.join(root, name))
            except ValueError:
                continue  # a temporary file
            if segment.type == "full":
                starts.add(segment.start)
    return starts


def poll_playlist(port, published, stopping):
    """Note when each segment of the test stream's playlist was first listed."""
    while not stopping.is_set():
        try:
            status, text = 0, ""
            connection = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
            connection.request("GET", "/test/source/index.m3u8")
            response = connection.getresponse()
            status, text = response.status, response.read().decode()
            connection.close()
        except OSError:
            pass
        now = time.monotonic()
        if status == 200:
            for line in text.splitlines():
                if line.startswith("#EXT-X-PROGRAM-DATE-TIME:"):
                    published.setdefault(parse_time(line.split(":", 1)[1]), now)
        stopping.wait(POLL_EVERY)


def sample_ffmpegs(pid, peaks, stopping):
    while not stopping.is_set():
        peaks.append(len(children(pid)))
        stopping.wait(SAMPLE_EVERY)


def cut_client(port, index, source, until, answers):
    """Loop on 3-5 s cuts of the media until `until`, full and fast in turn."""
    count = 0
    while time.monotonic() < until:
        type = "full" if (index + count) % 2 == 0 else "fast"
        # Starts off the 2 s keyframes, so a fast cut re-encodes both ends.
        offset = 0.5 + (index * 7 + count * 3) % 24 + 0.25 * (count % 3)
        start = MEDIA_START + datetime.timedelta(seconds=offset)
        end = start + datetime.timedelta(seconds=3 + count % 3)
        path = f"/cut/vod/source.ts?type={type}&start={format_time(start)}&end={format_time(end)}"
        count += 1
        try:
            status, headers, size = request(port, path, source)
        except OSError as e:
            answers.append((repr(e), type, None, 0))
        else:
            answers.append((status, type, headers.get("Retry-After"), size))
        gevent.sleep(PAUSE)


@pytest.mark.slow
def test_a_cut_flood_is_refused_and_the_downloader_misses_nothing(tmp_path, media):
    work = str(tmp_path)
    store = os.path.join(work, "store")
    add_to_store(store, "vod", "source", MEDIA_START, media)
    node = Node(work, store)
    stopping = gevent.event.Event()
    published = {}  # segment start -> when the test stream's playlist first listed it
    ffmpeg_counts = []
    answers = []  # (status, type, Retry-After, body length)
    try:
        stream_port, port = free_ports(2)
        stream = node.spawn(
            "teststream",
            ["devtools.teststream", "--port", str(stream_port),
             "--work-dir", os.path.join(work, "teststream"), "--qualities", "source"],
            stdout=subprocess.PIPE, text=True,
        )  # fmt: skip
        with gevent.Timeout(STARTUP_TIMEOUT, AssertionError("the test stream did not start")):
            url = next(m for line in stream.stdout if (m := re.search(r"serving (\S+)", line)))[1]
        gevent.spawn(lambda: [None for _ in stream.stdout])  # never let its pipe fill
        gevent.spawn(poll_playlist, stream_port, published, stopping)
        node.spawn(
            "downloader",
            ["downloader", "--base-dir", store, "--metrics-port", "0",
             "--qualities", "source", f"test={url}"],
        )  # fmt: skip
        restreamer = node.spawn(
            "restreamer",
            ["restreamer", "--base-dir", store, "--host", "127.0.0.1", "--port", str(port),
             "--max-cuts", str(MAX_CUTS), "--max-cuts-per-client", str(MAX_CUTS_PER_CLIENT)],
        )  # fmt: skip

        def listening():
            node.assert_running()
            try:
                return request(port, "/files")[0] == 200
            except OSError:
                return False

        wait_for(listening, STARTUP_TIMEOUT, what="the restreamer to listen")
        gevent.spawn(sample_ffmpegs, restreamer.pid, ffmpeg_counts, stopping)
        # From the downloader's first segment on, nothing may be missed.
        wait_for(lambda: recorded(store), STARTUP_TIMEOUT, what="the first recorded segment")

        addresses = client_addresses(ADDRESSES)
        began = time.monotonic()
        until = began + FLOOD_SECONDS
        clients = [
            gevent.spawn(cut_client, port, i, addresses[i % len(addresses)], until, answers)
            for i in range(CLIENTS)
        ]
        gevent.joinall(clients, timeout=FLOOD_SECONDS + DRAIN_TIMEOUT, raise_error=True)
        assert all(c.dead for c in clients), "cuts still running long after the flood"
        ended = time.monotonic()
        window = sorted(start for start, seen in published.items() if began <= seen < ended)
        # The stream went on while the flood ran (else there is nothing to check).
        assert len(window) >= 3, f"the test stream published {len(window)} segments"

        def all_recorded():
            node.assert_running()
            return set(window) <= recorded(store)

        try:
            wait_for(all_recorded, DRAIN_TIMEOUT, interval=0.5, what="the window's segments")
        except AssertionError:
            pass  # reported by the assertion below
        node.assert_running()
        missed = [format_time(start) for start in window if start not in recorded(store)]
        assert not missed, f"the downloader missed {len(missed)} of {len(window)}: {missed}"
        best = get_best_segments(
            os.path.join(store, "test", "source"), window[0], window[-1] + SEGMENT
        )
        assert None not in best, "a hole in the recording under the flood"
        assert all(segment.type == "full" for segment in best)
    finally:
        stopping.set()
        codes = node.stop()

    statuses = [answer[0] for answer in answers]
    print(
        f"cut flood: {len(answers)} cuts: {statuses.count(200)} 200, {statuses.count(503)} 503, "
        f"{statuses.count(429)} 429; at most {max(ffmpeg_counts, default=0)} ffmpegs at once"
    )
    others = [answer for answer in answers if answer[0] not in (200, 429, 503)]
    assert not others, f"{len(others)} answers not 200/429/503, e.g. {others[:3]}"
    refused = [answer for answer in answers if answer[0] != 200]
    assert all(answer[2] and int(answer[2]) > 0 for answer in refused), (
        "a refusal without Retry-After"
    )
    # The flood got cuts through, and was more than the bounds allow.
    assert statuses.count(200) > 0, statuses
    assert all(answer[3] > 0 for answer in answers if answer[0] == 200), "an empty cut"
    assert statuses.count(503) > 0, "the node's bound never answered"
    if len(addresses) > 1:
        assert statuses.count(429) > 0, "the per-client bound never answered"
    assert ffmpeg_counts, "the restreamer's ffmpegs were never counted"
    assert max(ffmpeg_counts) <= MAX_CUTS * FFMPEGS_PER_CUT, (
        f"{max(ffmpeg_counts)} ffmpegs at once under --max-cuts {MAX_CUTS}"
    )
    for name, code in codes.items():
        assert code in (0, -signal.SIGTERM), f"{name} exited {code}: {node.log(name)[-2000:]}"
        assert "Traceback" not in node.log(name), node.log(name)
