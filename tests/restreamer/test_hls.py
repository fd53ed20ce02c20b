"""Table-driven tests of the pure playlist writers and the parameter parsers."""

import datetime

import m3u8
import pytest
from werkzeug.datastructures import MultiDict
from werkzeug.exceptions import BadRequest

from common import probe
from common.layout import Layout
from common.segments import hash_bytes, parse_segment_path
from restreamer import hls, params

UTC = datetime.UTC
HASH = "A" * 43


def seg(hour, name_start, duration, type="full"):
    """A SegmentInfo as get_best_segments gives it: `seg("14", "00:02.000000", "2.000")`."""
    name = f"{name_start}-{duration}-{type}-{HASH}.ts"
    return parse_segment_path(f"/store/chan/source/2026-11-28T{hour}/{name}")


def uri(segment):
    return f"{segment.hour[-2:]}/{segment.name[:12]}.ts"


HEADER_VOD = (
    "#EXTM3U\n#EXT-X-VERSION:3\n#EXT-X-TARGETDURATION:{target}\n"
    "#EXT-X-MEDIA-SEQUENCE:0\n#EXT-X-PLAYLIST-TYPE:VOD\n"
)
HEADER_EVENT = HEADER_VOD.replace("VOD", "EVENT")


def entry(pdt, extinf, u):
    return f"#EXT-X-PROGRAM-DATE-TIME:{pdt}\n#EXTINF:{extinf},\n{u}\n"


MEDIA_CASES = [
    # (id, segments, ended, expected text)
    ("empty live", [], False, HEADER_EVENT.format(target=2)),
    ("only a hole, live", [None], False, HEADER_EVENT.format(target=2)),
    (
        "across an hour, finished",
        [seg("13", "59:58.000000", "2.000"), seg("14", "00:00.000000", "2.000")],
        True,
        HEADER_VOD.format(target=2)
        + entry("2026-11-28T13:59:58.000Z", "2.000", "13/59:58.000000.ts")
        + entry("2026-11-28T14:00:00.000Z", "2.000", "14/00:00.000000.ts")
        + "#EXT-X-ENDLIST\n",
    ),
    (
        "holes at the ends need no tag; one inside does",
        [
            None,
            seg("14", "00:00.123456", "6.006"),
            None,
            seg("14", "00:10.000000", "2.5"),
            None,
        ],
        True,
        HEADER_VOD.format(target=6)
        + entry("2026-11-28T14:00:00.123Z", "6.006", "14/00:00.123456.ts")
        + "#EXT-X-DISCONTINUITY\n"
        + entry("2026-11-28T14:00:10.000Z", "2.500", "14/00:10.000000.ts")
        + "#EXT-X-ENDLIST\n",
    ),
    (
        "a partial is followed by a hole, so a discontinuity; live",
        [seg("14", "00:00.000000", "2.000", "partial"), None, seg("14", "00:02.000000", "2.000")],
        False,
        HEADER_EVENT.format(target=2)
        + entry("2026-11-28T14:00:00.000Z", "2.000", "14/00:00.000000.ts")
        + "#EXT-X-DISCONTINUITY\n"
        + entry("2026-11-28T14:00:02.000Z", "2.000", "14/00:02.000000.ts"),
    ),
    (
        "target rounds half up; microsecond durations kept",
        [seg("14", "00:00.000000", "6.5"), seg("14", "00:06.500000", "1.000001")],
        True,
        HEADER_VOD.format(target=7)
        + entry("2026-11-28T14:00:00.000Z", "6.500", "14/00:00.000000.ts")
        + entry("2026-11-28T14:00:06.500Z", "1.000001", "14/00:06.500000.ts")
        + "#EXT-X-ENDLIST\n",
    ),
]


@pytest.mark.parametrize(
    "segments, ended, expected", [c[1:] for c in MEDIA_CASES], ids=[c[0] for c in MEDIA_CASES]
)
def test_media_playlist(segments, ended, expected):
    assert hls.media_playlist(segments, uri, ended=ended) == expected


@pytest.mark.parametrize(
    "durations, expected",
    [
        ([], hls.EMPTY_TARGET_DURATION),
        (["2.000"], 2),
        (["2.499999"], 2),
        (["2.500"], 3),
        (["0.2"], 1),
        (["6.006", "5.9", "1.0"], 6),
        (["10.5", "2"], 11),
    ],
)
def test_target_duration(durations, expected):
    segments = [seg("14", f"00:{i:02d}.000000", d) for i, d in enumerate(durations)]
    assert hls.target_duration(segments + [None]) == expected


def test_master_playlist():
    variants = [
        hls.Variant("source", "chan/source.m3u8?start=x", 6_000_123, 5_000_000, (1920, 1080),
                    "avc1.64002a,mp4a.40.2"),
        hls.Variant("audio_only", "chan/audio_only.m3u8?start=x", 160_000),
    ]  # fmt: skip
    assert hls.master_playlist(variants) == (
        "#EXTM3U\n#EXT-X-VERSION:3\n"
        "#EXT-X-STREAM-INF:BANDWIDTH=6000123,AVERAGE-BANDWIDTH=5000000,RESOLUTION=1920x1080,"
        'CODECS="avc1.64002a,mp4a.40.2"\n'
        "chan/source.m3u8?start=x\n"
        "#EXT-X-STREAM-INF:BANDWIDTH=160000\n"
        "chan/audio_only.m3u8?start=x\n"
    )


def test_bandwidths():
    a = seg("14", "00:00.000000", "2.000")
    b = seg("14", "00:02.000000", "4.000")
    partial = seg("14", "00:06.000000", "2.000", "partial")
    gone = seg("14", "00:08.000000", "2.000")
    sizes = {a: 250_000, b: 250_000, partial: 10, gone: None}
    # a: 1 Mbit/s, b: 0.5 Mbit/s; average over 6 s: 500 kB * 8 / 6 s.
    assert hls.bandwidths([a, None, b, partial, gone], sizes.get) == (1_000_000, 666_667)
    assert hls.bandwidths([None, partial], sizes.get) == (0, 0)


@pytest.mark.parametrize(
    "codec, expected",
    [("h264", "avc1.64000d"), ("hevc", "hvc1.1.6.L60.90"), ("av1", "av01.0.00M.08")],
)
def test_codecs_of_real_fmp4_files(fmp4_media, codec, expected):
    path, _ = fmp4_media(codec)[0]
    assert probe.describe(path).codecs.split(",")[0] == expected


def t(*args):
    return datetime.datetime(*args, tzinfo=UTC)


@pytest.mark.parametrize(
    "text, expected",
    [
        ("2026-11-28T13:50:07.300", t(2026, 11, 28, 13, 50, 7, 300000)),
        ("2026-11-28T13:50:07", t(2026, 11, 28, 13, 50, 7)),
        ("2026-11-28T13:50:07Z", t(2026, 11, 28, 13, 50, 7)),
        ("2026-11-28T14:50:07+01:00", t(2026, 11, 28, 13, 50, 7)),
        ("2026-11-28T13:50:07.123456789", t(2026, 11, 28, 13, 50, 7, 123456)),
        ("2026-11-28", t(2026, 11, 28)),
        ("2026-11-28T13", t(2026, 11, 28, 13)),
    ],
)
def test_parse_time(text, expected):
    assert params.parse_time(text, "start") == expected


@pytest.mark.parametrize(
    "text, reason",
    [
        ("yesterday", "bad start 'yesterday': expected ISO 8601"),
        ("2026-02-30T00:00", "day is out of range"),
        ("2026-11-28T13:50:07 01:00", "expected ISO 8601"),
        ("1" * 100, "too long"),
        ("", "expected ISO 8601"),
    ],
)
def test_parse_time_refuses(text, reason):
    with pytest.raises(BadRequest) as info:
        params.parse_time(text, "start")
    assert reason in info.value.description
    assert "\n" not in info.value.description


@pytest.mark.parametrize(
    "text, value",
    [("true", True), ("TRUE", True), ("1", True), ("yes", True), ("false", False), ("0", False),
     ("", False), ("Off", False), ("maybe", None), ("tru", None)],
)  # fmt: skip
def test_parse_bool(text, value):
    if value is None:
        with pytest.raises(BadRequest, match="expected true or false"):
            params.parse_bool(text, "allow_holes")
    else:
        assert params.parse_bool(text, "allow_holes") is value


def test_time_range():
    start, end = "2026-11-28T13:00:00", "2026-11-28T14:00:00"
    assert params.time_range(MultiDict({"start": start, "end": end})) == (
        t(2026, 11, 28, 13),
        t(2026, 11, 28, 14),
    )
    assert params.time_range(MultiDict({"start": start})) == (t(2026, 11, 28, 13), None)
    assert params.time_range(MultiDict(), start_required=False) == (None, None)
    with pytest.raises(BadRequest, match="start is required"):
        params.time_range(MultiDict({"end": end}))
    with pytest.raises(BadRequest, match="end is required"):
        params.time_range(MultiDict({"start": start}), end_required=True)
    with pytest.raises(BadRequest, match="must be after start"):
        params.time_range(MultiDict({"start": end, "end": start}))
    with pytest.raises(BadRequest, match="longer than 30 minutes"):
        params.time_range(
            MultiDict({"start": start, "end": end}), max_range=datetime.timedelta(minutes=30)
        )
    assert params.get_bool(MultiDict(), "allow_holes") is False
    assert params.get_bool(MultiDict({"allow_holes": "true"}), "allow_holes") is True


def test_format_time_round_trips():
    value = t(2026, 11, 28, 13, 50, 7, 123456)
    assert params.format_time(value) == "2026-11-28T13:50:07.123456Z"
    assert params.parse_time(params.format_time(value), "start") == value


@pytest.mark.parametrize(
    "dt, text",
    [
        (t(2026, 11, 28, 13, 59, 42), "2026-11-28T13:59:42.000Z"),
        (t(2026, 11, 28, 13, 59, 42, 999999), "2026-11-28T13:59:42.999Z"),
        (
            datetime.datetime(
                2026,
                11,
                28,
                14,
                59,
                42,
                1000,
                tzinfo=datetime.timezone(datetime.timedelta(hours=1)),
            ),
            "2026-11-28T13:59:42.001Z",
        ),
    ],
)
def test_format_program_date_time(dt, text):
    assert hls.format_program_date_time(dt) == text


@pytest.mark.parametrize(
    "seconds, text",
    [("2", "2.000"), ("6.006", "6.006"), ("0.000001", "0.000001"), ("10.5", "10.500")],
)
def test_format_extinf(seconds, text):
    assert hls.format_extinf(seg("14", "00:00.000000", seconds).duration) == text


@pytest.mark.parametrize("case", MEDIA_CASES, ids=[c[0] for c in MEDIA_CASES])
def test_entries_continue_where_they_left_off(case):
    """Formatting a list in two parts, the second continuing the first, is formatting it whole."""
    _, segments, ended, expected = case
    for split in range(len(segments) + 1):
        first = hls.format_entries(segments[:split], uri)
        both = hls.format_entries(segments[split:], uri, before=first)
        assert b"".join(hls.assemble(both, ended=ended)).decode() == expected, split


# --- fragmented MP4 ------------------------------------------------------------

# Fake layouts by segment path: init section size and identity per segment.
LAYOUTS = {}


def mseg(hour, name_start, duration, init="a", type="full", size=1000, init_size=100):
    """An fMP4 SegmentInfo whose init section is `init` (same letter, same bytes);
    `init=None` makes one whose init section cannot be found."""
    # A hash of its own, so that cases reusing a start time stay apart.
    name = f"{name_start}-{duration}-{type}-{hash_bytes(str(len(LAYOUTS)).encode())}.mp4"
    segment = parse_segment_path(f"/store/chan/source/2026-11-28T{hour}/{name}")
    LAYOUTS[segment.path] = None if init is None else Layout(init_size, init * 64, size)
    return segment


def tseg(hour, name_start, duration, init_size=376):
    name = f"{name_start}-{duration}-full-{hash_bytes(str(len(LAYOUTS)).encode())}.ts"
    segment = parse_segment_path(f"/store/chan/source/2026-11-28T{hour}/{name}")
    LAYOUTS[segment.path] = Layout(init_size, "t" * 64, 5000)
    return segment


def layout(segment):
    return LAYOUTS[segment.path]


def muri(segment):
    return f"{segment.hour[-2:]}/{segment.name[:12]}.{segment.container}"


def mentry(pdt, extinf, u, byterange):
    return f"#EXT-X-PROGRAM-DATE-TIME:{pdt}\n#EXTINF:{extinf},\n#EXT-X-BYTERANGE:{byterange}\n{u}\n"


def map_(u, byterange):
    return f'#EXT-X-MAP:URI="{u}",BYTERANGE="{byterange}"\n'


HEADER_V6 = HEADER_VOD.replace("VERSION:3", "VERSION:6")

FMP4_CASES = [
    (
        "one run of one init section: one map into the first file, byte ranges past it",
        [mseg("13", "59:58.000000", "2.000"), mseg("14", "00:00.000000", "2.000", size=900)],
        True,
        HEADER_V6.format(target=2)
        + map_("13/59:58.000000.mp4", "100@0")
        + mentry("2026-11-28T13:59:58.000Z", "2.000", "13/59:58.000000.mp4", "900@100")
        + mentry("2026-11-28T14:00:00.000Z", "2.000", "14/00:00.000000.mp4", "800@100")
        + "#EXT-X-ENDLIST\n",
    ),
    (
        "a new init section: discontinuity and a new map; a hole keeps the map",
        [
            mseg("14", "00:00.000000", "2.000"),
            mseg("14", "00:02.000000", "2.000", init="b", init_size=120),
            None,
            mseg("14", "00:06.000000", "2.000", init="b", init_size=120),
        ],
        False,
        HEADER_V6.replace("VOD", "EVENT").format(target=2)
        + map_("14/00:00.000000.mp4", "100@0")
        + mentry("2026-11-28T14:00:00.000Z", "2.000", "14/00:00.000000.mp4", "900@100")
        + "#EXT-X-DISCONTINUITY\n"
        + map_("14/00:02.000000.mp4", "120@0")
        + mentry("2026-11-28T14:00:02.000Z", "2.000", "14/00:02.000000.mp4", "880@120")
        + "#EXT-X-DISCONTINUITY\n"
        + mentry("2026-11-28T14:00:06.000Z", "2.000", "14/00:06.000000.mp4", "880@120"),
    ),
    (
        "a hole then a new init section: one discontinuity",
        [
            mseg("14", "00:00.000000", "2.000"),
            None,
            mseg("14", "00:04.000000", "2.000", init="b"),
        ],
        True,
        HEADER_V6.format(target=2)
        + map_("14/00:00.000000.mp4", "100@0")
        + mentry("2026-11-28T14:00:00.000Z", "2.000", "14/00:00.000000.mp4", "900@100")
        + "#EXT-X-DISCONTINUITY\n"
        + map_("14/00:04.000000.mp4", "100@0")
        + mentry("2026-11-28T14:00:04.000Z", "2.000", "14/00:04.000000.mp4", "900@100")
        + "#EXT-X-ENDLIST\n",
    ),
    (
        "TS, then fMP4, then TS again: TS after a map gets a map of its PAT and PMT",
        [
            tseg("14", "00:00.000000", "2.000"),
            mseg("14", "00:02.000000", "2.000"),
            tseg("14", "00:04.000000", "2.000", init_size=564),
            tseg("14", "00:06.000000", "2.000"),
        ],
        True,
        HEADER_V6.format(target=2)
        + entry("2026-11-28T14:00:00.000Z", "2.000", "14/00:00.000000.ts")
        + "#EXT-X-DISCONTINUITY\n"
        + map_("14/00:02.000000.mp4", "100@0")
        + mentry("2026-11-28T14:00:02.000Z", "2.000", "14/00:02.000000.mp4", "900@100")
        + "#EXT-X-DISCONTINUITY\n"
        + map_("14/00:04.000000.ts", "564@0")
        + entry("2026-11-28T14:00:04.000Z", "2.000", "14/00:04.000000.ts")
        + entry("2026-11-28T14:00:06.000Z", "2.000", "14/00:06.000000.ts")
        + "#EXT-X-ENDLIST\n",
    ),
    (
        "a file without a findable init section is left out as a hole",
        [
            mseg("14", "00:00.000000", "2.000", init=None),
            mseg("14", "00:02.000000", "2.000"),
            mseg("14", "00:04.000000", "2.000", init=None, type="partial"),
            mseg("14", "00:06.000000", "2.000"),
        ],
        True,
        HEADER_V6.format(target=2)
        + map_("14/00:02.000000.mp4", "100@0")
        + mentry("2026-11-28T14:00:02.000Z", "2.000", "14/00:02.000000.mp4", "900@100")
        + "#EXT-X-DISCONTINUITY\n"
        + mentry("2026-11-28T14:00:06.000Z", "2.000", "14/00:06.000000.mp4", "900@100")
        + "#EXT-X-ENDLIST\n",
    ),
]


@pytest.mark.parametrize(
    "segments, ended, expected", [c[1:] for c in FMP4_CASES], ids=[c[0] for c in FMP4_CASES]
)
def test_fmp4_media_playlist(segments, ended, expected):
    assert hls.media_playlist(segments, muri, ended=ended, layout=layout) == expected
    # Every tag is one RFC 8216 knows, at the version declared.
    playlist = m3u8.loads(expected)
    assert playlist.version == 6
    assert len(playlist.segments) == sum(1 for s in segments if s and layout(s))


@pytest.mark.parametrize("case", FMP4_CASES, ids=[c[0] for c in FMP4_CASES])
def test_fmp4_entries_continue_where_they_left_off(case):
    _, segments, ended, expected = case
    for split in range(len(segments) + 1):
        first = hls.format_entries(segments[:split], muri, layout=layout)
        both = hls.format_entries(segments[split:], muri, layout=layout, before=first)
        assert b"".join(hls.assemble(both, ended=ended)).decode() == expected, split


def test_ts_only_playlists_need_no_layout():
    segments = [seg("14", "00:00.000000", "2.000")]
    assert "VERSION:3" in hls.media_playlist(segments, uri, ended=True)
    with pytest.raises(ValueError, match="layout"):
        hls.media_playlist([mseg("14", "00:00.000000", "2.000")], muri, ended=True)
