"""Fixtures for the cut tests: marked media, made once per run."""

import pytest

from tests.common.cutcheck import marker_filter
from tests.media import make_fmp4_media, make_media


@pytest.fixture(scope="session")
def marked_media(tmp_path_factory):
    """Like `media` (30 s, 320x180, five 6 s segments), each frame marked with its number."""
    return make_media(
        tmp_path_factory.mktemp("marked"), seconds=30, extra_video_filter=marker_filter(320)
    )


@pytest.fixture(scope="session")
def small_media(tmp_path_factory):
    """12 s at another size (256x144) and other timestamps: a restarted stream."""
    return make_media(
        tmp_path_factory.mktemp("small"),
        seconds=12,
        size="256x144",
        ts_offset=100,
        tone=660,
        extra_video_filter=marker_filter(256),
    )


@pytest.fixture(scope="session")
def fast_media(tmp_path_factory):
    """6 s at 60 fps (256x144), one segment, other timestamps: a restart at another rate."""
    return make_media(
        tmp_path_factory.mktemp("fast"),
        seconds=6,
        size="256x144",
        rate=60,
        ts_offset=200,
        extra_video_filter=marker_filter(256),
    )


@pytest.fixture(scope="session")
def mp2_media(tmp_path_factory):
    """Like `marked_media` but 12 s, its audio MP2: a format a restart cannot be converted to."""
    return make_media(
        tmp_path_factory.mktemp("mp2"),
        seconds=12,
        audio_codec="mp2",
        extra_video_filter=marker_filter(320),
    )


@pytest.fixture(scope="session")
def wrapping_media(tmp_path_factory):
    """18 s whose 33-bit timestamps wrap 2.3 s in (a stream past its 26.5th hour)."""
    return make_media(
        tmp_path_factory.mktemp("wrapping"),
        seconds=18,
        ts_offset=95440,
        extra_video_filter=marker_filter(320),
    )


@pytest.fixture(scope="session")
def marked_fmp4_media(tmp_path_factory):
    """`marked_fmp4_media(codec)`: 6 s of 160x90 fMP4 (`h264`, `hevc`, `av1`; closed
    2 s GOPs, B-frames for H.264 and HEVC) + AAC as three 2 s `.mp4` files (init
    section + segment), each frame marked with its number, timestamps from `ts_offset`
    seconds (`marked_fmp4_media(codec, ts_offset)`); made once per run per codec and offset."""
    made = {}

    def get(codec, ts_offset=0):
        if (codec, ts_offset) not in made:
            made[codec, ts_offset] = make_fmp4_media(
                tmp_path_factory.mktemp(f"marked-fmp4-{codec}"),
                codec,
                size="160x90",
                extra_video_filter=marker_filter(160),
                ts_offset=ts_offset,
            )
        return made[codec, ts_offset]

    return get


@pytest.fixture(scope="session")
def multi_gop_fmp4_media(tmp_path_factory):
    """12 s of 160x90 H.264 fMP4 + AAC as two 6 s segments of three 2 s GOPs
    each, every frame marked with its number."""
    return make_fmp4_media(
        tmp_path_factory.mktemp("multi-gop-fmp4"),
        "h264",
        seconds=12,
        size="160x90",
        segment_seconds=6,
        gop_seconds=2,
        extra_video_filter=marker_filter(160),
    )
