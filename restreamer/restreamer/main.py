"""streamvault restreamer: serve a node's store over HTTP: listings, segments, playlists, cuts.

One worker, `Server`: the shared `common.server.WSGIServer` (gevent's) running
the app from `create_app`, one greenlet per request, so a slow client or a long
cut never holds up the others. `/metrics` is served by the app on the same port (the shared
`--metrics-port` is off by default here).

On SIGTERM the server stops accepting connections and gives requests in flight
`SERVER_STOP_TIMEOUT` to finish; those still running (a long download, a cut)
are then killed, which closes their response iterators (a cut's ffmpeg
processes with them).
"""

import datetime
import os
import socket
import sys

import gevent
import gevent.socket
import prometheus_client

from common.server import MAX_CONNECTIONS, Handler, WSGIServer
from common.service import base_parser, run_service, setup_logging
from restreamer import cutlimits
from restreamer.app import create_app

# Shorter than run_service's STOP_TIMEOUT, so the server closes its own
# connections before the lifecycle kills the greenlet.
SERVER_STOP_TIMEOUT = 3  # seconds
# Largest single sendfile call: one call per 4 MiB keeps a huge download from
# holding the hub while other requests wait.
SENDFILE_CHUNK = 4 * 1024 * 1024  # bytes


class SendfileHandler(Handler):
    """The server's handler, sending file bodies (`files.FileBody`) with `os.sendfile`.

    The kernel copies the file straight to the socket: no reads into Python,
    no per-chunk greenlet switches. The socket is non-blocking under gevent,
    so a full send buffer (a slow client) waits for writability on the hub
    instead of blocking the process. Chunked responses (no Content-Length)
    and anything else go the ordinary way.
    """

    def handle(self):
        # Without TCP_NODELAY, a keep-alive response written in two sends (the
        # headers, then the body) waits for the client's delayed ACK: 40 ms
        # per request, measured with wrk (22 requests/s on one connection).
        try:
            self.socket.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        except OSError:
            pass  # not TCP (a Unix socket): nothing to tune
        return super().handle()

    def process_result(self):
        sendfile_args = getattr(self.result, "sendfile_args", None)
        if sendfile_args is None or self.response_use_chunked:
            return super().process_result()
        fd, offset, length = sendfile_args()
        socket_fd = self.socket.fileno()
        # Corked, the headers go out in the same packets as the body's start.
        self.socket.setsockopt(socket.IPPROTO_TCP, socket.TCP_CORK, 1)
        try:
            self.write(b"")  # the status line and headers
            self._sendfile(socket_fd, fd, offset, length)
        finally:
            self.socket.setsockopt(socket.IPPROTO_TCP, socket.TCP_CORK, 0)
        return None

    def _sendfile(self, socket_fd, fd, offset, length):
        while length > 0:
            try:
                sent = os.sendfile(socket_fd, fd, offset, min(length, SENDFILE_CHUNK))
            except BlockingIOError:
                gevent.socket.wait_write(socket_fd)
                continue
            if sent == 0:
                # The file is shorter than it said: the client gets a short
                # body, and the connection must not be reused.
                self.close_connection = True
                break
            offset += sent
            length -= sent
            # Let other greenlets run between large sends.
            if length > 0:
                gevent.sleep(0)


class Server(WSGIServer):
    """The restreamer's `common.server.WSGIServer`: files sent with `SendfileHandler`.

    Serves a WSGI app on (host, port) until stopped; port 0 picks a free port.
    """

    def __init__(self, app, host="0.0.0.0", port=8000, **options):
        options.setdefault("stop_timeout", SERVER_STOP_TIMEOUT)
        super().__init__(
            app, host, port, name="restreamer", handler_class=SendfileHandler, **options
        )


def parse_args(argv=None):
    parser = base_parser("restreamer", __doc__.splitlines()[0], metrics_port=0)
    parser.add_argument(
        "--port", type=int, default=8000, help="port for the API and /metrics (default: 8000)"
    )
    parser.add_argument(
        "--max-connections",
        type=int,
        default=MAX_CONNECTIONS,
        help=f"connections served at once; more wait to be accepted (default: {MAX_CONNECTIONS})",
    )
    parser.add_argument(
        "--max-cuts",
        type=int,
        default=cutlimits.default_node_slots(),
        help="cuts run at once; more get 503 (default: the number of cores)",
    )
    parser.add_argument(
        "--max-cuts-per-client",
        type=int,
        default=cutlimits.CLIENT_SLOTS,
        help=f"cuts one client address runs at once; more get 429 (default: {cutlimits.CLIENT_SLOTS})",
    )
    parser.add_argument(
        "--max-full-cut",
        type=float,
        default=cutlimits.MAX_FULL.total_seconds(),
        help=f"longest type=full cut, in seconds (default: {cutlimits.MAX_FULL.total_seconds():g})",
    )
    parser.add_argument(
        "--cut-stall-timeout",
        type=float,
        default=cutlimits.STALL_TIMEOUT,
        help="seconds a client may stop reading a cut before losing it "
        f"(default: {cutlimits.STALL_TIMEOUT})",
    )
    return parser.parse_args(argv)


def main(argv=None):
    args = parse_args(argv)
    setup_logging()
    limits = cutlimits.CutLimits(
        prometheus_client.REGISTRY,
        node_slots=args.max_cuts,
        client_slots=args.max_cuts_per_client,
        max_full=datetime.timedelta(seconds=args.max_full_cut),
        stall_timeout=args.cut_stall_timeout,
    )
    app = create_app(args.base_dir, registry=prometheus_client.REGISTRY, cut_limits=limits)
    server = Server(app, args.host, args.port, max_connections=args.max_connections)
    sys.exit(
        run_service(
            "restreamer",
            [server],
            metrics_port=args.metrics_port,
            host=args.host,
            backdoor_port=args.backdoor_port,
            backdoor_socket=args.backdoor_socket,
            backdoor_locals={"app": app, "server": server, "store": app.extensions["restreamer"]},
        )
    )
