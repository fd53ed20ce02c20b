"""The body check: a backfilled segment must be its container, with the timeline its name says.

Real segments from ffmpeg's HLS muxer (MPEG-TS, and fMP4 as init section plus
media segment, as the store keeps them) must pass; anything that is not one,
or lasts other than its name says, is refused.
"""

import datetime
import os
import random
import subprocess

import pytest

from backfiller.main import PeerWorker
from backfiller.media import _timeline, _ts_tracks, check_segment
from backfiller.plan import peer_from_url
from common.mpegts import (
    AUDIO_STREAM_TYPES,
    PACKET_SIZE,
    PAT_PID,
    VIDEO_STREAM_TYPES,
    check_packets,
    packet_pid,
    parse_pat,
    parse_pmt,
    pes_timestamps,
)
from common.segments import UTC, SegmentWriter
from tests.backfiller.peers import FakePeer, media, store_files

S = datetime.timedelta(seconds=1)
MS = datetime.timedelta(milliseconds=1)


@pytest.fixture(scope="module")
def ffmpeg_segments(tmp_path_factory):
    """{container: [segment bytes]}: 3 two-second segments each, 30 fps video and AAC audio."""
    out = tmp_path_factory.mktemp("hls")
    inputs = ["-f", "lavfi", "-i", "testsrc=size=96x64:rate=30",
              "-f", "lavfi", "-i", "sine=frequency=440:sample_rate=48000", "-t", "6",
              "-c:v", "libx264", "-g", "60", "-bf", "2", "-c:a", "aac",
              "-f", "hls", "-hls_time", "2", "-hls_list_size", "0"]  # fmt: skip
    run = ["ffmpeg", "-loglevel", "error", "-nostdin", "-y", *inputs]
    subprocess.run([*run, "-hls_segment_filename", str(out / "t%d.ts"), str(out / "t.m3u8")],
                   check=True, timeout=60)  # fmt: skip
    subprocess.run([*run, "-hls_segment_type", "fmp4", "-hls_fmp4_init_filename", "init.mp4",
                    "-hls_segment_filename", str(out / "m%d.m4s"), str(out / "m.m3u8")],
                   check=True, timeout=60)  # fmt: skip
    init = (out / "init.mp4").read_bytes()
    return {
        "ts": [(out / f"t{i}.ts").read_bytes() for i in range(3)],
        "mp4": [init + (out / f"m{i}.m4s").read_bytes() for i in range(3)],
    }


@pytest.mark.slow
@pytest.mark.parametrize("container", ["ts", "mp4"])
def test_real_segments_pass_and_wrong_durations_do_not(ffmpeg_segments, container):
    for data in ffmpeg_segments[container]:
        check_segment(data, container, 2 * S)
        check_segment(data, container, 2 * S + 30 * MS)  # within a frame (33 ms)
        for wrong in (2 * S + 40 * MS, 1900 * MS, 4 * S, S):
            with pytest.raises(ValueError, match="lasts"):
                check_segment(data, container, wrong)


@pytest.mark.slow
def test_real_segments_cut_short(ffmpeg_segments):
    ts, mp4 = ffmpeg_segments["ts"][0], ffmpeg_segments["mp4"][0]
    for container, data in (("ts", ts), ("mp4", mp4)):
        half = data[: len(data) // 2]
        with pytest.raises(ValueError):
            check_segment(half, container, 2 * S)  # as full: refused
        check_segment(half, container, 2 * S, whole=False)  # as partial: fine
        # ...but not one lasting longer than its name says
        with pytest.raises(ValueError, match="lasts"):
            check_segment(data, container, S, whole=False)


@pytest.mark.slow
def test_mp4_needs_init_section_and_media_segment(ffmpeg_segments):
    data = ffmpeg_segments["mp4"][1]
    init_end = data.index(b"moof") - 4
    with pytest.raises(ValueError, match="init section"):
        check_segment(data[:init_end], "mp4", 2 * S)
    with pytest.raises(ValueError, match="init section"):
        check_segment(data[init_end:], "mp4", 2 * S)
    with pytest.raises(ValueError):
        check_segment(ffmpeg_segments["ts"][0], "mp4", 2 * S)
    with pytest.raises(ValueError):
        check_segment(data, "ts", 2 * S)


@pytest.mark.parametrize(
    "body",
    [b"", b"0123456789", b"\x47" + b"\x00" * 187, b"\x00" * 188 * 4, b"<html></html>" * 100],
)
def test_junk_is_refused(body):
    for container in ("ts", "mp4"):
        with pytest.raises(ValueError):
            check_segment(body, container, 2 * S)


def test_the_test_streams_own_segments_pass():
    check_segment(media(b"x"), "ts", 2 * S)
    check_segment(media(b"x", 6 * S), "ts", 6 * S)
    with pytest.raises(ValueError, match="lasts"):
        check_segment(media(b"x", 6 * S), "ts", 2 * S)
    # PTS wrapping round mid-segment (every ~26.5 hours) is not a jump
    check_segment(media(b"x", first_pts=(1 << 33) - 3000 * 10), "ts", 2 * S)


def test_unknown_container():
    with pytest.raises(ValueError, match="container"):
        check_segment(media(), "mkv", 2 * S)


@pytest.mark.slow
def test_mp4_segments_are_replicated_and_checked(ffmpeg_segments, servers, tmp_path, metrics):
    peer_dir, local = tmp_path / "peer", tmp_path / "local"
    t0 = datetime.datetime(2026, 1, 10, 10, 0, tzinfo=UTC)
    good = []
    for i, data in enumerate(ffmpeg_segments["mp4"]):
        with SegmentWriter(str(peer_dir), "chan", "source", t0 + 2 * i * S, 2 * S, "mp4") as w:
            w.write(data)
            good.append(os.path.relpath(w.finish("full"), peer_dir))
    # MPEG-TS bytes under an .mp4 name, and an init section alone: refused.
    for i, data in enumerate([ffmpeg_segments["ts"][0], ffmpeg_segments["mp4"][0][:1000]]):
        with SegmentWriter(str(peer_dir), "chan", "source", t0 + (20 + 2 * i) * S, 2 * S,
                           "mp4") as w:  # fmt: skip
            w.write(data)
            w.finish("full")
    url = servers.serve(FakePeer(peer_dir))
    worker = PeerWorker(peer_from_url(url), str(local), ["chan"], ["source"], metrics=metrics)
    worker.run(once=True)
    peer_files = store_files(peer_dir)
    assert store_files(local) == {path: peer_files[path] for path in good}
    assert worker.fetched == 3 and worker.errors == 2


def _plain_ts_tracks(data):
    """MPEG-TS tracks the plain way, every unit-start packet parsed: the oracle for `_ts_tracks`.

    `_ts_tracks` passes repeated PATs and PMTs, and PES of streams the PMT
    does not list, over before reading their payloads; this reads them all.
    """
    check_packets(data)
    pmt_pid = streams = None
    pts = {}
    for offset in range(0, len(data), PACKET_SIZE):
        if not data[offset + 1] & 0x40:
            continue
        control = (data[offset + 3] >> 4) & 3
        if not control & 1:
            continue
        start = offset + 4 + (1 + data[offset + 4] if control & 2 else 0)
        payload = bytes(data[start : offset + PACKET_SIZE])
        if not payload:
            continue
        pid = packet_pid(data, offset)
        if pid == PAT_PID:
            if pmt_pid is None:
                programs = parse_pat(payload)[1]
                pmt_pid = min(programs.items())[1] if programs else None
        elif pid == pmt_pid:
            if streams is None:
                streams = parse_pmt(payload)[1] or None
        elif (value := pes_timestamps(payload)[0]) is not None:
            pts.setdefault(pid, []).append(value)
    if pmt_pid is None or streams is None:
        raise ValueError("no PAT/PMT: not an MPEG-TS segment")
    kinds = {
        **dict.fromkeys(AUDIO_STREAM_TYPES, "audio"),
        **dict.fromkeys(VIDEO_STREAM_TYPES, "video"),
    }
    return [
        _timeline(kinds.get(stream_type, "other"), pts.get(pid, []), 90000)
        for pid, stream_type in sorted(streams.items())
    ]


def _outcome(tracks_of, data):
    try:
        return [(t.kind, t.first, t.length, t.frame) for t in tracks_of(data)]
    except (ValueError, IndexError) as e:
        return type(e).__name__


def test_ts_check_sees_what_the_plain_parse_sees():
    # A hostile peer controls every byte: whatever it does to the packets that
    # start a PES or table (move PIDs, repeat or change the PAT and PMT, add
    # adaptation fields, break start codes and PTS flags), the fast check
    # finds the same tracks as parsing every such packet, or fails alike.
    rng = random.Random(1)
    base = bytearray(media(b"x"))
    second_pmt = bytearray(base[188:376])  # the PMT, listing PID 0x100 as video
    second_pmt[3 + 4 + 13] = 0x0F  # ...now as AAC audio: only the first PMT may count
    base = bytes(base[: 188 * 20] + base[:188] + second_pmt + base[188 * 20 :])
    starts = [i for i in range(0, len(base), PACKET_SIZE) if base[i + 1] & 0x40]
    assert _outcome(_ts_tracks, base) == _outcome(_plain_ts_tracks, base) != "ValueError"
    outcomes, broken_tables = set(), []
    for _ in range(3000):
        data = bytearray(base)
        for _ in range(rng.randint(1, 4)):
            offset = rng.choice(starts)
            at = offset + rng.choice(
                [1, 2, 3, 4, 4, 5, 6, 7, 8, 11, 12, 13, 14, 15, 16, 17, 18, 20]
            )
            data[at] = rng.choice(
                [0, 1, 0x10, 0x20, 0x30, 0x40, 0x80, 0xB0, 0xFF, rng.randrange(256)]
            )
        expected = _outcome(_plain_ts_tracks, data)
        assert _outcome(_ts_tracks, data) == expected
        assert _outcome(_ts_tracks, memoryview(data)) == expected
        outcomes.add(expected if isinstance(expected, str) else "tracks")
        if expected == "IndexError":
            broken_tables.append(data)
    assert outcomes == {"ValueError", "IndexError", "tracks"}  # mutations break and keep it
    # A table cut too short for its fields is refused like any other bad body.
    for data in broken_tables:
        with pytest.raises(ValueError, match="malformed ts"):
            check_segment(data, "ts", 2 * S)
