import gevent
import gevent.socket
import pytest
import requests

from common.server import WSGIServer

WAIT = 10  # seconds: generous, for a loaded machine


def hello(environ, start_response):
    start_response("200 OK", [("Content-Type", "text/plain")])
    return [b"hello"]


def test_serves_until_stopped_and_then_refuses():
    server = WSGIServer(hello, "127.0.0.1", 0, name="test")
    runner = gevent.spawn(server.run)
    port = server.start()
    assert server.start() == port  # idempotent
    assert requests.get(f"http://127.0.0.1:{port}/", timeout=5).text == "hello"
    server.stop()
    runner.join(timeout=5)
    assert runner.dead and runner.exception is None
    try:
        requests.get(f"http://127.0.0.1:{port}/", timeout=2)
    except requests.ConnectionError:
        pass
    else:
        raise AssertionError("the server still answers after stop")


class Client:
    """A raw connection to 127.0.0.1, to play a slow or idle client."""

    def __init__(self, port):
        self.sock = gevent.socket.create_connection(("127.0.0.1", port))

    def send(self, data):
        self.sock.sendall(data)

    def read_until_closed(self, timeout=WAIT):
        """Everything the server sends until it closes the connection."""
        chunks = []
        with gevent.Timeout(timeout):
            while chunk := self.sock.recv(65536):
                chunks.append(chunk)
        return b"".join(chunks)

    def nothing_within(self, seconds):
        """True if the server sends nothing (and does not close) for `seconds`."""
        with gevent.Timeout(seconds, False):
            self.sock.recv(1)
            return False
        return True

    def close(self):
        self.sock.close()


@pytest.fixture
def serve():
    servers = []

    def start(**options):
        server = WSGIServer(hello, "127.0.0.1", 0, name="test", **options)
        servers.append(server)
        return server.start()

    yield start
    for server in servers:
        server.close(timeout=1)


def test_headers_sent_a_byte_at_a_time_get_a_408(serve):
    port = serve(header_timeout=0.5)
    client = Client(port)

    def trickle():
        try:
            for byte in b"GET / HTTP/1.1\r\nHost: x\r\n" * 20:
                client.send(bytes([byte]))
                gevent.sleep(0.05)
        except OSError:
            pass  # the server hung up, as it should

    trickle = gevent.spawn(trickle)
    try:
        response = client.read_until_closed()
    finally:
        trickle.kill()
        client.close()
    assert response.startswith(b"HTTP/1.1 408 Request Timeout\r\n")
    assert response.endswith(b"\r\n\r\n408 Request Timeout: the request headers came too slowly\n")
    # Others are served as ever.
    assert requests.get(f"http://127.0.0.1:{port}/", timeout=WAIT).text == "hello"


def test_a_slow_request_line_is_cut_off_too(serve):
    port = serve(header_timeout=0.5)
    client = Client(port)
    client.send(b"GET /a-very-slow-req")
    try:
        assert client.read_until_closed().startswith(b"HTTP/1.1 408")
    finally:
        client.close()


def test_idle_connections_are_closed(serve):
    port = serve(idle_timeout=0.5)
    silent = Client(port)  # connects and never sends a byte
    keep_alive = Client(port)  # one request, then silence
    keep_alive.send(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
    try:
        assert silent.read_until_closed() == b""
        assert keep_alive.read_until_closed().endswith(b"hello")
    finally:
        silent.close()
        keep_alive.close()


def test_connections_past_the_cap_wait_for_one_to_end(serve):
    port = serve(max_connections=2)
    holders = [Client(port), Client(port)]
    waiting = Client(port)
    try:
        waiting.send(b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        # Both places are taken (each holder waits for its request to begin).
        assert waiting.nothing_within(0.5)
        holders[0].close()
        assert waiting.read_until_closed().endswith(b"hello")
    finally:
        for client in [*holders, waiting]:
            client.close()
