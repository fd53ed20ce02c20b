"""Benchmark: fast cuts side by side with full re-encodes, stream copy and cat.

    .venv/bin/python bench/cut.py [--lengths 1,5,15] [--sources ts,fmp4-h264,fmp4-hevc]
        [--fmp4-lengths 1,5] [--minutes 21] [--no-full] [--no-restarts]

Makes (once; cached under bench/.cache, see `cutmedia`) stores of 1280x720
30 fps video with B-frames and 2 s closed GOPs + AAC in 6 s segments,
timestamps starting at 10 h like a live stream and a frame number burnt into
every frame: H.264 in MPEG-TS, H.264 in fMP4 and HEVC in fMP4. Then, for each
cut length and source, starting mid-GOP and crossing an hour boundary, runs in
one go:

- cat: the covering segments' bytes, concatenated (the floor: no cut at all);
- stream copy: ffmpeg `-ss/-to -c copy` of the same range into the source's
  container (MPEG-TS: the concat demuxer over the segments; fMP4: the init
  section and the media segments piped in as one stream; keyframe-accurate
  only: what people use today);
- fast: `common.cut.cut(type="fast")` (`container="mp4"` for fMP4 sources);
- full: the same with `type="full"`.

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
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(HERE))  # the repository: for tests.media

from cutmedia import (  # noqa: E402
    CACHE,
    RATE,
    SOURCES,
    START,
    first_frame_number,
    make_store,
    run_cat,
    run_stream_copy,
    source_store,
    timing,
)

from common import layout, probe  # noqa: E402
from common.cut import cut, segment_head  # noqa: E402
from common.segments import get_best_segments  # noqa: E402
from tests.common.cutcheck import marker_filter  # noqa: E402
from tests.media import add_to_store, make_media  # noqa: E402

# Cuts start this far in: mid-segment (6 s) and mid-GOP (2 s), off the frame grid.
OFFSET = 61.2345


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
        remove(out)
        wall, cpu = measure(run_cut(segments, start, end, type, out, allow_holes=holes))
        expected = 60 - (RESTART_HOLE.total_seconds() if holes else 0)
        rows.append((name, wall, cpu, timing(out)[0], expected))
        print(f"  {name}: {wall:.2f} s", file=sys.stderr)
    return rows


def remove(path):
    """Remove a previous run's output before timing the next: truncating a
    300 MB file took 0.1-0.2 s, which no method should be charged for."""
    if os.path.exists(path):
        os.remove(path)


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


def forget_segments():
    """Empty the caches of what cuts learn about segments (heads, probes,
    layouts), so that every cut is timed as the first of its range: the
    lengths share their first segment, and a second cut of a range is rare."""
    segment_head.cache_clear()
    probe._probe.cache_clear()
    layout.cached_layout.cache_clear()


def run_cut(segments, start, end, type, out, allow_holes=False, container="ts"):
    def go():
        forget_segments()  # (takes microseconds)
        with open(out, "wb") as f:
            for chunk in cut(
                segments, start, end, type=type, allow_holes=allow_holes, container=container
            ):
                f.write(chunk)

    return go


METHODS = ("cat", "stream copy", "fast", "full")


def cut_rows(source, store, minutes, out_dir, full=True):
    """[(source, minutes, method, wall, cpu, start error, duration error, sync)] for
    one cut of `minutes` from `store`, every method in one go."""
    container = SOURCES[source][1]
    start = START + datetime.timedelta(seconds=OFFSET)
    end = start + datetime.timedelta(minutes=minutes)
    segments = get_best_segments(store, start, end)
    assert None not in segments, "the store does not cover the cut"
    expected_first = -(-int(OFFSET * RATE * 1000) // 1000)  # ceil
    outs = {m: os.path.join(out_dir, f"{m.replace(' ', '-')}.{container}") for m in METHODS}
    methods = {
        "cat": run_cat(segments, outs["cat"]),
        "stream copy": run_stream_copy(segments, start, end, outs["stream copy"], container),
        "fast": run_cut(segments, start, end, "fast", outs["fast"], container=container),
    }
    if full:
        methods["full"] = run_cut(segments, start, end, "full", outs["full"], container=container)
    run_cat(segments, os.devnull)()  # warm the page cache for everyone alike
    rows = []
    for name, fn in methods.items():
        remove(outs[name])
        wall, cpu = measure(fn)
        start_error = duration_error = None
        sync = (None, None)
        if name != "cat":
            start_error = first_frame_number(outs[name]) - expected_first
            duration, sync = timing(outs[name])
            duration_error = duration - minutes * 60
        rows.append((source, minutes, name, wall, cpu, start_error, duration_error, sync))
        print(f"  {source} {minutes:g} min {name}: {wall:.2f} s", file=sys.stderr)
    return rows


def _optional(value, form):
    return "" if value is None else format(value, form)


def print_tables(rows):
    walls = {(r[0], r[1], r[2]): r[3] for r in rows}
    print()
    print(
        "| source | cut | method | wall s | CPU s | start error (frames) | duration error (s) "
        "| A/V start, end (ms) | wall / stream copy |"
    )
    print("|---|---|---|---|---|---|---|---|---|")
    for source, minutes, name, wall, cpu, start_error, duration_error, sync in rows:
        copy = walls.get((source, minutes, "stream copy"))
        sync_text = "" if sync[0] is None else f"{sync[0]:+.1f}, {sync[1]:+.1f}"
        print(
            f"| {SOURCES[source][0]} | {minutes:g} min | {name} | {wall:.2f} | {cpu:.2f} | "
            f"{_optional(start_error, 'd')} | {_optional(duration_error, '+.3f')} | "
            f"{sync_text} | {wall / copy:.2f}x |"
        )
    print()
    print(
        "| source | cut | cat s | stream copy s | fast s | full s "
        "| fast / stream copy | full / fast |"
    )
    print("|---|---|---|---|---|---|---|---|")
    for source, minutes in dict.fromkeys((r[0], r[1]) for r in rows):
        wall = {m: walls.get((source, minutes, m)) for m in METHODS}
        full_ratio = f"{wall['full'] / wall['fast']:.1f}x" if wall["full"] else ""
        print(
            f"| {SOURCES[source][0]} | {minutes:g} min | {wall['cat']:.2f} "
            f"| {wall['stream copy']:.2f} | {wall['fast']:.2f} | {_optional(wall['full'], '.2f')} "
            f"| {wall['fast'] / wall['stream copy']:.2f}x | {full_ratio} |"
        )
    print()
    print(
        "Wall and CPU (this process and its children) seconds per method, in one run. "
        "cat: the covering segments' bytes concatenated (the floor: no cut at all); "
        "stream copy: ffmpeg -ss/-to -c copy of the same range into the source's container "
        "(MPEG-TS: its concat demuxer over the segments; fMP4: the first init section and "
        "every media segment piped in as one stream; keyframe-accurate only); "
        "fast: common.cut.cut(type='fast'), fMP4 sources to .mp4; "
        "full: the same with type='full' (everything re-encoded). "
        "Start error: the first frame's number minus the one wanted; duration error: "
        "video duration minus the cut's length; A/V: audio minus video at each end."
    )


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument(
        "--minutes", type=int, default=21, help="MPEG-TS media to make (default 21)"
    )
    parser.add_argument("--lengths", default="1,5,15", help="cut lengths in minutes")
    parser.add_argument(
        "--fmp4-lengths",
        help="cut lengths of the fMP4 sources (default: --lengths; their full cuts are slow)",
    )
    parser.add_argument(
        "--sources",
        default=",".join(SOURCES),
        help=f"sources to cut, of {', '.join(SOURCES)} (default: all)",
    )
    parser.add_argument("--no-full", action="store_true", help="skip the (slow) full re-encodes")
    parser.add_argument(
        "--no-restarts", action="store_true", help="skip the cuts across stream restarts"
    )
    args = parser.parse_args()
    sources = [s for s in args.sources.split(",") if s]
    unknown = set(sources) - SOURCES.keys()
    if unknown:
        parser.error(f"unknown sources: {', '.join(sorted(unknown))}")
    lengths = {
        source: [float(x) for x in (args.fmp4_lengths or args.lengths).split(",") if x]
        if SOURCES[source][1] == "mp4"
        else [float(x) for x in args.lengths.split(",") if x]
        for source in sources
    }
    out_dir = os.path.join(CACHE, "out")
    os.makedirs(out_dir, exist_ok=True)

    stores = {}
    for source in sources:
        needed = OFFSET + max(lengths[source]) * 60 + 2 * 6  # two segments' margin
        stores[source] = source_store(source, args.minutes, needed)
    rows = []
    for minutes in sorted({m for source in sources for m in lengths[source]}):
        for source in sources:
            if minutes in lengths[source]:
                rows += cut_rows(source, stores[source], minutes, out_dir, full=not args.no_full)
    print_tables(rows)

    if args.no_restarts:
        return
    restarts = restart_rows(make_store(args.minutes), out_dir)
    plain = restarts[0][1]
    print()
    print(
        "| 60 s fast cut (MPEG-TS) | wall s | CPU s | duration (s) | expected (s) | wall / plain |"
    )
    print("|---|---|---|---|---|---|")
    for name, wall, cpu, duration, expected in restarts:
        print(
            f"| {name} | {wall:.2f} | {cpu:.2f} | {duration:.3f} | {expected:.3f} "
            f"| {wall / plain:.2f}x |"
        )


if __name__ == "__main__":
    main()
