"""Playlist parsing, variant naming, ad spotting and time placement: pure, table-driven."""

import datetime

import pytest

from downloader.playlist import (
    JOIN_TOLERANCE,
    ByteRange,
    InitSection,
    PlaylistError,
    Timeline,
    UnsupportedPlaylist,
    codec_family,
    load,
    name_twitch_variants,
    name_variants,
    parse_media_playlist,
)

T0 = datetime.datetime(2026, 11, 28, 13, 0, 0, tzinfo=datetime.UTC)
URL = "http://origin.test/ch/source/index.m3u8"


def ms(n):
    return datetime.timedelta(milliseconds=n)


def media(entries, header="", sequence=0, end=""):
    """entries: (pdt or None, duration, title) or raw tag strings."""
    lines = ["#EXTM3U", "#EXT-X-TARGETDURATION:2", f"#EXT-X-MEDIA-SEQUENCE:{sequence}"]
    if header:
        lines.append(header)
    n = sequence
    for entry in entries:
        if isinstance(entry, str):
            lines.append(entry)
            continue
        pdt, duration, title = entry
        if pdt is not None:
            lines.append(f"#EXT-X-PROGRAM-DATE-TIME:{pdt.isoformat(timespec='milliseconds')}")
        lines.append(f"#EXTINF:{duration},{title}")
        lines.append(f"seg{n}.ts")
        n += 1
    if end:
        lines.append(end)
    return "\n".join(lines) + "\n"


# --- naming variants ---------------------------------------------------------------

MASTER_CASES = [
    (
        "highest bandwidth is source, others by resolution",
        [
            "BANDWIDTH=1000000,RESOLUTION=854x480",
            "BANDWIDTH=6000000,RESOLUTION=1920x1080",
            "BANDWIDTH=3000000,RESOLUTION=1280x720,FRAME-RATE=60.000",
        ],
        {"source": "1", "480p": "0", "720p60": "2"},
    ),
    (
        "one BANDWIDTH for all: ties go to the larger resolution",
        [
            "BANDWIDTH=1000000,RESOLUTION=640x360",
            "BANDWIDTH=1000000,RESOLUTION=1280x720",
        ],
        {"source": "1", "360p": "0"},
    ),
    (
        "audio only and same-name variants: the higher bandwidth keeps the name",
        [
            "BANDWIDTH=5000000,RESOLUTION=1280x720",
            "BANDWIDTH=2000000,RESOLUTION=854x480",
            "BANDWIDTH=1500000,RESOLUTION=852x480",
            'BANDWIDTH=100000,CODECS="mp4a.40.2"',
        ],
        {"source": "0", "480p": "1", "audio_only": "3"},
    ),
    (
        "one resolution in three codecs: HEVC and AV1 say so, H.264 keeps the plain name",
        [
            'BANDWIDTH=4000000,RESOLUTION=1280x720,CODECS="hvc1.1.6.L93.B0,mp4a.40.2"',
            'BANDWIDTH=1500000,RESOLUTION=854x480,CODECS="hvc1.1.6.L90.B0,mp4a.40.2"',
            'BANDWIDTH=1400000,RESOLUTION=854x480,CODECS="av01.0.04M.08,mp4a.40.2"',
            'BANDWIDTH=2000000,RESOLUTION=854x480,CODECS="avc1.64001E,mp4a.40.2"',
        ],
        {"source": "0", "480p_h265": "1", "480p_av1": "2", "480p": "3"},
    ),
]


@pytest.mark.parametrize("what, infos, expected", MASTER_CASES, ids=[c[0] for c in MASTER_CASES])
def test_name_variants(what, infos, expected):
    text = "#EXTM3U\n" + "".join(
        f"#EXT-X-STREAM-INF:{info}\n{i}.m3u8\n" for i, info in enumerate(infos)
    )
    names = name_variants(load(text, "http://o/ch/master.m3u8"))
    assert names == {k: f"http://o/ch/{v}.m3u8" for k, v in expected.items()}


def test_name_variants_uses_rendition_names():
    text = (
        "#EXTM3U\n"
        '#EXT-X-MEDIA:TYPE=VIDEO,GROUP-ID="hi",NAME="Main camera"\n'
        '#EXT-X-STREAM-INF:BANDWIDTH=5000000,RESOLUTION=1280x720,VIDEO="hi"\nhi.m3u8\n'
        '#EXT-X-MEDIA:TYPE=VIDEO,GROUP-ID="lo",NAME="low"\n'
        '#EXT-X-STREAM-INF:BANDWIDTH=1000000,RESOLUTION=640x360,VIDEO="lo"\nlo.m3u8\n'
    )
    assert name_variants(load(text, "http://o/m.m3u8")) == {
        "source": "http://o/hi.m3u8",
        "low": "http://o/lo.m3u8",
    }


TWITCH_MASTER = """#EXTM3U
#EXT-X-TWITCH-INFO:NODE="video-edge-1",MANIFEST-NODE-TYPE="weaver_cluster"
#EXT-X-MEDIA:TYPE=VIDEO,GROUP-ID="chunked",NAME="1080p60 (source)",AUTOSELECT=YES,DEFAULT=YES
#EXT-X-STREAM-INF:BANDWIDTH=6500000,RESOLUTION=1920x1080,CODECS="avc1.64002A,mp4a.40.2",VIDEO="chunked",FRAME-RATE=60.000
https://video-weaver.test/v1/playlist/source.m3u8
#EXT-X-MEDIA:TYPE=VIDEO,GROUP-ID="720p60",NAME="720p60",AUTOSELECT=YES,DEFAULT=YES
#EXT-X-STREAM-INF:BANDWIDTH=3400000,RESOLUTION=1280x720,CODECS="avc1.4D401F,mp4a.40.2",VIDEO="720p60",FRAME-RATE=60.000
https://video-weaver.test/v1/playlist/720p60.m3u8
#EXT-X-MEDIA:TYPE=VIDEO,GROUP-ID="audio_only",NAME="audio_only",AUTOSELECT=NO,DEFAULT=NO
#EXT-X-STREAM-INF:BANDWIDTH=160000,CODECS="mp4a.40.2",VIDEO="audio_only"
https://video-weaver.test/v1/playlist/audio.m3u8
"""


def test_name_twitch_variants():
    names, codecs = name_twitch_variants(
        load(TWITCH_MASTER, "https://usher.test/x.m3u8"), TWITCH_MASTER
    )
    assert names == {
        "source": "https://video-weaver.test/v1/playlist/source.m3u8",
        "720p60": "https://video-weaver.test/v1/playlist/720p60.m3u8",
        "audio_only": "https://video-weaver.test/v1/playlist/audio.m3u8",
    }
    assert codecs == {"source": "h264", "720p60": "h264", "audio_only": "audio"}


# Usher v2 for an enhanced-broadcasting channel: no EXT-X-MEDIA; each
# EXT-X-STREAM-INF names itself (IVS-NAME), the source says so
# (IVS-VARIANT-SOURCE), and HEVC/AV1 uploads sit beside Twitch's H.264 transcodes,
# two of them at 1080p60.
TWITCH_V2_MASTER = """#EXTM3U
#EXT-X-SESSION-DATA:DATA-ID="NODE",VALUE="video-edge-1"
#EXT-X-STREAM-INF:BANDWIDTH=9000000,RESOLUTION=2560x1440,CODECS="hvc1.1.2.L150.90,mp4a.40.2",FRAME-RATE=60.000,STABLE-VARIANT-ID="1440p60",IVS-NAME="1440p60",IVS-VARIANT-SOURCE="true"
https://video-weaver.test/v1/playlist/hevc1440.m3u8
#EXT-X-STREAM-INF:BANDWIDTH=6000000,RESOLUTION=1920x1080,CODECS="hvc1.1.2.L123.90,mp4a.40.2",FRAME-RATE=60.000,STABLE-VARIANT-ID="1080p60-hevc",IVS-NAME="1080p60"
https://video-weaver.test/v1/playlist/hevc1080.m3u8
#EXT-X-STREAM-INF:BANDWIDTH=5500000,RESOLUTION=1920x1080,CODECS="av01.0.08M.08,mp4a.40.2",FRAME-RATE=60.000,STABLE-VARIANT-ID="1080p60-av1",IVS-NAME="1080p60"
https://video-weaver.test/v1/playlist/av1080.m3u8
#EXT-X-STREAM-INF:BANDWIDTH=6000000,RESOLUTION=1920x1080,CODECS="avc1.64002A,mp4a.40.2",FRAME-RATE=60.000,STABLE-VARIANT-ID="1080p60",IVS-NAME="1080p60"
https://video-weaver.test/v1/playlist/avc1080.m3u8
#EXT-X-STREAM-INF:BANDWIDTH=160000,CODECS="mp4a.40.2",STABLE-VARIANT-ID="audio_only",IVS-NAME="audio_only"
https://video-weaver.test/v1/playlist/audio.m3u8
"""


def test_name_twitch_v2_variants_with_codec_suffixes():
    names, codecs = name_twitch_variants(
        load(TWITCH_V2_MASTER, "https://usher.test/x.m3u8"), TWITCH_V2_MASTER
    )
    base = "https://video-weaver.test/v1/playlist/"
    assert names == {
        "source": base + "hevc1440.m3u8",
        "1080p60_h265": base + "hevc1080.m3u8",
        "1080p60_av1": base + "av1080.m3u8",
        "1080p60": base + "avc1080.m3u8",
        "audio_only": base + "audio.m3u8",
    }
    assert codecs == {
        "source": "h265",
        "1080p60_h265": "h265",
        "1080p60_av1": "av1",
        "1080p60": "h264",
        "audio_only": "audio",
    }


@pytest.mark.parametrize(
    "codecs, family",
    [
        ("avc1.64002A,mp4a.40.2", "h264"),
        ("hvc1.1.2.L150.90,mp4a.40.2", "h265"),
        ("hev1.1.6.L93.B0", "h265"),
        ("av01.0.08M.08,mp4a.40.2", "av1"),
        ("mp4a.40.2", "audio"),
        ("", "unknown"),
        (None, "unknown"),
        ("vp09.00.10.08", "unknown"),
    ],
)
def test_codec_family(codecs, family):
    assert codec_family(codecs) == family


# --- media playlists -----------------------------------------------------------------


def test_parse_media_playlist_times_and_uris():
    text = media(
        [
            (None, "2.000", "live"),  # before the first PDT: counted back
            (T0, "2.000", "live"),
            (None, "2.000", "live"),  # carried forward
        ],
        sequence=7,
    )
    playlist = parse_media_playlist(text, URL)
    assert playlist.has_pdt and not playlist.ended and playlist.target_duration == 2
    assert [s.sequence for s in playlist.segments] == [7, 8, 9]
    assert [s.pdt for s in playlist.segments] == [T0 - ms(2000), T0, T0 + ms(2000)]
    assert playlist.segments[0].uri == "http://origin.test/ch/source/seg7.ts"
    assert all(s.ad is None for s in playlist.segments)
    assert parse_media_playlist(media([(T0, "2.0", "")], end="#EXT-X-ENDLIST"), URL).ended


@pytest.mark.parametrize(
    "text, error",
    [
        ("<html>404</html>", PlaylistError),
        ("", PlaylistError),
        ("#EXTM3U\n#EXT-X-STREAM-INF:BANDWIDTH=1\nx.m3u8\n", PlaylistError),
        (media([(T0, "2.0", "")], header='#EXT-X-KEY:METHOD=AES-128,URI="k"'), UnsupportedPlaylist),
        (
            media([(T0, "2.0", "")], header='#EXT-X-KEY:METHOD=SAMPLE-AES,URI="k"'),
            UnsupportedPlaylist,
        ),
        (media(["#EXT-X-BYTERANGE:1000", (T0, "2.0", "")]), PlaylistError),
        (media(["#EXT-X-BYTERANGE:x@0", (T0, "2.0", "")]), PlaylistError),
        (media([(T0, "2.0", "")], header='#EXT-X-MAP:URI="i.mp4",BYTERANGE="0@0"'), PlaylistError),
    ],
    ids=[
        "html",
        "empty",
        "master",
        "encrypted",
        "sample-aes",
        "byterange-no-offset",
        "byterange-garbage",
        "map-empty-range",
    ],
)
def test_parse_media_playlist_refuses(text, error):
    with pytest.raises(error) as e:
        parse_media_playlist(text, URL)
    assert URL in str(e.value)


def test_fmp4_init_sections_and_byte_ranges():
    text = (
        media(
            [
                '#EXT-X-MAP:URI="init-0.mp4"',
                (T0, "2.0", ""),
                (T0 + ms(2000), "2.0", ""),
                '#EXT-X-MAP:URI="../all.mp4",BYTERANGE="720@0"',
                "#EXT-X-BYTERANGE:1000@720",
                (T0 + ms(4000), "2.0", ""),
                "#EXT-X-BYTERANGE:500",  # right after the previous range of the same URI
                (T0 + ms(6000), "2.0", ""),
            ]
        )
        .replace("seg2.ts", "all.mp4")
        .replace("seg3.ts", "all.mp4")
    )
    segments = parse_media_playlist(text, URL).segments
    first = InitSection("http://origin.test/ch/source/init-0.mp4", None)
    second = InitSection("http://origin.test/ch/all.mp4", ByteRange(720, 0))
    assert [s.init for s in segments] == [first, first, second, second]
    assert [s.byterange for s in segments] == [
        None,
        None,
        ByteRange(1000, 720),
        ByteRange(500, 1720),
    ]
    assert [s.container for s in segments] == ["mp4"] * 4
    assert ByteRange(500, 1720).header == "bytes=1720-2219"
    plain = parse_media_playlist(media([(T0, "2.0", "")]), URL).segments[0]
    assert (plain.init, plain.byterange, plain.container) == (None, None, "ts")


def test_twitch_fmp4_ads_are_marked_and_discontinuities_harmless():
    """Twitch's fMP4 playlist: a preroll ad with its own EXT-X-MAP, DATERANGE and
    "Amazon" titles, then the stream, with EXT-X-DISCONTINUITY around the ad."""

    def at(seconds):
        return T0 + datetime.timedelta(seconds=seconds)

    text = media(
        [
            f'#EXT-X-DATERANGE:ID="stitched-ad-1-4.000",CLASS="twitch-stitched-ad",'
            f'START-DATE="{at(0).isoformat()}",DURATION=4.000',
            '#EXT-X-MAP:URI="https://ads.test/init.mp4"',
            (at(0), "2.000", "Amazon|1"),
            (at(2), "2.000", "Amazon|1"),
            "#EXT-X-DISCONTINUITY",
            '#EXT-X-MAP:URI="init-0.mp4"',
            (at(4), "2.000", "live"),
            "#EXT-X-DISCONTINUITY",  # Twitch's bogus ones between content segments
            (at(6), "2.000", "live"),
        ]
    )
    segments = parse_media_playlist(text, URL).segments
    assert [s.ad for s in segments] == ["twitch_title", "twitch_title", None, None]
    assert segments[2].init == segments[3].init
    assert segments[3].init.uri.endswith("/init-0.mp4")


def test_ads_in_every_form_are_marked():
    def at(seconds):
        return T0 + datetime.timedelta(seconds=seconds)

    text = media(
        [
            (at(0), "2.000", "live"),
            # Twitch stitched ad: DATERANGE with its class, and "Amazon" titles.
            f'#EXT-X-DATERANGE:ID="stitched-ad-1-4.000",CLASS="twitch-stitched-ad",'
            f'START-DATE="{at(2).isoformat()}",DURATION=4.000',
            "#EXT-X-DISCONTINUITY",
            (at(2), "2.000", "Amazon|1"),
            (at(4), "2.000", "Amazon|1"),
            "#EXT-X-DISCONTINUITY",
            (at(6), "2.000", "live"),
            # ID prefix only, titles not marked.
            f'#EXT-X-DATERANGE:ID="stitched-ad-2-2.000",START-DATE="{at(8).isoformat()}",'
            "DURATION=2.000",
            (at(8), "2.000", "live"),
            # SCTE-35 cue tags.
            "#EXT-X-CUE-OUT:4.000",
            (at(10), "2.000", ""),
            "#EXT-X-CUE-OUT-CONT:ElapsedTime=2.000,Duration=4.000",
            (at(12), "2.000", ""),
            "#EXT-X-CUE-IN",
            (at(14), "2.000", ""),
            # SCTE-35 DATERANGE, closed by a matching SCTE35-IN.
            f'#EXT-X-DATERANGE:ID="splice",START-DATE="{at(16).isoformat()}",SCTE35-OUT=0xFC',
            (at(16), "2.000", ""),
            f'#EXT-X-DATERANGE:ID="splice",START-DATE="{at(18).isoformat()}",SCTE35-IN=0xFC',
            (at(18), "2.000", ""),
        ]
    )
    ads = [s.ad for s in parse_media_playlist(text, URL).segments]
    assert ads == [
        None,
        "twitch_title",
        "twitch_title",
        None,
        "twitch_daterange",
        "scte35_cue",
        "scte35_cue",
        None,
        "scte35_daterange",
        None,
    ]


# --- placing segments in time ---------------------------------------------------------


def steady(count, duration_text, true_seconds, first=0, start=T0):
    """A live stream's playlist: PDTs are true times rounded to ms, EXTINF as written."""
    entries = []
    for n in range(first, first + count):
        true = start + datetime.timedelta(seconds=n * true_seconds)
        rounded = true + datetime.timedelta(microseconds=500)
        rounded = rounded.replace(microsecond=rounded.microsecond // 1000 * 1000)
        entries.append((rounded, duration_text, "live"))
    return parse_media_playlist(media(entries, sequence=first), URL)


def assert_joined(placed):
    for a, b in zip(placed, placed[1:], strict=False):
        assert a.end == b.start, f"{a.segment.sequence} ends {a.end}, next starts {b.start}"


@pytest.mark.parametrize(
    "duration_text, true_seconds",
    [
        ("2.000", 2.0),
        ("2.002", 2.002002),
        ("2.002002", 2.002002),
        ("1.9999", 2.0),
        ("2.033", 2.0333333),
    ],
)
def test_steady_stream_joins_exactly_and_starts_stay_near_pdt(duration_text, true_seconds):
    timeline = Timeline()
    placed = []
    # A playlist window sliding over 3000 segments (100 minutes), seen 6 at a time.
    for first in range(0, 3000, 3):
        placed += timeline.place(steady(6, duration_text, true_seconds, first), T0)
    assert [p.segment.sequence for p in placed] == list(range(3003))
    assert_joined(placed)
    for p in placed:
        assert abs(p.start - p.segment.pdt) <= JOIN_TOLERANCE
        assert not p.estimated


def test_repeated_and_backwards_playlists_give_nothing_new():
    timeline = Timeline()
    assert len(timeline.place(steady(4, "2.000", 2, first=10), T0)) == 4
    assert timeline.place(steady(4, "2.000", 2, first=10), T0) == []
    assert timeline.place(steady(4, "2.000", 2, first=8), T0) != []  # older, unseen: new
    assert timeline.place(steady(3, "2.000", 2, first=9), T0) == []


def test_restart_with_time_jump_starts_from_the_new_pdt():
    timeline = Timeline()
    before = timeline.place(steady(3, "2.000", 2), T0)
    later = T0 + datetime.timedelta(seconds=100)
    after = timeline.place(steady(3, "2.000", 2, first=0, start=later), T0)
    assert [p.start for p in after] == [later, later + ms(2000), later + ms(4000)]
    assert before[-1].end < after[0].start


def test_two_nodes_starting_at_different_segments_agree_after_one():
    a, b = Timeline(), Timeline()
    placed_a = []
    for first in range(0, 60, 2):
        placed_a += a.place(steady(4, "2.002", 2.002002, first), T0)
    placed_b = b.place(steady(4, "2.002", 2.002002, 31), T0)
    names_a = {p.segment.sequence: (p.start, p.duration) for p in placed_a}
    for p in placed_b[1:]:
        assert names_a[p.segment.sequence] == (p.start, p.duration)


def test_no_program_date_time_is_estimated_from_arrival_and_continues():
    timeline = Timeline()
    now = T0 + datetime.timedelta(seconds=50)
    first = timeline.place(parse_media_playlist(media([(None, "2.000", "")] * 3), URL), now)
    assert all(p.estimated for p in first)
    assert first[-1].end == now
    assert_joined(first)
    # Two polls later, arrival is noisy, but new segments continue by sequence.
    text = media([(None, "2.000", "")] * 3, sequence=2)
    second = timeline.place(parse_media_playlist(text, URL), now + ms(4321))
    assert [p.segment.sequence for p in second] == [3, 4]
    assert_joined(first + second)
