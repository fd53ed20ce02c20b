"""Waiting between tries: jitter, and exponential backoff that sleeps on a stop event.

Every retry loop in streamvault (a playlist poll, a segment attempt, a peer's
pass, a database reconnect, a YouTube chunk) waits the same way: double the
wait with each failure in a row up to a cap, vary it by a little so retries from
many greenlets or nodes never synchronise, and sleep on the stop event so a
shutdown never waits out a sleep.
"""

import random

import gevent


def jitter(interval, fraction=0.1):
    """Vary an interval by ±fraction so that retries and polls never synchronise."""
    return interval * (1 + fraction * (2 * random.random() - 1))


def backoff_delay(failures, limits):
    """Seconds to wait after `failures` failures in a row: first, doubling, up to the cap.

    `limits` is `(first, cap)` in seconds; 0 or 1 failures give `first`.
    """
    first, cap = limits
    return min(cap, first * 2 ** max(0, failures - 1))


def sleep(stopping, seconds):
    """Sleep about `seconds` (jittered), waking early when `stopping` is set.

    True if `stopping` is set. With no event (`None`), a plain gevent sleep.
    """
    seconds = jitter(seconds)
    if stopping is None:
        gevent.sleep(seconds)
        return False
    return stopping.wait(seconds)


class Backoff:
    """Counts failures in a row and waits accordingly.

    `failure()` counts one and returns the (unjittered) delay it earned;
    `success()` resets the count; `wait(stopping)` sleeps the current delay on
    the stop event. `delay` is 0 while nothing has failed.
    """

    def __init__(self, limits):
        self.limits = limits
        self.failures = 0

    @property
    def delay(self):
        return backoff_delay(self.failures, self.limits) if self.failures else 0

    def failure(self):
        self.failures += 1
        return self.delay

    def success(self):
        self.failures = 0

    def wait(self, stopping):
        """Sleep the current delay (jittered) on `stopping`; True if stopping."""
        return sleep(stopping, self.delay)
