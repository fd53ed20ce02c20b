"""Fixtures shared by every test package."""

# The services are gevent programs whose `__main__` patches the standard library
# before anything else. Tests run their workers in-process against real HTTP
# servers in the same process, so the test process is patched the same way, and
# as early as pytest allows (before anything imports ssl or urllib3).
from gevent import monkey

monkey.patch_all()

import datetime  # noqa: E402

import prometheus_client  # noqa: E402
import pytest  # noqa: E402

from tests.media import make_fmp4_media, make_media  # noqa: E402

# Broadcast time the shared media is filed under: just before an hour boundary,
# so that ranges over it cross hours.
MEDIA_START = datetime.datetime(2026, 11, 28, 13, 59, 42, tzinfo=datetime.UTC)


@pytest.fixture
def registry():
    """A fresh Prometheus registry, so each test reads back only its own samples."""
    return prometheus_client.CollectorRegistry()


@pytest.fixture(scope="session")
def media(tmp_path_factory):
    """30 s of 320x180 30 fps H.264 (B-frames, 2 s GOPs) + AAC, as five 6 s segments.

    Made once per run; returns `[(path, duration), ...]`. Use `tests.media.add_to_store`
    to put it in a store.
    """
    return make_media(tmp_path_factory.mktemp("media"), seconds=30)


@pytest.fixture(scope="session")
def fmp4_media(tmp_path_factory):
    """`fmp4_media(codec)`: 6 s of 320x180 fMP4 (`h264`, `hevc` or `av1`) + AAC as
    three 2 s `.mp4` files (init section + segment), made once per run per codec."""
    made = {}

    def get(codec):
        if codec not in made:
            made[codec] = make_fmp4_media(tmp_path_factory.mktemp(f"fmp4-{codec}"), codec)
        return made[codec]

    return get
