"""How long choosing segments takes, against the floor of listing the directories.

Builds a store of 24 hours of 2-second segments (43,200 empty files) once,
under bench/.cache, then times in one run, side by side:

- the floor: `os.listdir` and `sort` of the same hour directories;
- `get_best_segments` over 1 hour and over 24 hours, cold (its hour cache
  cleared, untimed, before every call: the first request for a range) and warm (the
  hours already parsed and unchanged: a live playlist polled again, or a
  second request for the same range).

Then bench/restreamer.py's three figures for long playlists on the same store
(cold get_best_segments against list+sort, a cold playlist against it, and
`/files` latency while cold playlists are built).

Each ratio is of medians of wall time; `cpu` is the same ratio of this
process's CPU time, which other work on a shared machine disturbs less (a
busy machine stretches wall times unevenly: waiting for a core).

Run: .venv/bin/python bench/best_segments.py [--repeat N]
"""

import argparse
import datetime
import importlib.util
import os
import statistics
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "common"))

from common.segments import (  # noqa: E402
    clear_hour_cache,
    get_best_segments,
    hash_bytes,
    hours_for_range,
    segment_path,
)

CACHE = os.path.join(os.path.dirname(os.path.abspath(__file__)), ".cache", "best_segments")
START = datetime.datetime(2026, 11, 28, 0, 0, tzinfo=datetime.UTC)
SEGMENT = datetime.timedelta(seconds=2)
HOURS = 24


def build_store():
    hours_path = os.path.join(CACHE, "chan", "source")
    marker = os.path.join(CACHE, ".complete")
    if os.path.exists(marker):
        return hours_path
    count = HOURS * 3600 // 2
    for i in range(count):
        start = START + i * SEGMENT
        path = segment_path(
            CACHE, "chan", "source", start, SEGMENT, "full", hash_bytes(str(i).encode())
        )
        os.makedirs(os.path.dirname(path), exist_ok=True)
        open(path, "w").close()
    open(marker, "w").close()
    return hours_path


def floor(hours_path, start, end):
    names = []
    for hour in hours_for_range(start, end):
        try:
            names += sorted(os.listdir(os.path.join(hours_path, hour)))
        except FileNotFoundError:
            pass
    return names


def best(hours_path, start, end):
    return get_best_segments(hours_path, start, end)


def measure(fn, *args, repeat, setup=None):
    """Median wall and CPU time of `fn(*args)`; `setup()`, untimed, runs before each call."""
    wall, cpu = [], []
    for _ in range(repeat):
        if setup is not None:
            setup()
        started, started_cpu = time.perf_counter(), time.process_time()
        fn(*args)
        wall.append(time.perf_counter() - started)
        cpu.append(time.process_time() - started_cpu)
    return statistics.median(wall), statistics.median(cpu)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=7)
    args = parser.parse_args()
    hours_path = build_store()
    rows = []
    for label, hours in (("1 h", 1), ("24 h", 24)):
        # Mid-hour start and end, so the range has partly used hours at both ends.
        start = START + datetime.timedelta(minutes=30)
        end = start + datetime.timedelta(hours=hours) - datetime.timedelta(minutes=1)
        segments = best(hours_path, start, end)
        assert None not in segments[1:-1], "the bench store should have no holes"
        t_floor = measure(floor, hours_path, start, end, repeat=args.repeat)
        t_cold = measure(best, hours_path, start, end, repeat=args.repeat, setup=clear_hour_cache)
        best(hours_path, start, end)
        t_warm = measure(best, hours_path, start, end, repeat=args.repeat)
        rows.append((label, len(segments), t_floor, t_cold, t_warm))
    print(
        f"{'range':>6} {'segments':>9} {'list+sort (floor)':>18} "
        f"{'best, cold':>12} {'ratio':>6} {'cpu':>6} {'best, warm':>12} {'ratio':>6}"
    )
    for label, n, (t_floor, c_floor), (t_cold, c_cold), (t_warm, _) in rows:
        print(
            f"{label:>6} {n:>9} {t_floor * 1000:>15.1f} ms "
            f"{t_cold * 1000:>9.1f} ms {t_cold / t_floor:>5.2f}x {c_cold / c_floor:>5.2f}x "
            f"{t_warm * 1000:>9.1f} ms {t_warm / t_floor:>5.2f}x"
        )
    print_playlist_targets(hours_path, min(args.repeat, 5))


def print_playlist_targets(hours_path, repeat):
    """bench/restreamer.py's three long-playlist figures, on this store."""
    spec = importlib.util.spec_from_file_location(
        "restreamer_bench",
        os.path.join(os.path.dirname(os.path.abspath(__file__)), "restreamer.py"),
    )
    restreamer_bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(restreamer_bench)
    restreamer_bench.print_targets(
        CACHE, "chan", "source", START, START + datetime.timedelta(hours=HOURS), repeat
    )


if __name__ == "__main__":
    main()
