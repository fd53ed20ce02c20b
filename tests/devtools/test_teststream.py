"""The built-in test stream: a real ffmpeg live origin served over HTTP."""

import datetime
import subprocess
import sys
import urllib.request

import m3u8
import pytest

from devtools.teststream import TestStream, quality_size


def fetch(url):
    with urllib.request.urlopen(url, timeout=5) as response:
        return response.read()


def test_quality_size():
    assert quality_size("source") == (640, 360)
    assert quality_size("240p") == (426, 240)
    assert quality_size("144p") == (256, 144)
    for bad in ("720", "p", "../x", "source2"):
        with pytest.raises(ValueError):
            quality_size(bad)


@pytest.mark.slow
def test_teststream_serves_live_hls_on_an_exact_time_grid(tmp_path):
    with TestStream(tmp_path, qualities=("source", "144p")) as stream:
        assert stream.url == f"http://127.0.0.1:{stream.port}/test/master.m3u8"
        master = m3u8.loads(fetch(stream.url).decode(), uri=stream.url)
        assert master.is_variant
        by_uri = {p.uri: p.stream_info for p in master.playlists}
        assert by_uri["source/index.m3u8"].resolution == (640, 360)
        assert by_uri["144p/index.m3u8"].resolution == (256, 144)
        assert by_uri["source/index.m3u8"].bandwidth > by_uri["144p/index.m3u8"].bandwidth

        # Program date times sit on the epoch grid that the burnt-in clock uses.
        playlist = m3u8.loads(fetch(stream.media_url("source")).decode())
        assert playlist.segments
        for segment in playlist.segments:
            number = int(segment.uri[3:-3])
            expected = stream.epoch + datetime.timedelta(seconds=2 * number)
            assert segment.program_date_time == expected
            assert segment.duration == 2.0
        # A segment is real MPEG-TS H.264 at the quality's size.
        data = fetch(f"{stream.base_url}/144p/{playlist.segments[0].uri}")
        probe = subprocess.run(
            ["ffprobe", "-v", "error", "-show_entries", "stream=codec_name,width,height",
             "-of", "csv=p=0", "-"],
            input=data, capture_output=True, check=True, text=False,
        ).stdout.decode()  # fmt: skip
        assert "h264,256,144" in probe
        assert "aac" in probe
        # Unknown paths are 404, not errors.
        with pytest.raises(urllib.error.HTTPError) as e:
            fetch(f"{stream.base_url}/source/../../etc/passwd")
        assert e.value.code == 404
    assert not stream.alive


@pytest.mark.slow
def test_teststream_command_prints_its_url_and_stops_on_sigterm(tmp_path):
    process = subprocess.Popen(
        [sys.executable, "-m", "devtools.teststream", "--port", "0", "--work-dir", str(tmp_path),
         "--channel", "demo", "--qualities", "source"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        line = process.stdout.readline()
        assert line.startswith("teststream: serving http://127.0.0.1:")
        url = line.split()[-1]
        assert url.endswith("/demo/master.m3u8")
        assert b"source/index.m3u8" in fetch(url)
    finally:
        process.terminate()
        assert process.wait(10) == 0
    assert subprocess.run(["pgrep", "-f", str(tmp_path)], capture_output=True).returncode == 1


@pytest.mark.slow
@pytest.mark.parametrize("codec", ["h264", "hevc", "av1"])
def test_teststream_serves_fmp4(tmp_path, codec):
    with TestStream(
        tmp_path, qualities=("source", "144p"), container="fmp4", codec=codec
    ) as stream:
        master = fetch(stream.url).decode()
        assert ("CODECS=" in master) == (codec == "h264")
        playlist = m3u8.loads(fetch(stream.media_url("144p")).decode())
        (init_map,) = playlist.segment_map
        assert playlist.segments
        for segment in playlist.segments:
            number = int(segment.uri[3:-4])
            assert segment.uri.endswith(".m4s")
            assert segment.program_date_time == stream.epoch + datetime.timedelta(
                seconds=2 * number
            )
        # Init section + segment: one decodable file, as the store keeps it.
        data = fetch(f"{stream.base_url}/144p/{init_map.uri}")
        data += fetch(f"{stream.base_url}/144p/{playlist.segments[0].uri}")
        probe = subprocess.run(
            ["ffprobe", "-v", "error", "-show_entries", "stream=codec_name,width,height",
             "-of", "csv=p=0", "-"],
            input=data, capture_output=True, check=True,
        )  # fmt: skip
        assert f"{codec},256,144" in probe.stdout.decode()
        assert probe.stderr == b""


@pytest.mark.parametrize(
    "options, reason",
    [
        ({"container": "mkv"}, "bad container"),
        ({"codec": "vp9", "container": "fmp4"}, "bad codec"),
        ({"codec": "hevc"}, "H.264 only"),
    ],
)
def test_teststream_refuses_unknown_formats(tmp_path, options, reason):
    with pytest.raises(ValueError, match=reason):
        TestStream(tmp_path, **options)
