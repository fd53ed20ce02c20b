"""A Python shell inside a running service, for inspecting live state. Off by default.

Whoever reaches it runs any code as the service, with its database DSN and
upload credentials in reach, so it is opened only when asked for, and only
where no one else can reach it:

- `--backdoor-socket PATH`: a Unix socket, mode 0600 (only the service's own
  user, and root, can connect). Connect with `python -m common.backdoor PATH`.
- `--backdoor-port N`: TCP on 127.0.0.1 only, for when a socket file cannot be
  shared. Any local user (and any web page in a local browser) can open a
  loopback connection, so this one asks for a token first: the value of
  `STREAMVAULT_BACKDOOR_TOKEN` in the service's environment (never argv, which
  `ps` shows); the service refuses to start the port without one. Connect with
  `python -m common.backdoor 127.0.0.1:N` (it asks for the token) or telnet.

Either way, a connection whose first line looks like HTTP (a request line such
as `POST / HTTP/1.1`) is closed before anything is evaluated: a web page can
make a browser send a request to a loopback port or through a proxy to a socket
(cross-protocol), and HTTP headers followed by a Python body would otherwise
run that body. A token that does not match closes the connection too.

In scope: the service's main objects, `logging`, and `set_log_level("debug")`.
"""

import code
import hmac
import logging
import os
import re
import socket
import stat
import sys

import gevent
import gevent.backdoor
import gevent.socket
from gevent.hub import getcurrent

logger = logging.getLogger(__name__)

BACKDOOR_HOST = "127.0.0.1"
TOKEN_ENV = "STREAMVAULT_BACKDOOR_TOKEN"
# How long a client has to send the token: long enough to paste it.
TOKEN_TIMEOUT = 60  # seconds
# The longest first line read when checking it (an HTTP request line may be
# long; anything this long is not a line a person types first anyway).
MAX_FIRST_LINE = 8192
# An HTTP/1.x request line: METHOD SP target SP HTTP/digit. Matched on the
# start only, so a line cut short still counts.
_HTTP_REQUEST_LINE = re.compile(r"^[A-Z][A-Z0-9_-]{1,19} \S+ HTTP/\d", re.ASCII)
# HTTP/2's connection preface starts with this.
_HTTP2_PREFACE = "PRI * HTTP/2"


class BackdoorError(Exception):
    """The backdoor cannot be opened as asked (the message says why)."""


class _Refused(Exception):
    """Close this connection without evaluating anything."""


def looks_like_http(line):
    """True when `line` is (the start of) an HTTP request line."""
    return line.startswith(_HTTP2_PREFACE) or bool(_HTTP_REQUEST_LINE.match(line))


def set_log_level(level):
    """Change the root log level of the running process, e.g. `set_log_level("debug")`.

    Takes a level name in any case, or a number; returns the level's name.
    """
    if isinstance(level, str):
        name = level.strip().upper()
        if not isinstance(logging.getLevelName(name), int):
            names = ", ".join(logging.getLevelName(n) for n in (10, 20, 30, 40, 50))
            raise ValueError(f"unknown log level {level!r}: one of {names}")
        level = name
    logging.getLogger().setLevel(level)
    return logging.getLevelName(logging.getLogger().level)


class _Output:
    """sys.stdout/stderr for one connection: writes go straight to the socket."""

    encoding = "utf-8"

    def __init__(self, conn):
        self.conn = conn

    def write(self, data):
        self.conn.sendall(data.encode(self.encoding, "replace"))
        return len(data)

    def flush(self):
        pass


class _Console(code.InteractiveConsole):
    """The interactive console, reading lines itself so that the first is checked."""

    def __init__(self, scope, conn, reader):
        super().__init__(scope)
        self.conn = conn
        self.reader = reader
        self.first = True

    def raw_input(self, prompt=""):
        self.conn.sendall(prompt.encode())
        line = self.reader.readline(MAX_FIRST_LINE if self.first else -1)
        if not line:
            raise EOFError
        if self.first:
            self.first = False
            if looks_like_http(line):
                raise _Refused("HTTP request")
        return line.rstrip("\r\n")


class GuardedBackdoorServer(gevent.backdoor.BackdoorServer):
    """gevent's backdoor, with a token check (if `token`) and HTTP input refused."""

    def __init__(self, listener, token=None, **kwargs):
        super().__init__(listener, **kwargs)
        self.token = token

    def handle(self, conn, address):
        reader = conn.makefile(mode="r", encoding="utf-8", errors="replace", newline="")
        # The server's greenlets swap sys.stdin/stdout/stderr to these while they
        # run, so what evaluated code prints goes to this connection only.
        greenlet = getcurrent()
        greenlet.stdin = reader
        greenlet.stdout = _Output(conn)
        greenlet.switch_in()
        try:
            if self.token is not None:
                conn.sendall(b"token: ")
                with gevent.Timeout(TOKEN_TIMEOUT, _Refused("no token in time")):
                    line = reader.readline(MAX_FIRST_LINE)
                if looks_like_http(line):
                    raise _Refused("HTTP request")
                if not hmac.compare_digest(line.strip().encode(), self.token.encode()):
                    raise _Refused("wrong token")
            console = _Console(self._create_interactive_locals(), conn, reader)
            console.interact(banner=self.banner, exitmsg="")
        except _Refused as e:
            logger.warning("Backdoor: closed a connection without evaluating it (%s)", e)
        except (SystemExit, OSError):
            pass
        finally:
            reader.close()
            conn.close()


def _unix_listener(path):
    """A listening Unix socket at `path`, mode 0600; a stale socket file is replaced."""
    try:
        mode = os.lstat(path).st_mode
    except FileNotFoundError:
        mode = None
    if mode is not None:
        if not stat.S_ISSOCK(mode):
            raise BackdoorError(f"backdoor socket {path} exists and is not a socket")
        probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            probe.connect(path)
        except OSError:
            os.unlink(path)  # left by a process that is gone
        else:
            raise BackdoorError(f"backdoor socket {path} is in use by another process")
        finally:
            probe.close()
    listener = gevent.socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    # Created 0600 (the umask covers the moment between bind and chmod); nothing
    # here yields to other greenlets while the umask is changed.
    old = os.umask(0o177)
    try:
        listener.bind(path)
    except OSError as e:
        listener.close()
        raise BackdoorError(f"cannot open backdoor socket {path}: {e.strerror}") from None
    finally:
        os.umask(old)
    os.chmod(path, 0o600)
    listener.listen(8)
    return listener


class Backdoor:
    """A started backdoor; `stop()` closes it (and removes its socket file)."""

    def __init__(self, server, path=None):
        self.server = server
        self.path = path

    @property
    def server_port(self):
        """The TCP port listened on (None for a Unix socket)."""
        return self.server.server_port if self.path is None else None

    def stop(self, timeout=1):
        """Close the listener and every open session; remove the socket file."""
        self.server.stop(timeout=timeout)
        if self.path is not None:
            try:
                os.unlink(self.path)
            except FileNotFoundError:
                pass


def start_backdoor(port=0, local_objects=None, socket_path=None, token=None):
    """Start the backdoor if asked for; returns a `Backdoor`, or None when off.

    `socket_path`: a Unix socket (mode 0600). `port`: TCP on 127.0.0.1, which
    needs `token` (default: `STREAMVAULT_BACKDOOR_TOKEN` from the environment).
    BackdoorError if it cannot be opened as asked.
    """
    if not port and not socket_path:
        return None
    if port and socket_path:
        raise BackdoorError("give --backdoor-port or --backdoor-socket, not both")
    scope = {"set_log_level": set_log_level, "logging": logging}
    scope.update(local_objects or {})
    banner = "streamvault backdoor: objects in scope: " + ", ".join(sorted(scope))
    if socket_path:
        listener = _unix_listener(socket_path)
        server = GuardedBackdoorServer(listener, locals=scope, banner=banner)
        server.start()
        logger.info("Backdoor listening on Unix socket %s (mode 0600)", socket_path)
        return Backdoor(server, socket_path)
    token = token if token is not None else os.environ.get(TOKEN_ENV)
    if not token:
        raise BackdoorError(
            f"--backdoor-port needs a token in ${TOKEN_ENV} (any loopback client could "
            "connect otherwise); or use --backdoor-socket PATH"
        )
    server = GuardedBackdoorServer((BACKDOOR_HOST, port), token=token, locals=scope, banner=banner)
    server.start()
    logger.info("Backdoor listening on %s:%d (token required)", BACKDOOR_HOST, server.server_port)
    return Backdoor(server)


def _client(target):
    """Connect this terminal to a backdoor: `PATH` (Unix socket) or `HOST:PORT`."""
    import threading

    if os.path.sep in target or not re.fullmatch(r"[^:]+:\d+", target):
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.connect(target)
    else:
        host, port = target.rsplit(":", 1)
        sock = socket.create_connection((host, int(port)))

    def pump_out():
        while data := sock.recv(65536):
            sys.stdout.buffer.write(data)
            sys.stdout.buffer.flush()
        os._exit(0)

    threading.Thread(target=pump_out, daemon=True).start()
    for line in sys.stdin.buffer:
        sock.sendall(line)
    sock.shutdown(socket.SHUT_WR)
    threading.Event().wait()


if __name__ == "__main__":
    if len(sys.argv) != 2 or sys.argv[1] in ("-h", "--help"):
        print("usage: python -m common.backdoor SOCKET_PATH | 127.0.0.1:PORT", file=sys.stderr)
        sys.exit(2)
    try:
        _client(sys.argv[1])
    except OSError as e:
        print(f"backdoor: {sys.argv[1]}: {e.strerror or e}", file=sys.stderr)
        sys.exit(1)
