"""How fast the backfiller copies a peer's hour, against the floor of `curl` doing the same.

A peer restreamer (the real service, `python -m restreamer`) serves 600
2-second MPEG-TS segments of about 500 KB each (~300 MB): one real segment made
by ffmpeg (noise, so that it is that big at 2 Mb/s), stored under 600 start
times, as the backfiller checks every body's container and timeline. Built
once under bench/.cache. Then, in one run, alternating:

- the floor: the same 600 URLs fetched by `curl` into a directory,
  `--concurrency` at a time (`xargs -P`, a batch of URLs per curl so that it
  reuses its connection, as the backfiller does);
- the same, then `openssl dgst -sha256` of every file, `--concurrency` at a
  time: what a client written in C pays to verify what it fetched (SHA-256
  as fast as the CPU does it), for reference;
- the backfiller: `python -m backfiller --run-once` into an empty store, with
  the same concurrency: listing, fetching, hashing, verifying and renaming.

Both are timed from process start to exit, and the median of `--repeat` runs
is reported, with the CPU seconds (user + system) of the client processes and
of the peer serving them, and the load average: on 2 cores the peer's CPU
competes with the client's, and other processes' load moves both sides' times
(the ratio within one run is what counts). The target is a ratio of at least
0.8 of the floor.

Run: .venv/bin/python bench/backfill.py [--repeat N] [--concurrency N]
"""

import argparse
import datetime
import os
import resource
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.parse
import urllib.request

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "common"))

from common.segments import SegmentWriter, list_segments  # noqa: E402

CACHE = os.path.join(ROOT, "bench", ".cache", "backfill-ts")
CHANNEL, QUALITY = "bench", "source"
START = datetime.datetime(2026, 1, 10, 10, 0, tzinfo=datetime.UTC)
HOUR = "2026-01-10T10"
SEGMENT = datetime.timedelta(seconds=2)
COUNT = 600
SIZE = 500_000  # about: what ffmpeg makes of 2 s at 2 Mb/s
CURL_BATCH = 25  # URLs per curl process


def make_segment():
    """One real 2-second MPEG-TS segment of about SIZE bytes (ffmpeg, noise at 2 Mb/s)."""
    with tempfile.TemporaryDirectory() as out:
        path = os.path.join(out, "segment.ts")
        subprocess.run(
            ["ffmpeg", "-loglevel", "error", "-nostdin", "-f", "lavfi",
             "-i", "nullsrc=size=320x180:rate=30,geq=lum='random(1)*255':cb=128:cr=128",
             "-t", "2", "-c:v", "libx264", "-preset", "ultrafast", "-g", "60",
             "-b:v", "2000k", "-minrate", "2000k", "-maxrate", "2000k", "-bufsize", "500k",
             "-f", "mpegts", path],
            check=True,
        )  # fmt: skip
        with open(path, "rb") as f:
            return f.read()


def build_store():
    """COUNT segments, one real segment's bytes under COUNT start times, made once."""
    marker = os.path.join(CACHE, ".complete")
    if not os.path.exists(marker):
        shutil.rmtree(CACHE, ignore_errors=True)
        data = make_segment()
        print(f"building {COUNT} segments of {len(data)} bytes under {CACHE} ...", file=sys.stderr)
        for i in range(COUNT):
            with SegmentWriter(CACHE, CHANNEL, QUALITY, START + i * SEGMENT, SEGMENT) as writer:
                writer.write(data)
                writer.finish("full")
        open(marker, "w").close()
    return [s.name for s in list_segments(os.path.join(CACHE, CHANNEL, QUALITY, HOUR))]


def start_peer():
    """`python -m restreamer` over the bench store, as a node runs it; returns (process, URL)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    proc = subprocess.Popen(
        [sys.executable, "-m", "restreamer", "--base-dir", CACHE, "--host", "127.0.0.1",
         "--port", str(port)],
        cwd=ROOT, env=dict(os.environ, STREAMVAULT_LOG_LEVEL="WARNING"),
    )  # fmt: skip
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    while True:
        try:
            with urllib.request.urlopen(f"{url}/files/{CHANNEL}/{QUALITY}", timeout=5):
                return proc, url
        except OSError:
            if proc.poll() is not None or time.monotonic() > deadline:
                raise SystemExit("the restreamer did not start") from None
            time.sleep(0.1)


def run_curl(url, names, dest, concurrency, verify=False):
    urls = "\n".join(
        f"{url}/segments/{CHANNEL}/{QUALITY}/{HOUR}/{urllib.parse.quote(name, safe=':')}"
        for name in names
    )
    started = time.perf_counter()
    subprocess.run(
        ["xargs", "-P", str(concurrency), "-n", str(CURL_BATCH),
         "curl", "-sSf", "--remote-name-all"],
        input=urls.encode(), cwd=dest, check=True,
    )  # fmt: skip
    if verify:
        subprocess.run(
            ["xargs", "-0", "-P", str(concurrency), "-n", str(CURL_BATCH), "openssl", "dgst", "-sha256"],
            input=b"\0".join(n.encode() for n in os.listdir(dest)), cwd=dest, check=True,
            stdout=subprocess.DEVNULL,
        )  # fmt: skip
    return time.perf_counter() - started


def run_backfiller(url, dest, concurrency):
    started = time.perf_counter()
    subprocess.run(
        [sys.executable, "-m", "backfiller", "--base-dir", dest, "--channels", CHANNEL,
         "--qualities", QUALITY, "--nodes", url, "--concurrency", str(concurrency),
         "--recent-cutoff", "0", "--metrics-port", "0", "--run-once"],
        cwd=ROOT, check=True, env=dict(os.environ, STREAMVAULT_LOG_LEVEL="WARNING"),
    )  # fmt: skip
    return time.perf_counter() - started


def process_cpu(pid):
    """User + system seconds a running process has used so far (from /proc)."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def count_files(dest):
    return sum(len(files) for _, _, files in os.walk(dest))


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--concurrency", type=int, default=5)
    args = parser.parse_args()
    names = build_store()
    total_bytes = sum(
        os.path.getsize(os.path.join(CACHE, CHANNEL, QUALITY, HOUR, name)) for name in names
    )
    peer, url = start_peer()
    times = {"curl": [], "curl+sha256": [], "backfiller": []}
    cpu = {method: [] for method in times}  # user + system seconds of the client processes
    peer_cpu = {method: [] for method in times}  # ...and of the peer serving them
    load = os.getloadavg()[0]
    try:
        for _ in range(args.repeat):
            for method in times:
                dest = tempfile.mkdtemp(
                    prefix=f"bench-backfill-{method}-", dir=ROOT + "/bench/.cache"
                )
                before = resource.getrusage(resource.RUSAGE_CHILDREN)
                peer_before = process_cpu(peer.pid)
                try:
                    if method.startswith("curl"):
                        elapsed = run_curl(url, names, dest, args.concurrency, method != "curl")
                    else:
                        elapsed = run_backfiller(url, dest, args.concurrency)
                    if count_files(dest) != COUNT:
                        raise SystemExit(f"{method} fetched {count_files(dest)} of {COUNT} files")
                    times[method].append(elapsed)
                    after = resource.getrusage(resource.RUSAGE_CHILDREN)
                    cpu[method].append(
                        after.ru_utime - before.ru_utime + after.ru_stime - before.ru_stime
                    )
                    peer_cpu[method].append(process_cpu(peer.pid) - peer_before)
                finally:
                    shutil.rmtree(dest)
    finally:
        peer.terminate()
        peer.wait()
    floor = statistics.median(times["curl"])
    print(
        f"\nbackfill of {COUNT} segments x {total_bytes // COUNT // 1000} KB ({total_bytes / 1e6:.0f} MB) "
        f"from one restreamer, concurrency {args.concurrency}, median of {args.repeat}; "
        f"target: backfiller at 0.8 of the floor or better; load average "
        f"{load:.1f} before, {os.getloadavg()[0]:.1f} after, on {os.cpu_count()} CPUs\n"
    )
    print(
        f"{'method':<34} {'seconds':>8} {'MB/s':>8} {'segments/s':>11} {'vs floor':>9} "
        f"{'CPU s':>6} {'peer CPU s':>10}  runs (s)"
    )
    for method, label in (
        ("curl", "floor: curl, xargs -P"),
        ("curl+sha256", "curl, then openssl sha256 (ref.)"),
        ("backfiller", "backfiller --run-once"),
    ):
        elapsed = statistics.median(times[method])
        print(
            f"{label:<34} {elapsed:8.2f} {total_bytes / elapsed / 1e6:8.0f} "
            f"{COUNT / elapsed:11.0f} {floor / elapsed:9.2f} "
            f"{statistics.median(cpu[method]):6.2f} {statistics.median(peer_cpu[method]):10.2f}  "
            + " ".join(f"{t:.2f}" for t in times[method])
        )


if __name__ == "__main__":
    main()
