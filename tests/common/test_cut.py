"""common.cut, judged by ffmpeg and ffprobe on real media.

The media (see conftest) marks every frame with its number, so each test knows
exactly which source frames a cut must hold: those whose time falls in
[start, end), frame n being at MEDIA_START + n/30 s.

The cases beyond one of each kind are marked slow (each runs several ffmpegs).
"""

import datetime
import math
import os
from fractions import Fraction

import pytest

from common import cut as cutmod
from common.cut import ContainsHoles, NoContent, cut
from common.segments import get_best_segments
from tests.common.cutcheck import (
    check_continuity,
    check_timestamps,
    child_processes,
    decode_warnings,
    frame_numbers,
    new_children_after,
    packets,
    wrap_ffmpeg,
    write_cut,
)
from tests.conftest import MEDIA_START
from tests.media import add_to_store

SLOW = pytest.mark.slow
RATE = 30
FRAME = 3000  # ticks
AUDIO_FRAME = 1920  # ticks: 1024 samples at 48 kHz
# The media's first frame is at 10 h plus the HLS muxer's 1.4 s delay.
FIRST_PTS = 36001.4 * 90000
WIDTH = 320
SIX = datetime.timedelta(seconds=6)


def at(seconds):
    return MEDIA_START + datetime.timedelta(seconds=seconds)


def frames_between(a, b, first=0):
    """The frame numbers shown in [a, b) seconds of media (counting from `first`)."""
    a, b = Fraction(str(a)), Fraction(str(b))
    return list(range(first + math.ceil(a * RATE), first + math.ceil(b * RATE)))


@pytest.fixture
def store(tmp_path, marked_media):
    base = tmp_path / "store"
    add_to_store(str(base), "chan", "source", MEDIA_START, marked_media)
    return str(base / "chan" / "source")


def judge(
    path, a, b, expected_frames, width=WIDTH, reencoded_audio=False, audio_end_slack=0,
    audio_joins=0,
):  # fmt: skip
    """Every check a cut must pass; returns the video's start and end ticks.

    `audio_joins`: places where copied audio may gap or overlap by less than
    an audio frame (two encoder sessions joined: their audio and video do
    not line up alike)."""
    assert decode_warnings(path) == ""
    check_continuity(path)
    found = packets(path)
    slack = 2 if reencoded_audio else 0
    video_start, video_end, audio_start, audio_end = check_timestamps(
        found, audio_slack=slack, audio_joins=audio_joins
    )
    assert frame_numbers(path, width) == expected_frames
    wanted = (b - a) * 90000
    assert abs((video_end - video_start) - wanted) <= FRAME
    # Audio starts and ends with the video, to within one audio frame.
    assert abs(audio_start - video_start) <= AUDIO_FRAME
    assert abs(audio_end - video_end) <= AUDIO_FRAME + audio_end_slack
    return video_start, video_end


@pytest.mark.parametrize(
    "a, b",
    [
        (3.25, 26.1),  # mid-segment, mid-GOP, five segments, across 14:00
        pytest.param(7.1, 9.9, marks=SLOW),  # inside one segment
        pytest.param(10.5, 13.2, marks=SLOW),  # two segments, nothing to copy between
        # starting exactly at a segment, ending just into the next
        pytest.param(12, 18.02, marks=SLOW),
        # starting and ending exactly on keyframes inside segments
        pytest.param(8, 22, marks=SLOW),
        pytest.param(5.5, 14.3, marks=SLOW),  # starting in a segment's last GOP
        pytest.param(11.99, 14.3, marks=SLOW),  # starting after a segment's last frame
    ],
)
def test_fast_cut_is_frame_exact(store, tmp_path, registry, a, b):
    segments = get_best_segments(store, at(a), at(b))
    out = write_cut(tmp_path / "out.ts", cut(segments, at(a), at(b), registry=registry))
    video_start, _ = judge(out, a, b, frames_between(a, b))
    # The source's timestamps are kept, so the cut lines up with the copied segments.
    assert video_start == FIRST_PTS + frames_between(a, b)[0] * FRAME
    labels = {"type": "fast", "method": "fast"}
    assert registry.get_sample_value("cuts_total", {**labels, "outcome": "ok"}) == 1
    assert registry.get_sample_value("cut_latency_normalized_count", labels) == 1


def test_fast_cut_copies_middle_segments_byte_for_byte(store, tmp_path, marked_media):
    segments = get_best_segments(store, at(3.25), at(26.1))
    data = b"".join(cut(segments, at(3.25), at(26.1)))
    middle = b"".join(open(path, "rb").read() for path, _ in marked_media[1:4])
    assert middle in data


@pytest.mark.slow
def test_full_cut_is_frame_exact(store, tmp_path, registry):
    a, b = 3.25, 26.1
    segments = get_best_segments(store, at(a), at(b))
    out = write_cut(
        tmp_path / "out.ts", cut(segments, at(a), at(b), type="full", registry=registry)
    )
    judge(out, a, b, frames_between(a, b), reencoded_audio=True)
    assert (
        registry.get_sample_value("cuts_total", {"type": "full", "method": "full", "outcome": "ok"})
        == 1
    )


@pytest.mark.slow
@pytest.mark.parametrize("type", ["fast", "full"])
def test_cut_across_the_timestamp_wrap(tmp_path, wrapping_media, registry, type):
    # MPEG-TS timestamps wrap every 26.5 hours: a long charity stream crosses it.
    # ffmpeg shows the first segment's timestamps before the wrap as negative.
    base = str(tmp_path / "store")
    add_to_store(base, "chan", "source", MEDIA_START, wrapping_media)
    a, b = 1.25, 14.5
    segments = get_best_segments(os.path.join(base, "chan", "source"), at(a), at(b))
    out = write_cut(tmp_path / "out.ts", cut(segments, at(a), at(b), type=type, registry=registry))
    judge(out, a, b, frames_between(a, b), reencoded_audio=type == "full")


def test_holes_are_refused_before_any_work(tmp_path, marked_media, registry):
    base = str(tmp_path / "store")
    add_to_store(base, "chan", "source", MEDIA_START, marked_media[:2])
    add_to_store(base, "chan", "source", at(18), marked_media[3:])
    segments = get_best_segments(os.path.join(base, "chan", "source"), at(3.25), at(26.1))
    assert None in segments
    before = child_processes()
    with pytest.raises(ContainsHoles):
        cut(segments, at(3.25), at(26.1), registry=registry)
    assert child_processes() - before == set()
    assert (
        registry.get_sample_value(
            "cuts_total", {"type": "fast", "method": "none", "outcome": "holes"}
        )
        == 1
    )


@pytest.mark.slow
@pytest.mark.parametrize("type", ["fast", "full"])
def test_allowed_holes_are_left_out(tmp_path, marked_media, registry, type):
    base = str(tmp_path / "store")
    add_to_store(base, "chan", "source", MEDIA_START, marked_media[:2])
    add_to_store(base, "chan", "source", at(18), marked_media[3:])
    a, b = 3.25, 26.1
    segments = get_best_segments(os.path.join(base, "chan", "source"), at(a), at(b))
    out = write_cut(
        tmp_path / "out.ts",
        cut(segments, at(a), at(b), type=type, allow_holes=True, registry=registry),
    )
    # 6 s hole (12 s to 18 s) is absent: the pieces either side are joined.
    expected = frames_between(a, 12) + frames_between(18, b)
    if type == "fast":
        # Joined without re-encoding (the two sides have one format).
        judge(out, a + 6, b, expected, audio_joins=1)
        labels = {"type": "fast", "method": "joined", "outcome": "ok"}
        assert registry.get_sample_value("cuts_total", labels) == 1
    else:
        judge(out, a + 6, b, expected, reencoded_audio=True)


@pytest.mark.slow
def test_allowed_holes_at_the_ends_leave_a_fast_cut(tmp_path, marked_media, registry):
    # Recording started late and stopped early: what there is, cut fast.
    base = str(tmp_path / "store")
    add_to_store(base, "chan", "source", at(6), marked_media[1:3])
    segments = get_best_segments(os.path.join(base, "chan", "source"), at(2), at(25))
    assert segments[0] is None and segments[-1] is None
    out = write_cut(
        tmp_path / "out.ts", cut(segments, at(2), at(25), allow_holes=True, registry=registry)
    )
    # The audio of a segment's last ~60 ms is muxed into the next segment, which
    # is missing here, so the audio may stop up to 3 audio frames early.
    judge(out, 6, 18, frames_between(6, 18), audio_end_slack=2 * AUDIO_FRAME)
    assert (
        registry.get_sample_value("cuts_total", {"type": "fast", "method": "fast", "outcome": "ok"})
        == 1
    )


def test_restart_of_the_same_format_is_joined_fast(tmp_path, marked_media, registry):
    # The stream restarts at 12 s: its timestamps start over (the same media again).
    base = str(tmp_path / "store")
    add_to_store(base, "chan", "source", MEDIA_START, marked_media[:2])
    add_to_store(base, "chan", "source", at(12), marked_media[:2])
    a, b = 3.25, 20
    segments = get_best_segments(os.path.join(base, "chan", "source"), at(a), at(b))
    assert None not in segments
    out = write_cut(tmp_path / "out.ts", cut(segments, at(a), at(b), registry=registry))
    judge(out, a, b, frames_between(a, 12) + frames_between(0, b - 12), audio_joins=1)
    assert registry.get_sample_value("cut_fallbacks_total", {"reason": "restart"}) is None
    labels = {"type": "fast", "method": "joined", "outcome": "ok"}
    assert registry.get_sample_value("cuts_total", labels) == 1


def audio_at_joins(found, joins):
    """Where audio starts after each join, less the video (90 kHz ticks).

    `joins`: the output PTS of the first frame after each. A part's audio
    ends before half an audio frame before its video's end, the next one's
    starts from half a frame before its first frame: the first audio packet
    from there on is the next part's."""
    audio = sorted(p[0] for p in found["audio"])
    return [next(t for t in audio if t >= join - AUDIO_FRAME / 2) - join for join in joins]


@pytest.mark.slow
def test_resolution_change_reencodes_only_the_changed_run(
    tmp_path, marked_media, small_media, registry
):
    base = str(tmp_path / "store")
    add_to_store(base, "chan", "source", MEDIA_START, marked_media[:2])
    add_to_store(base, "chan", "source", at(12), small_media)
    a, b = 3.25, 20
    segments = get_best_segments(os.path.join(base, "chan", "source"), at(a), at(b))
    assert None not in segments
    out = write_cut(tmp_path / "out.ts", cut(segments, at(a), at(b), registry=registry))
    # The 256x144 part is scaled to 320x180, so its markers read the same way.
    # Its audio is re-encoded; at the join the first part's last 20-60 ms of
    # audio are missing (they were muxed into a segment after the restart).
    video_start, _ = judge(
        out, a, b, frames_between(a, 12) + frames_between(0, b - 12), reencoded_audio=True,
        audio_joins=1,
    )  # fmt: skip
    found = packets(out)
    assert {(s["width"], s["height"]) for s in found["streams"] if "width" in s} == {(320, 180)}
    # The first part keeps the source's timestamps (it is cut fast); the
    # converted part's audio starts with its video.
    assert video_start == FIRST_PTS + frames_between(a, b)[0] * FRAME
    join = video_start + len(frames_between(a, 12)) * FRAME
    assert audio_at_joins(found, [join]) == [0]
    assert registry.get_sample_value("cut_fallbacks_total", {"reason": "format"}) is None
    labels = {"type": "fast", "method": "converted", "outcome": "ok"}
    assert registry.get_sample_value("cuts_total", labels) == 1


@pytest.mark.slow
def test_a_changed_run_in_the_middle_is_converted_alone(
    tmp_path, marked_media, small_media, registry
):
    # 320x180 until 18 s, a restart at 256x144 until 30 s, then 320x180 again.
    base = str(tmp_path / "store")
    add_to_store(base, "chan", "source", MEDIA_START, marked_media[:3])
    add_to_store(base, "chan", "source", at(18), small_media)
    add_to_store(base, "chan", "source", at(30), marked_media[:2])
    a, b = 3.25, 40
    segments = get_best_segments(os.path.join(base, "chan", "source"), at(a), at(b))
    out = write_cut(tmp_path / "out.ts", cut(segments, at(a), at(b), registry=registry))
    expected = frames_between(a, 18) + frames_between(0, 12) + frames_between(0, b - 30)
    video_start, _ = judge(out, a, b, expected, reencoded_audio=True, audio_joins=2)
    found = packets(out)
    assert {(s["width"], s["height"]) for s in found["streams"] if "width" in s} == {(320, 180)}
    # The first part's middle segment is copied byte for byte.
    with open(out, "rb") as f, open(marked_media[1][0], "rb") as segment:
        assert segment.read() in f.read()
    joins = [video_start + len(frames_between(a, 18)) * FRAME]
    joins.append(joins[0] + 12 * 90000)
    offsets = audio_at_joins(found, joins)
    # Into the converted part: its audio starts with its video. Out of it:
    # the copied audio starts within half an audio frame of its video.
    assert offsets[0] == 0
    assert abs(offsets[1]) <= AUDIO_FRAME / 2
    labels = {"type": "fast", "method": "converted", "outcome": "ok"}
    assert registry.get_sample_value("cuts_total", labels) == 1


@pytest.mark.slow
def test_closing_a_converted_cut_early_kills_its_ffmpegs(
    tmp_path, marked_media, small_media, registry, monkeypatch
):
    # The conversion (the one ffmpeg padding video: tpad) hangs, reading nothing.
    script = tmp_path / "ffmpeg"
    script.write_text('#!/bin/sh\ncase "$*" in *tpad=*) exec sleep 60;; esac\nexec ffmpeg "$@"\n')
    script.chmod(0o755)
    monkeypatch.setattr(cutmod.ffmpeg, "FFMPEG", str(script))
    base = str(tmp_path / "store")
    add_to_store(base, "chan", "source", MEDIA_START, marked_media[:2])
    add_to_store(base, "chan", "source", at(12), small_media)
    segments = get_best_segments(os.path.join(base, "chan", "source"), at(3.25), at(20))
    before = child_processes()
    chunks = cut(segments, at(3.25), at(20), registry=registry)
    assert next(chunks)
    running = [open(f"/proc/{pid}/cmdline", "rb").read() for pid in child_processes() - before]
    assert any(cmdline.startswith(b"sleep") for cmdline in running), "expected the conversion"
    chunks.close()
    assert new_children_after(before) == set()
    labels = {"type": "fast", "method": "converted", "outcome": "cancelled"}
    assert registry.get_sample_value("cuts_total", labels) == 1


@pytest.mark.slow
def test_a_frame_rate_change_is_converted_to_the_first_rate(
    tmp_path, marked_media, fast_media, registry
):
    base = str(tmp_path / "store")
    add_to_store(base, "chan", "source", MEDIA_START, marked_media[:2])
    add_to_store(base, "chan", "source", at(12), fast_media)
    a, b = 3.25, 17
    segments = get_best_segments(os.path.join(base, "chan", "source"), at(a), at(b))
    out = write_cut(tmp_path / "out.ts", cut(segments, at(a), at(b), registry=registry))
    # 60 fps brought to 30: every other frame of the second part.
    converted = list(range(0, 5 * 60, 2))
    judge(out, a, b, frames_between(a, 12) + converted, reencoded_audio=True, audio_joins=1)
    labels = {"type": "fast", "method": "converted", "outcome": "ok"}
    assert registry.get_sample_value("cuts_total", labels) == 1


@pytest.mark.slow
def test_a_converted_run_cut_short_still_lasts_its_listed_time(
    tmp_path, marked_media, small_media, registry
):
    # The restart's segment lost its second half (the recording broke; a hole
    # follows), yet says it lasts 6 s: its last frame is held to fill them,
    # so that what comes after the hole still joins one frame on.
    short = tmp_path / "short.ts"
    data = open(small_media[0][0], "rb").read()
    short.write_bytes(data[: len(data) // 2 // 188 * 188])
    base = str(tmp_path / "store")
    add_to_store(base, "chan", "source", MEDIA_START, marked_media[:2])
    add_to_store(base, "chan", "source", at(12), [(str(short), SIX)])
    add_to_store(base, "chan", "source", at(24), marked_media[:1])
    a, b = 3.25, 28
    segments = get_best_segments(os.path.join(base, "chan", "source"), at(a), at(b))
    out = write_cut(
        tmp_path / "out.ts", cut(segments, at(a), at(b), allow_holes=True, registry=registry)
    )
    found = frame_numbers(out, WIDTH)
    first, middle, last = found[:262], found[262 : 262 + 180], found[262 + 180 :]
    assert first == frames_between(a, 12) and last == frames_between(0, b - 24)
    # What is left of it (a frame or two the damage spoils held from the one
    # before), then its last frame held.
    kept = middle.index(middle[-1]) + 1
    assert 30 < kept < 150 and middle[:kept] == sorted(middle[:kept])
    assert len(set(middle[:kept])) >= kept - 2
    assert middle[kept:] == [middle[-1]] * (180 - kept)
    judge(out, a + 6, b, found, reencoded_audio=True, audio_joins=2)
    labels = {"type": "fast", "method": "converted", "outcome": "ok"}
    assert registry.get_sample_value("cuts_total", labels) == 1


@pytest.mark.slow
def test_a_restart_the_first_format_cannot_take_falls_back_to_concat(
    tmp_path, mp2_media, small_media, registry
):
    # The first part's audio is MP2: a converted part (AAC) could not continue it.
    base = str(tmp_path / "store")
    add_to_store(base, "chan", "source", MEDIA_START, mp2_media)
    add_to_store(base, "chan", "source", at(12), small_media)
    a, b = 3.25, 20
    segments = get_best_segments(os.path.join(base, "chan", "source"), at(a), at(b))
    out = write_cut(tmp_path / "out.ts", cut(segments, at(a), at(b), registry=registry))
    judge(out, a, b, frames_between(a, 12) + frames_between(0, b - 12), reencoded_audio=True)
    assert registry.get_sample_value("cut_fallbacks_total", {"reason": "codec"}) == 1
    labels = {"type": "fast", "method": "concat", "outcome": "ok"}
    assert registry.get_sample_value("cuts_total", labels) == 1


def test_a_range_between_two_frames_has_no_content(store, registry):
    # Frames at 7.000 and 7.033 s: nothing starts in [7.01, 7.02).
    segments = get_best_segments(store, at(7.01), at(7.02))
    chunks = cut(segments, at(7.01), at(7.02), registry=registry)
    with pytest.raises(NoContent):
        next(chunks)
    assert (
        registry.get_sample_value(
            "cuts_total", {"type": "fast", "method": "fast", "outcome": "no_content"}
        )
        == 1
    )


def test_bad_requests_are_refused(store, registry):
    segments = get_best_segments(store, at(3), at(9))
    with pytest.raises(ValueError, match="unknown cut type"):
        cut(segments, at(3), at(9), type="slow", registry=registry)
    with pytest.raises(ValueError, match="end must be after start"):
        cut(segments, at(9), at(9), registry=registry)
    with pytest.raises(NoContent):
        cut([None], at(3), at(9), allow_holes=True, registry=registry)
    with pytest.raises(NoContent):
        cut([], at(3), at(9), registry=registry)
    assert (
        registry.get_sample_value(
            "cuts_total", {"type": "fast", "method": "none", "outcome": "no_content"}
        )
        == 2
    )


@pytest.fixture
def stalling_last_piece(tmp_path, monkeypatch):
    """Make the fast cut's remux of the last segment hang, so that it is surely
    still running when the cut is closed."""
    wrap_ffmpeg(tmp_path, monkeypatch, "exec sleep 60")


@pytest.mark.parametrize("type", ["fast", "full"])
def test_closing_early_kills_ffmpeg(store, registry, type, stalling_last_piece):
    segments = get_best_segments(store, at(1), at(29))
    before = child_processes()
    chunks = cut(segments, at(1), at(29), type=type, registry=registry)
    assert next(chunks)
    assert child_processes() - before, "expected ffmpeg still running"
    chunks.close()
    assert new_children_after(before) == set()
    assert (
        registry.get_sample_value(
            "cuts_total", {"type": type, "method": type, "outcome": "cancelled"}
        )
        == 1
    )


def test_ffmpeg_failure_is_reported(store, tmp_path, registry, monkeypatch):
    segments = get_best_segments(store, at(3), at(9))
    before = child_processes()
    # A segment that was fine when scanned but breaks under ffmpeg.
    monkeypatch.setattr(cutmod, "ENCODE_PRESET", "no-such-preset")
    with pytest.raises(cutmod.FFmpegError, match="ffmpeg exited"):
        b"".join(cut(segments, at(3), at(9), registry=registry))
    assert new_children_after(before) == set()
    assert (
        registry.get_sample_value(
            "cuts_total", {"type": "fast", "method": "fast", "outcome": "error"}
        )
        == 1
    )
