"""The downloader as a real process against the ffmpeg live origin."""

import datetime
import os
import signal
import subprocess
import sys
import time

import m3u8
import pytest

from common.segments import get_best_segments, hash_bytes, parse_segment_path
from devtools.teststream import TestStream
from tests.downloader.conftest import stored

SEGMENTS_PER_QUALITY = 9  # 18 s of two qualities
DEADLINE = 60  # seconds; generous for a loaded 2-core machine, never reached normally


def store_segments(base, quality):
    return [
        parse_segment_path(os.path.join(base, p))
        for p in stored(base)
        if p.startswith(f"test{os.sep}{quality}{os.sep}")
    ]


def watch_origin(stream, qualities, published):
    """Remember every segment the origin lists, with its bytes, before it is deleted."""
    for quality in qualities:
        text = stream.media_playlist(quality)
        for segment in m3u8.loads(text).segments if text else []:
            key = (quality, segment.program_date_time)
            if key not in published:
                path = os.path.join(stream.quality_dir(quality), segment.uri)
                with open(path, "rb") as f:  # ffmpeg renames whole files into place
                    published[key] = f.read()


@pytest.mark.slow
def test_records_a_live_ffmpeg_stream_exactly(tmp_path):
    base = str(tmp_path / "store")
    qualities = ("source", "144p")
    published = {}  # (quality, program date time) -> bytes
    log_path = tmp_path / "downloader.log"
    with TestStream(tmp_path / "origin", qualities=qualities) as stream, open(log_path, "w") as log:
        process = subprocess.Popen(
            [sys.executable, "-m", "downloader", f"test={stream.url}",
             "--qualities", ",".join(qualities), "--base-dir", base, "--metrics-port", "0"],
            stderr=log,
        )  # fmt: skip
        try:
            deadline = time.monotonic() + DEADLINE
            while any(len(store_segments(base, q)) < SEGMENTS_PER_QUALITY for q in qualities):
                watch_origin(stream, qualities, published)
                assert process.poll() is None, log_path.read_text()
                assert time.monotonic() < deadline, "downloader recorded too little"
                time.sleep(0.2)
            watch_origin(stream, qualities, published)
        finally:
            process.send_signal(signal.SIGTERM)
            process.wait(timeout=15)
    errors = log_path.read_text()
    assert process.returncode == 0, errors
    assert "Traceback" not in errors
    # Compare with what the origin published: its playlists' times and its files' bytes.
    for quality in qualities:
        segments = store_segments(base, quality)
        assert len(segments) >= SEGMENTS_PER_QUALITY
        for segment in segments:
            assert segment.type == "full"
            assert (quality, segment.start) in published, f"{segment.start} was not published"
            with open(segment.path, "rb") as f:
                data = f.read()
            assert data == published[quality, segment.start]
            assert hash_bytes(data) == segment.hash
            assert segment.duration == datetime.timedelta(seconds=2)
        best = get_best_segments(
            os.path.join(base, "test", quality), segments[0].start, segments[-1].end
        )
        assert None not in best and len(best) == len(segments)
    assert stored(base, include_temp=True) == stored(base)
