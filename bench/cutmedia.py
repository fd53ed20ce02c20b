"""The media and the measurements of the cut benchmark (`bench/cut.py`).

Stores are made once and cached under bench/.cache: 1280x720 30 fps with
B-frames and 2 s closed GOPs, AAC, 6 s segments cut by ffmpeg's HLS muxer,
a frame number burnt into every frame, timestamps starting at 10 h like a
live stream. Sources (`SOURCES`):

- `ts`: H.264 in MPEG-TS (x264 veryfast);
- `fmp4-h264`: H.264 in fragmented MP4 (x264 veryfast);
- `fmp4-hevc`: HEVC in fragmented MP4 (x265 ultrafast, tagged hvc1: making
  20 minutes of 720p HEVC any slower costs more than the benchmark).

Each fMP4 file is stored as the store keeps them: the init section followed
by one media segment. How a cut is judged (first frame, duration, A/V sync)
works on either container: ffprobe's times in seconds.
"""

import datetime
import glob
import math
import os
import re
import subprocess
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(HERE))  # the repository: for tests.media

from common.layout import read_layout  # noqa: E402
from tests.common.cutcheck import MARKER_BITS, MARKER_HEIGHT, marker_filter  # noqa: E402
from tests.media import add_to_store, make_fmp4_media, make_media  # noqa: E402

CACHE = os.path.join(HERE, ".cache")
WIDTH, HEIGHT, RATE = 1280, 720, 30
SEGMENT_SECONDS, GOP_SECONDS = 6, 2
# Broadcast time of the store's first frame: 10 minutes before an hour boundary.
START = datetime.datetime(2026, 11, 28, 13, 50, 0, tzinfo=datetime.UTC)
TS_OFFSET = 36000  # the media's first timestamp, seconds

# source -> (what it is, container of its segments and of the cuts, fMP4 codec)
SOURCES = {
    "ts": ("H.264 MPEG-TS", "ts", None),
    "fmp4-h264": ("H.264 fMP4", "mp4", "h264"),
    "fmp4-hevc": ("HEVC fMP4", "mp4", "hevc"),
}


def make_store(minutes):
    """The MPEG-TS store of `minutes` minutes (made once): its channel/quality path."""
    store = os.path.join(CACHE, f"store-{minutes}m")
    done = os.path.join(store, ".done")
    if not os.path.exists(done):
        print(f"Making {minutes} min of {WIDTH}x{HEIGHT} MPEG-TS (once)...", file=sys.stderr)
        media = make_media(
            os.path.join(CACHE, f"media-{minutes}m"),
            seconds=minutes * 60,
            size=f"{WIDTH}x{HEIGHT}",
            rate=RATE,
            segment_seconds=SEGMENT_SECONDS,
            gop_seconds=GOP_SECONDS,
            ts_offset=TS_OFFSET,
            extra_video_filter=marker_filter(WIDTH),
        )
        add_to_store(store, "bench", "source", START, media)
        open(done, "w").close()
    return os.path.join(store, "bench", "source")


def make_fmp4_store(codec, minutes):
    """An fMP4 store of at least `minutes` minutes of `codec` (made once; a longer
    one already made will do): its channel/quality path."""
    made = []
    for done in glob.glob(os.path.join(CACHE, f"store-fmp4-{codec}-*m", ".done")):
        found = re.search(r"-(\d+)m$", os.path.dirname(done))
        if found and int(found.group(1)) >= minutes:
            made.append((int(found.group(1)), os.path.dirname(done)))
    if made:
        return os.path.join(min(made)[1], "bench", "source")
    store = os.path.join(CACHE, f"store-fmp4-{codec}-{minutes}m")
    print(f"Making {minutes} min of {WIDTH}x{HEIGHT} {codec} fMP4 (once)...", file=sys.stderr)
    media = make_fmp4_media(
        os.path.join(CACHE, f"media-fmp4-{codec}-{minutes}m"),
        codec,
        seconds=minutes * 60,
        size=f"{WIDTH}x{HEIGHT}",
        rate=RATE,
        segment_seconds=SEGMENT_SECONDS,
        gop_seconds=GOP_SECONDS,
        ts_offset=TS_OFFSET,
        extra_video_filter=marker_filter(WIDTH),
    )
    add_to_store(store, "bench", "source", START, media)
    open(os.path.join(store, ".done"), "w").close()
    return os.path.join(store, "bench", "source")


def source_store(source, ts_minutes, needed_seconds):
    """The store for `source`: MPEG-TS of `ts_minutes`, fMP4 just long enough."""
    codec = SOURCES[source][2]
    if codec is None:
        return make_store(ts_minutes)
    return make_fmp4_store(codec, math.ceil(needed_seconds / 60))


def run_cat(segments, out):
    def go():
        with open(out, "wb") as f:
            for segment in segments:
                with open(segment.path, "rb") as src:
                    while chunk := src.read(1 << 20):
                        f.write(chunk)

    return go


# fMP4 output of the stream copy: fragmented like a streamed cut must be.
COPY_MOVFLAGS = "frag_keyframe+empty_moov+default_base_moof"


def run_stream_copy(segments, start, end, out, container="ts"):
    """`-c copy` of [start, end) of the segments into `out`, `-ss/-to` choosing it.

    MPEG-TS: ffmpeg's concat demuxer over the segment files. fMP4: the first
    file's init section followed by every file's media segment, piped into
    one ffmpeg as the stream they came from (the concat demuxer takes every
    fMP4 file for a 6 s file from 0 and loses most of the range).
    """
    seek = [
        "-ss", f"{(start - segments[0].start).total_seconds():.6f}",
        "-to", f"{(end - segments[0].start).total_seconds():.6f}",
    ]  # fmt: skip
    base = ["ffmpeg", "-hide_banner", "-nostdin", "-v", "error", "-y"]

    def ts():
        listing = out + ".txt"
        with open(listing, "w") as f:
            for segment in segments:
                f.write(f"file 'file:{segment.path}'\n")
        subprocess.run(
            base + ["-f", "concat", "-safe", "0", *seek, "-i", listing]
            + ["-c", "copy", "-f", "mpegts", out],
            check=True,
        )  # fmt: skip

    def mp4():
        args = base + ["-f", "mp4", "-i", "pipe:0", *seek, "-c", "copy"]
        args += ["-f", "mp4", "-movflags", COPY_MOVFLAGS, out]
        with subprocess.Popen(args, stdin=subprocess.PIPE) as process:
            try:
                for i, segment in enumerate(segments):
                    with open(segment.path, "rb") as f:
                        if i:
                            f.seek(read_layout(segment.path).init_size)
                        while chunk := f.read(1 << 20):
                            process.stdin.write(chunk)
                process.stdin.close()
            except BrokenPipeError:
                pass  # ffmpeg has all it needs (-to)
        if process.returncode:
            raise subprocess.CalledProcessError(process.returncode, args)

    return mp4 if container == "mp4" else ts


def first_frame_number(path):
    """The frame number burnt into the first frame of `path`."""
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
    """(video duration s, (audio start - video start, audio end - video end) ms)."""
    output = subprocess.run(
        [
            "ffprobe", "-v", "error",
            "-show_entries", "packet=stream_index,pts_time,duration_time",
            "-of", "csv=p=0", f"file:{path}",
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
        try:
            duration = float(fields[2])
        except (IndexError, ValueError):
            duration = 0.0
        if index == 0 and not duration:
            duration = 1 / RATE  # MPEG-TS video packets often carry no duration
        first, last = spans.get(index, (pts, pts))
        spans[index] = (min(first, pts), max(last, pts + duration))
    (v_start, v_end), (a_start, a_end) = spans[0], spans.get(1, (None, None))
    sync = (None, None)
    if a_start is not None:
        sync = ((a_start - v_start) * 1000, (a_end - v_end) * 1000)
    return v_end - v_start, sync
