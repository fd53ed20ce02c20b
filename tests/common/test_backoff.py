import time

import gevent
import gevent.event
import pytest

from common.backoff import Backoff, backoff_delay, jitter, sleep


def test_jitter():
    values = [jitter(10) for _ in range(200)]
    assert all(9 <= v <= 11 for v in values)
    assert len(set(values)) > 100


@pytest.mark.parametrize(
    "failures, expected",
    [(0, 2), (1, 2), (2, 4), (3, 8), (4, 16), (5, 30), (50, 30)],
)
def test_backoff_delay_doubles_up_to_the_cap(failures, expected):
    assert backoff_delay(failures, (2, 30)) == expected


def test_backoff_counts_failures_and_resets():
    backoff = Backoff((1, 5))
    assert backoff.delay == 0
    assert [backoff.failure() for _ in range(5)] == [1, 2, 4, 5, 5]
    backoff.success()
    assert backoff.delay == 0
    assert backoff.failure() == 1


def test_sleep_wakes_on_the_stop_event():
    stopping = gevent.event.Event()
    gevent.spawn_later(0.05, stopping.set)
    began = time.monotonic()
    assert sleep(stopping, 30) is True
    assert time.monotonic() - began < 5


def test_backoff_wait_sleeps_its_delay():
    backoff = Backoff((0.01, 0.01))
    backoff.failure()
    assert backoff.wait(gevent.event.Event()) is False
    assert sleep(None, 0.01) is False
