"""The one HTTP server every service runs: gevent's WSGIServer in the service lifecycle.

The restreamer's API, the cutter's job API and every `/metrics` endpoint are
served through `WSGIServer`, so how a service listens, logs its requests and
stops, and how it holds out against slow or idle clients, is decided here once.

How it fails: a port in use raises OSError from `start()`, before the service
reports itself started. On stop the listening socket closes at once and
requests in flight get `stop_timeout` seconds before they are killed.

Every port is reachable by an attacker, so nothing a client does holds a
connection for long without sending a request: a connection waits at most
`idle_timeout` for a request to begin (a new one, or the next on a keep-alive
connection) and is then closed; a request line and headers must arrive within
`header_timeout` of their first byte, or the client gets a 408 and is
disconnected (2,000 clients sending headers a byte at a time were all still
connected after 90 s before). At most `max_connections` are served at once:
past that the server stops accepting, and new connections wait in the
listening socket's backlog until one ends.
"""

import logging

import gevent
import gevent.event
import gevent.pool
import gevent.pywsgi

logger = logging.getLogger(__name__)

# Requests in flight when a server stops get this long before being killed:
# long enough for a playlist or a listing, short of `docker stop`'s 10 s.
STOP_TIMEOUT = 3
# A request line and headers are a few hundred bytes, sent at once by every
# real client; nginx allows 60 s, a slow mobile link needs a second or two.
HEADER_TIMEOUT = 10  # seconds, from the first byte of a request to its blank line
# A player reloads its playlist every few seconds and an editor polls as
# often: a minute of silence means the client is gone (nginx keeps 75 s).
IDLE_TIMEOUT = 60  # seconds without a request beginning
# Each connection is a greenlet and a file descriptor, and a cut's ffmpegs
# need descriptors too (the usual limit is 1024 per process).
MAX_CONNECTIONS = 500

_TIMEOUT_BODY = b"408 Request Timeout: the request headers came too slowly\n"
REQUEST_TIMEOUT_RESPONSE = (
    b"HTTP/1.1 408 Request Timeout\r\nConnection: close\r\n"
    b"Content-Type: text/plain; charset=utf-8\r\n"
    b"Content-Length: %d\r\n\r\n%s" % (len(_TIMEOUT_BODY), _TIMEOUT_BODY)
)


class HeadersTooSlow(Exception):
    """A request's line and headers did not arrive within the header timeout."""


class Handler(gevent.pywsgi.WSGIHandler):
    """gevent's request handler, with the idle and header timeouts of its server.

    A `handler_class` given to `WSGIServer` must subclass this one.
    """

    _deadline = None

    def read_requestline(self):
        ready = False
        with gevent.Timeout(self.server.idle_timeout, False):
            ready = bool(self.rfile.peek(1))  # b"" when the client closed
        if not ready:
            return ""  # nothing came (or the client left): the connection ends
        self._deadline = gevent.Timeout.start_new(self.server.header_timeout, HeadersTooSlow)
        try:
            return super().read_requestline()
        except HeadersTooSlow:
            self._headers_too_slow()
            return ""

    def read_request(self, raw_requestline):
        try:
            return super().read_request(raw_requestline)
        finally:
            self._cancel_deadline()

    def handle_one_request(self):
        try:
            return super().handle_one_request()
        finally:
            self._cancel_deadline()  # on paths that never read the headers (a 414)

    def _cancel_deadline(self):
        if self._deadline is not None:
            self._deadline.cancel()
            self._deadline = None

    def _handle_client_error(self, ex):
        if isinstance(ex, HeadersTooSlow):
            self._log_too_slow()
            return "408", REQUEST_TIMEOUT_RESPONSE
        return super()._handle_client_error(ex)

    def _headers_too_slow(self):
        self._log_too_slow()
        try:
            self.socket.sendall(REQUEST_TIMEOUT_RESPONSE)
        except OSError:
            pass

    def _log_too_slow(self):
        logger.info(
            "Disconnecting %s: request headers not received in %g s",
            self.client_address,
            self.server.header_timeout,
        )


class _GeventServer(gevent.pywsgi.WSGIServer):
    """gevent's server, carrying the timeouts its handlers read."""

    def __init__(self, *args, idle_timeout, header_timeout, **kwargs):
        super().__init__(*args, **kwargs)
        self.idle_timeout = idle_timeout
        self.header_timeout = header_timeout


class WSGIServer:
    """Serve a WSGI app on (host, port) until stopped. Port 0 picks a free port.

    `name` names the log channels: access lines go to `<name>.access` at
    `access_level` (DEBUG by default: a player fetches a segment every few
    seconds), errors gevent itself catches to `<name>.wsgi` at ERROR.
    `handler_class`, a subclass of `Handler`, swaps the request handler (the
    restreamer's sends files with sendfile). `idle_timeout`, `header_timeout`
    and `max_connections` bound what clients can hold (see the module's doc).
    """

    def __init__(
        self,
        app,
        host="127.0.0.1",
        port=0,
        *,
        name="http",
        handler_class=None,
        access_level=logging.DEBUG,
        stop_timeout=STOP_TIMEOUT,
        idle_timeout=IDLE_TIMEOUT,
        header_timeout=HEADER_TIMEOUT,
        max_connections=MAX_CONNECTIONS,
    ):
        self.stopping = gevent.event.Event()
        self.name = name
        self.stop_timeout = stop_timeout
        handler_class = handler_class or Handler
        if not issubclass(handler_class, Handler):
            raise TypeError(f"{handler_class!r} is not a common.server.Handler")
        self.server = _GeventServer(
            (host, port),
            app,
            log=gevent.pywsgi.LoggingLogAdapter(logging.getLogger(f"{name}.access"), access_level),
            error_log=gevent.pywsgi.LoggingLogAdapter(
                logging.getLogger(f"{name}.wsgi"), logging.ERROR
            ),
            handler_class=handler_class,
            # A full pool stops the server accepting until a connection ends.
            spawn=gevent.pool.Pool(max_connections),
            idle_timeout=idle_timeout,
            header_timeout=header_timeout,
        )

    def start(self):
        """Bind and start accepting (idempotent); returns the bound port."""
        if not self.server.started:
            self.server.start()
            logger.info("Serving on %s:%d (%s)", *self.server.address[:2], self.name)
        return self.server.server_port

    @property
    def port(self):
        return self.server.server_port

    @property
    def started(self):
        return self.server.started

    def close(self, timeout=None):
        """Stop accepting; give requests in flight `timeout` seconds, then kill them."""
        self.server.stop(timeout=self.stop_timeout if timeout is None else timeout)

    def stop(self):
        """Ask `run()` to close the server (the lifecycle's `stop()`; never blocks)."""
        self.stopping.set()

    def run(self):
        self.start()
        self.stopping.wait()
        logger.info("%s: stopping: closing the listening socket, finishing requests", self.name)
        self.close()
