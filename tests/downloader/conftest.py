"""Fixtures for the downloader's tests: real segment bytes, an origin, short timeouts."""

import os

import prometheus_client
import pytest

from downloader import main
from tests.downloader.origin import Origin


@pytest.fixture(scope="session")
def segment_data(media):
    """The shared test media's segments as bytes: real MPEG-TS, whole 188-byte packets."""
    data = []
    for path, _ in media:
        with open(path, "rb") as f:
            data.append(f.read())
    return data


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
        "SEGMENT_TIMEOUTS": (5, 10),
        "SEGMENT_REQUEST_TIMEOUTS": (3, 3),
        "SEGMENT_RETRY": (0.01, 0.02),
        # Long enough that a loaded machine never gives up where a test expects
        # success; tests about giving up shorten it further (see `give_up_soon`).
        "GIVE_UP_TIMEOUT": 10,
        "STALL_SUSPECT_TIME": 0.08,
    }.items():
        monkeypatch.setattr(main, name, value)


@pytest.fixture
def give_up_soon(monkeypatch, fast):
    monkeypatch.setattr(main, "GIVE_UP_TIMEOUT", 0.3)


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
