"""Small helpers every test package uses: free ports and bounded polling."""

import socket
import time

import gevent

from common.backoff import jitter


def free_ports(count):
    """`count` distinct TCP ports on 127.0.0.1 that nothing listened on a moment ago.

    For services started as subprocesses that must be told their ports; servers
    run in-process bind port 0 and read the port back instead. All sockets stay
    bound until every port is chosen: one closed first could be handed out again.
    """
    sockets = [socket.socket() for _ in range(count)]
    try:
        for s in sockets:
            s.bind(("127.0.0.1", 0))
        return [s.getsockname()[1] for s in sockets]
    finally:
        for s in sockets:
            s.close()


def free_port():
    return free_ports(1)[0]


def wait_for(condition, timeout=10, interval=0.05, what=None):
    """Poll `condition()` until it returns something truthy, and return that.

    Fails the test (AssertionError naming `what`) after `timeout` seconds.
    Sleeps through gevent so in-process servers and workers keep running.
    """
    deadline = time.monotonic() + timeout
    while True:
        result = condition()
        if result:
            return result
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what or condition}")
        gevent.sleep(jitter(interval))
