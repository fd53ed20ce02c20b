"""The downloader against live fragmented-MP4 streams from ffmpeg's own HLS muxer.

One ffmpeg per codec (H.264, HEVC, AV1) writes a live fMP4 playlist with
program date times, closed GOPs and 1 s segments at a tiny resolution; a
plain HTTP server serves the directory, as any static origin would. Every
stored file must be the init section followed by that segment's bytes, carry
its hash, and decode on its own.
"""

import functools
import http.server
import os
import subprocess
import threading

import gevent
import m3u8
import pytest

from common.segments import hash_bytes
from tests.downloader.conftest import make_manager, segments_in, stored
from tests.media import FMP4_CODECS
from tests.util import wait_for

CODECS = {"h264": "h264", "hevc": "hevc", "av1": "av1"}  # ours -> ffprobe's codec_name
SECONDS = 8
RATE = 15
WANTED = 4  # segments per codec that must be on disk


def start_encoder(out_dir, codec):
    os.makedirs(out_dir)
    return subprocess.Popen(
        [
            "ffmpeg", "-hide_banner", "-nostdin", "-v", "error", "-re",
            "-f", "lavfi", "-i", f"testsrc2=size=160x90:rate={RATE}",
            "-f", "lavfi", "-i", "sine=frequency=440:sample_rate=48000",
            "-t", str(SECONDS), *FMP4_CODECS[codec], "-pix_fmt", "yuv420p",
            "-g", str(RATE), "-keyint_min", str(RATE), "-sc_threshold", "0",
            "-c:a", "aac", "-b:a", "32k",
            "-f", "hls", "-hls_time", "1", "-hls_list_size", "0",
            "-hls_flags", "program_date_time+temp_file+independent_segments",
            "-hls_segment_type", "fmp4", "-hls_fmp4_init_filename", "init.mp4",
            "-hls_segment_filename", os.path.join(out_dir, "seg%03d.m4s"),
            os.path.join(out_dir, "index.m3u8"),
        ],
        env={**os.environ, "SVT_LOG": "1"},
    )  # fmt: skip


def probe(path):
    result = subprocess.run(
        ["ffprobe", "-v", "error", "-select_streams", "v:0", "-count_frames",
         "-show_entries", "stream=codec_name,nb_read_frames", "-of", "csv=p=0", path],
        capture_output=True, text=True, check=True,
    )  # fmt: skip
    codec, frames = result.stdout.strip().split(",")
    return codec, int(frames), result.stderr


@pytest.mark.slow
def test_records_live_fmp4_in_every_codec(tmp_path, metrics, fast):
    origin_dir = tmp_path / "origin"
    base = tmp_path / "store"
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=origin_dir)
    handler.log_message = lambda *args: None
    os.makedirs(origin_dir)
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    server.daemon_threads = True
    threading.Thread(
        target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
    ).start()
    url = f"http://127.0.0.1:{server.server_address[1]}"
    encoders = [start_encoder(origin_dir / codec, codec) for codec in CODECS]
    managers = []
    try:
        wait_for(
            lambda: all((origin_dir / c / "index.m3u8").exists() for c in CODECS),
            timeout=30,
            what="ffmpeg's first playlists",
        )
        for codec in CODECS:
            managers.append(
                make_manager(None, metrics, base, url=f"{url}/{codec}/index.m3u8", channel=codec)
            )
        greenlets = [gevent.spawn(m.run) for m in managers]
        wait_for(
            lambda: all(len(segments_in(base, codec)) >= WANTED for codec in CODECS),
            timeout=60,
            what=f"{WANTED} segments of each codec",
        )
    finally:
        for manager in managers:
            manager.stop()
        for encoder in encoders:
            encoder.kill()
            encoder.wait()
        server.shutdown()
        server.server_close()
    gevent.joinall(greenlets, timeout=10)
    assert stored(base, include_temp=True) == stored(base)
    for codec, name in CODECS.items():
        with open(origin_dir / codec / "init.mp4", "rb") as f:
            init = f.read()
        published = {}  # program date time -> init section + segment, as ffmpeg wrote them
        for segment in m3u8.load(str(origin_dir / codec / "index.m3u8")).segments:
            with open(origin_dir / codec / segment.uri, "rb") as f:
                published[segment.program_date_time] = init + f.read()
        segments = segments_in(base, codec)
        assert len(segments) >= WANTED
        for segment in segments:
            assert segment.type == "full" and segment.container == "mp4"
            with open(segment.path, "rb") as f:
                data = f.read()
            assert hash_bytes(data) == segment.hash
            # Filed under its PDT (snapped by at most the join tolerance).
            matches = [
                d for t, d in published.items() if abs((t - segment.start).total_seconds()) < 0.011
            ]
            assert matches == [data]
            found, frames, errors = probe(segment.path)
            assert (found, errors) == (name, "")
            assert 0 < frames <= RATE
