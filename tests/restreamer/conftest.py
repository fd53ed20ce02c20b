"""Fixtures for the restreamer's tests: a store of small fake segments, an app, a client."""

import datetime
import os

import pytest

from common.segments import SegmentWriter
from restreamer.app import create_app

UTC = datetime.UTC
# The fixed "now" of route tests: long after the fake store's segments.
NOW = datetime.datetime(2026, 11, 28, 18, 0, tzinfo=UTC)


def write_segment(base_dir, channel, quality, start, seconds, data=None, type="full"):
    """One segment of made-up bytes (the listings and playlists never read them)."""
    duration = datetime.timedelta(seconds=seconds)
    if data is None:
        data = f"{channel}/{quality}/{start.isoformat()}".encode() * 100
    with SegmentWriter(base_dir, channel, quality, start, duration) as writer:
        writer.write(data)
        return writer.finish(type)


def at(hour, minute, second, micro=0):
    return datetime.datetime(2026, 11, 28, hour, minute, second, micro, tzinfo=UTC)


@pytest.fixture
def store_dir(tmp_path):
    """A small store: channel `chan` in `source` and `480p`, with hidden things around it."""
    base = str(tmp_path / "store")
    os.makedirs(base)
    for second in range(50, 60, 2):
        write_segment(base, "chan", "source", at(13, 59, second), 2)
    for second in range(0, 10, 2):
        write_segment(base, "chan", "source", at(14, 0, second), 2)
    write_segment(base, "chan", "480p", at(14, 0, 0), 2)
    return base


@pytest.fixture
def app(store_dir):
    return create_app(store_dir, now=lambda: NOW)


@pytest.fixture
def client(app):
    return app.test_client()
