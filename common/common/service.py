"""The one lifecycle every service shares.

`run_service` starts the metrics server and the optional backdoor, installs
SIGTERM/SIGINT handlers, runs the service's workers as greenlets and waits.
Whichever way it ends — a signal, a worker returning, a worker crashing — every
other worker is asked to stop (`stop()`), given `STOP_TIMEOUT` to finish, then
killed. A worker's exception is re-raised after the others have stopped, so
the process exits non-zero with the traceback; a clean stop exits 0.

Workers are objects with `run()` (blocks until done or stopped) and `stop()`
(asks it to stop soon; must not block). `Stoppable` gives the usual event.
"""

import argparse
import logging
import os
import signal

import gevent
import gevent.event
import prometheus_client

from .backdoor import TOKEN_ENV, BackdoorError, start_backdoor
from .server import WSGIServer
from .stats import LogCountHandler

logger = logging.getLogger(__name__)

# How long stopping workers get to finish in-flight work before being killed.
# Long enough to rename a just-finished segment; short enough for `docker stop`
# (which waits 10 s before SIGKILL).
STOP_TIMEOUT = 5
LOG_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"
# Where services listen unless --host says otherwise: every interface, as a
# container needs (its ports are published, or reached on the compose network).
DEFAULT_HOST = "0.0.0.0"


class Stoppable:
    """Gives a worker a `stopping` event, and `stop()` to set it.

    Loops sleep only on the event (`self.stopping.wait(jitter(interval))`), so a
    stop never waits out a sleep.
    """

    def __init__(self):
        self.stopping = gevent.event.Event()

    def stop(self):
        self.stopping.set()


def base_parser(prog, description, metrics_port):
    """An ArgumentParser with the flags every service shares.

    `--host` is where the service listens: its /metrics and its own API (the
    restreamer's and the cutter's HTTP ports). The default, every interface,
    suits a container; on a host, give 127.0.0.1 or the one address meant.
    """
    parser = argparse.ArgumentParser(prog=prog, description=description)
    parser.add_argument("--base-dir", default=".", help="the segment store (default: .)")
    parser.add_argument(
        "--host",
        default=DEFAULT_HOST,
        help=f"address to listen on, for /metrics and the service's API (default: {DEFAULT_HOST})",
    )
    parser.add_argument(
        "--metrics-port",
        type=int,
        default=metrics_port,
        help=f"port for Prometheus /metrics; 0 = off (default: {metrics_port})",
    )
    backdoor = parser.add_mutually_exclusive_group()
    backdoor.add_argument(
        "--backdoor-socket",
        metavar="PATH",
        help="open a Python shell inside the service on this Unix socket (mode 0600); "
        "connect with `python -m common.backdoor PATH` (default: off)",
    )
    backdoor.add_argument(
        "--backdoor-port",
        type=int,
        default=0,
        help="open a Python shell inside the service on 127.0.0.1:PORT, asking for the token "
        f"in ${TOKEN_ENV}; 0 = off (default: 0)",
    )
    return parser


def setup_logging(registry=prometheus_client.REGISTRY):
    """Log to stderr at STREAMVAULT_LOG_LEVEL (default INFO), counting lines by level."""
    level = os.environ.get("STREAMVAULT_LOG_LEVEL", "INFO").upper()
    root = logging.getLogger()
    if not any(isinstance(h, LogCountHandler) for h in root.handlers):
        logging.basicConfig(format=LOG_FORMAT)
        root.addHandler(LogCountHandler(registry))
    try:
        root.setLevel(level)
    except ValueError:
        root.setLevel(logging.INFO)
        logger.warning("Unknown STREAMVAULT_LOG_LEVEL %r, using INFO", level)


def start_metrics_server(port, registry=prometheus_client.REGISTRY, host=DEFAULT_HOST):
    """Serve `registry` at `/metrics` on `port` in a greenlet; returns the server."""
    if not port:
        return None
    server = WSGIServer(prometheus_client.make_wsgi_app(registry), host, port, name="metrics")
    server.start()
    return server


def run_service(
    name,
    workers,
    *,
    metrics_port=0,
    host=DEFAULT_HOST,
    backdoor_port=0,
    backdoor_socket=None,
    backdoor_locals=None,
    stop_timeout=STOP_TIMEOUT,
):
    """Run `workers` until one ends or a signal comes; stop the rest. Returns 0.

    /metrics listens on `host`:`metrics_port` (if a port is given); the
    backdoor on `backdoor_socket` or 127.0.0.1:`backdoor_port` (if given; see
    common.backdoor). If the backdoor cannot be opened as asked: an error
    line, and the service runs without it (a debugging aid must not stop a
    recording). Raises the first worker exception, after stopping the others.
    """
    # Signals are handled before anything listens: a SIGTERM that comes as
    # soon as a port answers (a quick `docker stop`, a test) still stops cleanly.
    stopped_by = []

    def stop_all(signum=None):
        if signum is not None:
            stopped_by.append(signal.Signals(signum).name)
            logger.info("%s: got %s, stopping", name, stopped_by[-1])
        for worker in workers:
            try:
                worker.stop()
            except Exception:
                logger.exception("%s: error asking %r to stop", name, worker)

    for signum in (signal.SIGTERM, signal.SIGINT):
        gevent.signal_handler(signum, stop_all, signum)
    try:
        backdoor = start_backdoor(
            backdoor_port,
            dict(backdoor_locals or {}, workers=workers),
            socket_path=backdoor_socket,
        )
    except BackdoorError as e:
        logger.error("%s: no backdoor: %s", name, e)
        backdoor = None
    metrics = start_metrics_server(metrics_port, host=host)
    greenlets = [gevent.spawn(worker.run) for worker in workers]
    logger.info("%s: started", name)
    try:
        if greenlets:
            gevent.wait(greenlets, count=1)
        stop_all()
        gevent.joinall(greenlets, timeout=stop_timeout)
        alive = [g for g in greenlets if not g.dead]
        if alive:
            logger.warning(
                "%s: %d workers did not stop in %ss; killing", name, len(alive), stop_timeout
            )
            gevent.killall(alive, timeout=1)
    finally:
        if metrics is not None:
            metrics.close(timeout=1)
        if backdoor is not None:
            backdoor.stop(timeout=1)
    for greenlet in greenlets:
        if greenlet.exception is not None:
            raise greenlet.exception
    logger.info("%s: stopped", name)
    return 0
