"""Test helpers for the backfiller: fake segments in a store, and a peer under our control.

`FakePeer` is a WSGI app speaking the restreamer's listing and segment routes
(`/files/...`, `/segments/...`) honestly from a store directory, except for the paths a test
overrides with a hostile handler: wrong bytes, bad JSON, hanging or truncated
responses. Served by gevent's WSGIServer on 127.0.0.1, port 0 (`serve`).
"""

import datetime
import json
import os
import secrets
import urllib.parse

import gevent
import gevent.event
import gevent.pywsgi

from common.segments import SegmentWriter, hash_bytes, segment_name
from tests import util

TWO_SECONDS = datetime.timedelta(seconds=2)


# A tiny MPEG-TS stream, built here so that thousands of test segments cost no
# ffmpeg run: a PAT, a PMT naming one H.264 video PID, then one PES a frame at
# FRAME_RATE with a PTS each. The backfiller checks container and timeline,
# never decodes, so this is all it needs (tests/backfiller/test_media.py also
# checks it against segments made by ffmpeg).
FRAME_RATE = 30
VIDEO_PID, PMT_PID = 0x100, 0x1000


def _crc32_mpeg(data):
    crc = 0xFFFFFFFF
    for byte in data:
        crc ^= byte << 24
        for _ in range(8):
            crc = ((crc << 1) ^ 0x104C11DB7) if crc & 0x80000000 else crc << 1
    return crc & 0xFFFFFFFF


def _packet(pid, payload, counter=0):
    header = bytes([0x47, 0x40 | pid >> 8, pid & 0xFF, 0x10 | counter & 0x0F])
    return (header + payload + b"\xff" * 184)[:188]


def _section(body):
    """A PSI section (pointer field first) from its table id and fields, with length and CRC."""
    length = len(body) - 1 + 4
    section = body[:1] + bytes([0xB0 | length >> 8, length & 0xFF]) + body[1:]
    return b"\x00" + section + _crc32_mpeg(section).to_bytes(4, "big")


def _pts(value):
    return bytes([
        0x21 | (value >> 29) & 0x0E, (value >> 22) & 0xFF, (value >> 14) & 0xFE | 1,
        (value >> 7) & 0xFF, (value << 1) & 0xFE | 1,
    ])  # fmt: skip


def media(tag=b"", duration=TWO_SECONDS, first_pts=90000):
    """A valid MPEG-TS segment lasting `duration`, its frames carrying `tag`."""
    frames = max(1, round(duration.total_seconds() * FRAME_RATE))
    tick = 90000 // FRAME_RATE
    pat = _section(bytes([0x00, 0, 1, 0xC1, 0, 0, 0, 1, 0xE0 | PMT_PID >> 8, PMT_PID & 0xFF]))
    pmt = _section(bytes([
        0x02, 0, 1, 0xC1, 0, 0, 0xE0 | VIDEO_PID >> 8, VIDEO_PID & 0xFF, 0xF0, 0,
        0x1B, 0xE0 | VIDEO_PID >> 8, VIDEO_PID & 0xFF, 0xF0, 0,
    ]))  # fmt: skip
    packets = [_packet(0, pat), _packet(PMT_PID, pmt)]
    for i in range(frames):
        pes = b"\x00\x00\x01\xe0\x00\x00\x80\x80\x05" + _pts(first_pts + i * tick) + tag[:160]
        packets.append(_packet(VIDEO_PID, pes, i))
    return b"".join(packets)


def put_segment(base_dir, channel, quality, start, data=None, duration=TWO_SECONDS, type="full"):
    """Write a segment into a store: `data`, or a valid one of its duration with random frames."""
    if data is None:
        data = media(secrets.token_bytes(16), duration)
    with SegmentWriter(str(base_dir), channel, quality, start, duration) as writer:
        writer.write(data)
        return writer.finish(type)


def fake_name(start, data, duration=TWO_SECONDS, type="full"):
    return segment_name(start, duration, type, hash_bytes(data))


def store_files(base_dir):
    """{relative path: bytes} of every file under base_dir (temp and dotfiles included).

    A file renamed or removed while we look (a backfiller at work) is left out.
    """
    files = {}
    for root, _, names in os.walk(base_dir):
        for name in names:
            path = os.path.join(root, name)
            try:
                with open(path, "rb") as f:
                    files[os.path.relpath(path, base_dir)] = f.read()
            except FileNotFoundError:
                continue
    return files


def respond(status=200, body=b"", headers=()):
    """A handler answering with a fixed status, body and headers."""

    def handler(environ, start_response):
        start_response(f"{status} X", [("Content-Type", "application/octet-stream"), *headers])
        return [body]

    return handler


def respond_json(value):
    return respond(200, json.dumps(value).encode(), [("Content-Type", "application/json")])


class FakePeer:
    """A restreamer-like peer: honest from `store`, hostile where `overrides` says.

    `overrides` maps a decoded request path (`/files/chan/source`) to a WSGI
    handler. `requests` records every path asked. Handlers that hang wait on
    `release` (set at teardown) so no server greenlet outlives its test.
    """

    def __init__(self, store=None):
        self.store = None if store is None else str(store)
        self.overrides = {}
        self.requests = []
        self.release = gevent.event.Event()

    def hang(self, environ, start_response):
        """Send nothing until released."""
        self.release.wait(30)
        start_response("503 Gone", [])
        return [b""]

    def trickle(self, data, first=1):
        """Send headers and the `first` bytes, then stall until released."""

        def handler(environ, start_response):
            start_response("200 OK", [("Content-Length", str(len(data)))])
            yield data[:first]
            self.release.wait(30)

        return handler

    def truncated(self, data):
        """Promise `data` in Content-Length but send half of it and close."""

        def handler(environ, start_response):
            headers = [("Content-Length", str(len(data))), ("Connection", "close")]
            start_response("200 OK", headers)
            return [data[: len(data) // 2]]

        return handler

    def __call__(self, environ, start_response):
        path = urllib.parse.unquote(environ["PATH_INFO"])
        self.requests.append(path)
        if path in self.overrides:
            return self.overrides[path](environ, start_response)
        return self.honest(path, start_response)

    def honest(self, path, start_response):
        parts = path.strip("/").split("/")
        if self.store is None or any(p.startswith(".") or not p for p in parts):
            return respond(404)(None, start_response)
        local = os.path.join(self.store, *parts[1:])
        if parts[0] == "files" and len(parts) in (3, 4) and os.path.isdir(local):
            names = sorted(
                n for n in os.listdir(local) if not n.startswith(".") and "-temp-" not in n
            )
            return respond_json(names)(None, start_response)
        if parts[0] == "segments" and len(parts) == 5 and os.path.isfile(local):
            with open(local, "rb") as f:
                return respond(200, f.read())(None, start_response)
        return respond(404)(None, start_response)


class Servers:
    """Serves WSGI apps on 127.0.0.1 ephemeral ports; `close()` stops them all."""

    def __init__(self):
        self.servers = []
        self.peers = []

    def serve(self, app):
        server = gevent.pywsgi.WSGIServer(("127.0.0.1", 0), app, log=None, error_log=None)
        server.start()
        self.servers.append(server)
        if isinstance(app, FakePeer):
            self.peers.append(app)
        return f"http://127.0.0.1:{server.server_port}"

    def close(self):
        for peer in self.peers:
            peer.release.set()
        for server in self.servers:
            server.stop(timeout=1)
        gevent.sleep(0)


def wait_for(condition, timeout=10, interval=0.01):
    """`tests.util.wait_for`, polling faster (these conditions are cheap)."""
    return util.wait_for(condition, timeout, interval)
