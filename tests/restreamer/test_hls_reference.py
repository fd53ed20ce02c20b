"""The playlist writer against a straightforward reference, on mixed stores.

`hls.format_entries` formats whole runs of stored segments at once (a day in
one go); the reference here writes one segment at a time from the rules in
hls's docstring, formatting each time and URI from scratch. Any byte of
difference, on any mix of MPEG-TS and fMP4, holes, map changes, hour
boundaries, odd durations and odd directories, fails.
"""

import datetime
import random
import urllib.parse

import pytest

from common.layout import Layout
from common.segments import SegmentInfo, hash_bytes, parse_segment_path
from restreamer import hls
from restreamer.app import FORMAT_SLICE, _segment_uri

UTC = datetime.UTC
DAY = datetime.datetime(2026, 11, 28, tzinfo=UTC)


def reference_uri(segment):
    """What app.py's URIs are: relative to the playlist, every part percent-encoded."""
    parts = (segment.channel, segment.quality, segment.hour, segment.path.rpartition("/")[2])
    return "../../segments/" + "/".join(urllib.parse.quote(part, safe="") for part in parts)


def reference_extinf(duration):
    micros = duration // datetime.timedelta(microseconds=1)
    if micros % 1000:
        return f"{micros // 1_000_000}.{micros % 1_000_000:06d}"
    return f"{micros // 1_000_000}.{micros % 1_000_000 // 1000:03d}"


def reference_playlist(segments, uri, layout, ended):
    """The playlist, one segment at a time, every string made afresh."""
    lines = []
    longest, map_key, version = None, None, 3
    written = after_hole = False
    for segment in segments:
        if segment is None:
            after_hole = True
            continue
        mp4 = segment.path.endswith(".mp4")
        found = None
        if mp4 or map_key is not None:
            found = layout(segment)
            if found is None:
                after_hole = True
                continue
        key = None if found is None else ("mp4", found.init_hash) if mp4 else ("ts",)
        if key != map_key:
            if written:
                lines.append("#EXT-X-DISCONTINUITY")
            lines.append(f'#EXT-X-MAP:URI="{uri(segment)}",BYTERANGE="{found.init_size}@0"')
            map_key, version, after_hole = key, 6, False
        if after_hole and written:
            lines.append("#EXT-X-DISCONTINUITY")
        after_hole = False
        start = segment.start.astimezone(UTC)
        millis = start.microsecond // 1000
        lines.append(f"#EXT-X-PROGRAM-DATE-TIME:{start:%Y-%m-%dT%H:%M:%S}.{millis:03d}Z")
        lines.append(f"#EXTINF:{reference_extinf(segment.duration)},")
        if mp4:
            lines.append(f"#EXT-X-BYTERANGE:{found.size - found.init_size}@{found.init_size}")
        lines.append(uri(segment))
        written = True
        longest = segment.duration if longest is None else max(longest, segment.duration)
    if longest is None:
        target = 2
    else:
        half_up = longest // datetime.timedelta(microseconds=1) + 500_000
        target = max(1, half_up // 1_000_000)
    header = [
        "#EXTM3U",
        f"#EXT-X-VERSION:{version}",
        f"#EXT-X-TARGETDURATION:{target}",
        "#EXT-X-MEDIA-SEQUENCE:0",
        f"#EXT-X-PLAYLIST-TYPE:{'VOD' if ended else 'EVENT'}",
    ]
    return "\n".join(header + lines + (["#EXT-X-ENDLIST"] if ended else [])) + "\n"


LAYOUTS = {}


def layout(segment):
    return LAYOUTS[segment.path]


def make(
    base, start, duration_text, container="ts", type="full", init="a", init_size=100, channel="chan"
):
    """A stored segment's SegmentInfo (no file: playlists never read one but
    through `layout`). `init=None`: an fMP4 file whose init section is not found."""
    seconds = datetime.timedelta(seconds=float(duration_text))
    digest = hash_bytes(f"{base}{start}{duration_text}{container}{len(LAYOUTS)}".encode())
    hour = start.strftime("%Y-%m-%dT%H")
    name = f"{start:%M:%S.%f}-{duration_text}-{type}-{digest}.{container}"
    segment = parse_segment_path(f"{base}/{channel}/source/{hour}/{name}")
    assert segment.duration == seconds
    if container == "ts":
        LAYOUTS[segment.path] = Layout(376, "t" * 64, 5000)
    else:
        size = 900 + len(LAYOUTS) % 50
        LAYOUTS[segment.path] = None if init is None else Layout(init_size, init * 64, size)
    return segment


def store_day(base, rng, count, mp4_share=0.0, hole_share=0.02, inits="aab", channel="chan"):
    """`count` segments from 23:40 the day before, mostly 2 s, with holes and odd ones."""
    segments = []
    t = DAY - datetime.timedelta(minutes=20)
    for _ in range(count):
        roll = rng.random()
        if roll < hole_share:
            segments.append(None)
            t += datetime.timedelta(seconds=2)
            continue
        duration = rng.choice(["2.000"] * 20 + ["6.006", "2.5", "1.999999", "0.000001"])
        container = "mp4" if rng.random() < mp4_share else "ts"
        init = rng.choice(inits) if container == "mp4" else "a"
        if container == "mp4" and rng.random() < 0.02:
            init = None
        type = "partial" if rng.random() < 0.01 else "full"
        init_size = 100 + ord(init or "x")
        segments.append(make(base, t, duration, container, type, init, init_size, channel))
        t += datetime.timedelta(seconds=float(duration))
    return segments


def check(segments, uri, ended=True, slices=(len,)):
    """hls's playlist, formatted whole and continued slice by slice, is the reference."""
    expected = reference_playlist(segments, uri, layout, ended)
    assert hls.media_playlist(segments, uri, ended=ended, layout=layout) == expected
    for size in slices:
        step = max(1, size(segments) if callable(size) else size)
        entries = hls.Entries()
        for i in range(0, len(segments), step):
            entries = hls.format_entries(segments[i : i + step], uri, layout=layout, before=entries)
        assert b"".join(hls.assemble(entries, ended=ended)).decode() == expected, size


@pytest.mark.parametrize("uri", [_segment_uri, reference_uri], ids=["DirectoryURIs", "function"])
@pytest.mark.parametrize(
    "mp4_share, hole_share, inits",
    [(0, 0, "a"), (0, 0.02, "a"), (0.3, 0.02, "aab"), (1, 0.05, "aab"), (1, 0.01, "a")],
    ids=str,
)
def test_mixed_day_matches_the_reference(uri, mp4_share, hole_share, inits):
    rng = random.Random(f"{mp4_share}/{hole_share}/{inits}")
    segments = store_day("/store", rng, 3000, mp4_share, hole_share, inits)
    check(segments, uri, slices=(FORMAT_SLICE, 997, 1))
    check(segments + [None], uri, ended=False, slices=(FORMAT_SLICE,))


def test_odd_directories_match_the_reference():
    """Stores whose base has `:`, `%` or spaces in it; one hour's segments from
    several stores (same hour, other directories, of the same length or not);
    segments made by hand."""
    rng = random.Random(1)
    segments = store_day("/st:ore 1%", rng, 200)
    segments += store_day("/", rng, 30)
    for base, step in (("/store/b", 3), ("/st:ore 2%", 5)):
        other = store_day(base, rng, 40)
        for i in range(0, 40, step):
            segments[-40 + i] = other[i]  # same hours, another store, interleaved
    # Paths of the very same length, in other channels' directories (sorting
    # after this one's, and before).
    for channel, start, stop in (("chon", 60, 120), ("cham", 130, 200)):
        same_length = store_day("/st:ore 1%", rng, 200, channel=channel)
        segments[start:stop:7] = same_length[start:stop:7]
    # A segment made by hand, not by parsing a listing: `container` is a property.
    made = segments[5]
    segments[5] = SegmentInfo(*made)
    check(segments, _segment_uri, slices=(7, 1))
    check(segments, reference_uri, slices=(7,))
    # Without an hour to say it (made by hand): its time is formatted whole.
    segments[9] = segments[9]._replace(hour=None)
    check(segments, _segment_uri, slices=(7, 1))


def test_one_segment_and_empty():
    rng = random.Random(2)
    one = store_day("/store", rng, 1, hole_share=0)
    check(one, _segment_uri)
    check([None, *one, None], _segment_uri)
    check([], _segment_uri, ended=False)
