"""Small helpers every test package uses: free ports and bounded polling."""

import socket
import time

import gevent

from common.segments import jitter


def free_port():
    """A TCP port on 127.0.0.1 that nothing listened on a moment ago.

    For services started as subprocesses that must be told their port; servers
    run in-process bind port 0 and read the port back instead.
    """
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


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
