"""Bounds on `/cut` (restreamer.cutlimits): small clients against the real server."""

import datetime
import time

import gevent
import gevent.socket
import pytest

from common.cut import cut
from common.segments import get_best_segments
from restreamer.app import create_app
from restreamer.cutlimits import CutLimits, Stalled
from restreamer.main import Server
from tests.common.cutcheck import child_processes, new_children_after, wrap_ffmpeg
from tests.conftest import MEDIA_START
from tests.media import add_to_store

from .test_routes import assert_one_line_error

NOW = MEDIA_START + datetime.timedelta(hours=2)
TIMEOUT = 30  # seconds, for anything a test waits on


def at(seconds):
    value = MEDIA_START + datetime.timedelta(seconds=seconds)
    return value.replace(tzinfo=None).isoformat(timespec="microseconds")


CUT = f"/cut/chan/source.ts?start={at(1)}&end={at(17)}"


@pytest.fixture
def base(tmp_path, media):
    """Three segments: a fast cut over them sends the first one's pieces, then
    waits for the last one's."""
    base = str(tmp_path / "store")
    add_to_store(base, "chan", "source", MEDIA_START, media[:3])
    return base


@pytest.fixture
def slow_last_piece(tmp_path, monkeypatch):
    """The last segment's piece takes 3 s longer: cuts stay running meanwhile,
    and a client gone in that time is noticed at the next write after it."""
    wrap_ffmpeg(tmp_path, monkeypatch, "sleep 3")


@pytest.fixture
def stalling_last_piece(tmp_path, monkeypatch):
    wrap_ffmpeg(tmp_path, monkeypatch, "exec sleep 60")


def serve(base, registry, **limits):
    limits = CutLimits(registry, **limits)
    server = Server(create_app(base, registry, now=lambda: NOW, cut_limits=limits), "127.0.0.1", 0)
    server.start()
    return server, limits


def open_cut(port, source="127.0.0.1"):
    """Send a cut request from `source`; returns (socket, status line, headers text)."""
    sock = gevent.socket.create_connection(("127.0.0.1", port), source_address=(source, 0))
    sock.settimeout(TIMEOUT)
    sock.sendall(f"GET {CUT} HTTP/1.1\r\nHost: x\r\n\r\n".encode())
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(65536)
        assert chunk, "connection closed before the headers"
        data += chunk
    head = data.split(b"\r\n\r\n")[0].decode()
    return sock, head.split("\r\n")[0], head


def wait_until(condition):
    deadline = time.monotonic() + TIMEOUT
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        gevent.sleep(0.02)


@pytest.mark.slow
def test_beyond_the_node_pool_is_503_with_retry_after(base, registry, slow_last_piece):
    server, limits = serve(base, registry, node_slots=1, client_slots=5)
    try:
        first, status, _ = open_cut(server.port)
        assert status == "HTTP/1.1 200 OK"
        second, status, head = open_cut(server.port)
        assert status.startswith("HTTP/1.1 503")
        assert "Retry-After: 5" in head
        second.close()
        first.close()
        # The slot comes back when the first client goes away.
        wait_until(lambda: limits.running == 0)
        third, status, _ = open_cut(server.port)
        assert status == "HTTP/1.1 200 OK"
        third.close()
        wait_until(lambda: limits.running == 0)
    finally:
        server.close(timeout=1)
    assert registry.get_sample_value("cuts_refused_total", {"reason": "node_busy"}) == 1


@pytest.mark.slow
def test_beyond_a_clients_share_is_429_and_others_still_cut(base, registry, slow_last_piece):
    server, limits = serve(base, registry, node_slots=4, client_slots=1)
    try:
        mine, status, _ = open_cut(server.port)
        assert status == "HTTP/1.1 200 OK"
        again, status, head = open_cut(server.port)
        assert status.startswith("HTTP/1.1 429") and "Retry-After: 5" in head
        theirs, status, _ = open_cut(server.port, source="127.0.0.2")
        assert status == "HTTP/1.1 200 OK"
        for sock in (mine, again, theirs):
            sock.close()
        wait_until(lambda: limits.running == 0)
    finally:
        server.close(timeout=1)
    assert registry.get_sample_value("cuts_refused_total", {"reason": "client_busy"}) == 1


def test_a_long_full_cut_is_refused(base, registry):
    limits = CutLimits(registry, max_full=datetime.timedelta(seconds=10))
    client = create_app(base, registry, now=lambda: NOW, cut_limits=limits).test_client()
    body = assert_one_line_error(client.get(CUT + "&type=full"), 400)
    assert "at most" in body
    assert registry.get_sample_value("cuts_refused_total", {"reason": "too_long"}) == 1
    # Nothing was started, and nothing is held.
    assert limits.running == 0


@pytest.mark.slow
def test_a_reader_that_stops_loses_its_cut(base, registry, stalling_last_piece):
    limits = CutLimits(registry, stall_timeout=1)
    store = f"{base}/chan/source"
    start = MEDIA_START + datetime.timedelta(seconds=1)
    end = MEDIA_START + datetime.timedelta(seconds=17)
    before = child_processes()
    chunks = cut(get_best_segments(store, start, end), start, end, registry=registry)
    first = next(chunks)
    limits.acquire("127.0.0.1")
    body, close = limits.stream("127.0.0.1", first, chunks)
    assert next(body) == first
    assert child_processes() - before, "expected ffmpeg running"
    # The server is stuck writing `first` to a client that reads nothing: the
    # watchdog ends the cut (its ffmpegs) without waiting for the write.
    assert new_children_after(before, timeout=TIMEOUT) == set()
    with pytest.raises(Stalled):
        next(body)
    close()
    assert limits.running == 0
    assert registry.get_sample_value("cuts_refused_total", {"reason": "stalled"}) == 1
