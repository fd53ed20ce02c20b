"""Real players as judges: ffprobe and ffmpeg read playlists from a real server.

The server is the service's own `Server` (gevent's WSGI server) on 127.0.0.1,
port 0, in this process; ffprobe and ffmpeg run through `gevent.subprocess`, so
the hub keeps serving them while the test waits for them to finish.
"""

import datetime
import json
import re
import signal
import sys
import urllib.parse

import gevent
import gevent.socket
import gevent.subprocess
import pytest

from restreamer.app import create_app
from restreamer.main import Server
from restreamer.params import format_time
from tests.conftest import MEDIA_START
from tests.media import add_to_store

FRAME = 1 / 30  # seconds: the test media's frame duration
SEGMENT_SECONDS = 6
NOW = MEDIA_START + datetime.timedelta(days=1)
STARTUP_TIMEOUT = 20  # seconds: imports on a loaded 2-core machine


@pytest.fixture(scope="module")
def server(media, tmp_path_factory):
    """A store holding the media in two qualities, and one copy with a hole, served."""
    base = str(tmp_path_factory.mktemp("player-store"))
    add_to_store(base, "chan", "source", MEDIA_START, media)
    add_to_store(base, "chan", "480p", MEDIA_START, media)
    # The third 6 s segment missing: a hole from 12 s to 18 s.
    add_to_store(base, "holes", "source", MEDIA_START, media[:2])
    add_to_store(base, "holes", "source", MEDIA_START + datetime.timedelta(seconds=18), media[3:])
    app = create_app(base, now=lambda: NOW)
    server = Server(app, "127.0.0.1", 0)
    port = server.start()
    server.app = app
    server.url = f"http://127.0.0.1:{port}"
    yield server
    server.close(timeout=1)


def url(server, path, start, end):
    query = urllib.parse.urlencode({"start": format_time(start), "end": format_time(end)})
    return f"{server.url}{path}?{query}"


def run(command):
    result = gevent.subprocess.run(command, capture_output=True, timeout=60)
    assert result.returncode == 0, result.stderr.decode(errors="replace")
    return result


def ffprobe(target, *extra):
    result = run(
        ["ffprobe", "-v", "error", "-of", "json", "-show_format", "-show_streams", *extra, target]
    )
    return json.loads(result.stdout)


def seconds(n):
    return datetime.timedelta(seconds=n)


def test_media_playlist_across_an_hour(server, media):
    playlist = url(server, "/playlist/chan/source.m3u8", MEDIA_START, MEDIA_START + seconds(30))
    probe = ffprobe(playlist)
    codecs = sorted(stream["codec_name"] for stream in probe["streams"])
    assert codecs == ["aac", "h264"]
    expected = sum(duration.total_seconds() for _, duration in media)
    assert abs(float(probe["format"]["duration"]) - expected) <= FRAME


def test_master_playlist(server, media):
    playlist = url(server, "/playlist/chan.m3u8", MEDIA_START, MEDIA_START + seconds(30))
    probe = ffprobe(playlist)
    # Two variants, each a video and an audio stream.
    assert len(probe["streams"]) == 4
    assert sorted(stream["codec_name"] for stream in probe["streams"]) == [
        "aac", "aac", "h264", "h264",
    ]  # fmt: skip
    expected = sum(duration.total_seconds() for _, duration in media)
    assert abs(float(probe["format"]["duration"]) - expected) <= FRAME
    # What players choose a variant by: read from the media itself (H.264 High
    # at level 1.3 for 320x180, AAC LC).
    text = server.app.test_client().get(playlist[len(server.url) :]).get_data(as_text=True)
    assert text.count('RESOLUTION=320x180,CODECS="avc1.64000d,mp4a.40.2"') == 2


@pytest.mark.parametrize(
    "path, offsets",
    [
        ("/playlist/chan/source.m3u8", (0, 30)),
        # Mid-segment ends: the playlist has the covering segments.
        ("/playlist/chan/source.m3u8", (8.5, 19.25)),
        ("/playlist/chan.m3u8", (0, 30)),
        ("/playlist/holes/source.m3u8", (0, 30)),
    ],
)
def test_ffmpeg_reads_without_errors(server, path, offsets):
    playlist = url(
        server, path, MEDIA_START + seconds(offsets[0]), MEDIA_START + seconds(offsets[1])
    )
    result = run(
        ["ffmpeg", "-nostdin", "-v", "error", "-i", playlist, "-c", "copy", "-f", "null", "-"]
    )
    assert result.stderr == b""


def test_hole_is_left_out(server):
    playlist = url(server, "/playlist/holes/source.m3u8", MEDIA_START, MEDIA_START + seconds(30))
    probe = ffprobe(playlist, "-count_frames", "-select_streams", "v")
    (video,) = probe["streams"]
    frames = int(video["nb_read_frames"])
    # 30 s range minus the 6 s hole, at 30 frames a second.
    assert frames == (30 - SEGMENT_SECONDS) * 30


def test_service_serves_and_stops_on_sigterm(tmp_path):
    """`python -m restreamer` serves the store over real HTTP and exits 0 on SIGTERM."""
    store = tmp_path / "store"
    (store / "chan" / "source").mkdir(parents=True)
    process = gevent.subprocess.Popen(
        [sys.executable, "-m", "restreamer", "--base-dir", str(store), "--host", "127.0.0.1",
         "--port", "0"],
        stderr=gevent.subprocess.PIPE,
    )  # fmt: skip
    try:
        port = None
        with gevent.Timeout(STARTUP_TIMEOUT):
            for line in process.stderr:
                match = re.search(rb"Serving on 127.0.0.1:(\d+)", line)
                if match:
                    port = int(match.group(1))
                    break
        assert port, "the restreamer did not say where it serves"
        sock = gevent.socket.create_connection(("127.0.0.1", port))
        sock.sendall(b"GET /files/chan HTTP/1.0\r\n\r\n")
        with gevent.Timeout(STARTUP_TIMEOUT):
            response = b""
            while chunk := sock.recv(4096):
                response += chunk
        sock.close()
        assert response.endswith(b'\r\n\r\n["source"]\n')
        assert b"Access-Control-Allow-Origin: *" in response
        process.send_signal(signal.SIGTERM)
        with gevent.Timeout(STARTUP_TIMEOUT):
            assert process.wait() == 0
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
