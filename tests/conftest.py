"""Fixtures shared by every test package."""

import datetime

import pytest

from tests.media import make_media

# Broadcast time the shared media is filed under: just before an hour boundary,
# so that ranges over it cross hours.
MEDIA_START = datetime.datetime(2026, 11, 28, 13, 59, 42, tzinfo=datetime.UTC)


@pytest.fixture(scope="session")
def media(tmp_path_factory):
    """30 s of 320x180 30 fps H.264 (B-frames, 2 s GOPs) + AAC, as five 6 s segments.

    Made once per run; returns `[(path, duration), ...]`. Use `tests.media.add_to_store`
    to put it in a store.
    """
    return make_media(tmp_path_factory.mktemp("media"), seconds=30)
