"""The one HTTP server every service runs: gevent's WSGIServer in the service lifecycle.

The restreamer's API, the cutter's job API and every `/metrics` endpoint are
served through `WSGIServer`, so how a service listens, logs its requests and
stops (and any limit on connections or slow clients) is decided here once.

How it fails: a port in use raises OSError from `start()`, before the service
reports itself started. On stop the listening socket closes at once and
requests in flight get `stop_timeout` seconds before they are killed.
"""

import logging

import gevent.event
import gevent.pywsgi

logger = logging.getLogger(__name__)

# Requests in flight when a server stops get this long before being killed:
# long enough for a playlist or a listing, short of `docker stop`'s 10 s.
STOP_TIMEOUT = 3


class WSGIServer:
    """Serve a WSGI app on (host, port) until stopped. Port 0 picks a free port.

    `name` names the log channels: access lines go to `<name>.access` at
    `access_level` (DEBUG by default: a player fetches a segment every few
    seconds), errors gevent itself catches to `<name>.wsgi` at ERROR.
    `handler_class` swaps gevent's request handler (the restreamer's sends
    files with sendfile).
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
    ):
        self.stopping = gevent.event.Event()
        self.name = name
        self.stop_timeout = stop_timeout
        options = {}
        if handler_class is not None:
            options["handler_class"] = handler_class
        self.server = gevent.pywsgi.WSGIServer(
            (host, port),
            app,
            log=gevent.pywsgi.LoggingLogAdapter(logging.getLogger(f"{name}.access"), access_level),
            error_log=gevent.pywsgi.LoggingLogAdapter(
                logging.getLogger(f"{name}.wsgi"), logging.ERROR
            ),
            **options,
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
