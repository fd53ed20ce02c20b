"""The service's HTTP server: gevent's WSGI server with sendfile for segments."""

import hashlib
import os

import gevent
import gevent.socket
import pytest

from restreamer.app import create_app
from restreamer.main import Server

from .conftest import NOW, at, write_segment

TIMEOUT = 10  # seconds


@pytest.fixture
def served(store_dir):
    server = Server(create_app(store_dir, now=lambda: NOW), "127.0.0.1", 0)
    port = server.start()
    yield port
    server.close(timeout=1)


class Connection:
    """One keep-alive HTTP/1.1 connection, reading responses by Content-Length."""

    def __init__(self, port):
        self.sock = gevent.socket.create_connection(("127.0.0.1", port))
        self.buffer = b""

    def _fill(self):
        chunk = self.sock.recv(1 << 20)
        assert chunk, "connection closed early"
        self.buffer += chunk

    def request(self, method, target, headers=()):
        lines = [f"{method} {target} HTTP/1.1", "Host: test", *headers, "", ""]
        self.sock.sendall("\r\n".join(lines).encode())
        with gevent.Timeout(TIMEOUT):
            while b"\r\n\r\n" not in self.buffer:
                self._fill()
            head, self.buffer = self.buffer.split(b"\r\n\r\n", 1)
            status_line, *header_lines = head.decode("latin-1").split("\r\n")
            response_headers = {}
            for line in header_lines:
                name, _, value = line.partition(":")
                response_headers[name.strip().lower()] = value.strip()
            length = 0 if method == "HEAD" else int(response_headers.get("content-length", 0))
            while len(self.buffer) < length:
                self._fill()
            body, self.buffer = self.buffer[:length], self.buffer[length:]
        return int(status_line.split()[1]), response_headers, body

    def close(self):
        self.sock.close()


def test_segments_over_one_keep_alive_connection(served, store_dir):
    data = os.urandom(3_000_001)
    path = write_segment(store_dir, "chan", "source", at(14, 1, 0), 2, data=data)
    target = "/segments/chan/source/2026-11-28T14/" + os.path.basename(path).replace(":", "%3A")
    connection = Connection(served)
    try:
        # Whole, ranged, headers only, and whole again: each response framed
        # exactly, or the next one on the connection would be garbled.
        status, headers, body = connection.request("GET", target)
        assert status == 200 and hashlib.sha256(body).digest() == hashlib.sha256(data).digest()
        assert headers["content-type"] == "video/mp2t"
        assert headers["access-control-allow-origin"] == "*"
        status, headers, body = connection.request("GET", target, ["Range: bytes=1000000-1999999"])
        assert status == 206 and body == data[1_000_000:2_000_000]
        status, headers, body = connection.request("GET", target, ["Range: bytes=-1"])
        assert status == 206 and body == data[-1:]
        status, headers, body = connection.request("HEAD", target)
        assert status == 200 and headers["content-length"] == str(len(data)) and body == b""
        status, headers, body = connection.request("GET", "/files/chan")
        assert (status, body) == (200, b'["480p","source"]\n')
        status, headers, body = connection.request("GET", target)
        assert status == 200 and body == data
    finally:
        connection.close()


def test_many_clients_at_once(served, store_dir):
    data = os.urandom(500_000)
    path = write_segment(store_dir, "chan", "source", at(14, 1, 0), 2, data=data)
    target = "/segments/chan/source/2026-11-28T14/" + os.path.basename(path).replace(":", "%3A")

    def fetch():
        connection = Connection(served)
        try:
            return [connection.request("GET", target)[2] == data for _ in range(3)]
        finally:
            connection.close()

    greenlets = [gevent.spawn(fetch) for _ in range(8)]
    gevent.joinall(greenlets, timeout=TIMEOUT, raise_error=True)
    assert [g.value for g in greenlets] == [[True] * 3] * 8


def test_client_leaving_mid_segment(served, store_dir):
    """A client that hangs up mid-body: the body is closed, the server carries on."""
    data = os.urandom(30_000_000)
    path = write_segment(store_dir, "chan", "source", at(14, 1, 0), 2, data=data)
    target = "/segments/chan/source/2026-11-28T14/" + os.path.basename(path).replace(":", "%3A")
    sock = gevent.socket.create_connection(("127.0.0.1", served))
    sock.sendall(f"GET {target} HTTP/1.1\r\nHost: test\r\n\r\n".encode())
    with gevent.Timeout(TIMEOUT):
        assert sock.recv(65536).startswith(b"HTTP/1.1 200")
    sock.close()
    connection = Connection(served)
    try:
        with gevent.Timeout(TIMEOUT):
            while True:
                _, _, body = connection.request("GET", "/metrics")
                gauge = (
                    b'http_requests_in_flight_segment{channel="chan",method="GET",'
                    b'quality="source"} 0.0'
                )
                if gauge in body:
                    break
                gevent.sleep(0.05)
        status, _, body = connection.request("GET", target, ["Range: bytes=0-99"])
        assert (status, body) == (206, data[:100])
    finally:
        connection.close()
