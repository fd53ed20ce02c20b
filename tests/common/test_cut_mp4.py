"""Cuts of fragmented-MP4 recordings (common.cut_mp4 through common.cut.cut),
judged by ffmpeg and ffprobe on real media.

The media (see conftest) is 6 s of 160x90 fMP4 per codec, three 2 s segments,
every frame marked with its number; filed from just before 14:00 so that
ranges cross an hour. Frame n is at FMP4_START + n/30 s.
"""

import datetime
import json
import math
import os
import subprocess
from fractions import Fraction
from itertools import pairwise

import pytest

from common import ffmpeg, layout, mp4box
from common.cut import NoContent, cut
from common.cut_mp4 import UnsupportedContainer, output_container
from common.segments import get_best_segments, parse_segment_path, segment_path
from tests.common.cutcheck import (
    child_processes,
    decode_warnings,
    frame_numbers,
    new_children_after,
    write_cut,
)
from tests.conftest import MEDIA_START
from tests.media import add_to_store

SLOW = pytest.mark.slow
RATE = 30
WIDTH = 160
AUDIO_FRAME = 1024 / 48000  # seconds
# Timestamps in a time base (90 kHz in MPEG-TS, the track's in MP4), as ffprobe
# prints them (microseconds): this far from the exact instant at most.
ROUNDING = 1e-3  # seconds
FMP4_START = datetime.datetime(2026, 11, 28, 13, 59, 57, tzinfo=datetime.UTC)
# Every (codec, output container) that can be made; AV1 in MPEG-TS cannot.
OUTPUTS = [("h264", "ts"), ("h264", "mp4"), ("hevc", "ts"), ("hevc", "mp4"), ("av1", "mp4")]


def at(seconds, origin=FMP4_START):
    return origin + datetime.timedelta(seconds=seconds)


def frames_between(a, b, first=0):
    a, b = Fraction(str(a)), Fraction(str(b))
    return list(range(first + math.ceil(a * RATE), first + math.ceil(b * RATE)))


@pytest.fixture
def fmp4_store(tmp_path, marked_fmp4_media):
    """`fmp4_store(codec)`: a store holding that codec's media from FMP4_START."""

    def make(codec):
        base = str(tmp_path / f"store-{codec}")
        add_to_store(base, "chan", "source", FMP4_START, marked_fmp4_media(codec))
        return os.path.join(base, "chan", "source")

    return make


def packet_times(path):
    """{'video': [(pts, dts, duration)], 'audio': [...]} in seconds, file order;
    the container's time bases (90 kHz, the MP4 track's) undone."""
    output = subprocess.run(
        [
            "ffprobe", "-v", "error", "-show_entries",
            "packet=stream_index,pts_time,dts_time,duration_time:stream=index,codec_type",
            "-of", "json", f"file:{path}",
        ],
        capture_output=True,
        check=True,
    ).stdout  # fmt: skip
    parsed = json.loads(output)
    kinds = {s["index"]: s["codec_type"] for s in parsed["streams"]}
    found = {"video": [], "audio": []}
    for p in parsed["packets"]:
        # An MP4's edit list hides the AAC priming packet: it has no duration.
        duration = float(p.get("duration_time", AUDIO_FRAME))
        found[kinds[p["stream_index"]]].append(
            (float(p["pts_time"]), float(p["dts_time"]), duration)
        )
    return found


def judge(path, a, b, expected_frames, width=WIDTH):
    """Every check a cut must pass: no decoder warning, exactly the expected
    frames, timestamps in order, audio with the video at both ends."""
    assert decode_warnings(path) == ""
    assert frame_numbers(path, width) == expected_frames
    found = packet_times(path)
    frame = 1 / RATE
    dts_steps = [t - s for (_, s, _), (_, t, _) in pairwise(found["video"])]
    assert all(abs(step - frame) < ROUNDING for step in dts_steps), "video DTS not one frame apart"
    pts = sorted(p[0] for p in found["video"])
    assert all(abs(t - s - frame) < ROUNDING for s, t in pairwise(pts)), "frames missing/doubled"
    video_start, video_end = pts[0], pts[-1] + frame
    assert abs((video_end - video_start) - (b - a)) <= frame + ROUNDING
    audio = found["audio"]
    for (pts_a, _, duration), (pts_b, _, _) in pairwise(audio):
        assert abs(pts_b - pts_a - duration) < ROUNDING, f"audio gap/overlap at {pts_a}"
    audio_start, audio_end = audio[0][0], audio[-1][0] + audio[-1][2]
    # The AAC encoder's priming puts the first packet up to one frame early.
    assert abs(audio_start - video_start) <= AUDIO_FRAME + ROUNDING
    assert abs(audio_end - video_end) <= AUDIO_FRAME + ROUNDING


@pytest.mark.parametrize(
    "codec, container",
    [OUTPUTS[0], *(pytest.param(*output, marks=SLOW) for output in OUTPUTS[1:])],
)
def test_full_cut_of_fmp4_is_frame_exact(fmp4_store, tmp_path, registry, codec, container):
    # Mid-GOP at both ends, across all three segments and 14:00.
    a, b = 0.55, 5.1
    store = fmp4_store(codec)
    segments = get_best_segments(store, at(a), at(b))
    chunks = cut(segments, at(a), at(b), type="full", container=container, registry=registry)
    out = write_cut(tmp_path / f"out.{container}", chunks)
    judge(out, a, b, frames_between(a, b))
    labels = {"type": "full", "method": "full", "outcome": "ok"}
    assert registry.get_sample_value("cuts_total", labels) == 1


@SLOW
@pytest.mark.parametrize(
    "a, b",
    [
        (0.55, 1.4),  # inside one segment
        (2, 4),  # on segment boundaries
        (2.5, 3.5),  # across the hour, two segments
        (3.99, 6),  # starting on a segment's last frame, to the end
    ],
)
@pytest.mark.parametrize("codec", ["h264", "hevc"])
def test_full_cut_of_fmp4_ranges(fmp4_store, tmp_path, registry, codec, a, b):
    store = fmp4_store(codec)
    segments = get_best_segments(store, at(a), at(b))
    out = write_cut(tmp_path / "out.mp4", cut(segments, at(a), at(b), "full", container="mp4"))
    judge(out, a, b, frames_between(a, b))


def test_mp4_output_streams_without_seeking(fmp4_store, registry):
    # Fragmented: ftyp, moov, then moof/mdat pairs, written front to back (the
    # output is a pipe, which cannot seek), so the top-level boxes are in order.
    store = fmp4_store("h264")
    segments = get_best_segments(store, at(1), at(2.5))
    data = b"".join(cut(segments, at(1), at(2.5), "full", container="mp4", registry=registry))
    boxes, offset = [], 0
    while offset < len(data):
        boxes.append(data[offset + 4 : offset + 8])
        offset += int.from_bytes(data[offset : offset + 4], "big")
    assert offset == len(data)
    assert boxes[:3] == [b"ftyp", b"moov", b"moof"]
    assert set(boxes[2:]) <= {b"moof", b"mdat", b"mfra"}


def test_av1_in_mpegts_is_refused(fmp4_store, registry):
    store = fmp4_store("av1")
    segments = get_best_segments(store, at(1), at(3))
    with pytest.raises(UnsupportedContainer, match=r"av1 video cannot be cut to \.ts"):
        cut(segments, at(1), at(3), type="full", container="ts", registry=registry)
    labels = {"type": "full", "method": "none", "outcome": "unsupported"}
    assert registry.get_sample_value("cuts_total", labels) == 1


FAST_RANGES = [
    (0.55, 5.1),  # mid-GOP at both ends, across all three segments and 14:00
    (0.55, 1.4),  # inside one segment (one GOP)
    (2, 4),  # on segment boundaries: nothing re-encoded
    (2.5, 3.5),  # across the hour, two segments
    (1.5, 2.2),  # a few frames either side of a segment boundary
    (3.99, 6),  # starting just after a segment's last frame, to the end
    (3.95, 5),  # starting on a segment's last frame: the next one's audio starts before it
]


def fast_cut(fmp4_store, tmp_path, registry, codec, a, b):
    store = fmp4_store(codec)
    segments = get_best_segments(store, at(a), at(b))
    chunks = cut(segments, at(a), at(b), container="mp4", registry=registry)
    out = write_cut(tmp_path / "out.mp4", chunks)
    labels = {"type": "fast", "method": "fast", "outcome": "ok"}
    assert registry.get_sample_value("cuts_total", labels) == 1
    assert registry.get_sample_value("cut_fallbacks_total", {"reason": "fmp4"}) is None
    return out


@pytest.mark.parametrize(
    "codec, a, b",
    [("h264", *FAST_RANGES[0]), ("hevc", *FAST_RANGES[0])]
    + [pytest.param(c, *r, marks=SLOW) for c in ("h264", "hevc") for r in FAST_RANGES[1:]],
)
def test_fast_cut_of_fmp4_is_frame_exact(fmp4_store, tmp_path, registry, codec, a, b):
    out = fast_cut(fmp4_store, tmp_path, registry, codec, a, b)
    judge(out, a, b, frames_between(a, b))
    # Copied AAC packets, chosen around the video's ends: within half a frame.
    found = packet_times(out)
    pts = sorted(p[0] for p in found["video"])
    audio = found["audio"]
    assert abs(audio[0][0] - pts[0]) <= AUDIO_FRAME / 2 + ROUNDING
    assert abs(audio[-1][0] + audio[-1][2] - (pts[-1] + 1 / RATE)) <= AUDIO_FRAME / 2 + ROUNDING


@pytest.mark.parametrize(
    "a, b",
    [
        (1.1, 10.3),  # a GOP and a half re-encoded, whole GOPs copied in both segments
        pytest.param(2.5, 5.5, marks=SLOW),  # one segment: re-encoded, copied, re-encoded
        pytest.param(4, 8, marks=SLOW),  # on keyframes: nothing re-encoded
    ],
)
def test_fast_cut_of_fmp4_with_gops_inside_segments(tmp_path, multi_gop_fmp4_media, registry, a, b):
    base = str(tmp_path / "store")
    add_to_store(base, "chan", "source", FMP4_START, multi_gop_fmp4_media)
    segments = get_best_segments(os.path.join(base, "chan", "source"), at(a), at(b))
    out = write_cut(
        tmp_path / "out.mp4", cut(segments, at(a), at(b), container="mp4", registry=registry)
    )
    judge(out, a, b, frames_between(a, b))
    labels = {"type": "fast", "method": "fast", "outcome": "ok"}
    assert registry.get_sample_value("cuts_total", labels) == 1


@SLOW
@pytest.mark.parametrize("codec", ["h264", "hevc"])
def test_fast_cut_starts_at_zero_whatever_the_offset(tmp_path, marked_fmp4_media, registry, codec):
    # Twitch's fMP4 presents from the broadcast's start (10 h in here, through
    # an empty edit): the fast cut still starts at the segment's name, at 0.
    base = str(tmp_path / "store")
    add_to_store(base, "chan", "source", FMP4_START, marked_fmp4_media(codec, 36000))
    a, b = 1.25, 4.6
    segments = get_best_segments(os.path.join(base, "chan", "source"), at(a), at(b))
    out = write_cut(
        tmp_path / "out.mp4", cut(segments, at(a), at(b), container="mp4", registry=registry)
    )
    judge(out, a, b, frames_between(a, b))
    assert min(p[0] for p in packet_times(out)["video"]) == 0
    labels = {"type": "fast", "method": "fast", "outcome": "ok"}
    assert registry.get_sample_value("cuts_total", labels) == 1


def refragmented(source, out_dir, count=3):
    """`source` (fMP4 files and durations) with each file's samples re-written
    as `count` fragments (sequence numbers running on across files), as
    low-latency streams carry their parts: a GOP spanning fragments."""
    os.makedirs(out_dir, exist_ok=True)
    result, sequence = [], 1
    for path, duration in source:
        with open(path, "rb") as f:
            data = f.read()
        init_size = layout.read_layout(str(path)).init_size
        tracks = mp4box.read_init(data[:init_size])
        _, samples = mp4box.read_media(data, init_size, tracks)
        out = bytearray(data[:init_size])
        for i in range(count):
            chunk = []
            for track_id, found in samples.items():
                part = found[i * len(found) // count : (i + 1) * len(found) // count]
                chunk.append((track_id, [
                    mp4box.OutSample(s.dts, s.duration, s.flags, s.cto,
                                     data[s.offset : s.offset + s.size])
                    for s in part
                ]))  # fmt: skip
            out += mp4box.write_fragment(sequence, chunk)
            sequence += 1
        target = os.path.join(out_dir, os.path.basename(path))
        with open(target, "wb") as f:
            f.write(out)
        result.append((target, duration))
    return result


@pytest.mark.parametrize(
    "codec, a",
    [
        ("h264", 0.55),  # the segment after the first piece rewritten
        ("h264", 0),  # nothing re-encoded before it: its three moofs copied and patched
        pytest.param("hevc", 0.55, marks=SLOW),
    ],
)
def test_fast_cut_of_fmp4_with_fragments_inside_segments(
    tmp_path, marked_fmp4_media, registry, codec, a
):
    base = str(tmp_path / "store")
    media = refragmented(marked_fmp4_media(codec), tmp_path / "refragmented")
    add_to_store(base, "chan", "source", FMP4_START, media)
    b = 5.1
    segments = get_best_segments(os.path.join(base, "chan", "source"), at(a), at(b))
    out = write_cut(
        tmp_path / "out.mp4", cut(segments, at(a), at(b), container="mp4", registry=registry)
    )
    judge(out, a, b, frames_between(a, b))
    labels = {"type": "fast", "method": "fast", "outcome": "ok"}
    assert registry.get_sample_value("cuts_total", labels) == 1


def test_a_failing_piece_falls_back_before_any_output(fmp4_store, tmp_path, registry, monkeypatch):
    # An ffmpeg that fails the pieces' encodes (the only ones trimming by
    # start_pts) and is the real one otherwise: the full cut takes over.
    script = tmp_path / "ffmpeg"
    script.write_text(
        '#!/bin/sh\ncase "$*" in *"trim=start_pts"*) exit 1;; esac\nexec ffmpeg "$@"\n'
    )
    script.chmod(0o755)
    monkeypatch.setattr(ffmpeg, "FFMPEG", str(script))
    a, b = 0.55, 3.1
    segments = get_best_segments(fmp4_store("h264"), at(a), at(b))
    chunks = cut(segments, at(a), at(b), container="mp4", registry=registry)
    judge(write_cut(tmp_path / "out.mp4", chunks), a, b, frames_between(a, b))
    assert registry.get_sample_value("cut_fallbacks_total", {"reason": "piece"}) == 1
    labels = {"type": "fast", "method": "concat", "outcome": "ok"}
    assert registry.get_sample_value("cuts_total", labels) == 1


def test_fast_cut_of_fmp4_to_mpegts_falls_back(fmp4_store, tmp_path, registry):
    a, b = 0.55, 3.1
    segments = get_best_segments(fmp4_store("h264"), at(a), at(b))
    chunks = cut(segments, at(a), at(b), container="ts", registry=registry)
    judge(write_cut(tmp_path / "out.ts", chunks), a, b, frames_between(a, b))
    assert registry.get_sample_value("cut_fallbacks_total", {"reason": "container"}) == 1


@pytest.mark.parametrize(
    "second, resume, expected",
    [
        # The middle segment missing: the last one follows a 2 s hole.
        (slice(2, 3), 4, frames_between(1.5, 2) + frames_between(4, 4.5)),
        # The stream restarted 1.5 s later with the same init section, its
        # timestamps starting over.
        pytest.param(slice(0, 2), 3.5, frames_between(1.5, 2) + frames_between(0, 0.5), marks=SLOW),
    ],
)
def test_fast_cut_of_fmp4_joins_across_a_hole(
    tmp_path, marked_fmp4_media, registry, second, resume, expected
):
    # The runs either side are joined as they are, the hole left out,
    # nothing re-encoded at the join.
    base = str(tmp_path / "store")
    media = marked_fmp4_media("h264")
    add_to_store(base, "chan", "source", FMP4_START, media[:1])
    add_to_store(base, "chan", "source", at(resume), media[second])
    a, b = 1.5, resume + 0.5
    segments = get_best_segments(os.path.join(base, "chan", "source"), at(a), at(b))
    chunks = cut(segments, at(a), at(b), allow_holes=True, container="mp4", registry=registry)
    out = write_cut(tmp_path / "out.mp4", chunks)
    assert decode_warnings(out) == ""
    assert frame_numbers(out, WIDTH) == expected
    found = packet_times(out)
    frame = 1 / RATE
    dts = [p[1] for p in found["video"]]
    assert all(abs(t - s - frame) < ROUNDING for s, t in pairwise(dts))
    pts = sorted(p[0] for p in found["video"])
    assert all(abs(t - s - frame) < ROUNDING for s, t in pairwise(pts))
    audio = found["audio"]
    gaps = [b[0] - a[0] - a[2] for a, b in pairwise(audio)]
    # At the join the audio may pause for less than a frame; nowhere overlap.
    assert all(-ROUNDING < g < ROUNDING for g in gaps if abs(g) < AUDIO_FRAME / 2 + ROUNDING)
    assert all(-ROUNDING < g < AUDIO_FRAME for g in gaps)
    assert sum(1 for g in gaps if g > ROUNDING) <= 1
    assert abs(audio[0][0] - pts[0]) <= AUDIO_FRAME + ROUNDING
    assert abs(audio[-1][0] + audio[-1][2] - pts[-1] - frame) <= AUDIO_FRAME + ROUNDING
    labels = {"type": "fast", "method": "joined", "outcome": "ok"}
    assert registry.get_sample_value("cuts_total", labels) == 1


def test_fast_cut_of_fmp4_copies_the_middle(fmp4_store, tmp_path, registry):
    # Starting on a keyframe, nothing before the middle segment is re-encoded:
    # its fragment is in the output as stored, but for its sequence number and
    # decode times (patched in place, in the moof). After a re-encoded piece
    # it would be rewritten, to carry the source's parameter sets again.
    out = fast_cut(fmp4_store, tmp_path, registry, "h264", 0, 5.1)
    judge(out, 0, 5.1, frames_between(0, 5.1))
    middle = get_best_segments(fmp4_store("h264"), at(2), at(4))[0]
    with open(middle.path, "rb") as f:
        stored = f.read()
    mdat = stored[stored.index(b"mdat") - 4 :]
    data = out.read_bytes()
    assert mdat in data
    # One init section (the recording's, its sample entry renamed), then
    # fragments numbered on from 1.
    init_size = layout.read_layout(str(out)).init_size
    tracks = mp4box.read_init(data[:init_size])
    assert tracks[1].entry == b"avc3"
    fragments, _ = mp4box.read_media(data, init_size, tracks)
    numbers = [
        int.from_bytes(data[f.sequence_offset : f.sequence_offset + 4], "big") for f in fragments
    ]
    assert numbers == list(range(1, len(fragments) + 1))


@pytest.mark.parametrize("codec, reason", [pytest.param("av1", "codec", marks=SLOW)])
def test_fast_cut_of_fmp4_falls_back_exactly(fmp4_store, tmp_path, registry, codec, reason):
    a, b = 0.55, 5.1
    store = fmp4_store(codec)
    segments = get_best_segments(store, at(a), at(b))
    out = write_cut(
        tmp_path / "out.mp4", cut(segments, at(a), at(b), container="mp4", registry=registry)
    )
    judge(out, a, b, frames_between(a, b))
    assert registry.get_sample_value("cut_fallbacks_total", {"reason": reason}) == 1
    labels = {"type": "fast", "method": "concat", "outcome": "ok"}
    assert registry.get_sample_value("cuts_total", labels) == 1


@SLOW
@pytest.mark.parametrize("container", ["ts", "mp4"])
def test_range_from_mpegts_into_fmp4_comes_out_valid(
    tmp_path, marked_media, marked_fmp4_media, registry, container
):
    # A channel switched from MPEG-TS (320x180) to fMP4 (160x90) 12 s in: the
    # fMP4 part is scaled to the first part's size, so its markers read alike.
    base = str(tmp_path / "store")
    add_to_store(base, "chan", "source", MEDIA_START, marked_media[:2])
    add_to_store(base, "chan", "source", at(12, MEDIA_START), marked_fmp4_media("h264"))
    a, b = 9.25, 16.5
    segments = get_best_segments(
        os.path.join(base, "chan", "source"), at(a, MEDIA_START), at(b, MEDIA_START)
    )
    assert {s.container for s in segments} == {"ts", "mp4"}
    out = write_cut(
        tmp_path / f"out.{container}",
        cut(
            segments,
            at(a, MEDIA_START),
            at(b, MEDIA_START),
            container=container,
            registry=registry,
        ),
    )
    judge(out, a, b, frames_between(a, 12) + frames_between(0, b - 12), width=320)
    assert registry.get_sample_value("cut_fallbacks_total", {"reason": "format"}) == 1


@pytest.mark.parametrize("type", ["full", pytest.param("fast", marks=SLOW)])
def test_mpegts_to_mp4_output(tmp_path, marked_media, registry, type):
    # An MPEG-TS recording asked for as .mp4: the full path, exact.
    base = str(tmp_path / "store")
    add_to_store(base, "chan", "source", MEDIA_START, marked_media[:2])
    a, b = 3.25, 8.5
    segments = get_best_segments(
        os.path.join(base, "chan", "source"), at(a, MEDIA_START), at(b, MEDIA_START)
    )
    chunks = cut(
        segments, at(a, MEDIA_START), at(b, MEDIA_START), type, container="mp4", registry=registry
    )
    judge(write_cut(tmp_path / "out.mp4", chunks), a, b, frames_between(a, b), width=320)
    fallbacks = registry.get_sample_value("cut_fallbacks_total", {"reason": "container"})
    assert fallbacks == (1 if type == "fast" else None)


def test_a_range_between_two_frames_has_no_content(fmp4_store, registry):
    # Frames at 1.000 and 1.033 s: nothing starts in [1.01, 1.02).
    store = fmp4_store("h264")
    segments = get_best_segments(store, at(1.01), at(1.02))
    before = child_processes()
    chunks = cut(segments, at(1.01), at(1.02), "full", container="mp4", registry=registry)
    with pytest.raises(NoContent):
        next(chunks)
    assert new_children_after(before) == set()
    labels = {"type": "full", "method": "full", "outcome": "no_content"}
    assert registry.get_sample_value("cuts_total", labels) == 1


def test_closing_early_kills_ffmpeg(fmp4_store, registry):
    store = fmp4_store("h264")
    segments = get_best_segments(store, at(0.5), at(5.5))
    before = child_processes()
    chunks = cut(segments, at(0.5), at(5.5), "full", container="mp4", registry=registry)
    assert next(chunks)
    chunks.close()
    assert new_children_after(before) == set()
    labels = {"type": "full", "method": "full", "outcome": "cancelled"}
    assert registry.get_sample_value("cuts_total", labels) == 1


@SLOW
@pytest.mark.parametrize("codec", ["h264", "hevc"])
def test_presentation_offset_maps_to_broadcast_time(tmp_path, marked_fmp4_media, codec):
    # Twitch's fMP4 timestamps count from the broadcast's start (10 h in here),
    # not from 0: a segment's name still gives its first frame.
    base = str(tmp_path / "store")
    add_to_store(base, "chan", "source", FMP4_START, marked_fmp4_media(codec, 36000))
    a, b = 1.25, 4.6
    segments = get_best_segments(os.path.join(base, "chan", "source"), at(a), at(b))
    out = write_cut(tmp_path / "out.mp4", cut(segments, at(a), at(b), "full", container="mp4"))
    judge(out, a, b, frames_between(a, b))


def _stored(container, second):
    path = segment_path(
        "/store", "c", "q", FMP4_START + datetime.timedelta(seconds=second),
        datetime.timedelta(seconds=2), "full", "A" * 43, container,
    )  # fmt: skip
    return parse_segment_path(path)


@pytest.mark.parametrize(
    "containers, expected",
    [
        (["ts"], "ts"),
        (["ts", "ts", "ts"], "ts"),
        (["ts", None, "ts"], "ts"),
        (["mp4"], "mp4"),
        (["ts", "mp4"], "mp4"),  # a channel switching to fMP4 mid-range
        (["mp4", None, "ts"], "mp4"),
        ([None, "mp4"], "mp4"),
    ],
)
def test_output_container(containers, expected):
    stored = [None if c is None else _stored(c, 2 * i) for i, c in enumerate(containers)]
    assert output_container(stored) == expected
