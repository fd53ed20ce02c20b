"""Small real test media, made by ffmpeg once per test run.

`make_media` encodes a test pattern with a tone into MPEG-TS segments with
ffmpeg's HLS muxer, like a live encoder would: H.264 with B-frames and fixed
keyframe intervals, AAC at 48 kHz, timestamps starting at 10 h. `add_to_store`
files such segments into a store under chosen broadcast times.

`make_fmp4_media` does the same as fragmented MP4 (H.264, HEVC or AV1), each
file already the store's form: the init section followed by one segment.

Kept small (320x180, a few seconds a segment) so that a whole test run stays
fast on 2 cores.
"""

import datetime
import os
import subprocess

import m3u8

from common.segments import SegmentWriter


def make_media(
    out_dir,
    *,
    seconds=30,
    size="320x180",
    rate=30,
    segment_seconds=6,
    gop_seconds=2,
    ts_offset=36000,
    tone=440,
    extra_video_filter=None,
):
    """Encode `seconds` of test video into HLS segments in `out_dir`.

    Returns `[(path, duration), ...]` in order, durations as timedeltas from the
    playlist's EXTINF. Every segment but maybe the last lasts `segment_seconds`.
    """
    os.makedirs(out_dir, exist_ok=True)
    playlist = os.path.join(out_dir, "index.m3u8")
    gop = rate * gop_seconds
    video_filter = f"testsrc2=size={size}:rate={rate}"
    if extra_video_filter:
        video_filter += "," + extra_video_filter
    subprocess.run(
        [
            "ffmpeg", "-hide_banner", "-nostdin", "-v", "error", "-y",
            "-f", "lavfi", "-i", video_filter,
            "-f", "lavfi", "-i", f"sine=frequency={tone}:sample_rate=48000",
            "-t", str(seconds),
            "-c:v", "libx264", "-preset", "veryfast", "-pix_fmt", "yuv420p",
            "-bf", "2", "-g", str(gop), "-keyint_min", str(gop), "-sc_threshold", "0",
            "-c:a", "aac", "-ar", "48000", "-ac", "2", "-b:a", "64k",
            "-output_ts_offset", str(ts_offset),
            "-f", "hls", "-hls_time", str(segment_seconds), "-hls_list_size", "0",
            "-hls_segment_filename", os.path.join(out_dir, "seg%05d.ts"),
            playlist,
        ],
        check=True,
    )  # fmt: skip
    parsed = m3u8.load(playlist)
    return [
        (
            os.path.join(out_dir, segment.uri),
            datetime.timedelta(microseconds=round(segment.duration * 1_000_000)),
        )
        for segment in parsed.segments
    ]


# ffmpeg's encoder settings per fMP4 codec: fast, quiet, closed GOPs. HEVC is
# tagged hvc1 (parameter sets in the init section only), as Twitch serves it.
FMP4_CODECS = {
    "h264": ["-c:v", "libx264", "-preset", "veryfast", "-bf", "2"],
    "hevc": ["-c:v", "libx265", "-preset", "ultrafast", "-tag:v", "hvc1",
             "-x265-params", "log-level=error:open-gop=0"],
    "av1": ["-c:v", "libsvtav1", "-preset", "12", "-svtav1-params", "irefresh-type=2"],
}  # fmt: skip


def make_fmp4_media(
    out_dir,
    codec="h264",
    *,
    seconds=6,
    size="320x180",
    rate=30,
    segment_seconds=2,
    gop_seconds=None,
    tone=440,
    extra_video_filter=None,
    ts_offset=0,
):
    """Encode `seconds` of test video as fMP4 HLS (`codec`: a key of FMP4_CODECS),
    timestamps starting at `ts_offset` seconds (Twitch's start at the broadcast's),
    a keyframe every `gop_seconds` (default: one a segment).

    Returns `[(path, duration), ...]` like `make_media`, each path a `.mp4` file
    holding the init section followed by one media segment, as the store keeps them.
    """
    os.makedirs(out_dir, exist_ok=True)
    playlist = os.path.join(out_dir, "index.m3u8")
    gop = rate * (gop_seconds or segment_seconds)
    video_filter = f"testsrc2=size={size}:rate={rate}"
    if extra_video_filter:
        video_filter += "," + extra_video_filter
    subprocess.run(
        [
            "ffmpeg", "-hide_banner", "-nostdin", "-v", "error", "-y",
            "-f", "lavfi", "-i", video_filter,
            "-f", "lavfi", "-i", f"sine=frequency={tone}:sample_rate=48000",
            "-t", str(seconds),
            *FMP4_CODECS[codec], "-pix_fmt", "yuv420p",
            "-g", str(gop), "-keyint_min", str(gop), "-sc_threshold", "0",
            "-c:a", "aac", "-ar", "48000", "-ac", "2", "-b:a", "64k",
            "-output_ts_offset", str(ts_offset),
            "-f", "hls", "-hls_time", str(segment_seconds), "-hls_list_size", "0",
            "-hls_segment_type", "fmp4", "-hls_fmp4_init_filename", "init.mp4",
            "-hls_segment_filename", os.path.join(out_dir, "seg%05d.m4s"),
            playlist,
        ],
        check=True,
        env={**os.environ, "SVT_LOG": "1"},  # SVT-AV1 prints its settings otherwise
    )  # fmt: skip
    with open(os.path.join(out_dir, "init.mp4"), "rb") as f:
        init = f.read()
    result = []
    for segment in m3u8.load(playlist).segments:
        path = os.path.join(out_dir, segment.uri)
        with open(path, "rb") as f:
            data = f.read()
        combined = path[: -len(".m4s")] + ".mp4"
        with open(combined, "wb") as f:
            f.write(init + data)
        result.append((combined, datetime.timedelta(microseconds=round(segment.duration * 1e6))))
    return result


def add_to_store(base_dir, channel, quality, start, segments, type="full"):
    """Write `segments` (from `make_media` or `make_fmp4_media`) into a store, back
    to back from `start`; the container follows each file's extension.

    Returns the stored paths. `start` is an aware datetime.
    """
    paths = []
    for source, duration in segments:
        with open(source, "rb") as f:
            data = f.read()
        container = "mp4" if source.endswith(".mp4") else "ts"
        with SegmentWriter(base_dir, channel, quality, start, duration, container) as writer:
            writer.write(data)
            paths.append(writer.finish(type))
        start += duration
    return paths
