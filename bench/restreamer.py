"""Benchmark the restreamer against baselines measured in the same run.

    .venv/bin/python bench/restreamer.py [--seconds 3] [--rounds 3] [--runs 5]

1. A media playlist for 24 h of 2 s segments (43,200 files), through the
   whole app, against `get_best_segments` alone for the same range (the
   floor: the app cannot list the store faster than that). Target: the
   playlist adds under 50%. Then the three figures for long playlists
   (`print_targets`, also printed by bench/best_segments.py): cold
   `get_best_segments` against the bare listdir+sort (target 3x at most), a
   cold playlist against cold `get_best_segments` (1.5x at most), and the
   worst `/files` latency on the real service while cold 24 h playlists are
   built (150 ms at most), beside `/files` alone.
2. One 1 MB segment fetched by `wrk -c16`: nginx serving the same file (one
   worker, sendfile on; started here on 127.0.0.1 and stopped after) against
   `python -m restreamer`, and against the same gevent server running a bare
   WSGI app that only sends the file (the floor for any Python route).
   Target: the restreamer at 0.5 of nginx or better.

Times are medians. Everything runs on this machine at once, wrk included, so
read the ratios, not the absolute numbers.
"""

import argparse
import datetime
import http.client
import os
import re
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.parse
import urllib.request

# This file is named like the package it measures: keep its own directory off
# the import path, or `import restreamer` would import this script.
HERE = os.path.dirname(os.path.abspath(__file__))
sys.path[:] = [p for p in sys.path if os.path.abspath(p or ".") != HERE]

from common import segments as segments_module  # noqa: E402
from common.segments import (  # noqa: E402
    UTC,
    get_best_segments,
    hash_bytes,
    hours_for_range,
    segment_path,
)
from restreamer import hls  # noqa: E402
from restreamer.app import LIVE_LOOKAHEAD, create_app  # noqa: E402

START = datetime.datetime(2026, 11, 28, 0, 0, tzinfo=UTC)
SEGMENTS_PER_DAY = 43_200
STARTUP_TIMEOUT = 20  # seconds

NGINX_CONF = """
worker_processes 1;
daemon off;
pid {dir}/nginx.pid;
error_log {dir}/error.log;
events {{ worker_connections 1024; }}
http {{
  access_log off;
  sendfile on;
  tcp_nopush on;
  client_body_temp_path {dir}/body;
  proxy_temp_path {dir}/proxy;
  fastcgi_temp_path {dir}/fastcgi;
  uwsgi_temp_path {dir}/uwsgi;
  scgi_temp_path {dir}/scgi;
  types {{ video/mp2t ts; }}
  server {{ listen 127.0.0.1:{port}; root {root}; }}
}}
"""

# The floor for serving a file from Python: gevent's server and our sendfile
# handler around a WSGI app that does nothing but open the file.
FLOOR_SERVER = """
import gevent.monkey; gevent.monkey.patch_all()
import os, sys
from restreamer.files import FileBody
from restreamer.main import Server
PATH = sys.argv[1]
def app(environ, start_response):
    f = open(PATH, "rb")
    size = os.fstat(f.fileno()).st_size
    start_response("200 OK", [("Content-Type", "video/mp2t"), ("Content-Length", str(size))])
    return FileBody(f, 0, size)
server = Server(app, "127.0.0.1", 0)
print(f"Serving on 127.0.0.1:{server.start()}", file=sys.stderr, flush=True)
server.stopping.wait()
"""


def drain(response):
    """Read a test-client response's body chunk by chunk, as a server sends it
    (`get_data()` would join a day's 5 MB playlist first, a cost no server pays)."""
    for _ in response.iter_encoded():
        pass


def median_times(fn, runs, setup=None):
    """Median wall and CPU time (this process's) of `fn()`; `setup()`, untimed, runs before each."""
    wall, cpu = [], []
    for _ in range(runs):
        if setup is not None:
            setup()
        started, started_cpu = time.perf_counter(), time.process_time()
        fn()
        wall.append(time.perf_counter() - started)
        cpu.append(time.process_time() - started_cpu)
    return statistics.median(wall), statistics.median(cpu)


def median_times_in_turn(calls, runs):
    """`median_times` of each `(fn, setup)` of `calls`, the calls taking turns
    `runs` times, so that load from elsewhere on the machine falls on all of
    them alike (timed one after the other, a busy spell can land on one only)."""
    wall = [[] for _ in calls]
    cpu = [[] for _ in calls]
    for _ in range(runs):
        for i, (fn, setup) in enumerate(calls):
            if setup is not None:
                setup()
            started, started_cpu = time.perf_counter(), time.process_time()
            fn()
            wall[i].append(time.perf_counter() - started)
            cpu[i].append(time.process_time() - started_cpu)
    return [(statistics.median(w), statistics.median(c)) for w, c in zip(wall, cpu, strict=True)]


def median_time(fn, runs, setup=None):
    """Median wall time of `fn()`, as in median_times."""
    return median_times(fn, runs, setup)[0]


def make_day(base):
    """43,200 2-second segments from START (tiny bodies: the listing is what is measured)."""
    duration = datetime.timedelta(seconds=2)
    data = b"\x47" * 188
    digest = hash_bytes(data)
    source = os.path.join(base, "source.ts")
    os.makedirs(base)
    with open(source, "wb") as f:
        f.write(data)
    made_dirs = set()
    for i in range(SEGMENTS_PER_DAY):
        start = START + i * duration
        path = segment_path(base, "chan", "source", start, duration, "full", digest)
        directory = os.path.dirname(path)
        if directory not in made_dirs:
            os.makedirs(directory, exist_ok=True)
            made_dirs.add(directory)
        # Hard links: the same bytes under every name, made much faster than files.
        os.link(source, path)
    # A finished day: its hour directories last changed long ago (the hour
    # cache of get_best_segments only trusts directories that have settled).
    long_ago = time.time() - 86400
    for directory in made_dirs:
        os.utime(directory, (long_ago, long_ago))


def bench_playlist(work, runs):
    base = os.path.join(work, "day")
    started = time.perf_counter()
    make_day(base)
    print(f"(made {SEGMENTS_PER_DAY} segments in {time.perf_counter() - started:.1f} s)")
    end = START + datetime.timedelta(days=1)
    hours_path = os.path.join(base, "chan", "source")
    app = create_app(base, now=lambda: end + datetime.timedelta(days=1))
    client = app.test_client()
    url = "/playlist/chan/source.m3u8?start=2026-11-28T00:00:00&end=2026-11-29T00:00:00"

    segments = get_best_segments(hours_path, START, end)
    assert len(segments) == SEGMENTS_PER_DAY, len(segments)
    text = client.get(url).get_data(as_text=True)
    assert text.count("#EXTINF") == SEGMENTS_PER_DAY and text.endswith("#EXT-X-ENDLIST\n")

    def fetch():
        response = client.get(url)
        drain(response)
        response.close()

    def render():
        hls.media_playlist(segments, lambda s: s.name, ended=True)

    store = app.extensions["restreamer"]

    def clear_caches():
        segments_module._hour_cache.clear()
        store._playlists.clear()

    def cold(fn):
        def run():
            clear_caches()
            fn()

        return run

    # A live playlist over the same day, reloaded by a player after each new
    # segment: the newest hour is listed again, the rest is as before.
    live_now = end + datetime.timedelta(minutes=1)
    live_client = create_app(base, now=lambda: live_now).test_client()
    live_url = "/playlist/chan/source.m3u8?start=2026-11-28T00:00:00"
    next_start = [end]

    def add_segment():
        two_seconds = datetime.timedelta(seconds=2)
        path = segment_path(
            base, "chan", "source", next_start[0], two_seconds, "full", hash_bytes(b"\x47" * 188)
        )
        os.makedirs(os.path.dirname(path), exist_ok=True)
        os.link(os.path.join(base, "source.ts"), path)
        next_start[0] += two_seconds

    def fetch_live():
        response = live_client.get(live_url)
        drain(response)
        response.close()

    fetch_live()
    live_floor = median_time(
        lambda: get_best_segments(hours_path, START, live_now + LIVE_LOOKAHEAD), runs, add_segment
    )
    live = median_time(fetch_live, runs, add_segment)

    def fetch_listing():
        response = client.get("/files/chan/source")
        drain(response)
        response.close()

    floor = median_time(lambda: get_best_segments(hours_path, START, end), runs)
    fixed = median_time(fetch_listing, runs)
    repeated = median_time(fetch, runs)
    rendering = median_time(render, runs)
    cold_floor = median_time(cold(lambda: get_best_segments(hours_path, START, end)), runs)
    cold_whole = median_time(cold(fetch), runs)
    rows = [
        ("GET /files/<c>/<q> (any request's cost)", fixed, floor),
        ("get_best_segments, warm", floor, floor),
        ("GET playlist, asked before", repeated, floor),
        ("get_best_segments, after a new segment", live_floor, live_floor),
        ("GET live playlist, after a new segment", live, live_floor),
        ("get_best_segments, cold", cold_floor, cold_floor),
        ("GET playlist, cold", cold_whole, cold_floor),
        ("hls.media_playlist alone, no caches", rendering, cold_floor),
    ]
    print(f"\nMedia playlist, 24 h of 2 s segments ({SEGMENTS_PER_DAY}), median of {runs}")
    print("(warm: hour listings cached, as for any range asked again or reloaded;")
    print(" cold: every cache emptied before each call)")
    print("(each GET against the get_best_segments above it, in the same cache state)")
    print(f"| {'what':<40} | {'ms':>8} | {'× get_best_segments':>19} |")
    print(f"|{'-' * 42}|{'-' * 10}:|{'-' * 20}:|")
    for name, seconds, baseline in rows:
        print(f"| {name:<40} | {seconds * 1000:>8.2f} | {seconds / baseline:>19.2f} |")
    for name, seconds, baseline in (rows[2], rows[4], rows[6]):
        added = seconds / baseline - 1
        verdict = "met" if added < 0.5 else "NOT met"
        print(
            f"{name}: adds {added:.0%} (target: under 50%, {verdict});"
            f" without the cost of any request, {(seconds - fixed) / baseline - 1:.0%}"
        )
    return base


def floor_list_sort(hours_path, start, end):
    """The bare floor of listing a range: `os.listdir` and `sort` of its hour directories."""
    names = []
    for hour in hours_for_range(start, end):
        try:
            names += sorted(os.listdir(os.path.join(hours_path, hour)))
        except FileNotFoundError:
            pass
    return names


def start_restreamer(base):
    """`python -m restreamer` on `base`, on a free port: (process, port)."""
    process = subprocess.Popen(
        [sys.executable, "-m", "restreamer", "--base-dir", base, "--host", "127.0.0.1",
         "--port", "0"],
        stderr=subprocess.PIPE,
    )  # fmt: skip
    try:
        return process, wait_for_port_line(process)
    except BaseException:
        stop(process)
        raise


def timed_get(connection, path):
    started = time.perf_counter()
    connection.request("GET", path)
    response = connection.getresponse()
    response.read()
    assert response.status == 200, (path, response.status)
    return time.perf_counter() - started


def measure_stall(base, channel, quality, start, end, runs):
    """`/files` latencies alone, and while cold playlists for [start, end) are built.

    Runs the real service. Each cold playlist is of its own channel (a symlink
    to `channel`, made here and removed after): nothing of it is cached yet.
    Returns (latencies alone, latencies during, playlist times), in seconds.
    """
    links = [f"cold{i}-{os.getpid()}" for i in range(runs)]
    for link in links:
        os.symlink(channel, os.path.join(base, link))
    process, port = start_restreamer(base)
    try:
        connection = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
        alone = [timed_get(connection, "/files") for _ in range(50)]
        query = urllib.parse.urlencode(
            {"start": start.isoformat(), "end": end.isoformat()}, safe=":"
        )
        during, builds = [], []
        for link in links:
            done = threading.Event()

            def build(link=link, done=done):
                playlist = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
                try:
                    builds.append(timed_get(playlist, f"/playlist/{link}/{quality}.m3u8?{query}"))
                finally:
                    playlist.close()
                    done.set()

            thread = threading.Thread(target=build)
            thread.start()
            while not done.is_set():
                during.append(timed_get(connection, "/files"))
            thread.join()
        connection.close()
    finally:
        stop(process)
        for link in links:
            os.remove(os.path.join(base, link))
    return alone, during, builds


def print_targets(base, channel, quality, start, end, runs):
    """The three figures for long playlists, each beside its baseline: the
    timings of the first two take turns (`median_times_in_turn`)."""
    hours_path = os.path.join(base, channel, quality)
    app = create_app(base, now=lambda: end + datetime.timedelta(days=1))
    client = app.test_client()
    store = app.extensions["restreamer"]
    query = urllib.parse.urlencode({"start": start.isoformat(), "end": end.isoformat()}, safe=":")
    url = f"/playlist/{channel}/{quality}.m3u8?{query}"

    def clear_caches():
        segments_module.clear_hour_cache()
        store._playlists.clear()

    def fetch():
        response = client.get(url)
        assert response.status_code == 200, response.status_code
        drain(response)
        response.close()

    count = len(get_best_segments(hours_path, start, end))
    (floor, floor_cpu), (cold_best, cold_best_cpu), (cold_playlist, cold_playlist_cpu) = (
        median_times_in_turn(
            [
                (lambda: floor_list_sort(hours_path, start, end), None),
                (lambda: get_best_segments(hours_path, start, end), clear_caches),
                (fetch, clear_caches),
            ],
            runs,
        )
    )
    alone, during, builds = measure_stall(base, channel, quality, start, end, runs)
    ms = 1000
    print(f"\nLong playlists: {count} segments, cold, median of {runs} taking turns")
    # `cpu`: the same ratio of this process's CPU time, which a busy shared
    # machine disturbs less than wall time (the verdict is on wall time).
    print(
        f"| {'what':<52} | {'ms':>7} | {'baseline':<24} | {'ratio':>6} | {'cpu':>6} "
        f"| {'target':<8} |"
    )
    print(f"|{'-' * 54}|{'-' * 8}:|{'-' * 26}|{'-' * 7}:|{'-' * 7}:|{'-' * 10}|")
    rows = [
        ("get_best_segments, cold", cold_best, cold_best_cpu, "list+sort", floor, floor_cpu, 3.0),
        ("GET playlist, cold (test client)", cold_playlist, cold_playlist_cpu,
         "get_best_segments, cold", cold_best, cold_best_cpu, 1.5),
    ]  # fmt: skip
    for name, seconds, cpu, baseline_name, baseline, baseline_cpu, target in rows:
        ratio = seconds / baseline
        verdict = "met" if ratio <= target else "NOT met"
        print(
            f"| {name:<52} | {seconds * ms:>7.1f} | {baseline_name + f' {baseline * ms:.1f}':<24} "
            f"| {ratio:>5.2f}x | {cpu / baseline_cpu:>5.2f}x | <={target}x {verdict} |"
        )
    worst = max(during)
    verdict = "met" if worst <= 0.150 else "NOT met"
    print(
        f"| {'GET /files during cold playlists, worst of ' + str(len(during)):<52} "
        f"| {worst * ms:>7.1f} | {f'alone: worst {max(alone) * ms:.1f}':<24} "
        f"| {worst / max(alone):>5.1f}x |        | <=150 ms {verdict} |"
    )
    print(
        f"| {'GET /files during cold playlists, median':<52} "
        f"| {statistics.median(during) * ms:>7.1f} "
        f"| {f'alone: {statistics.median(alone) * ms:.1f}':<24} "
        f"| {statistics.median(during) / statistics.median(alone):>5.1f}x |        |          |"
    )
    print(
        f"| {'the cold playlists themselves (python -m restreamer)':<52} "
        f"| {statistics.median(builds) * ms:>7.1f} | {'':<24} |        |        |          |"
    )


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for_port_line(process):
    deadline = time.monotonic() + STARTUP_TIMEOUT
    while time.monotonic() < deadline:
        line = process.stderr.readline()
        if not line:
            break
        match = re.search(rb"Serving on 127\.0\.0\.1:(\d+)", line)
        if match:
            return int(match.group(1))
    raise RuntimeError("server did not report its port")


def wait_until_serving(url, expected):
    deadline = time.monotonic() + STARTUP_TIMEOUT
    while True:
        try:
            with urllib.request.urlopen(url, timeout=5) as response:
                body = response.read()
            assert body == expected, "served bytes differ from the file"
            return
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.1)


def run_wrk(url, seconds):
    result = subprocess.run(
        ["wrk", "-c16", "-t2", f"-d{seconds}s", url], capture_output=True, text=True, check=True
    )
    match = re.search(r"Requests/sec:\s+([\d.]+)", result.stdout)
    errors = re.search(r"Non-2xx or 3xx responses: (\d+)", result.stdout)
    if not match or errors:
        raise RuntimeError(f"wrk failed:\n{result.stdout}")
    return float(match.group(1))


def stop(process):
    process.terminate()
    try:
        process.wait(timeout=10)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


def bench_segment(work, seconds, rounds):
    for tool in ("wrk", "nginx"):
        if not shutil.which(tool) and not os.path.exists(f"/usr/sbin/{tool}"):
            print(f"\nSegment serving: skipped ({tool} is not installed: apt-get install {tool})")
            return
    base = os.path.join(work, "store")
    data = os.urandom(1 << 20)
    start = START + datetime.timedelta(hours=14)
    path = segment_path(
        base, "chan", "source", start, datetime.timedelta(seconds=2), "full", hash_bytes(data)
    )
    os.makedirs(os.path.dirname(path))
    with open(path, "wb") as f:
        f.write(data)
    relative = os.path.relpath(path, base).replace(":", "%3A")

    nginx_dir = os.path.join(work, "nginx")
    os.makedirs(nginx_dir)
    nginx_port = free_port()
    with open(os.path.join(nginx_dir, "nginx.conf"), "w") as f:
        f.write(NGINX_CONF.format(dir=nginx_dir, port=nginx_port, root=base))
    nginx = shutil.which("nginx") or "/usr/sbin/nginx"
    processes = []
    try:
        # nginx, one worker, the same file.
        processes.append(
            subprocess.Popen(
                [nginx, "-c", os.path.join(nginx_dir, "nginx.conf"), "-p", nginx_dir],
                stderr=subprocess.DEVNULL,
            )
        )
        urls = {"nginx, 1 worker, sendfile (baseline)": f"http://127.0.0.1:{nginx_port}/{relative}"}
        # The restreamer as deployed.
        process = subprocess.Popen(
            [sys.executable, "-m", "restreamer", "--base-dir", base, "--host", "127.0.0.1",
             "--port", "0"],
            stderr=subprocess.PIPE,
        )  # fmt: skip
        processes.append(process)
        port = wait_for_port_line(process)
        urls["restreamer (python -m restreamer)"] = f"http://127.0.0.1:{port}/segments/{relative}"
        # The floor: the same server and sendfile, no Flask.
        process = subprocess.Popen(
            [sys.executable, "-c", FLOOR_SERVER, path], stderr=subprocess.PIPE
        )
        processes.append(process)
        port = wait_for_port_line(process)
        urls["gevent + sendfile, bare WSGI app"] = f"http://127.0.0.1:{port}/x"
        for url in urls.values():
            wait_until_serving(url, data)
        # Rounds taking turns, so that load from elsewhere on the machine
        # falls on every server alike; the median round counts.
        rates = {name: [] for name in urls}
        for _ in range(rounds):
            for name, url in urls.items():
                rates[name].append(run_wrk(url, seconds))
    finally:
        for process in processes:
            stop(process)

    results = [(name, statistics.median(values)) for name, values in rates.items()]
    baseline = results[0][1]
    print(f"\nOne 1 MB segment, wrk -c16 -t2, median of {rounds} rounds of {seconds} s")
    print(f"| {'server':<38} | {'requests/s':>10} | {'× nginx':>8} |")
    print(f"|{'-' * 40}|{'-' * 12}:|{'-' * 9}:|")
    for name, rate in results:
        print(f"| {name:<38} | {rate:>10.0f} | {rate / baseline:>8.2f} |")
    ratio = results[1][1] / baseline
    verdict = "met" if ratio >= 0.5 else "NOT met"
    print(f"The restreamer serves {ratio:.2f} of nginx's rate (target: 0.5 or more, {verdict}).")


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=int, default=3, help="wrk duration per round")
    parser.add_argument("--rounds", type=int, default=3, help="wrk rounds per server")
    parser.add_argument(
        "--runs", type=int, default=5, help="playlist timings to take the median of"
    )
    parser.add_argument(
        "--only", choices=("playlist", "segment"), help="run one of the two benchmarks"
    )
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench-restreamer-") as work:
        # nginx's workers drop root; let them read the store.
        os.chmod(work, 0o755)
        if args.only in (None, "playlist"):
            base = bench_playlist(work, args.runs)
            print_targets(
                base, "chan", "source", START, START + datetime.timedelta(days=1), args.runs
            )
        if args.only in (None, "segment"):
            bench_segment(work, args.seconds, args.rounds)


if __name__ == "__main__":
    main()
