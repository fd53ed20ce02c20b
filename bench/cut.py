"""Benchmark: fast cuts side by side with full re-encodes, stream copy and cat.

    .venv/bin/python bench/cut.py [--minutes 21] [--lengths 1,5,15] [--no-full]

Makes (once; cached under bench/.cache) a store of 1280x720 30 fps H.264 with
B-frames + AAC in 6 s segments, timestamps starting at 10 h like a live stream
and a frame number burnt into every frame. Then, for each cut length, starting
mid-GOP and crossing an hour boundary, runs in one go:

- cat: the covering segments' bytes, concatenated (the floor: no cut at all);
- stream copy: ffmpeg's concat demuxer over the same segments, `-ss/-to`,
  `-c copy` (keyframe-accurate only: what people use today);
- fast: `common.cut.cut(type="fast")`;
- full: `common.cut.cut(type="full")`.

Then (unless `--no-restarts`), 60 s fast cuts (`allow_holes`) across a
stream restart: the first 30 s of the store, a 13.7 s hole, then 30 s more
whose timestamps start over: of the same format (the first 30 s again:
joined, nothing re-encoded), or of another (640x360, made once: that part
re-encoded); and 18 s, the hole, 18 s of the other format, then the first
format again. Beside them a plain 60 s fast cut, and the full re-encode of
the restart to another format (what such a fast cut used to cost).

Each writes its output to a file; wall and CPU time (this process plus its
children) are measured around that. The start error is read off the first
frame's marker (frames), the duration error from the video timestamps.
"""

import argparse
import datetime
import os
import resource
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(HERE))  # the repository: for tests.media

from common.cut import cut  # noqa: E402
from common.segments import get_best_segments  # noqa: E402
from tests.common.cutcheck import MARKER_BITS, MARKER_HEIGHT, marker_filter  # noqa: E402
from tests.media import add_to_store, make_media  # noqa: E402

CACHE = os.path.join(HERE, ".cache")
WIDTH, HEIGHT, RATE = 1280, 720, 30
# Broadcast time of the store's first frame: 10 minutes before an hour boundary.
START = datetime.datetime(2026, 11, 28, 13, 50, 0, tzinfo=datetime.UTC)
# Cuts start this far in: mid-segment (6 s) and mid-GOP (2 s), off the frame grid.
OFFSET = 61.2345


def make_store(minutes):
    store = os.path.join(CACHE, f"store-{minutes}m")
    done = os.path.join(store, ".done")
    if not os.path.exists(done):
        print(f"Making {minutes} min of {WIDTH}x{HEIGHT} media (once)...", file=sys.stderr)
        media = make_media(
            os.path.join(CACHE, f"media-{minutes}m"),
            seconds=minutes * 60,
            size=f"{WIDTH}x{HEIGHT}",
            rate=RATE,
            extra_video_filter=marker_filter(WIDTH),
        )
        add_to_store(store, "bench", "source", START, media)
        open(done, "w").close()
    return os.path.join(store, "bench", "source")


# The restart cases: the hole between the two recordings.
RESTART_HOLE = datetime.timedelta(seconds=13.7)
RESTART_SECONDS = 30  # of each recording


def make_restart_store(store, kind):
    """A store with a restart in it: 30 s of `store`, a hole, then 30 s more that
    start their timestamps over, of the same format or (`kind="format"`) not; or
    (`kind="middle"`) 18 s of `store`, the hole, 18 s of the other format, then
    `store`'s start again (a restart back to the first format, no hole)."""
    path = os.path.join(CACHE, f"restart-{kind}")
    done = os.path.join(path, ".done")
    if not os.path.exists(done):
        seconds = 18 if kind == "middle" else RESTART_SECONDS
        span = datetime.timedelta(seconds=seconds)
        first = [(s.path, s.duration) for s in get_best_segments(store, START, START + span)]
        other = first
        if kind in ("format", "middle"):
            other = make_media(
                os.path.join(CACHE, "media-restart-640x360"),
                seconds=RESTART_SECONDS,
                size="640x360",
                rate=RATE,
                extra_video_filter=marker_filter(640),
            )[: seconds // 6]
        add_to_store(path, "bench", "source", START, first)
        add_to_store(path, "bench", "source", START + span + RESTART_HOLE, other)
        if kind == "middle":
            add_to_store(path, "bench", "source", START + 2 * span + RESTART_HOLE, first)
        open(done, "w").close()
    return os.path.join(path, "bench", "source")


def restart_rows(store, out_dir):
    """[(case, wall, cpu, duration, expected duration)] for the restart cuts: 60 s
    fast cuts (`allow_holes`) across a restart, beside a plain one and, for the
    restart to another format, the full re-encode that such a cut used to fall
    back to (ffmpeg's concat filter over every part)."""
    start = START + datetime.timedelta(seconds=3.2345)
    end = start + datetime.timedelta(seconds=60)
    new_format = make_restart_store(store, "format")
    cases = [
        ("plain fast cut", store, False, "fast"),
        ("across a restart, same format (joined)", make_restart_store(store, "same"), True, "fast"),
        ("across a restart, new format (19.5 s re-encoded)", new_format, True, "fast"),
        ("new format in the middle (18 s re-encoded)", make_restart_store(store, "middle"), True,
         "fast"),
        ("new format, type=full (all 46.3 s re-encoded)", new_format, True, "full"),
    ]  # fmt: skip
    rows = []
    for name, path, holes, type in cases:
        segments = get_best_segments(path, start, end)
        out = os.path.join(out_dir, "restart.ts")
        run_cat([s for s in segments if s], os.devnull)()
        wall, cpu = measure(run_cut(segments, start, end, type, out, allow_holes=holes))
        expected = 60 - (RESTART_HOLE.total_seconds() if holes else 0)
        rows.append((name, wall, cpu, timing(out)[0], expected))
        print(f"  {name}: {wall:.2f} s", file=sys.stderr)
    return rows


def measure(fn):
    """Run fn(); return (wall, cpu) seconds, CPU counting waited-for children."""
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = time.process_time()
    wall = time.monotonic()
    fn()
    wall = time.monotonic() - wall
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = time.process_time() - cpu
    cpu += (after.ru_utime - children.ru_utime) + (after.ru_stime - children.ru_stime)
    return wall, cpu


def run_cut(segments, start, end, type, out, allow_holes=False):
    def go():
        with open(out, "wb") as f:
            for chunk in cut(segments, start, end, type=type, allow_holes=allow_holes):
                f.write(chunk)

    return go


def run_cat(segments, out):
    def go():
        with open(out, "wb") as f:
            for segment in segments:
                with open(segment.path, "rb") as src:
                    while chunk := src.read(1 << 20):
                        f.write(chunk)

    return go


def run_stream_copy(segments, start, end, out):
    def go():
        listing = out + ".txt"
        with open(listing, "w") as f:
            for segment in segments:
                f.write(f"file 'file:{segment.path}'\n")
        first = segments[0].start
        subprocess.run(
            [
                "ffmpeg", "-hide_banner", "-nostdin", "-v", "error", "-y",
                "-f", "concat", "-safe", "0",
                "-ss", f"{(start - first).total_seconds():.6f}",
                "-to", f"{(end - first).total_seconds():.6f}",
                "-i", listing, "-c", "copy", "-f", "mpegts", out,
            ],
            check=True,
        )  # fmt: skip

    return go


def first_frame_number(path):
    raw = subprocess.run(
        [
            "ffmpeg", "-hide_banner", "-nostdin", "-v", "error", "-i", f"file:{path}",
            "-frames:v", "1", "-vf", f"crop={WIDTH}:{MARKER_HEIGHT}:0:0,format=gray",
            "-f", "rawvideo", "-",
        ],
        capture_output=True,
        check=True,
    ).stdout  # fmt: skip
    row = raw[(MARKER_HEIGHT // 2) * WIDTH :][:WIDTH]
    block = WIDTH // 16
    number = 0
    for bit in range(MARKER_BITS):
        if sum(row[bit * block + 4 : (bit + 1) * block - 4]) / (block - 8) > 128:
            number |= 1 << bit
    return number


def timing(path):
    """(video duration s, audio start - video start ms, audio end - video end ms)."""
    output = subprocess.run(
        [
            "ffprobe", "-v", "error", "-show_entries", "packet=stream_index,pts,duration",
            "-of", "csv=p=0", f"file:{path}",
        ],
        capture_output=True,
        check=True,
        text=True,
    ).stdout  # fmt: skip
    spans = {}
    for line in output.split():
        fields = line.split(",")
        if len(fields) < 3 or not fields[1].lstrip("-").isdigit():
            continue
        index, pts = int(fields[0]), int(fields[1])
        duration = int(fields[2]) if fields[2].isdigit() else 0
        if index == 0 and not duration:
            duration = 90000 // RATE  # MPEG-TS video packets often carry no duration
        first, last = spans.get(index, (pts, pts))
        spans[index] = (min(first, pts), max(last, pts + duration))
    (v_start, v_end), (a_start, a_end) = spans[0], spans.get(1, (None, None))
    sync = (None, None)
    if a_start is not None:
        sync = ((a_start - v_start) / 90, (a_end - v_end) / 90)
    return (v_end - v_start) / 90000, sync


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--minutes", type=int, default=21, help="media to make (default 21)")
    parser.add_argument("--lengths", default="1,5,15", help="cut lengths in minutes")
    parser.add_argument("--no-full", action="store_true", help="skip the (slow) full re-encodes")
    parser.add_argument(
        "--no-restarts", action="store_true", help="skip the cuts across stream restarts"
    )
    args = parser.parse_args()
    store = make_store(args.minutes)
    out_dir = os.path.join(CACHE, "out")
    os.makedirs(out_dir, exist_ok=True)

    rows = []
    lengths = [float(x) for x in args.lengths.split(",") if x]
    for minutes in lengths:
        start = START + datetime.timedelta(seconds=OFFSET)
        end = start + datetime.timedelta(minutes=minutes)
        segments = get_best_segments(store, start, end)
        assert None not in segments, "the store does not cover the cut"
        expected_first = -(-int(OFFSET * RATE * 1000) // 1000)  # ceil
        methods = [
            ("cat", run_cat(segments, os.path.join(out_dir, "cat.ts"))),
            (
                "stream copy",
                run_stream_copy(segments, start, end, os.path.join(out_dir, "copy.ts")),
            ),
            ("fast", run_cut(segments, start, end, "fast", os.path.join(out_dir, "fast.ts"))),
        ]
        if not args.no_full:
            methods.append(
                ("full", run_cut(segments, start, end, "full", os.path.join(out_dir, "full.ts")))
            )
        run_cat(segments, os.devnull)()  # warm the page cache for everyone alike
        results = {}
        for name, fn in methods:
            wall, cpu = measure(fn)
            out = os.path.join(out_dir, {"stream copy": "copy"}.get(name, name) + ".ts")
            start_error = duration_error = None
            sync = (None, None)
            if name != "cat":
                start_error = first_frame_number(out) - expected_first
                duration, sync = timing(out)
                duration_error = duration - minutes * 60
            results[name] = wall
            rows.append((minutes, name, wall, cpu, start_error, duration_error, sync, results))
            print(f"  {minutes:g} min {name}: {wall:.2f} s", file=sys.stderr)

    print()
    print(
        "| cut | method | wall s | CPU s | start error (frames) | duration error (s) "
        "| A/V start, end (ms) | wall / fast | fast - cat (s) |"
    )
    print("|---|---|---|---|---|---|---|---|---|")
    for minutes, name, wall, cpu, start_error, duration_error, sync, results in rows:
        fast = results.get("fast")
        ratio = f"{wall / fast:.2f}x" if fast else ""
        extra = f"{fast - results['cat']:.2f}" if name == "fast" else ""
        print(
            f"| {minutes:g} min | {name} | {wall:.2f} | {cpu:.2f} | "
            f"{'' if start_error is None else start_error} | "
            f"{'' if duration_error is None else f'{duration_error:+.3f}'} | "
            f"{'' if sync[0] is None else f'{sync[0]:+.1f}, {sync[1]:+.1f}'} | {ratio} | {extra} |"
        )

    if args.no_restarts:
        return
    restarts = restart_rows(store, out_dir)
    plain = restarts[0][1]
    print()
    print("| 60 s fast cut | wall s | CPU s | duration (s) | expected (s) | wall / plain |")
    print("|---|---|---|---|---|---|")
    for name, wall, cpu, duration, expected in restarts:
        print(
            f"| {name} | {wall:.2f} | {cpu:.2f} | {duration:.3f} | {expected:.3f} "
            f"| {wall / plain:.2f}x |"
        )


if __name__ == "__main__":
    main()
