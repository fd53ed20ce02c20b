"""The backdoor: off unless asked, a 0600 socket or a token, and HTTP never evaluated."""

import os
import stat

import gevent
import gevent.socket
import pytest

from common.backdoor import BackdoorError, looks_like_http, start_backdoor

TIMEOUT = 10


class Client:
    """A backdoor connection driven line by line (gevent sockets: the server is in-process)."""

    def __init__(self, sock):
        self.sock = sock
        self.sock.settimeout(TIMEOUT)
        self.buffer = b""

    @classmethod
    def unix(cls, path):
        sock = gevent.socket.socket(gevent.socket.AF_UNIX, gevent.socket.SOCK_STREAM)
        sock.connect(path)
        return cls(sock)

    @classmethod
    def tcp(cls, port):
        return cls(gevent.socket.create_connection(("127.0.0.1", port)))

    def read_until(self, ending):
        while not self.buffer.endswith(ending):
            chunk = self.sock.recv(4096)
            assert chunk, f"closed; got {self.buffer!r}"
            self.buffer += chunk
        text, self.buffer = self.buffer, b""
        return text.decode()

    def run(self, line):
        self.sock.sendall(line.encode() + b"\n")
        return self.read_until(b">>> ")[: -len(">>> ")].strip()

    def read_to_close(self):
        """Everything until the server closes the connection."""
        data = self.buffer
        while chunk := self.sock.recv(4096):
            data += chunk
        return data.decode(errors="replace")

    def close(self):
        self.sock.close()


@pytest.fixture
def scope():
    return {"ran": []}


@pytest.fixture
def socket_door(tmp_path, scope):
    path = str(tmp_path / "svc.backdoor")
    door = start_backdoor(socket_path=path, local_objects=scope)
    yield door, path
    door.stop()


def http_post(body):
    return (
        "POST / HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: text/plain\r\n"
        f"Content-Length: {len(body)}\r\n\r\n{body}"
    ).encode()


def test_off_unless_asked():
    assert start_backdoor() is None
    assert start_backdoor(0, {}, socket_path=None) is None


def test_socket_is_0600_and_runs_python(socket_door, scope):
    door, path = socket_door
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    assert stat.S_ISSOCK(os.stat(path).st_mode)
    client = Client.unix(path)
    assert "objects in scope" in client.read_until(b">>> ")
    assert client.run("ran.append('typed'); len(ran)") == "1"
    assert client.run('set_log_level("debug")') == "'DEBUG'"
    assert client.run('set_log_level("INFO")') == "'INFO'"
    assert "unknown log level 'loud'" in client.run('set_log_level("loud")')
    client.close()
    assert scope["ran"] == ["typed"]
    door.stop()
    assert not os.path.exists(path)


def test_an_http_request_with_a_python_body_runs_nothing(socket_door, scope):
    door, path = socket_door
    client = Client.unix(path)
    client.sock.sendall(http_post("ran.append('from a web page')\nimport os\n"))
    client.read_to_close()  # the server hangs up
    client.close()
    gevent.sleep(0.1)
    assert scope["ran"] == []
    # The backdoor still serves people.
    client = Client.unix(path)
    client.read_until(b">>> ")
    assert client.run("len(ran)") == "0"
    client.close()


def test_the_port_needs_a_token(monkeypatch, scope):
    monkeypatch.delenv("STREAMVAULT_BACKDOOR_TOKEN", raising=False)
    with pytest.raises(BackdoorError, match="STREAMVAULT_BACKDOOR_TOKEN"):
        start_backdoor(1, scope)
    monkeypatch.setenv("STREAMVAULT_BACKDOOR_TOKEN", "s3cret-token")
    probe = gevent.socket.socket()
    probe.bind(("127.0.0.1", 0))
    port = probe.getsockname()[1]
    probe.close()
    door = start_backdoor(port, scope)
    try:
        # Wrong token: closed, no prompt.
        client = Client.tcp(port)
        client.read_until(b"token: ")
        client.sock.sendall(b"guess\n")
        assert ">>>" not in client.read_to_close()
        client.close()
        # HTTP at the token prompt: closed before anything is evaluated.
        client = Client.tcp(port)
        client.sock.sendall(http_post("ran.append(1)\n"))
        assert ">>>" not in client.read_to_close()
        client.close()
        # The token: a prompt.
        client = Client.tcp(port)
        client.read_until(b"token: ")
        client.sock.sendall(b"s3cret-token\n")
        client.read_until(b">>> ")
        assert client.run("ran.append(2); ran") == "[2]"
        client.close()
    finally:
        door.stop()


def test_a_stale_socket_is_replaced_and_a_live_one_refused(tmp_path, scope):
    path = str(tmp_path / "b.sock")
    stale = gevent.socket.socket(gevent.socket.AF_UNIX, gevent.socket.SOCK_STREAM)
    stale.bind(path)
    stale.close()  # the file stays, nothing listens: a crashed service's
    door = start_backdoor(socket_path=path, local_objects=scope)
    try:
        with pytest.raises(BackdoorError, match="in use"):
            start_backdoor(socket_path=path, local_objects=scope)
    finally:
        door.stop()
    (tmp_path / "plain").write_text("not a socket")
    with pytest.raises(BackdoorError, match="not a socket"):
        start_backdoor(socket_path=str(tmp_path / "plain"), local_objects=scope)


@pytest.mark.parametrize(
    "line,http",
    [
        ("POST / HTTP/1.1\r\n", True),
        ("GET /x?y=1 HTTP/1.0\n", True),
        ("OPTIONS * HTTP/1.1\r\n", True),
        ("PRI * HTTP/2.0\r\n", True),
        ("M-SEARCH * HTTP/1.1\r\n", True),
        ("print('HTTP/1.1')\n", False),
        ("GET = 1\n", False),
        ("workers\n", False),
    ],
)
def test_looks_like_http(line, http):
    assert looks_like_http(line) is http
