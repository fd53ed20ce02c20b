import datetime
import logging
import os
import pickle
import random

import gevent
import gevent.socket
import pytest

from common import segments as segments_module
from common.segments import (
    SegmentInfo,
    SegmentWriter,
    atomic_write,
    best_segments_by_start,
    clear_hour_cache,
    format_duration,
    get_best_segments,
    hash_bytes,
    hours_for_range,
    list_segments,
    parse_duration,
    parse_segment_path,
    segment_name,
    segment_path,
)
from common.server import WSGIServer

UTC = datetime.UTC
HASH = hash_bytes(b"some video")
T0 = datetime.datetime(2026, 11, 28, 13, 0, tzinfo=UTC)


def seconds(n):
    return datetime.timedelta(seconds=n)


# --- names -------------------------------------------------------------------


@pytest.mark.parametrize(
    "path, start, duration, type",
    [
        (
            f"base/chan/source/2026-11-28T13/50:07.300000-2.000-full-{HASH}.ts",
            datetime.datetime(2026, 11, 28, 13, 50, 7, 300000, tzinfo=UTC),
            seconds(2),
            "full",
        ),
        (
            f"/abs/chan/480p/2026-01-01T00/00:00.000000-6.006-partial-{HASH}.ts",
            datetime.datetime(2026, 1, 1, 0, 0, tzinfo=UTC),
            datetime.timedelta(seconds=6, milliseconds=6),
            "partial",
        ),
        (
            f"chan/source/2026-12-31T23/59:59.999999-0.000001-suspect-{HASH}.ts",
            datetime.datetime(2026, 12, 31, 23, 59, 59, 999999, tzinfo=UTC),
            datetime.timedelta(microseconds=1),
            "suspect",
        ),
        (
            "chan/source/2026-11-28T13/10:00.000001-2.5-temp-abc_DEF-123.ts",
            datetime.datetime(2026, 11, 28, 13, 10, 0, 1, tzinfo=UTC),
            datetime.timedelta(seconds=2, microseconds=500000),
            "temp",
        ),
        (
            f"chan/source/2026-11-28T13/50:07.300000-2.000-full-{HASH}.mp4",
            datetime.datetime(2026, 11, 28, 13, 50, 7, 300000, tzinfo=UTC),
            seconds(2),
            "full",
        ),
        (
            "chan/source/2026-11-28T13/10:00.000001-2.5-temp-abc_DEF-123.mp4",
            datetime.datetime(2026, 11, 28, 13, 10, 0, 1, tzinfo=UTC),
            datetime.timedelta(seconds=2, microseconds=500000),
            "temp",
        ),
    ],
)
def test_parse(path, start, duration, type):
    info = parse_segment_path(path)
    assert info.start == start
    assert info.duration == duration
    assert info.type == type
    assert info.container == path.rsplit(".", 1)[1]
    assert info.end == start + duration
    assert info.path == path
    assert (info.channel, info.hour) == (path.split("/")[-4], path.split("/")[-2])


def test_parse_bare_name():
    name = f"50:07.300000-2.000-full-{HASH}.ts"
    info = parse_segment_path(name)
    assert (info.channel, info.quality, info.hour, info.start) == (None, None, None, None)
    assert info.duration == seconds(2)
    info = parse_segment_path(name, channel="c", quality="q", hour="2026-11-28T13")
    assert info.start == datetime.datetime(2026, 11, 28, 13, 50, 7, 300000, tzinfo=UTC)
    assert info.channel == "c"


def test_parse_checks_expected_parts():
    path = f"chan/source/2026-11-28T13/50:07.300000-2.000-full-{HASH}.ts"
    assert parse_segment_path(path, channel="chan", quality="source", hour="2026-11-28T13")
    for given in ({"channel": "other"}, {"quality": "480p"}, {"hour": "2026-11-28T14"}):
        with pytest.raises(ValueError, match="is not"):
            parse_segment_path(path, **given)


@pytest.mark.parametrize(
    "name, reason",
    [
        (f"50:07.300000-2.000-full-{HASH}.mkv", "not a .ts or .mp4 file"),
        (f"50:07.300000-2.000-full-{HASH}", "not a .ts or .mp4 file"),
        (f"50:07.300000-2.000-full-{HASH}.MP4", "not a .ts or .mp4 file"),
        (f"50:07.300000-2.000-full-{HASH}.ts.mp4", "bad hash"),
        (f"50:07.300000-2.000-full-{HASH[:-1]}B.mp4", "bad hash encoding"),
        (f"50:07.300000-2.000-{HASH}.ts", "expected MM:SS"),
        ("50:07.300000-2.000-full.ts", "expected MM:SS"),
        (f"50:07.300000-2.000-complete-{HASH}.ts", "unknown type"),
        (f"60:07.300000-2.000-full-{HASH}.ts", "bad time"),
        (f"50:60.300000-2.000-full-{HASH}.ts", "bad time"),
        (f"50:07.3-2.000-full-{HASH}.ts", "expected MM:SS"),
        (f"5:07.300000-2.000-full-{HASH}.ts", "expected MM:SS"),
        (f"50:07.300000-two-full-{HASH}.ts", "bad duration"),
        (f"50:07.300000--2.000-full-{HASH}.ts", "unknown type '2.000'"),
        (f"50:07.300000-2.0000001-full-{HASH}.ts", "bad duration"),
        # Bounded: one such name once broke every later playlist and cut.
        (f"00:00.000000-999999999999.000-full-{HASH}.ts", "over the 300 s a segment may last"),
        (f"50:07.300000-300.000001-full-{HASH}.ts", "over the 300 s"),
        (f"50:07.300000-2.000-full-{HASH[:-1]}.ts", "bad hash"),
        (f"50:07.300000-2.000-full-{HASH}A.ts", "bad hash"),
        (f"50:07.300000-2.000-full-{HASH[:-1]}+.ts", "bad hash"),
        # Right length and alphabet, but the last character carries bits that
        # a 32-byte digest cannot have.
        (f"50:07.300000-2.000-full-{HASH[:-1]}B.ts", "bad hash encoding"),
        ("50:07.300000-2.000-temp-a+b.ts", "bad temp id"),
        # Other scripts' digits, which int() reads: one segment, several names.
        (f"\u0665\u0660:07.300000-2.000-full-{HASH}.ts", "expected MM:SS"),
        (f"50:07.300000-\u0662.000-full-{HASH}.ts", "bad duration"),
        (f".50:07.300000-2.000-full-{HASH}.ts", "hidden file"),
        (f".50:07.300000-2.000-full-{HASH}.mp4", "hidden file"),
        ("", "not a .ts or .mp4 file"),
    ],
)
def test_parse_rejects(name, reason):
    path = f"chan/source/2026-11-28T13/{name}"
    with pytest.raises(ValueError, match=reason) as excinfo:
        parse_segment_path(path)
    assert repr(path) in str(excinfo.value)


@pytest.mark.parametrize(
    "hour, reason",
    [
        ("2026-11-28", "expected YYYY-MM-DDTHH, a UTC hour such as 2026-11-28T13"),
        ("2026-13-28T13", "no such date or hour; expected YYYY-MM-DDTHH"),
        ("2026-11-28T25", "no such date or hour"),
        ("2026-12-02T99", "no such date or hour"),
        ("..", "expected YYYY-MM-DDTHH"),
        ("x", "expected YYYY-MM-DDTHH"),
        # Bounded: a 1970 hour once made every playlist without a start a 400.
        ("1970-01-01T00", "outside the years 2000 to 2099"),
        ("1999-12-31T23", "outside the years"),
        ("2100-01-01T00", "outside the years"),
        ("0001-01-01T00", "outside the years"),
        ("\u0662\u0660\u0662\u0666-11-28T13", "expected YYYY-MM-DDTHH"),
    ],
)
def test_parse_rejects_bad_hour(hour, reason):
    with pytest.raises(ValueError, match="bad hour") as excinfo:
        parse_segment_path(f"chan/source/{hour}/50:07.300000-2.000-full-{HASH}.ts")
    assert reason in str(excinfo.value)
    assert "unconverted" not in str(excinfo.value)


def test_hours_at_the_bounds_parse():
    for hour in ("2000-01-01T00", "2099-12-31T23"):
        parse_segment_path(f"chan/source/{hour}/50:07.300000-2.000-full-{HASH}.ts")


def test_names_no_reader_would_accept_are_never_made():
    with pytest.raises(ValueError, match="over the 300 s"):
        segment_name(T0, seconds(301), "full", HASH)
    with pytest.raises(ValueError, match="outside the hours"):
        segment_name(datetime.datetime(1970, 1, 1, tzinfo=UTC), seconds(2), "full", HASH)


@pytest.mark.parametrize(
    "micros",
    [0, 1, 999, 1000, 2_000_000, 2_002_000, 6_006_006, 123_456_789, 3_599_999_999],
)
def test_duration_round_trip(micros):
    duration = datetime.timedelta(microseconds=micros)
    assert parse_duration(format_duration(duration)) == duration


def test_build_round_trip_is_exact():
    start = datetime.datetime(2026, 11, 28, 13, 59, 58, 123457, tzinfo=UTC)
    duration = datetime.timedelta(seconds=2, microseconds=1)
    path = segment_path("/base", "chan", "source", start, duration, "full", HASH)
    assert path == f"/base/chan/source/2026-11-28T13/59:58.123457-2.000001-full-{HASH}.ts"
    info = parse_segment_path(path)
    assert (info.start, info.duration, info.type, info.hash) == (start, duration, "full", HASH)
    # Many back-to-back segments still join exactly: no drift from floats.
    for _ in range(1000):
        start += duration
        assert (
            parse_segment_path(segment_path("b", "c", "q", start, duration, "full", HASH)).start
            == start
        )


def test_build_mp4_round_trip():
    start = datetime.datetime(2026, 11, 28, 13, 59, 58, 123457, tzinfo=UTC)
    path = segment_path("/base", "chan", "source", start, seconds(2), "full", HASH, "mp4")
    assert path == f"/base/chan/source/2026-11-28T13/59:58.123457-2.000-full-{HASH}.mp4"
    info = parse_segment_path(path)
    assert (info.start, info.type, info.hash, info.container) == (start, "full", HASH, "mp4")
    assert segment_name(start, seconds(2), "full", HASH).endswith(".ts")
    for container in ("mkv", "MP4", ".mp4", ""):
        with pytest.raises(ValueError, match="unknown container"):
            segment_name(start, seconds(2), "full", HASH, container)


def test_build_naive_is_utc_and_aware_is_converted():
    naive = datetime.datetime(2026, 11, 28, 13, 5)
    aware = datetime.datetime(2026, 11, 28, 14, 5, tzinfo=datetime.timezone(seconds(3600)))
    assert segment_name(naive, seconds(2), "full", HASH) == segment_name(
        aware, seconds(2), "full", HASH
    )
    assert segment_path("b", "c", "q", aware, seconds(2), "full", HASH).startswith(
        "b/c/q/2026-11-28T13/05:00.000000"
    )


@pytest.mark.parametrize("channel", ["", "..", ".hidden", "a/b", "a\0b"])
def test_build_refuses_bad_channel(channel):
    with pytest.raises(ValueError, match="bad channel"):
        segment_path("b", channel, "q", T0, seconds(2), "full", HASH)


# --- writing -------------------------------------------------------------------


def test_segment_writer(tmp_path):
    with SegmentWriter(str(tmp_path), "chan", "source", T0, seconds(2)) as writer:
        writer.write(b"some ")
        # While writing, only a temp file exists, invisible to readers.
        (temp,) = os.listdir(tmp_path / "chan" / "source" / "2026-11-28T13")
        assert "-temp-" in temp
        assert list_segments(str(tmp_path / "chan" / "source" / "2026-11-28T13")) == []
        writer.write(b"video")
        path = writer.finish("full")
    assert os.listdir(os.path.dirname(path)) == [os.path.basename(path)]
    info = parse_segment_path(path)
    assert info.hash == HASH
    assert open(path, "rb").read() == b"some video"


def test_segment_writer_mp4(tmp_path):
    hour = tmp_path / "chan" / "source" / "2026-11-28T13"
    with SegmentWriter(str(tmp_path), "chan", "source", T0, seconds(2), "mp4") as writer:
        writer.write(b"some ")
        (temp,) = os.listdir(hour)
        assert "-temp-" in temp and temp.endswith(".mp4")
        assert list_segments(str(hour)) == []
        writer.write(b"video")
        path = writer.finish("full")
    info = parse_segment_path(path)
    assert (info.hash, info.container) == (HASH, "mp4")
    # The same bytes as TS are another file: the container is part of the name.
    with SegmentWriter(str(tmp_path), "chan", "source", T0, seconds(2)) as writer:
        writer.write(b"some video")
        ts_path = writer.finish("full")
    assert ts_path == path[: -len(".mp4")] + ".ts"
    assert sorted(s.container for s in list_segments(str(hour))) == ["mp4", "ts"]
    with pytest.raises(ValueError, match="unknown container"):
        SegmentWriter(str(tmp_path), "chan", "source", T0, seconds(2), "mkv")
    assert sorted(os.listdir(hour)) == sorted([os.path.basename(path), os.path.basename(ts_path)])


def test_segment_writer_race_and_abort(tmp_path):
    paths = []
    for _ in range(2):
        with SegmentWriter(str(tmp_path), "chan", "source", T0, seconds(2)) as writer:
            writer.write(b"some video")
            paths.append(writer.finish())
    assert paths[0] == paths[1]
    with pytest.raises(RuntimeError):
        with SegmentWriter(str(tmp_path), "chan", "source", T0, seconds(2)) as writer:
            writer.write(b"half")
            raise RuntimeError("connection lost")
    assert os.listdir(tmp_path / "chan" / "source" / "2026-11-28T13") == [
        os.path.basename(paths[0])
    ]


def test_atomic_write(tmp_path):
    path = tmp_path / "dir" / "file"
    atomic_write(str(path), b"one")
    atomic_write(str(path), [b"tw", b"o"])
    assert path.read_bytes() == b"two"

    def broken():
        yield b"three"
        raise OSError("disk gone")

    with pytest.raises(OSError):
        atomic_write(str(path), broken())
    assert path.read_bytes() == b"two"
    assert os.listdir(tmp_path / "dir") == ["file"]


# --- choosing segments -------------------------------------------------------


class Store:
    """A real store in a temp dir, with segments placed by offset from T0."""

    def __init__(self, base):
        self.base = str(base)
        self.hours_path = os.path.join(self.base, "chan", "source")

    def add(self, start, duration, type="full", data=None, container="ts"):
        start = T0 + seconds(start) if not isinstance(start, datetime.datetime) else start
        data = data if data is not None else f"{start}{duration}{type}".encode()
        with SegmentWriter(
            self.base, "chan", "source", start, seconds(duration), container
        ) as writer:
            writer.write(data)
            return writer.finish(type)

    def best(self, start, end):
        segments = get_best_segments(self.hours_path, T0 + seconds(start), T0 + seconds(end))
        return [
            None
            if s is None
            else ((s.start - T0).total_seconds(), s.duration.total_seconds(), s.type)
            for s in segments
        ]


@pytest.fixture
def store(tmp_path):
    return Store(tmp_path)


def test_worked_example(store):
    for start in (5, 15, 30, 40):
        store.add(start, 10)
    assert store.best(10, 60) == [
        (5, 10, "full"),
        (15, 10, "full"),
        None,
        (30, 10, "full"),
        (40, 10, "full"),
        None,
    ]


def test_exactly_covered_has_no_holes(store):
    for start in (0, 2, 4):
        store.add(start, 2)
    assert store.best(0, 6) == [(0, 2, "full"), (2, 2, "full"), (4, 2, "full")]
    assert store.best(1, 5) == [(0, 2, "full"), (2, 2, "full"), (4, 2, "full")]


def test_hole_at_start(store):
    store.add(10, 10)
    assert store.best(0, 20) == [None, (10, 10, "full")]


def test_partial_is_followed_by_hole(store):
    store.add(0, 2)
    store.add(2, 2, "partial")
    store.add(4, 2)
    store.add(6, 2, "suspect")
    assert store.best(0, 8) == [
        (0, 2, "full"),
        (2, 2, "partial"),
        None,
        (4, 2, "full"),
        (6, 2, "suspect"),
        None,
    ]


def test_range_mixing_containers_joins(store):
    # A channel that switched from MPEG-TS to fMP4 and back: one range, no holes
    # from the switch itself.
    store.add(0, 2)
    store.add(2, 2, container="mp4")
    store.add(4, 2, "partial", container="mp4")
    store.add(6, 2)
    segments = get_best_segments(store.hours_path, T0, T0 + seconds(8))
    assert [s and s.container for s in segments] == ["ts", "mp4", "mp4", None, "ts"]
    assert store.best(0, 8) == [
        (0, 2, "full"),
        (2, 2, "full"),
        (4, 2, "partial"),
        None,
        (6, 2, "full"),
    ]


def test_best_copy_of_one_start_across_containers(store):
    # Two files for one start in different containers (two nodes that saw the
    # stream differently): the usual rules choose, whatever the container.
    store.add(0, 2, "partial", b"p" * 100)
    best = store.add(0, 2, "full", b"mp4 body", container="mp4")
    store.add(0, 1.5, "full", b"longer but shorter duration")
    (segment,) = get_best_segments(store.hours_path, T0, T0 + seconds(2))
    assert segment.path == best


def test_best_copy_of_one_start(store):
    store.add(0, 2, "partial", b"p" * 100)
    store.add(0, 2, "suspect", b"s" * 100)
    store.add(0, 1.5, "full", b"short" * 100)
    store.add(0, 2, "full", b"small")
    largest = store.add(0, 2, "full", b"large" * 10)
    segments = get_best_segments(store.hours_path, T0, T0 + seconds(2))
    assert [s.path for s in segments] == [largest]


def test_best_tie_broken_by_hash_the_same_everywhere(store):
    # Same type, duration and size: only the hash can decide. Listings arrive
    # sorted by name, so the candidates are given in both orders here: a choice
    # by position would pick differently.
    paths = [store.add(0, 2, "full", data) for data in (b"aaaa", b"bbbb")]
    candidates = [parse_segment_path(path) for path in paths]
    chosen = {best_segments_by_start(order)[0].hash for order in (candidates, candidates[::-1])}
    assert chosen == {max(c.hash for c in candidates)}


def test_suspect_beats_partial(store):
    store.add(0, 2, "partial", b"longer partial body")
    store.add(0, 2, "suspect", b"s")
    assert store.best(0, 2) == [(0, 2, "suspect"), None]


def test_overlap_is_skipped(store, caplog):
    store.add(0, 4)
    store.add(2, 4)  # a restarted stream whose timestamps overlap the old one
    store.add(4, 2)
    with caplog.at_level(logging.INFO, logger="common.segments"):
        assert store.best(0, 6) == [(0, 4, "full"), (4, 2, "full")]
    assert "overlaps" in caplog.text


def test_segment_from_previous_hour_covers_start(store):
    store.add(-1, 2)  # starts at 12:59:59, in the previous hour's directory
    store.add(1, 2)
    assert store.best(0, 3) == [(-1, 2, "full"), (1, 2, "full")]


def test_across_hour_boundaries(store):
    start = 3600 - 4
    for i in range(4):
        store.add(start + 2 * i, 2)
    assert store.best(start + 1, start + 7) == [(start + 2 * i, 2, "full") for i in range(4)]
    assert sorted(os.listdir(store.hours_path)) == ["2026-11-28T13", "2026-11-28T14"]


def test_naive_and_aware_times_agree(store):
    store.add(0, 2)
    naive = get_best_segments(
        store.hours_path, T0.replace(tzinfo=None), datetime.datetime(2026, 11, 28, 13, 0, 2)
    )
    other_zone = datetime.timezone(-seconds(5 * 3600))
    aware = get_best_segments(
        store.hours_path, T0.astimezone(other_zone), (T0 + seconds(2)).astimezone(other_zone)
    )
    assert naive == aware
    assert len(naive) == 1


def test_empty_store_and_empty_range(store):
    assert store.best(0, 10) == [None]
    store.add(0, 2)
    assert store.best(1, 1) == []
    with pytest.raises(ValueError):
        store.best(2, 1)


def test_range_after_content_is_one_hole(store):
    store.add(0, 2)
    assert store.best(10, 20) == [None]


def test_ignores_temp_hidden_and_bad_files(store, caplog):
    store.add(0, 2)
    hour = os.path.join(store.hours_path, "2026-11-28T13")
    for name in (
        "00:02.000000-2.000-temp-xyz.ts",
        "00:02.000000-2.000-temp-xyz.mp4",
        f".00:02.000000-2.000-full-{HASH}.ts",
        f".00:02.000000-2.000-full-{HASH}.mp4",
        f"00:02.000000-2.000-full-{HASH}.mkv",
        "notes.txt",
    ):
        open(os.path.join(hour, name), "w").close()
    with caplog.at_level(logging.WARNING):
        assert store.best(0, 4) == [(0, 2, "full"), None]
    assert "notes.txt" in caplog.text and ".mkv" in caplog.text
    assert len(list_segments(hour)) == 1


def test_best_segments_by_start_orders_by_time(store):
    for start in (4, 0, 2):
        store.add(start, 2)
    hour = os.path.join(store.hours_path, "2026-11-28T13")
    assert [s.start for s in best_segments_by_start(list_segments(hour))] == [
        T0 + seconds(n) for n in (0, 2, 4)
    ]


def test_hours_for_range():
    assert hours_for_range(T0 + seconds(10), T0 + seconds(3600 * 2)) == [
        "2026-11-28T12",
        "2026-11-28T13",
        "2026-11-28T14",
    ]
    assert hours_for_range(T0, T0 + seconds(1)) == ["2026-11-28T12", "2026-11-28T13"]


def test_other_digits_are_not_listed(store, caplog):
    store.add(0, 2)
    hour = os.path.join(store.hours_path, "2026-11-28T13")
    open(os.path.join(hour, f"00:0\u0664.000000-2.000-full-{HASH}.ts"), "w").close()
    with caplog.at_level(logging.WARNING):
        assert [s.start for s in list_segments(hour)] == [T0]


def test_name_with_a_newline_is_not_read_as_its_lines(store, caplog):
    store.add(0, 2)
    hour = os.path.join(store.hours_path, "2026-11-28T13")
    # Listed in one pass over the names joined by newlines: this one must not
    # pass for the segment named on its second line.
    open(os.path.join(hour, f"junk\n00:02.000000-2.000-full-{HASH}.ts"), "w").close()
    with caplog.at_level(logging.WARNING):
        assert [s.start for s in list_segments(hour)] == [T0]
    assert "junk" in caplog.text


def reference_best(hours_path, start, end):
    """get_best_segments as docs/STORE.md words it, one segment at a time."""
    result = []
    for hour in hours_for_range(start, end):
        for segment in best_segments_by_start(list_segments(os.path.join(hours_path, hour))):
            if segment.end <= start or segment.start >= end:
                continue
            if not result:
                result += [None, segment] if segment.start > start else [segment]
            elif result[-1] is None:
                result.append(segment)
            elif result[-1].end > segment.start:
                continue  # overlaps the one before: skipped
            elif result[-1].end == segment.start and not result[-1].is_partial:
                result.append(segment)
            else:
                result += [None, segment]
    if not result or (result[-1] is not None and (result[-1].end < end or result[-1].is_partial)):
        result.append(None)
    return result


@pytest.mark.parametrize("seed", range(12))
def test_best_segments_match_the_contract_on_random_stores(tmp_path, seed):
    """Whole hours that join are taken at once; the result must not change for it."""
    rng = random.Random(seed)
    store = Store(tmp_path)
    offset = -3600
    while offset < 3 * 3600:
        roll = rng.random()
        duration = 120
        if roll < 0.05:
            offset += rng.choice((1, 60))  # a gap
        elif roll < 0.1:
            store.add(offset, duration, rng.choice(("partial", "suspect")))
        elif roll < 0.13:
            store.add(offset + 30, 60)  # an overlap
        elif roll < 0.16:
            store.add(offset, 60)  # a shorter copy of the same start
        store.add(offset, duration)
        offset += duration
    # Settled directories, so the second call reads the hour cache.
    for hour in os.listdir(store.hours_path):
        os.utime(os.path.join(store.hours_path, hour), (0, 0))
    clear_hour_cache()
    boundaries = sorted(
        {s.start for hour in os.listdir(store.hours_path)
         for s in list_segments(os.path.join(store.hours_path, hour))}
        | {s.end for hour in os.listdir(store.hours_path)
           for s in list_segments(os.path.join(store.hours_path, hour))}
    )  # fmt: skip
    for _ in range(40):
        start = T0 + seconds(rng.randrange(-4000, 3 * 3600) + rng.choice((0, 0.5)))
        end = start + seconds(rng.choice((1, 119, 120, 3600, 7200, 4 * 3600)))
        if rng.random() < 0.5:  # ends exactly on segment boundaries
            start, end = sorted(rng.sample(boundaries, 2))
        expected = reference_best(store.hours_path, start, end)
        assert get_best_segments(store.hours_path, start, end) == expected
        # again, from the hour cache
        assert get_best_segments(store.hours_path, start, end) == expected


def test_longest_segment_is_listed_and_a_longer_one_is_not(store, caplog):
    """300 s is the bound; the one-pass listing leaves both to the careful parser."""
    store.add(0, 2)
    store.add(2, 300)
    hour = os.path.join(store.hours_path, "2026-11-28T13")
    hostile = f"00:00.000000-999999999999.000-full-{HASH}.ts"
    open(os.path.join(hour, hostile), "w").close()
    with caplog.at_level(logging.WARNING):
        assert store.best(0, 302) == [(0, 2, "full"), (2, 300, "full")]
    assert "999999999999.000" in caplog.text
    assert [s.duration for s in list_segments(hour)] == [seconds(2), seconds(300)]


def test_a_cold_listing_lets_waiting_requests_in(tmp_path):
    """Between the hours it lists, get_best_segments gives the event loop a turn:
    a request already waiting on its socket is answered before the listing ends."""
    store = Store(tmp_path)
    for hour in range(8):
        store.add(hour * 3600, 2)

    def app(environ, start_response):
        start_response("200 OK", [("Content-Type", "text/plain")])
        return [b"answered"]

    server = WSGIServer(app, "127.0.0.1", 0, name="test")
    port = server.start()
    try:
        client = gevent.socket.create_connection(("127.0.0.1", port))
        client.sendall(b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        clear_hour_cache()
        get_best_segments(store.hours_path, T0, T0 + seconds(8 * 3600))
        # Not waiting: whatever arrived came while the listing ran.
        client.setblocking(False)
        try:
            answer = client.recv(65536)
        except BlockingIOError:
            answer = b""
        assert answer.startswith(b"HTTP/1.1 200"), answer
        client.close()
    finally:
        server.close(timeout=1)


# --- the one-pass listing agrees with parse_segment_path ---------------------


def reference_listing(hour):
    """list_segments as its docstring words it: each name through parse_segment_path.

    In time order, and by path within a start (which list_segments leaves open).
    """
    segments = []
    for name in sorted(os.listdir(hour)):
        try:
            segment = parse_segment_path(os.path.join(hour, name))
        except ValueError:
            continue
        if segment.type != "temp":
            segments.append(segment)
    return sorted(segments, key=lambda s: (s.start, s.path))


def listed(hour):
    """list_segments(hour), checked to be in time order, then by path within a start."""
    segments = list_segments(hour)
    assert [s.start for s in segments] == sorted(s.start for s in segments)
    return sorted(segments, key=lambda s: (s.start, s.path))


HASH_DASH = next(h for i in range(1000) if "-" in (h := hash_bytes(str(i).encode())))
# Names near the one-pass listing's fast path: some it takes, some that pass
# its layout check but not its offset or kind check, some only the careful
# parser reads, and some no one reads.
NEAR_NAMES = [
    f"50:07.300000-2.000-full-{HASH}.ts",
    f"50:07.300000-2.000-full-{HASH}.mp4",
    f"59:59.999999-0.000001-suspect-{HASH_DASH}.ts",
    f"00:00.000000-0-partial-{HASH}.ts",
    f"00:00.000000-299.999999-full-{HASH}.mp4",
    f"00:00.000000-300-full-{HASH}.ts",
    f"00:00.000000-300.000001-full-{HASH}.ts",
    f"00:00.000000-007-full-{HASH}.ts",
    f"00:00.000000-2.-full-{HASH}.ts",
    f"00:00.000000-.5-full-{HASH}.ts",
    f"00:00.000000--full-{HASH}.ts",
    f"00:00.000000-2.000--{HASH}.ts",
    f"00:00.000000-2.0000001-full-{HASH}.ts",
    f"00:00.000000-\u0662.000-full-{HASH}.ts",
    f"00:00.000000-2.000-complete-{HASH}.ts",
    f"00:00.000000-2.000-temp-{HASH}.ts",
    "00:00.000000-2.000-temp-abc.ts",
    f"00:00.000000-2.000-full-x-{HASH}.ts",
    f"00:00.000000-2.000-full-{HASH[:-1]}B.ts",
    f"00:00.000000-2.000-full-{HASH}.TS",
    f"00:00.000000-2.000-full-{HASH}.ts.mp4",
    f"00:00.000000x2.000-full-{HASH}.ts",
    f".00:00.000000-2.000-full-{HASH}.ts",
    f"60:00.000000-2.000-full-{HASH}.ts",
    f"00:60.000000-2.000-full-{HASH}.ts",
    f"00-00.000000-2.000-full-{HASH}.ts",
    f"0\u0664:00.000000-2.000-full-{HASH}.ts",
    f"00:00.00000a-2.000-full-{HASH}.mp4",
    f"00:00.000000-2.000-full-{HASH}\n00:02.000000-2.000-full-{HASH}.ts",
]


@pytest.mark.parametrize("neighbours", [None, "ts", "mp4"])
@pytest.mark.parametrize("name", NEAR_NAMES)
def test_listing_agrees_with_parse_segment_path(tmp_path, name, neighbours):
    hour = tmp_path / "chan" / "source" / "2026-11-28T13"
    hour.mkdir(parents=True)
    (hour / name).touch()
    for i in range(3 if neighbours else 0):
        (
            hour / segment_name(T0 + seconds(10 + 2 * i), seconds(2), "full", HASH, neighbours)
        ).touch()
    assert listed(str(hour)) == reference_listing(str(hour))


@pytest.mark.parametrize("seed", range(6))
def test_listing_agrees_with_parse_segment_path_on_random_names(tmp_path, seed, monkeypatch):
    """Drifting starts, both containers, and names with one character changed."""
    rng = random.Random(seed)
    monkeypatch.setattr(segments_module._Offsets, "LIMIT", 50)  # emptied along the way
    hour = tmp_path / "chan" / "source" / "2026-11-28T13"
    hour.mkdir(parents=True)
    containers = rng.choice((["ts"], ["mp4"], ["ts", "mp4"]))
    for i in range(300):
        start = T0 + datetime.timedelta(microseconds=rng.randrange(3600 * 10**6))
        duration = datetime.timedelta(microseconds=rng.choice((2 * 10**6, 6_006_000, 0, 1)))
        type = rng.choice(("full", "full", "suspect", "partial", "temp"))
        name = segment_name(
            start, duration, type, rng.choice((HASH, HASH_DASH)), rng.choice(containers)
        )
        if i % 10 == 0 and seed:  # a stray, for the careful parser; none for seed 0
            at = rng.randrange(len(name))
            name = name[:at] + rng.choice("-:.0913x_\u0661\n") + name[at + 1 :]
        (hour / name).touch()
    expected = reference_listing(str(hour))
    assert expected
    assert listed(str(hour)) == expected
    assert len(segments_module._offsets) <= 50


@pytest.mark.parametrize("container", ["ts", "mp4"])
def test_a_well_formed_hour_is_listed_in_one_pass(store, container, monkeypatch):
    """Not name by name: neither the careful parser nor the per-name regex is used."""
    for i in range(5):
        store.add(2 * i, 2, container=container)
    store.add(10, 2, "partial", container=container)
    store.add(10, 1, container=container)  # a second file for one start
    hour = os.path.join(store.hours_path, "2026-11-28T13")
    expected = reference_listing(hour)
    monkeypatch.setattr(segments_module, "parse_segment_path", None)
    monkeypatch.setattr(segments_module, "_WELL_FORMED_RE", None)
    assert listed(hour) == expected
    assert [s.start for s in best_segments_by_start(expected)] == [
        T0 + seconds(2 * i) for i in range(6)
    ]
    clear_hour_cache()
    assert store.best(0, 12) == [(i * 2, 2, "full") for i in range(5)] + [(10, 1, "full"), None]


@pytest.mark.parametrize("container", ["ts", "mp4"])
def test_listed_segments_behave_as_parsed_ones(store, container):
    store.add(0, 2, container=container)
    (listed,) = list_segments(os.path.join(store.hours_path, "2026-11-28T13"))
    parsed = parse_segment_path(listed.path)
    assert listed == parsed and isinstance(listed, SegmentInfo)
    assert listed.container == parsed.container == container
    assert repr(listed) == repr(parsed)
    other = "mp4" if container == "ts" else "ts"
    moved = listed._replace(path=listed.path.rpartition(".")[0] + "." + other)
    assert moved.container == other
    assert pickle.loads(pickle.dumps(listed)) == listed
