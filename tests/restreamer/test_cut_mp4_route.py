"""`/cut/<channel>/<quality>.mp4`, and fMP4 recordings through `/cut`: the
route's choice of container (the cuts themselves are judged in
tests/common/test_cut_mp4.py)."""

import datetime

import prometheus_client
import pytest

from restreamer.app import create_app
from tests.common.cutcheck import decode_warnings, write_cut
from tests.media import add_to_store

from .test_routes import assert_one_line_error

START = datetime.datetime(2026, 11, 28, 13, 59, 57, tzinfo=datetime.UTC)
NOW = START + datetime.timedelta(hours=2)


def at(seconds):
    value = START + datetime.timedelta(seconds=seconds)
    return value.replace(tzinfo=None).isoformat(timespec="microseconds")


@pytest.fixture
def client_for(tmp_path, fmp4_media):
    """`client_for(codec)`: a test client over a store of that codec's fMP4 media."""

    def make(codec):
        base = str(tmp_path / f"store-{codec}")
        add_to_store(base, "chan", "source", START, fmp4_media(codec))
        registry = prometheus_client.CollectorRegistry()
        return create_app(base, registry, now=lambda: NOW).test_client()

    return make


@pytest.mark.slow  # ffmpeg cuts real media
@pytest.mark.parametrize("extension, mimetype", [("mp4", "video/mp4"), ("ts", "video/mp2t")])
def test_fmp4_cut_in_either_container(client_for, tmp_path, extension, mimetype):
    client = client_for("h264")
    response = client.get(f"/cut/chan/source.{extension}?start={at(0.5)}&end={at(3.5)}")
    assert response.status_code == 200, response.data
    assert response.content_type == mimetype
    assert response.is_streamed
    assert f'.{extension}"' in response.headers["Content-Disposition"]
    out = write_cut(tmp_path / f"out.{extension}", response.iter_encoded())
    assert decode_warnings(out) == ""


def test_av1_as_mpegts_is_406(client_for):
    client = client_for("av1")
    response = client.get(f"/cut/chan/source.ts?start={at(0.5)}&end={at(3.5)}&type=full")
    body = assert_one_line_error(response, 406)
    assert "av1 video cannot be cut to .ts" in body
