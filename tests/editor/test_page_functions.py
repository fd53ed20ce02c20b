"""The page's pure functions, table-driven, run in the browser that runs the page."""

import base64
import datetime
import json
import subprocess

import pytest

import common.cut
from common.segments import get_best_segments
from tests.conftest import MEDIA_START
from tests.editor.test_browser import CHANNEL, QUALITY, stock
from tests.media import add_to_store

MS = int(MEDIA_START.timestamp() * 1000)


@pytest.fixture
def editor_page(page, restreamer, media):
    server = restreamer(stock(media))
    page.goto(f"{server.url}/editor?start=2000-01-01T00:00&end=2000-01-01T01:00")
    page.wait_for_function("window.editor !== undefined")
    return page


PARSE_TIME = [
    ("2026-11-28T13:59:42", MS),
    ("2026-11-28T13:59:42.5", MS + 500),
    ("2026-11-28T13:59:42.123456Z", MS + 123),
    ("2026-11-28 13:59:42.250+00:00", MS + 250),
    ("2026-11-28T13:59", MS - 42_000),
    ("  2026-11-28T13:59:42z ", MS),
    ("2026-11-28T13:59:42+01:00", None),  # only UTC is accepted
    ("2026-02-30T00:00:00", None),
    ("2026-11-28T24:00:00", None),
    ("2026-11-28", None),
    ("yesterday", None),
    ("", None),
]


def test_parse_time(editor_page):
    texts = [text for text, _ in PARSE_TIME]
    got = editor_page.evaluate(
        "(texts) => texts.map((t) => { const v = parseTime(t); return Number.isNaN(v) ? null : v; })",
        texts,
    )
    assert got == [expected for _, expected in PARSE_TIME]


def test_format_time_and_duration(editor_page):
    got = editor_page.evaluate(
        "(ms) => [formatTime(ms + 0.4), formatTime(ms + 999.6), formatDuration(5), formatDuration(61.5),"
        " formatDuration(3725.25), formatDuration(-2)]",
        MS,
    )
    assert got == [
        "2026-11-28T13:59:42.000",
        "2026-11-28T13:59:43.000",
        "5.000 s",
        "1:01.500",
        "1:02:05.250",
        "−2.000 s",
    ]


PLAYLIST = """#EXTM3U
#EXT-X-VERSION:3
#EXT-X-TARGETDURATION:6
#EXT-X-PROGRAM-DATE-TIME:2026-11-28T13:59:42.000Z
#EXTINF:6.000,
a.ts
#EXTINF:6.000,
b.ts
#EXT-X-DISCONTINUITY
#EXT-X-PROGRAM-DATE-TIME:2026-11-28T14:00:00.000Z
#EXTINF:4.000,
c.ts
#EXT-X-PROGRAM-DATE-TIME:2026-11-28T14:00:10.000Z
#EXTINF:2.000,
d.ts
#EXT-X-ENDLIST
"""


def test_parse_playlist_and_find_holes(editor_page):
    result = editor_page.evaluate(
        """([text, ms]) => {
            const parsed = parsePlaylist(text);
            return {
                parsed,
                bounded: findHoles(parsed.segments, ms - 2000, ms + 40000),
                live: findHoles(parsed.segments, ms, null),
                liveFromBefore: findHoles(parsed.segments, ms - 30 * 60 * 1000, null),
                empty: findHoles([], ms, ms + 1000),
            };
        }""",
        [PLAYLIST, MS],
    )
    segments = result["parsed"]["segments"]
    # A program date time carries over to the segment after it.
    assert [(s["pdt"] - MS, s["duration"], s["discontinuity"]) for s in segments] == [
        (0, 6, False),
        (6000, 6, False),
        (18000, 4, True),
        (28000, 2, False),
    ]
    assert result["parsed"]["endList"] is True
    holes = [(h["from"] - MS, h["to"] - MS) for h in result["bounded"]]
    # Uncovered start, the marked discontinuity, an unmarked jump, uncovered end.
    assert holes == [(-2000, 0), (12000, 18000), (22000, 28000), (30000, 40000)]
    # Live: no hole at the start (covered) nor at the end (not recorded yet).
    assert [(h["from"] - MS, h["to"] - MS) for h in result["live"]] == [
        (12000, 18000),
        (22000, 28000),
    ]
    # Live, the window reaching back before the recording began (the default
    # last 30 minutes of a new recording): the time before it is no hole either.
    assert result["liveFromBefore"] == result["live"]
    assert [(h["from"] - MS, h["to"] - MS) for h in result["empty"]] == [(0, 1000)]


def test_ts_video_duration_agrees_with_ffprobe(editor_page, media):
    """The preview's duration comes from the file's own timestamps, like ffprobe's."""
    hour = json.loads(
        editor_page.evaluate(f"fetch('/files/{CHANNEL}/{QUALITY}').then(r => r.text())")
    )[0]
    name = editor_page.evaluate(f"fetch('/files/{CHANNEL}/{QUALITY}/{hour}').then(r => r.json())")[
        0
    ]
    url = f"/segments/{CHANNEL}/{QUALITY}/{hour}/{name}"
    got = editor_page.evaluate(
        "(url) => fetch(url).then((r) => r.arrayBuffer()).then(tsVideoDuration)",
        url.replace(":", "%3A"),
    )
    probe = subprocess.run(
        ["ffprobe", "-v", "error", "-select_streams", "v:0", "-count_frames",
         "-show_entries", "stream=nb_read_frames,r_frame_rate", "-of", "json", media[0][0]],
        capture_output=True, check=True, text=True,
    )  # fmt: skip
    stream = json.loads(probe.stdout)["streams"][0]
    num, den = map(int, stream["r_frame_rate"].split("/"))
    expected = int(stream["nb_read_frames"]) * den / num
    assert got == pytest.approx(expected, abs=1e-6)


def test_ts_video_duration_of_garbage_is_null(editor_page):
    assert editor_page.evaluate("tsVideoDuration(new Uint8Array(188 * 3).buffer)") is None
    assert editor_page.evaluate("tsVideoDuration(new ArrayBuffer(0))") is None


BUSY_RETRY = [
    (503, "7", 7),
    (429, "2", 2),
    (503, None, 5),  # no Retry-After: the default
    (503, "0", 1),  # never a busy loop
    (429, "100000", 60),  # never longer than a minute
    (503, "Wed, 02 Dec 2026 10:00:12 GMT", 12),  # an HTTP date, 12 s after "now"
    (503, "soon", 5),
    (200, "7", None),  # not busy
    (500, "7", None),
]


def test_busy_retry_delay(editor_page):
    now = "Date.parse('2026-12-02T10:00:00Z')"
    got = [
        editor_page.evaluate(f"busyRetryDelay({status}, {json.dumps(header)}, {now})")
        for status, header, _ in BUSY_RETRY
    ]
    assert got == [expected for _, _, expected in BUSY_RETRY]


# A channel switching from MPEG-TS to fMP4 (as the restreamer lists it: a map
# for the fMP4 run, each segment a byte range of its stored file).
MIXED_PLAYLIST = """#EXTM3U
#EXT-X-VERSION:6
#EXT-X-TARGETDURATION:6
#EXT-X-PROGRAM-DATE-TIME:2026-11-28T13:59:42.000Z
#EXTINF:6.000,
../../segments/c/q/2026-11-28T13/59%3A42.000000-6.000-full-A.ts
#EXT-X-DISCONTINUITY
#EXT-X-MAP:URI="../../segments/c/q/2026-11-28T13/59%3A48.000000-2.000-full-B.mp4",BYTERANGE="700@0"
#EXT-X-PROGRAM-DATE-TIME:2026-11-28T13:59:48.000Z
#EXT-X-BYTERANGE:5000@700
#EXTINF:2.000,
../../segments/c/q/2026-11-28T13/59%3A48.000000-2.000-full-B.mp4
#EXT-X-BYTERANGE:5000@700
#EXTINF:2.000,
../../segments/c/q/2026-11-28T13/59%3A50.000000-2.000-full-C.MP4?x=1
"""

CUT_CONTAINER = [
    (0, 6000, "ts"),  # the TS segment only
    (1000, 5999, "ts"),
    (5000, 6000, "ts"),  # ends where the fMP4 run starts
    (5000, 6001, "mp4"),  # reaches into it
    (6000, 8000, "mp4"),
    (9000, 10000, "mp4"),
    (10000, 12000, "ts"),  # past everything: nothing fMP4 in range
]


def test_cut_container(editor_page):
    got = editor_page.evaluate(
        """([text, ms, ranges]) => {
            const { segments } = parsePlaylist(text);
            return [segments.map((s) => s.container),
                    ranges.map(([a, b]) => cutContainer(segments, ms + a, ms + b))];
        }""",
        [MIXED_PLAYLIST, MS, [[a, b] for a, b, _ in CUT_CONTAINER]],
    )
    assert got == [["ts", "mp4", "mp4"], [expected for _, _, expected in CUT_CONTAINER]]


@pytest.mark.slow
@pytest.mark.parametrize("codec", ["h264", "av1"])
def test_mp4_video_duration_agrees_with_ffprobe(editor_page, fmp4_media, tmp_path, codec):
    """An .mp4 preview's duration comes from its own sample durations, like ffprobe's."""
    add_to_store(str(tmp_path), "c", "q", MEDIA_START, fmp4_media(codec))
    start, end = (MEDIA_START + datetime.timedelta(seconds=s) for s in (0.5, 3.9))
    segments = get_best_segments(f"{tmp_path}/c/q", start, end)
    path = tmp_path / "cut.mp4"
    path.write_bytes(b"".join(common.cut.cut(segments, start, end, container="mp4")))
    got = editor_page.evaluate(
        "(b64) => mp4VideoDuration(Uint8Array.from(atob(b64), (c) => c.charCodeAt(0)).buffer)",
        base64.b64encode(path.read_bytes()).decode(),
    )
    probe = subprocess.run(
        ["ffprobe", "-v", "error", "-select_streams", "v:0", "-count_frames",
         "-show_entries", "stream=nb_read_frames,r_frame_rate", "-of", "json", str(path)],
        capture_output=True, check=True, text=True,
    )  # fmt: skip
    stream = json.loads(probe.stdout)["streams"][0]
    num, den = map(int, stream["r_frame_rate"].split("/"))
    assert got == pytest.approx(int(stream["nb_read_frames"]) * den / num, abs=1e-6)


def test_mp4_video_duration_of_garbage_is_null(editor_page):
    assert editor_page.evaluate("mp4VideoDuration(new ArrayBuffer(0))") is None
    assert editor_page.evaluate("mp4VideoDuration(new Uint8Array(188 * 3).buffer)") is None
    # A moov that claims more bytes than the file has.
    assert (
        editor_page.evaluate(
            "mp4VideoDuration(new Uint8Array([0, 0, 0, 200, 109, 111, 111, 118]).buffer)"
        )
        is None
    )
