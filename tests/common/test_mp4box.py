"""common.mp4box: fragments read back as written, and init sections as ffprobe reads them."""

import json
import subprocess

import pytest

from common import layout, mp4box
from common.mp4box import OutSample, Unsupported


def test_fragment_reads_back_as_written():
    video = [
        OutSample(1000, 512, mp4box.SYNC_FLAGS, 1024, b"\x00\x00\x00\x02ab"),
        OutSample(1512, 512, mp4box.OTHER_FLAGS, 0, b"\x00\x00\x00\x01c"),
    ]
    audio = [OutSample(7, 1024, mp4box.SYNC_FLAGS, 0, b"xyz" * i) for i in range(1, 4)]
    data = mp4box.write_fragment(5, [(1, video), (2, audio)])
    tracks = {1: _track(1), 2: _track(2)}
    fragments, samples = mp4box.read_media(data, 0, tracks)
    assert len(fragments) == 1
    assert data[fragments[0].sequence_offset : fragments[0].sequence_offset + 4] == b"\0\0\0\5"
    for track_id, written in ((1, video), (2, audio)):
        read = samples[track_id]
        assert [(s.duration, s.flags, s.cto) for s in read] == [
            (s.duration, s.flags, s.cto) for s in written
        ]
        assert [data[s.offset : s.offset + s.size] for s in read] == [s.data for s in written]
        assert read[0].dts == written[0].dts
    assert [s.sync for s in samples[1]] == [True, False]


def test_patch_fragment_renumbers_and_shifts_in_place():
    data = mp4box.write_fragment(1, [(1, [OutSample(9000, 3000, 0, 0, b"abcd")])])
    fragment = mp4box.read_media(data, 0, {1: _track(1)})[0][0]
    offset, size = fragment.moof
    moof = mp4box.patch_fragment(bytearray(data[offset : offset + size]), 7, {1: 3000}, fragment)
    patched = bytes(moof) + data[size:]
    fragments, samples = mp4box.read_media(patched, 0, {1: _track(1)})
    assert samples[1][0].dts == 6000
    assert patched[fragment.sequence_offset : fragment.sequence_offset + 4] == b"\0\0\0\7"
    with pytest.raises(Unsupported):
        mp4box.patch_fragment(bytearray(moof), 8, {1: 7000}, fragment)


def test_nal_units_round_trip():
    units = [b"\x67abc", b"\x68d", b"\x65" + bytes(300)]
    joined = mp4box.join_nal_units(units, 4)
    assert mp4box.nal_units(joined, 4) == units
    with pytest.raises(Unsupported):
        mp4box.nal_units(joined[:-1], 4)


def test_truncated_boxes_are_unsupported():
    data = mp4box.write_fragment(1, [(1, [OutSample(0, 1, 0, 0, b"abcd")])])
    with pytest.raises(Unsupported):
        list(mp4box.boxes(data[:20]))


@pytest.mark.parametrize("codec", ["h264", "hevc"])
@pytest.mark.parametrize("ts_offset", [0, 36000])
def test_tracks_time_as_ffprobe_reads_them(marked_fmp4_media, codec, ts_offset):
    # The edit list's offset (an empty edit of 10 h, Twitch-like, for 36000)
    # taken into account as ffmpeg does: first sample + offset = first pts.
    path = str(marked_fmp4_media(codec, ts_offset)[1][0])
    with open(path, "rb") as f:
        data = f.read()
    init_size = layout.read_layout(path).init_size
    tracks = mp4box.read_init(data[:init_size])
    assert [t.entry for t in tracks.values()] == [b"hvc1" if codec == "hevc" else b"avc1", b"mp4a"]
    _, samples = mp4box.read_media(data, init_size, tracks)
    probed = json.loads(
        subprocess.run(
            ["ffprobe", "-v", "error", "-show_entries", "packet=stream_index,pts",
             "-of", "json", f"file:{path}"],
            capture_output=True, check=True,
        ).stdout
    )["packets"]  # fmt: skip
    for index, track in enumerate(tracks.values()):
        first = min(p["pts"] for p in probed if p["stream_index"] == index)
        assert min(s.pts for s in samples[track.track_id]) + track.view_offset == first
    if codec == "hevc":  # VPS, SPS, PPS (x265 adds an SEI with its settings)
        assert [(nal[0] >> 1) & 0x3F for nal in tracks[1].parameter_sets][:3] == [32, 33, 34]
    else:  # SPS, PPS
        assert [nal[0] & 0x1F for nal in tracks[1].parameter_sets] == [7, 8]


def test_rewritten_init_renames_and_edits(marked_fmp4_media):
    path = str(marked_fmp4_media("h264")[0][0])
    with open(path, "rb") as f:
        data = f.read()
    init_size = layout.read_layout(path).init_size
    init = mp4box.rewrite_init(data[:init_size], {1: 1024, 2: 0})
    tracks = mp4box.read_init(init)
    assert tracks[1].entry == b"avc3"
    assert (tracks[1].view_offset, tracks[2].view_offset) == (-1024, 0)


def _track(track_id):
    return mp4box.Track(track_id, b"vide", 90000, 0, b"avc1", 0, 4, (), (1, 0, 0, 0))
