"""streamvault restreamer: serve a node's store over HTTP: listings, segments, playlists, cuts.

One worker, `Server`: gevent's WSGI server running the app from `create_app`,
one greenlet per request, so a slow client or a long cut never holds up the
others. `/metrics` is served by the app on the same port (the shared
`--metrics-port` is off by default here).

On SIGTERM the server stops accepting connections and gives requests in flight
`SERVER_STOP_TIMEOUT` to finish; those still running (a long download, a cut)
are then killed, which closes their response iterators (a cut's ffmpeg
processes with them).
"""

import logging
import sys

import gevent.pywsgi
import prometheus_client

from common.service import Stoppable, base_parser, run_service, setup_logging
from restreamer.app import create_app

logger = logging.getLogger(__name__)

# Shorter than run_service's STOP_TIMEOUT, so the server closes its own
# connections before the lifecycle kills the greenlet.
SERVER_STOP_TIMEOUT = 3  # seconds


class Server(Stoppable):
    """Serve a WSGI app on (host, port) until stopped. Port 0 picks a free port."""

    def __init__(self, app, host="0.0.0.0", port=8000):
        super().__init__()
        self.server = gevent.pywsgi.WSGIServer(
            (host, port),
            app,
            # Access lines at DEBUG (a player fetches a segment every few
            # seconds); errors gevent itself catches at ERROR.
            log=gevent.pywsgi.LoggingLogAdapter(
                logging.getLogger("restreamer.access"), logging.DEBUG
            ),
            error_log=gevent.pywsgi.LoggingLogAdapter(
                logging.getLogger("restreamer.wsgi"), logging.ERROR
            ),
        )

    def start(self):
        """Bind and start accepting (idempotent); returns the bound port."""
        if not self.server.started:
            self.server.start()
            logger.info("Serving on %s:%d", *self.server.address[:2])
        return self.server.server_port

    @property
    def port(self):
        return self.server.server_port

    def run(self):
        self.start()
        self.stopping.wait()
        logger.info("Stopping: closing the listening socket, finishing requests")
        self.server.stop(timeout=SERVER_STOP_TIMEOUT)


def parse_args(argv=None):
    parser = base_parser("restreamer", __doc__.splitlines()[0], metrics_port=0)
    parser.add_argument("--host", default="0.0.0.0", help="address to listen on (default: 0.0.0.0)")
    parser.add_argument(
        "--port", type=int, default=8000, help="port for the API and /metrics (default: 8000)"
    )
    return parser.parse_args(argv)


def main(argv=None):
    args = parse_args(argv)
    setup_logging()
    app = create_app(args.base_dir, registry=prometheus_client.REGISTRY)
    server = Server(app, args.host, args.port)
    sys.exit(
        run_service(
            "restreamer",
            [server],
            metrics_port=args.metrics_port,
            backdoor_port=args.backdoor_port,
            backdoor_locals={"app": app, "server": server, "store": app.extensions["restreamer"]},
        )
    )
