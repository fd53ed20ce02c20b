"""The pure parts: which hours, which segments, which nodes, which flags."""

import datetime

import pytest

from backfiller.main import parse_args, parse_start
from backfiller.plan import Peer, hours_to_backfill, parse_node_lines, segments_to_fetch
from common.segments import UTC, parse_segment_path, segment_name

H = datetime.timedelta(hours=1)
S = datetime.timedelta(seconds=1)
T0 = datetime.datetime(2026, 1, 10, 10, 0, tzinfo=UTC)
NOW = T0 + 10 * H
CUTOFF = datetime.timedelta(seconds=120)


def seg(start, type="full", hash_char="A", duration=2 * S):
    name = segment_name(start, duration, type, hash_char * 42 + "A")
    return parse_segment_path(name, channel="c", quality="q", hour=start.strftime("%Y-%m-%dT%H"))


@pytest.mark.parametrize(
    "lists, start, expected",
    [
        ([[]], None, []),
        ([["2026-01-10T10", "2026-01-10T12", "2026-01-10T11"]], None,
         ["2026-01-10T12", "2026-01-10T11", "2026-01-10T10"]),
        # union over qualities, each hour once
        ([["2026-01-10T10", "2026-01-10T11"], ["2026-01-10T11", "2026-01-09T23"]], None,
         ["2026-01-10T11", "2026-01-10T10", "2026-01-09T23"]),
        # from start's hour on: the hour holding start is kept
        ([["2026-01-10T09", "2026-01-10T10", "2026-01-10T11"]], T0 + 30 * 60 * S,
         ["2026-01-10T11", "2026-01-10T10"]),
        ([["2026-01-10T09"]], T0, []),
    ],
)  # fmt: skip
def test_hours_to_backfill(lists, start, expected):
    assert hours_to_backfill(lists, start) == expected


def test_hours_to_backfill_leaves_callers_lists_alone():
    source = ["2026-01-10T10", "2026-01-10T12", "2026-01-10T11"]
    frozen = ("2026-01-09T01",)
    result = hours_to_backfill([source, frozen, iter(["2026-01-10T13"])])
    assert source == ["2026-01-10T10", "2026-01-10T12", "2026-01-10T11"]
    assert result == ["2026-01-10T13", "2026-01-10T12", "2026-01-10T11", "2026-01-10T10",
                      "2026-01-09T01"]  # fmt: skip
    assert result is not source
    result.append("x")
    assert hours_to_backfill([source]) == ["2026-01-10T12", "2026-01-10T11", "2026-01-10T10"]


def names(segments):
    return [s.name for s in segments]


def test_fetches_missing_full_segments_in_order_given():
    a, b, c = seg(T0), seg(T0 + 2 * S), seg(T0 + 4 * S)
    assert names(segments_to_fetch([c, a, b], [b], NOW, CUTOFF)) == names([c, a])


def test_never_fetches_temp_duplicates_or_what_is_here():
    a = seg(T0)
    temp = parse_segment_path(
        segment_name(T0 + 2 * S, 2 * S, "temp", "tempid"), channel="c", quality="q",
        hour="2026-01-10T10",
    )  # fmt: skip
    assert segments_to_fetch([a, a, temp], [], NOW, CUTOFF) == [a]
    assert segments_to_fetch([a], [a], NOW, CUTOFF) == []


def test_recent_segments_are_left_to_the_downloader():
    old = seg(NOW - CUTOFF)
    recent = seg(NOW - CUTOFF + S)
    assert segments_to_fetch([old, recent], [], NOW, CUTOFF) == [old]


def test_a_local_full_copy_is_never_joined_by_a_peers_other_copy():
    # What this node recorded whole is what it serves: a peer's other full
    # copy of the start (padded to win the size tie-break, or other video)
    # is never fetched, whatever its hash or duration.
    for char in "ABC":
        here = seg(T0, hash_char="B")
        for there in (seg(T0, hash_char=char), seg(T0, hash_char=char, duration=3 * S)):
            if there.name != here.name:
                assert segments_to_fetch([there], [here], NOW, CUTOFF) == []


def test_one_full_copy_per_start_the_best_by_name():
    # Nothing here: of the peer's two full copies, the one every node picks.
    low, high = seg(T0, hash_char="B"), seg(T0, hash_char="C")
    assert segments_to_fetch([low, high], [], NOW, CUTOFF) == [high]
    assert segments_to_fetch([high, low], [], NOW, CUTOFF) == [high]


@pytest.mark.parametrize(
    "remote, local, fetched",
    [
        # nothing here: the best broken copy is fetched
        ([("partial", "B")], [], [0]),
        # a full copy here or on the peer beats any broken one
        ([("partial", "B")], [("full", "C")], []),
        ([("full", "C"), ("suspect", "B")], [], [0]),
        # suspect beats partial, either way round
        ([("suspect", "B")], [("partial", "C")], [0]),
        ([("partial", "B")], [("suspect", "C")], []),
        # equal rank: the higher hash wins, so two nodes converge on one copy
        ([("partial", "C")], [("partial", "B")], [0]),
        ([("partial", "B")], [("partial", "C")], []),
        ([("partial", "B"), ("partial", "C")], [], [1]),
    ],
)
def test_broken_segments_only_where_nothing_better(remote, local, fetched):
    remote = [seg(T0, type=t, hash_char=h) for t, h in remote]
    local = [seg(T0, type=t, hash_char=h) for t, h in local]
    assert segments_to_fetch(remote, local, NOW, CUTOFF) == [remote[i] for i in fetched]


def test_longer_partial_beats_shorter():
    short, long = seg(T0, "partial", "C", 1 * S), seg(T0, "partial", "B", 2 * S)
    assert segments_to_fetch([long], [short], NOW, CUTOFF) == [long]
    assert segments_to_fetch([short], [long], NOW, CUTOFF) == []


def test_node_lines():
    text = """
    # peers of node a
    b http://B.example:8000/   # trailing slash and case normalised
    http://c.example:8000
    bad line with words
    d ftp://d.example
    e not-a-url
    """
    peers, errors = parse_node_lines(text)
    assert peers == [
        Peer("b", "http://b.example:8000"),
        Peer("c.example:8000", "http://c.example:8000"),
    ]
    assert len(errors) == 3
    assert errors[0].startswith("line 5: ")
    assert "ftp://d.example" in errors[1]


def test_start_is_hours_ago_or_iso_time():
    assert parse_start("2") == 2 * H
    assert parse_start("0.5") == 30 * 60 * S
    assert parse_start("2026-01-10T10:30") == T0 + 30 * 60 * S
    assert parse_start("2026-01-10T11:30+01:00") == T0 + 30 * 60 * S
    for bad in ("-1", "nan", "yesterday", ""):
        with pytest.raises(Exception, match="bad start"):
            parse_start(bad)


def test_args():
    args = parse_args(
        ["--channels", "a,b", "--qualities", "source,480p", "--nodes", "http://x:1/",
         "--start", "3", "--recent-cutoff", "30", "--concurrency", "7", "--run-once"]
    )  # fmt: skip
    assert args.channels == ["a", "b"]
    assert args.qualities == ["source", "480p"]
    assert args.nodes == ["http://x:1"]
    assert args.start == 3 * H
    assert args.recent_cutoff == 30 * S
    assert args.concurrency == 7
    assert args.run_once
    assert args.max_segment_bytes == 64 * 2**20 and args.min_free_bytes == 2 * 2**30
    args = parse_args(["--channels", "a", "--nodes", "http://x", "--max-segment-mb", "8",
                       "--min-free-mb", "0.5"])  # fmt: skip
    assert args.max_segment_bytes == 8 * 2**20 and args.min_free_bytes == 2**19
    # No peers yet is fine: the backfiller waits for a node file.
    args = parse_args(["--channels", "a"])
    assert args.nodes == [] and args.node_file is None


@pytest.mark.parametrize(
    "argv, message",
    [
        (["--channels", ",", "--nodes", "http://x"], "at least one channel"),
        (["--channels", "../x", "--nodes", "http://x"], "bad channel"),
        (["--channels", "a", "--qualities", ".q", "--nodes", "http://x"], "bad quality"),
        (["--channels", "a", "--nodes", "x:8000"], "bad node URL"),
        (["--channels", "a", "--nodes", "http://x", "--concurrency", "0"], "1 or more"),
        (["--channels", "a", "--nodes", "http://x", "--recent-cutoff", "-5"], "0 or more"),
        (["--channels", "a", "--nodes", "http://x", "--min-free-mb", "lots"], "megabytes"),
    ],
)
def test_bad_args_give_one_line_errors(argv, message, capsys):
    with pytest.raises(SystemExit) as exc:
        parse_args(argv)
    assert exc.value.code == 2
    assert message in capsys.readouterr().err
