"""The downloader as a real process: against the ffmpeg live origin, and with real
concurrency for the soft and hard timeouts (see patched_getter.py for why)."""

import datetime
import json
import os
import signal
import subprocess
import sys
import time

import m3u8
import pytest

from common.segments import get_best_segments, hash_bytes, parse_segment_path
from common.teststream import TestStream
from tests.downloader.conftest import stored

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
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


def run_patched(origin, tmp_path, soft, hard):
    result = subprocess.run(
        [sys.executable, "-m", "tests.downloader.patched_getter",
         origin.media_url("ch", "source"), str(tmp_path), str(soft), str(hard)],
        cwd=ROOT, capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout), result.stderr


@pytest.fixture
def one_segment(origin):
    stream = origin.add_channel("ch")["source"]
    stream.publish(1)
    return stream


def test_soft_timeout_starts_a_parallel_attempt_that_wins(origin, one_segment, tmp_path):
    one_segment.fail(0, ("slow", 5))  # the first request hangs before answering
    samples, log = run_patched(origin, tmp_path, soft=0.2, hard=30)
    assert samples["downloader_segment_attempts:soft_timeout"] == 1
    assert samples["downloader_segments:full"] == 1
    assert "Soft timeout" in log
    [path] = stored(tmp_path)
    with open(tmp_path / path, "rb") as f:
        assert f.read() == one_segment.entries[0].data
    # The slow attempt was still waiting when the second finished: the origin
    # would log its 200 only after the 5 s sleep, which the getter did not wait for.
    assert origin.requests_for("/ch/source/0.ts") == ["slow", 200]


def test_hard_timeout_abandons_an_attempt_and_retries(origin, one_segment, tmp_path):
    one_segment.fail(0, ("trickle", 5))  # dribbles bytes, never finishes in time
    samples, log = run_patched(origin, tmp_path, soft=30, hard=0.3)
    assert "hard timeout" in log
    assert samples["downloader_errors:partial"] == 1  # the abandoned attempt's bytes
    assert samples["downloader_segment_attempts:retry"] == 1
    assert samples["downloader_segments:full"] == 1
    assert [p for p in stored(tmp_path, include_temp=True)] == stored(tmp_path)
    assert len(stored(tmp_path)) == 1 and "-full-" in stored(tmp_path)[0]
