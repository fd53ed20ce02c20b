"""The downloader as a real process against the ffmpeg live origin."""

import datetime
import os
import signal
import subprocess
import sys
import time

import m3u8

from common.segments import get_best_segments, hash_bytes, parse_segment_path
from common.teststream import TestStream
from tests.downloader.conftest import stored

SEGMENTS_PER_QUALITY = 9  # 18 s of two qualities
DEADLINE = 60  # seconds; generous for a loaded 2-core machine, never reached normally


def store_segments(base, quality):
    return [
        parse_segment_path(os.path.join(base, p))
        for p in stored(base)
        if p.startswith(f"test{os.sep}{quality}{os.sep}")
    ]


def test_records_a_live_ffmpeg_stream_exactly(tmp_path):
    base = str(tmp_path / "store")
    qualities = ("source", "144p")
    with TestStream(tmp_path / "origin", qualities=qualities) as stream:
        process = subprocess.Popen(
            [sys.executable, "-m", "downloader", f"test={stream.url}",
             "--qualities", ",".join(qualities), "--base-dir", base, "--metrics-port", "0"],
            stderr=subprocess.PIPE, text=True,
        )  # fmt: skip
        try:
            deadline = time.monotonic() + DEADLINE
            while any(len(store_segments(base, q)) < SEGMENTS_PER_QUALITY for q in qualities):
                assert process.poll() is None, process.stderr.read()
                assert time.monotonic() < deadline, "downloader recorded too little"
                time.sleep(0.2)
        finally:
            process.send_signal(signal.SIGTERM)
            _, errors = process.communicate(timeout=15)
        assert process.returncode == 0, errors
        assert "Traceback" not in errors
        # Compare with what the origin published: its playlists and segment files.
        for quality in qualities:
            playlist = m3u8.loads(stream.media_playlist(quality))
            published = {s.program_date_time: s.uri for s in playlist.segments}
            segments = store_segments(base, quality)
            assert len(segments) >= SEGMENTS_PER_QUALITY
            for segment in segments:
                assert segment.type == "full"
                assert segment.start in published, f"{segment.start} was not published"
                with open(segment.path, "rb") as f:
                    data = f.read()
                with open(
                    os.path.join(stream.quality_dir(quality), published[segment.start]), "rb"
                ) as f:
                    assert data == f.read()
                assert hash_bytes(data) == segment.hash
                assert segment.duration == datetime.timedelta(seconds=2)
            best = get_best_segments(
                os.path.join(base, "test", quality), segments[0].start, segments[-1].end
            )
            assert None not in best and len(best) == len(segments)
    assert stored(base, include_temp=True) == stored(base)
