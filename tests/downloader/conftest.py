"""Fixtures for the downloader's tests: real segment bytes, an origin, short timeouts."""

import collections
import os

import gevent.event
import prometheus_client
import pytest

from common.segments import parse_segment_path
from downloader import getter, main
from downloader.providers import HLSProvider
from tests.downloader.origin import Origin
from tests.util import wait_for

DEADLINE = 10  # seconds any one expected outcome may take before the test fails


@pytest.fixture(scope="session")
def segment_data(media):
    """The shared test media's segments as bytes: real MPEG-TS, whole 188-byte packets."""
    data = []
    for path, _ in media:
        with open(path, "rb") as f:
            data.append(f.read())
    return data


@pytest.fixture(scope="session")
def fmp4_parts(fmp4_media):
    """`fmp4_parts(codec)` → (init section bytes, [media segment bytes, ...]), as an
    fMP4 origin (ffmpeg's HLS muxer) serves them: 2 s segments of real video."""

    def get(codec):
        segments = fmp4_media(codec)
        with open(os.path.join(os.path.dirname(segments[0][0]), "init.mp4"), "rb") as f:
            init = f.read()
        media = []
        for path, _ in segments:
            with open(path[: -len(".mp4")] + ".m4s", "rb") as f:
                media.append(f.read())
        return init, media

    return get


@pytest.fixture
def origin(segment_data):
    origin = Origin(segment_data).start()
    yield origin
    origin.stop()


@pytest.fixture
def fast(monkeypatch):
    """Shorten every interval and timeout so fault scenarios take milliseconds."""
    for name, value in {
        "OFFLINE_BACKOFF": (0.01, 0.05),
        "POLL_LIMITS": (0.01, 0.02),
        "HANDOVER_TIMEOUT": 2,
        "PLAYLIST_TIMEOUTS": (3, 3),
    }.items():
        monkeypatch.setattr(main, name, value)
    for name, value in {
        "SEGMENT_TIMEOUTS": (5, 10),
        "SEGMENT_REQUEST_TIMEOUTS": (3, 3),
        "SEGMENT_RETRY": (0.01, 0.02),
        # Long enough that a loaded machine never gives up where a test expects
        # success; tests about giving up shorten it further (see `give_up_soon`).
        "GIVE_UP_TIMEOUT": 10,
        "STALL_SUSPECT_TIME": 0.08,
    }.items():
        monkeypatch.setattr(getter, name, value)


@pytest.fixture
def give_up_soon(monkeypatch, fast):
    monkeypatch.setattr(getter, "GIVE_UP_TIMEOUT", 0.3)


@pytest.fixture
def metrics():
    return main.Metrics(registry=prometheus_client.CollectorRegistry())


def stored(base_dir, include_temp=False):
    """Every file in a store, as paths relative to it, sorted."""
    found = []
    for root, _, files in os.walk(base_dir):
        for name in files:
            if include_temp or "-temp-" not in name:
                found.append(os.path.relpath(os.path.join(root, name), base_dir))
    return sorted(found)


def sample(metrics, name, **labels):
    value = metrics.registry.get_sample_value(name, labels)
    return 0 if value is None else value


def errors(metrics, kind, channel="ch", quality="source"):
    """`downloader_errors_total` of one kind."""
    return sample(metrics, "downloader_errors_total", channel=channel, quality=quality, kind=kind)


def attempts(metrics, reason, channel="ch", quality="source"):
    """`downloader_segment_attempts_total` for one reason."""
    return sample(
        metrics,
        "downloader_segment_attempts_total",
        channel=channel,
        quality=quality,
        reason=reason,
    )


def segments_in(base_dir, channel="ch", quality="source"):
    """The stored segments of one channel and quality, parsed, in time order."""
    prefix = os.path.join(channel, quality) + os.sep
    return [
        parse_segment_path(os.path.join(base_dir, p))
        for p in stored(base_dir)
        if p.startswith(prefix)
    ]


def make_manager(origin, metrics, base_dir, qualities=("source",), url=None, channel="ch"):
    """A ChannelManager recording the origin's `channel` (its master playlist, or `url`)."""
    return main.ChannelManager(
        channel,
        HLSProvider(channel, url or origin.master_url(channel)),
        list(qualities),
        str(base_dir),
        metrics,
    )


class PollSteps:
    """Counts each worker's finished polls through its `wait` seam.

    A worker calls `wait` after every poll (fetch, then getters started), so a
    test that changes the origin can wait for `after(n)` polls to know the
    workers saw the change, rather than guessing from the origin's log.
    """

    def __init__(self, monkeypatch):
        self.polls = collections.Counter()  # quality -> polls finished
        self._changed = gevent.event.Event()
        real_wait = main.QualityWorker.wait
        steps = self

        def wait(worker, seconds):
            steps.polls[worker.quality] += 1
            steps._changed.set()
            return real_wait(worker, seconds)

        monkeypatch.setattr(main.QualityWorker, "wait", wait)

    def after(self, count, quality="source"):
        """Wait until `count` more polls of `quality` have finished."""
        target = self.polls[quality] + count

        def done():
            self._changed.clear()
            if self.polls[quality] >= target:
                return True
            self._changed.wait(0.05)
            return self.polls[quality] >= target

        wait_for(done, timeout=DEADLINE, interval=0, what=f"{count} polls of {quality}")


@pytest.fixture
def poll_steps(monkeypatch):
    return PollSteps(monkeypatch)
