"""Benchmark: fast cuts of fragmented-MP4 recordings beside full re-encodes and stream copy.

    .venv/bin/python bench/cut_mp4.py [--codecs h264,hevc] [--lengths 1,5] [--no-full]

Makes (once; cached under bench/.cache) a store per codec of 1280x720 30 fps
fMP4 (H.264 with B-frames, or HEVC) + AAC in 2 s segments of one GOP each,
as Twitch serves them, a frame number burnt into every frame. Then, for each
cut length, starting mid-GOP and crossing an hour boundary, runs in one go:

- cat: the covering segments' bytes, concatenated (the floor: no cut at all);
- stream copy: one ffmpeg reading the run (first init section, then every
  segment's media) from a pipe, `-ss/-to`, `-c copy`, to fragmented MP4:
  keyframe-accurate only; what splicing the pieces through one remux would
  cost at least;
- fast: `common.cut.cut(type="fast", container="mp4")`;
- full: `common.cut.cut(type="full", container="mp4")`.

Wall and CPU time (this process plus its children) are measured around each;
the start error is read off the first frame's marker, the duration error from
the video timestamps.
"""

import argparse
import datetime
import os
import subprocess
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(HERE))  # the repository: for tests.media and bench

from bench.cut import CACHE, RATE, WIDTH, first_frame_number, measure, run_cat  # noqa: E402
from common import layout  # noqa: E402
from common.cut import cut  # noqa: E402
from common.segments import get_best_segments  # noqa: E402
from tests.common.cutcheck import marker_filter  # noqa: E402
from tests.media import add_to_store, make_fmp4_media  # noqa: E402

HEIGHT = 720
# Broadcast time of the store's first frame: a minute before an hour boundary.
START = datetime.datetime(2026, 11, 28, 13, 59, 0, tzinfo=datetime.UTC)
# Cuts start this far in: mid-segment, mid-GOP, off the frame grid.
OFFSET = 31.2345


def make_store(codec, minutes):
    store = os.path.join(CACHE, f"fmp4-{codec}-{minutes}m")
    done = os.path.join(store, ".done")
    if not os.path.exists(done):
        print(f"Making {minutes} min of {WIDTH}x{HEIGHT} {codec} fMP4 (once)...", file=sys.stderr)
        media = make_fmp4_media(
            os.path.join(CACHE, f"fmp4-media-{codec}-{minutes}m"),
            codec,
            seconds=minutes * 60,
            size=f"{WIDTH}x{HEIGHT}",
            rate=RATE,
            extra_video_filter=marker_filter(WIDTH),
        )
        add_to_store(store, "bench", "source", START, media)
        open(done, "w").close()
    return os.path.join(store, "bench", "source")


def run_cut(segments, start, end, type, out):
    def go():
        with open(out, "wb") as f:
            for chunk in cut(segments, start, end, type=type, container="mp4"):
                f.write(chunk)

    return go


def run_stream_copy(segments, start, end, out):
    def go():
        first = segments[0]
        offset = (start - first.start).total_seconds()
        length = (end - start).total_seconds()
        process = subprocess.Popen(
            [
                "ffmpeg", "-hide_banner", "-nostdin", "-v", "error", "-y",
                "-f", "mp4", "-i", "pipe:0", "-ss", f"{offset:.6f}", "-t", f"{length:.6f}",
                "-c", "copy", "-f", "mp4", "-movflags", "frag_keyframe+empty_moov", out,
            ],
            stdin=subprocess.PIPE,
        )  # fmt: skip
        try:
            for i, segment in enumerate(segments):
                with open(segment.path, "rb") as f:
                    if i:
                        f.seek(layout.read_layout(segment.path).init_size)
                    process.stdin.write(f.read())
            process.stdin.close()
        except BrokenPipeError:
            pass
        assert process.wait() == 0

    return go


def timing(path):
    """(video duration s, audio start - video start ms, audio end - video end ms)."""
    output = subprocess.run(
        [
            "ffprobe", "-v", "error", "-show_entries",
            "packet=stream_index,pts_time,duration_time", "-of", "csv=p=0", f"file:{path}",
        ],
        capture_output=True,
        check=True,
        text=True,
    ).stdout  # fmt: skip
    spans = {}
    for line in output.split():
        fields = line.split(",")
        try:
            index, pts = int(fields[0]), float(fields[1])
        except (IndexError, ValueError):
            continue
        duration = float(fields[2]) if fields[2:] and fields[2] != "N/A" else 0
        first, last = spans.get(index, (pts, pts))
        spans[index] = (min(first, pts), max(last, pts + duration))
    (v_start, v_end), (a_start, a_end) = spans[0], spans[1]
    return v_end - v_start, ((a_start - v_start) * 1000, (a_end - v_end) * 1000)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--codecs", default="h264,hevc", help="codecs (default h264,hevc)")
    parser.add_argument("--lengths", default="1,5", help="cut lengths in minutes")
    parser.add_argument("--no-full", action="store_true", help="skip the (slow) full re-encodes")
    args = parser.parse_args()
    lengths = [float(x) for x in args.lengths.split(",") if x]
    out_dir = os.path.join(CACHE, "out")
    os.makedirs(out_dir, exist_ok=True)
    rows = []
    for codec in args.codecs.split(","):
        store = make_store(codec, int(max(lengths)) + 1)
        for minutes in lengths:
            start = START + datetime.timedelta(seconds=OFFSET)
            end = start + datetime.timedelta(minutes=minutes)
            segments = get_best_segments(store, start, end)
            assert None not in segments, "the store does not cover the cut"
            expected_first = -(-int(OFFSET * RATE * 1000) // 1000)  # ceil
            methods = [
                ("cat", run_cat(segments, os.path.join(out_dir, "cat.mp4"))),
                ("stream copy", run_stream_copy(segments, start, end, f"{out_dir}/copy.mp4")),
                ("fast", run_cut(segments, start, end, "fast", f"{out_dir}/fast.mp4")),
            ]
            if not args.no_full:
                methods.append(
                    ("full", run_cut(segments, start, end, "full", f"{out_dir}/full.mp4"))
                )
            run_cat(segments, os.devnull)()  # warm the page cache for everyone alike
            results = {}
            for name, fn in methods:
                wall, cpu = measure(fn)
                out = os.path.join(out_dir, {"stream copy": "copy"}.get(name, name) + ".mp4")
                start_error = duration_error = None
                sync = (None, None)
                if name != "cat":
                    start_error = first_frame_number(out) - expected_first
                    duration, sync = timing(out)
                    duration_error = duration - minutes * 60
                results[name] = wall
                rows.append((codec, minutes, name, wall, cpu, start_error, duration_error, sync,
                             results))  # fmt: skip
                print(f"  {codec} {minutes:g} min {name}: {wall:.2f} s", file=sys.stderr)

    print()
    print(
        "| codec | cut | method | wall s | CPU s | start error (frames) | duration error (s) "
        "| A/V start, end (ms) | wall / fast |"
    )
    print("|---|---|---|---|---|---|---|---|---|")
    for codec, minutes, name, wall, cpu, start_error, duration_error, sync, results in rows:
        fast = results.get("fast")
        print(
            f"| {codec} | {minutes:g} min | {name} | {wall:.2f} | {cpu:.2f} | "
            f"{'' if start_error is None else start_error} | "
            f"{'' if duration_error is None else f'{duration_error:+.3f}'} | "
            f"{'' if sync[0] is None else f'{sync[0]:+.1f}, {sync[1]:+.1f}'} | "
            f"{f'{wall / fast:.2f}x' if fast else ''} |"
        )


if __name__ == "__main__":
    main()
