"""`/cut`: the route over common.cut, with real media (the cuts themselves are
judged in tests/common/test_cut.py; here: parameters, refusals, streaming)."""

import datetime
import socket
import time

import gevent
import gevent.pywsgi
import gevent.subprocess
import pytest

from restreamer.app import create_app
from restreamer.main import Server
from tests.common.cutcheck import (
    child_processes,
    decode_warnings,
    new_children_after,
    packets,
    wrap_ffmpeg,
    write_cut,
)
from tests.conftest import MEDIA_START
from tests.media import add_to_store

from .test_routes import assert_one_line_error

NOW = MEDIA_START + datetime.timedelta(hours=2)


def at(seconds):
    value = MEDIA_START + datetime.timedelta(seconds=seconds)
    return value.replace(tzinfo=None).isoformat(timespec="microseconds")


@pytest.fixture
def cut_store(tmp_path, media):
    """The shared media with a hole: segments at 0-12 s and 18-30 s."""
    base = str(tmp_path / "store")
    add_to_store(base, "chan", "source", MEDIA_START, media[:2])
    add_to_store(base, "chan", "source", MEDIA_START + datetime.timedelta(seconds=18), media[3:])
    return base


@pytest.fixture
def cut_client(cut_store, registry):
    return create_app(cut_store, registry, now=lambda: NOW).test_client()


@pytest.mark.slow  # ffmpeg cuts real media
def test_cut_streams_the_range(cut_client, tmp_path, registry):
    response = cut_client.get(f"/cut/chan/source.ts?start={at(3.25)}&end={at(10.5)}")
    assert response.status_code == 200, response.data
    assert response.content_type == "video/mp2t"
    assert response.is_streamed
    out = write_cut(tmp_path / "out.ts", response.iter_encoded())
    assert decode_warnings(out) == ""
    video = sorted(p[0] for p in packets(out)["video"])
    assert abs(video[-1] + 3000 - video[0] - 7.25 * 90000) <= 3000
    assert (
        registry.get_sample_value("cuts_total", {"type": "fast", "method": "fast", "outcome": "ok"})
        == 1
    )


@pytest.mark.slow  # ffmpeg cuts real media
def test_holes_are_406_unless_allowed(cut_client, tmp_path):
    url = f"/cut/chan/source.ts?start={at(9)}&end={at(20)}"
    body = assert_one_line_error(cut_client.get(url), 406)
    assert "holes" in body
    response = cut_client.get(url + "&allow_holes=true&type=full")
    assert response.status_code == 200
    out = write_cut(tmp_path / "out.ts", response.iter_encoded())
    assert decode_warnings(out) == ""
    video = sorted(p[0] for p in packets(out)["video"])
    # 11 s asked, 6 s of it a hole: 5 s of video.
    assert abs(video[-1] + 3000 - video[0] - 5 * 90000) <= 3000


@pytest.mark.parametrize(
    "query, status, reason",
    [
        (f"start={at(40)}&end={at(50)}&allow_holes=true", 406, "no content"),
        # Between two frames: only the probe can tell, before the status is sent.
        pytest.param(f"start={at(7.01)}&end={at(7.02)}", 406, "no frame", marks=pytest.mark.slow),
        (f"start={at(3)}&end={at(5)}&type=slow", 400, "bad type"),
        (f"start={at(5)}&end={at(3)}", 400, "must be after start"),
        (f"start={at(3)}", 400, "end is required"),
        (f"start=yesterday&end={at(5)}", 400, "bad start"),
        (f"start={at(3)}&end={at(5)}&allow_holes=maybe", 400, "bad allow_holes"),
        ("start=0001-01-01T00:00:00&end=0001-01-01T00:00:05", 400, "outside the years"),
        ("start=9999-12-31T23:59:50&end=9999-12-31T23:59:55", 400, "outside the years"),
    ],
)
def test_bad_cuts_are_refused(cut_client, query, status, reason):
    body = assert_one_line_error(cut_client.get(f"/cut/chan/source.ts?{query}"), status)
    assert reason in body


def test_unknown_channel_is_404(cut_client):
    assert_one_line_error(cut_client.get(f"/cut/nochan/source.ts?start={at(3)}&end={at(5)}"), 404)


@pytest.mark.slow  # ffmpeg cuts real media
def test_client_going_away_kills_ffmpeg(cut_store, registry):
    app = create_app(cut_store, registry, now=lambda: NOW)
    server = gevent.pywsgi.WSGIServer(("127.0.0.1", 0), app, log=None)
    server.start()
    try:
        before = child_processes()
        sock = socket.create_connection(("127.0.0.1", server.server_port))
        query = f"start={at(1)}&end={at(29)}&type=full&allow_holes=true"
        sock.sendall(f"GET /cut/chan/source.ts?{query} HTTP/1.1\r\nHost: x\r\n\r\n".encode())
        assert sock.recv(65536).startswith(b"HTTP/1.1 200")
        assert child_processes() - before, "expected ffmpeg running"
        sock.close()
        # The server notices at its next write; give it two seconds in all.
        assert new_children_after(before, timeout=2) == set()
        cancelled = {"type": "full", "method": "full", "outcome": "cancelled"}
        deadline = time.monotonic() + 1
        while (
            not registry.get_sample_value("cuts_total", cancelled) and time.monotonic() < deadline
        ):
            gevent.sleep(0.02)
        assert registry.get_sample_value("cuts_total", cancelled) == 1
    finally:
        server.stop()


def test_406_times_are_written_with_z(cut_client):
    body = assert_one_line_error(
        cut_client.get(f"/cut/chan/source.ts?start={at(9)}&end={at(20)}"), 406
    )
    assert "+00:00" not in body
    assert f"{at(9)}Z to {at(20)}Z" in body


@pytest.fixture
def failing_last_piece(tmp_path, monkeypatch):
    """The fast cut's remux of the last segment writes a little, then fails."""
    wrap_ffmpeg(tmp_path, monkeypatch, "head -c 18800 /dev/zero; exit 1")


@pytest.mark.slow
def test_a_cut_failing_midway_is_a_failed_transfer(tmp_path, media, registry, failing_last_piece):
    # The status (200), the first segment's pieces and the copied middle one are
    # out when the last piece fails: the response must then end without its
    # final chunk, so that a client (here curl) reports a failed transfer
    # rather than a short file that looks whole.
    base = str(tmp_path / "store")
    add_to_store(base, "chan", "source", MEDIA_START, media[:3])
    server = Server(create_app(base, registry, now=lambda: NOW), "127.0.0.1", 0)
    port = server.start()
    try:
        url = f"http://127.0.0.1:{port}/cut/chan/source.ts?start={at(1)}&end={at(17)}"
        curl = gevent.subprocess.run(
            ["curl", "-sS", "-o", "/dev/null", "-w", "%{http_code}", url],
            capture_output=True,
            timeout=60,
        )
    finally:
        server.close(timeout=1)
    assert curl.stdout == b"200"
    # 18: transfer closed with outstanding read data; 56: failure receiving data.
    assert curl.returncode in (18, 56), curl.stderr
    error = {"type": "fast", "method": "fast", "outcome": "error"}
    assert registry.get_sample_value("cuts_total", error) == 1


@pytest.fixture
def stalling_last_piece(tmp_path, monkeypatch):
    """The fast cut's remux of the last segment hangs: the cut is still running."""
    wrap_ffmpeg(tmp_path, monkeypatch, "exec sleep 60")


@pytest.mark.slow
def test_a_cut_cut_short_by_the_server_stopping_is_a_failed_transfer(
    tmp_path, media, registry, stalling_last_piece
):
    base = str(tmp_path / "store")
    add_to_store(base, "chan", "source", MEDIA_START, media[:3])
    server = Server(create_app(base, registry, now=lambda: NOW), "127.0.0.1", 0)
    port = server.start()
    out = tmp_path / "out.ts"
    url = f"http://127.0.0.1:{port}/cut/chan/source.ts?start={at(1)}&end={at(17)}"
    before = child_processes()
    curl = gevent.subprocess.Popen(
        ["curl", "-sS", "-o", str(out), url], stderr=gevent.subprocess.PIPE
    )
    try:
        deadline = time.monotonic() + 30
        while not (out.exists() and out.stat().st_size) and time.monotonic() < deadline:
            gevent.sleep(0.05)
        assert out.stat().st_size, "expected the first bytes"
        server.close(timeout=0.5)
        curl.wait(timeout=30)
    finally:
        if curl.poll() is None:
            curl.kill()
    # 18: transfer closed with outstanding read data; 56: failure receiving data.
    assert curl.returncode in (18, 56), curl.stderr.read()
    assert new_children_after(before | {curl.pid}, timeout=5) == set()
