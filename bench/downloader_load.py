"""Benchmark: one downloader recording 20 channels × 3 qualities of live 2 s segments.

    .venv/bin/python bench/downloader_load.py [--seconds 60] [--channels 20] [--runs ts,fmp4]

A local origin (the tests' synthetic origin: playlists written by this
process, segments real bytes made by ffmpeg) publishes one segment on every
stream every 2 s, all at once, as a live encoder farm would. The downloader
runs as its own process (`python -m downloader`) for `--seconds`, once per
run: `ts` (MPEG-TS, H.264) and `fmp4` (fragmented MP4, HEVC: each stored file
is the init section, fetched once per stream, plus the segment). The table
puts each run's recording beside what the origin published:

- segments: published vs recorded `full`, and missed;
- lateness: from the moment a segment was listed in its playlist to the moment
  its file appeared in the store (the file's ctime, set by the rename);
- CPU: each process's CPU time over the run, as a share of one core. The
  origin's own share is the baseline for what serving this load costs.
- machine noise: how late the publisher thread itself woke up, and the load
  average; on a busy shared machine lateness grows with them.

Targets (issues 3 and 13): nothing missed, p99 lateness under 1 s, downloader
under half a core, for either container.
"""

import argparse
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

from common.segments import parse_segment_path  # noqa: E402
from tests.downloader.origin import Origin  # noqa: E402
from tests.media import make_fmp4_media, make_media  # noqa: E402

QUALITIES = ["source", "480p", "360p"]
SEGMENT_SECONDS = 2.0


def cpu_seconds(pid):
    """utime + stime of a process, from /proc."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def percentile(values, fraction):
    if not values:
        return float("nan")
    values = sorted(values)
    return values[min(len(values) - 1, int(round(fraction * (len(values) - 1))))]


def media_for(kind, work):
    """(init section or None, [segment bytes]) of real 2 s segments for a run."""
    if kind == "ts":
        media = make_media(os.path.join(work, "media-ts"), seconds=6, segment_seconds=2)
        return None, [open(path, "rb").read() for path, _ in media]
    out = os.path.join(work, "media-fmp4")
    media = make_fmp4_media(out, "hevc", seconds=6, segment_seconds=2)
    init = open(os.path.join(out, "init.mp4"), "rb").read()
    return init, [open(path[: -len(".mp4")] + ".m4s", "rb").read() for path, _ in media]


def measure(kind, args, work):
    """One run of the downloader against `args.channels` × QUALITIES of `kind`."""
    init, data = media_for(kind, work)
    origin = Origin(data).start()
    names = [f"ch{i:02d}" for i in range(args.channels)]
    streams = []
    for name in names:
        for stream in origin.add_channel(name, QUALITIES).values():
            stream.window = 6
            if init is not None:
                stream.set_init("init-0.mp4", init)
            streams.append(stream)

    store = os.path.join(work, f"store-{kind}")
    command = [sys.executable, "-m", "downloader", "--base-dir", store, "--metrics-port", "0"]
    command += ["--qualities", ",".join(QUALITIES)]
    command += [f"{name}={origin.master_url(name)}" for name in names]
    env = dict(os.environ, STREAMVAULT_LOG_LEVEL="WARNING")
    downloader = subprocess.Popen(command, cwd=ROOT, env=env, stderr=subprocess.PIPE, text=True)
    time.sleep(3)  # let it start and read the (empty) playlists

    stop = threading.Event()

    tardiness = []  # how late the publisher thread woke: the machine's own noise

    def publish():
        next_at = time.monotonic()
        while not stop.is_set():
            tardiness.append(time.monotonic() - next_at)
            for stream in streams:
                stream.publish(1, duration=SEGMENT_SECONDS)
            next_at += SEGMENT_SECONDS
            stop.wait(max(0, next_at - time.monotonic()))

    origin_cpu0, wall0 = time.process_time(), time.monotonic()
    downloader_cpu0 = cpu_seconds(downloader.pid)
    publisher = threading.Thread(target=publish, daemon=True)
    publisher.start()
    time.sleep(args.seconds)
    stop.set()
    publisher.join()
    time.sleep(3)  # the last segments' polls and downloads
    wall = time.monotonic() - wall0
    downloader_cpu = cpu_seconds(downloader.pid) - downloader_cpu0
    origin_cpu = time.process_time() - origin_cpu0
    downloader.send_signal(signal.SIGTERM)
    _, errors = downloader.communicate(timeout=30)
    origin.stop()

    recorded = {}
    types = {}
    for root, _, files in os.walk(store):
        for file in files:
            path = os.path.join(root, file)
            segment = parse_segment_path(path)
            types[segment.type] = types.get(segment.type, 0) + 1
            if segment.type == "full":
                recorded[(segment.channel, segment.quality, segment.start)] = os.stat(path).st_ctime
    published = 0
    lateness = []
    missed = 0
    for stream in streams:
        for entry in stream.entries:
            published += 1
            ctime = recorded.get((stream.channel, stream.quality, entry.pdt))
            if ctime is None:
                missed += 1
            else:
                lateness.append(ctime - entry.published)
    init_fetches = len(origin.requests_for("init-0.mp4"))
    return {
        "streams": f"{len(streams)}",
        "published": f"{published}",
        "recorded": f"{len(lateness)} full, {types}",
        "missed": f"{missed}",
        "init fetches": f"{init_fetches}" if init is not None else "-",
        "lateness p50 (s)": f"{percentile(lateness, 0.5):.3f}",
        "lateness p99 (s)": f"{percentile(lateness, 0.99):.3f}",
        "lateness max (s)": f"{max(lateness, default=float('nan')):.3f}",
        "lateness mean (s)": f"{statistics.fmean(lateness) if lateness else float('nan'):.3f}",
        "publisher wake-up p99 (s)": f"{percentile(tardiness, 0.99):.3f}",
        "load average (1 min)": f"{os.getloadavg()[0]:.1f}",
        "origin CPU (share of a core)": f"{origin_cpu / wall:.3f}",
        "downloader CPU (share of a core)": f"{downloader_cpu / wall:.3f}",
        "_missed": missed,
        "_errors": errors,
    }


RUN_TITLES = {"ts": "MPEG-TS H.264", "fmp4": "fMP4 HEVC"}


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=60)
    parser.add_argument("--channels", type=int, default=20)
    parser.add_argument("--runs", default="ts,fmp4", help="comma-separated: ts, fmp4")
    args = parser.parse_args()
    kinds = [k for k in args.runs.split(",") if k]
    if not kinds or set(kinds) - set(RUN_TITLES):
        parser.error(f"--runs: some of {','.join(RUN_TITLES)}")

    work = tempfile.mkdtemp(prefix="downloader-bench-")
    results = {kind: measure(kind, args, work) for kind in kinds}
    rows = [[""] + [RUN_TITLES[k] for k in kinds]]
    for key in results[kinds[0]]:
        if not key.startswith("_"):
            rows.append([key] + [results[k][key] for k in kinds])
    width = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    print(f"downloader_load: {args.channels} channels x {len(QUALITIES)} qualities, "
          f"{SEGMENT_SECONDS:g} s segments, {args.seconds:g} s per run; "
          "lateness = listed -> on disk; each run after the other")  # fmt: skip
    for row in rows:
        print("  ".join(cell.ljust(width[i]) for i, cell in enumerate(row)))
    for kind in kinds:
        if results[kind]["_errors"].strip():
            print(f"\n{kind}: downloader stderr (last lines):")
            print("\n".join(results[kind]["_errors"].strip().splitlines()[-10:]))
    return 0 if all(results[k]["_missed"] == 0 for k in kinds) else 1


if __name__ == "__main__":
    sys.exit(main())
