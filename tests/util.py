"""Small helpers every test package uses: free ports and bounded polling."""

import time

import gevent

from common.backoff import jitter
from devtools.ports import free_ports

__all__ = ["free_port", "free_ports", "wait_for"]


def free_port():
    """One TCP port on 127.0.0.1 that nothing listened on a moment ago."""
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
