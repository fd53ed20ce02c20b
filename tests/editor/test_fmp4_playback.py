"""hls.js in Chromium plays the restreamer's fMP4 playlists (H.264, HEVC, AV1).

The page is any page of the restreamer (so hls.js and the playlists are
same-origin); the test adds a muted video element, points hls.js at a
playlist and lets it play to the end, collecting every error hls.js reports.
"""

import datetime
import urllib.parse

import pytest

from restreamer.app import create_app
from tests.conftest import MEDIA_START
from tests.media import add_to_store

pytestmark = pytest.mark.slow

SEGMENT_SECONDS = 2  # of the `fmp4_media` fixture, 3 segments of each codec
VIDEO_TYPES = {
    "h264": 'video/mp4; codecs="avc1.64000d,mp4a.40.2"',
    "hevc": 'video/mp4; codecs="hvc1.1.6.L60.90,mp4a.40.2"',
    "av1": 'video/mp4; codecs="av01.0.00M.08,mp4a.40.2"',
}
# Added to the page: a video element and hls.js, errors kept in `window.hlsErrors`.
PLAYER = """async (playlist) => {
    await new Promise((resolve, reject) => {
        const script = document.createElement('script');
        script.src = '/editor/vendor/hls.min.js';
        script.onload = resolve;
        script.onerror = reject;
        document.head.appendChild(script);
    });
    const video = document.createElement('video');
    video.muted = true;
    document.body.appendChild(video);
    window.video = video;
    window.hlsErrors = [];
    const hls = new Hls({liveSyncDurationCount: 1});
    hls.on(Hls.Events.ERROR, (event, data) => window.hlsErrors.push(
        {type: data.type, details: data.details, fatal: data.fatal}));
    hls.loadSource(playlist);
    hls.attachMedia(video);
    hls.on(Hls.Events.MANIFEST_PARSED, () => video.play());
}"""
# Noted by hls.js while it steps over the media's first timestamps; not fatal.
BENIGN_HLS_ERRORS = {"bufferSeekOverHole", "bufferStalledError"}


def start_player(page, server, path):
    page.goto(f"{server.url}/files")
    page.evaluate(PLAYER, f"{server.url}{path}")


def hls_errors(page):
    errors = page.evaluate("window.hlsErrors")
    return [e for e in errors if e["fatal"] or e["details"] not in BENIGN_HLS_ERRORS]


def query(start, end=None):
    times = {"start": start.strftime("%Y-%m-%dT%H:%M:%S")}
    if end is not None:
        times["end"] = end.strftime("%Y-%m-%dT%H:%M:%S")
    return urllib.parse.urlencode(times)


def require_codec(page, codec):
    page.goto("about:blank")
    if not page.evaluate(f"MediaSource.isTypeSupported('{VIDEO_TYPES[codec]}')"):
        pytest.skip(f"this Chromium cannot decode {codec} (MediaSource says no)")


@pytest.mark.parametrize("codec", ["h264", "hevc", "av1"])
def test_past_range_plays_to_the_end(page, serve, tmp_path, fmp4_media, codec):
    require_codec(page, codec)
    base = str(tmp_path / "store")
    segments = fmp4_media(codec)
    add_to_store(base, "chan", codec, MEDIA_START, segments)
    server = serve(create_app(base, now=lambda: MEDIA_START + datetime.timedelta(days=1)))
    end = MEDIA_START + datetime.timedelta(seconds=SEGMENT_SECONDS * len(segments))
    start_player(page, server, f"/playlist/chan/{codec}.m3u8?{query(MEDIA_START, end)}")
    page.wait_for_function("window.video && window.video.ended", timeout=30_000)
    expected = sum(duration.total_seconds() for _, duration in segments)
    assert abs(page.evaluate("video.duration") - expected) < 0.1
    assert page.evaluate("video.getVideoPlaybackQuality().totalVideoFrames") >= expected * 30 - 2
    assert hls_errors(page) == []


def test_a_codec_switch_plays_through(page, serve, tmp_path, fmp4_media):
    """H.264 then AV1 in one range: a new EXT-X-MAP after a discontinuity, and
    hls.js switches decoders there."""
    require_codec(page, "av1")
    base = str(tmp_path / "store")
    add_to_store(base, "chan", "source", MEDIA_START, fmp4_media("h264"))
    add_to_store(
        base, "chan", "source", MEDIA_START + datetime.timedelta(seconds=6), fmp4_media("av1")
    )
    server = serve(create_app(base, now=lambda: MEDIA_START + datetime.timedelta(days=1)))
    end = MEDIA_START + datetime.timedelta(seconds=12)
    start_player(page, server, f"/playlist/chan/source.m3u8?{query(MEDIA_START, end)}")
    # Played past the switch to the end (the last few frames' worth may be
    # where the audio and video of the last segment stop a frame apart).
    page.wait_for_function(
        "window.video && (video.ended || video.currentTime > video.duration - 0.1)",
        timeout=40_000,
    )
    assert page.evaluate("video.duration") > 11.9
    assert page.evaluate("video.error") is None
    assert hls_errors(page) == []


def test_live_range_follows_the_recording(page, serve, tmp_path, fmp4_media):
    """No end: an EVENT playlist that grows while hls.js plays it."""
    require_codec(page, "av1")
    base = str(tmp_path / "store")
    segments = fmp4_media("av1")
    add_to_store(base, "chan", "source", MEDIA_START, segments[:1])
    now = [MEDIA_START + datetime.timedelta(seconds=2)]
    server = serve(create_app(base, now=lambda: now[0]))
    start_player(page, server, f"/playlist/chan/source.m3u8?{query(MEDIA_START)}")
    page.wait_for_function("window.video && window.video.currentTime > 0.5", timeout=30_000)
    for i in (1, 2):
        start = MEDIA_START + datetime.timedelta(seconds=SEGMENT_SECONDS * i)
        add_to_store(base, "chan", "source", start, segments[i : i + 1])
        now[0] += datetime.timedelta(seconds=SEGMENT_SECONDS)
        # Played into the segment added after playback started.
        page.wait_for_function(
            f"video.buffered.length && video.buffered.end(0) > {SEGMENT_SECONDS * i + 1}",
            timeout=30_000,
        )
    page.wait_for_function("video.currentTime > 4.5", timeout=30_000)
    assert hls_errors(page) == []


@pytest.mark.parametrize("codec", ["h264", "hevc"])
def test_fast_mp4_cut_plays_in_the_browser(page, serve, tmp_path, fmp4_media, codec):
    """The fast cut of an fMP4 range (avc3/hev1, parameter sets in band where
    re-encoded pieces join copied fragments), played as a file by the
    browser's own player, from mid-GOP to mid-GOP across all segments."""
    require_codec(page, codec)
    base = str(tmp_path / "store")
    add_to_store(base, "chan", codec, MEDIA_START, fmp4_media(codec))
    server = serve(create_app(base, now=lambda: MEDIA_START + datetime.timedelta(days=1)))
    start = MEDIA_START + datetime.timedelta(seconds=0.5)
    end = MEDIA_START + datetime.timedelta(seconds=5.5)
    times = {
        "start": start.isoformat(timespec="milliseconds").replace("+00:00", ""),
        "end": end.isoformat(timespec="milliseconds").replace("+00:00", ""),
        "type": "fast",
    }
    page.goto(f"{server.url}/files")
    page.evaluate(
        """(url) => {
            const video = document.createElement('video');
            video.muted = true;
            video.src = url;
            document.body.appendChild(video);
            window.video = video;
            video.play();
        }""",
        f"{server.url}/cut/chan/{codec}.mp4?{urllib.parse.urlencode(times)}",
    )
    page.wait_for_function("window.video && (video.ended || video.error)", timeout=30_000)
    assert page.evaluate("video.error && video.error.message") is None
    assert abs(page.evaluate("video.duration") - 5) < 0.1
    assert page.evaluate("video.getVideoPlaybackQuality().totalVideoFrames") >= 5 * 30 - 2
