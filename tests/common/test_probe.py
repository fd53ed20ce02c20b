"""common.probe: codec strings from tables of known parameter sets, and real
files probed by the real ffprobe."""

import subprocess

import pytest

from common import probe

# A whole ffprobe hex dump, as `-show_data` prints an H.264 avcC record.
AVCC_DUMP = (
    "\n00000000: 01f4 000d ffe1 0019 67f4 000d 919b 2828  ........g.....((\n"
    "00000010: 33f1 b808 8000 0003 0080 0000 1e07 8a14  3...............\n"
    "00000020: cb01 0006 68eb e3c4 4844 fff8 f800       ....h...HD....\n"
)


def hexdump(data):
    """`data` the way ffprobe's `-show_data` prints it."""
    lines = []
    for offset in range(0, len(data), 16):
        row = data[offset : offset + 16]
        groups = " ".join(row[i : i + 2].hex() for i in range(0, len(row), 2))
        text = "".join(chr(b) if 32 <= b < 127 else "." for b in row)
        lines.append(f"{offset:08x}: {groups:<40} {text}")
    return "\n" + "\n".join(lines) + "\n"


def test_hexdump_is_read_back():
    assert probe._extradata({"extradata": AVCC_DUMP})[:8] == bytes.fromhex("01f4000dffe10019")
    assert len(probe._extradata({"extradata": AVCC_DUMP})) == 46
    assert probe._extradata({"extradata": hexdump(b"\x01\x02\x03")}) == b"\x01\x02\x03"
    assert probe._extradata({}) == b""


def hvcc(ptl):
    """An hvcC record's first bytes: version 1, then the 12 profile/tier/level bytes."""
    return b"\x01" + bytes.fromhex(ptl) + b"\xf0\x00\xfc\xfd\xf8\xf8\x00\x00\x0f"


def annex_b_sps(ptl):
    """An HEVC SPS NAL in Annex B, with emulation prevention as an encoder writes it."""
    payload = b"\x01" + bytes.fromhex(ptl) + b"\xa0\x0a\x08"
    escaped = payload.replace(b"\x00\x00", b"\x00\x00\x03")
    vps = b"\x00\x00\x00\x01\x40\x01\x0c\x01\xff\xff"
    return vps + b"\x00\x00\x00\x01\x42\x01" + escaped


# general profile_tier_level: space/tier/profile, 4 compatibility bytes,
# 6 constraint bytes, level_idc.
MAIN_L31 = "0160000000b000000000005d"  # Main, compatible with Main and Main 10
MAIN10_HIGH_L4 = "222000000090000000000078"  # Main 10, high tier, level 4
REXT = "04080000009e08000000003c"  # format range extensions, as x265 writes 4:4:4
SPACE1 = "41400000000000000000003c"  # profile space 1, no constraint bytes


@pytest.mark.parametrize(
    "stream, codec",
    [
        ({"codec_name": "h264", "profile": "High", "level": 42}, "avc1.64002a"),
        ({"codec_name": "h264", "profile": "Main", "level": 31}, "avc1.4d001f"),
        ({"codec_name": "h264", "profile": "Constrained Baseline", "level": 30}, "avc1.42401e"),
        ({"codec_name": "h264", "profile": "High", "level": -99}, None),
        ({"codec_name": "h264", "profile": "Mystery", "level": 31}, None),
        ({"codec_name": "aac", "profile": "LC"}, "mp4a.40.2"),
        ({"codec_name": "aac", "profile": "HE-AAC"}, "mp4a.40.5"),
        ({"codec_name": "mp3"}, "mp4a.40.34"),
        ({"codec_name": "hevc", "profile": "Main"}, None),
        # HEVC from an hvcC (MP4): the sample entry's tag, compatibility flags
        # in reverse bit order, tier and level, trailing zero bytes dropped.
        ({"codec_name": "hevc", "codec_tag_string": "hvc1", "extradata": hexdump(hvcc(MAIN_L31))},
         "hvc1.1.6.L93.B0"),
        ({"codec_name": "hevc", "codec_tag_string": "hev1", "extradata": hexdump(hvcc(MAIN_L31))},
         "hev1.1.6.L93.B0"),
        ({"codec_name": "hevc", "codec_tag_string": "hvc1",
          "extradata": hexdump(hvcc(MAIN10_HIGH_L4))}, "hvc1.2.4.H120.90"),
        ({"codec_name": "hevc", "codec_tag_string": "hvc1", "extradata": hexdump(hvcc(REXT))},
         "hvc1.4.10.L60.9E.8"),
        ({"codec_name": "hevc", "codec_tag_string": "hvc1", "extradata": hexdump(hvcc(SPACE1))},
         "hvc1.A1.2.L60"),
        # HEVC in MPEG-TS: read from the SPS, parameter sets in band (hev1).
        ({"codec_name": "hevc", "codec_tag_string": "HEVC",
          "extradata": hexdump(annex_b_sps(MAIN_L31))}, "hev1.1.6.L93.B0"),
        ({"codec_name": "hevc", "extradata": hexdump(annex_b_sps(REXT))}, "hev1.4.10.L60.9E.8"),
        ({"codec_name": "hevc", "extradata": hexdump(b"\x00\x00\x01\x40\x01")}, None),
        # AV1 from an av1C: profile, two-digit level, tier, bit depth.
        ({"codec_name": "av1", "extradata": hexdump(bytes.fromhex("81000c00"))}, "av01.0.00M.08"),
        ({"codec_name": "av1", "extradata": hexdump(bytes.fromhex("81044c00"))}, "av01.0.04M.10"),
        ({"codec_name": "av1", "extradata": hexdump(bytes.fromhex("8248e000"))}, None),  # v2
        ({"codec_name": "av1", "extradata": hexdump(bytes.fromhex("8148e000"))}, "av01.2.08H.12"),
        ({"codec_name": "av1", "extradata": hexdump(bytes.fromhex("812d8c00"))}, "av01.1.13H.08"),
        ({"codec_name": "av1"}, None),
    ],
)  # fmt: skip
def test_stream_codec(stream, codec):
    assert probe.stream_codec(stream, mp4=True) == codec


def test_describe_streams():
    video = {"codec_type": "video", "codec_name": "h264", "profile": "High", "level": 13,
             "width": 320, "height": 180}  # fmt: skip
    audio = {"codec_type": "audio", "codec_name": "aac", "profile": "LC"}
    data = {"codec_type": "data", "codec_name": "timed_id3"}
    odd = {"codec_type": "audio", "codec_name": "opus"}

    def describe_streams(streams):
        return probe.describe_streams(streams)[:2]

    assert describe_streams([video, data, audio]) == ((320, 180), "avc1.64000d,mp4a.40.2")
    # One codec we cannot name: no CODECS at all (the RFC wants all or none).
    assert describe_streams([video, odd]) == ((320, 180), None)
    assert describe_streams([]) == (None, None)


def test_keyframes_and_frame_rate_from_packets():
    parsed = {
        "streams": [
            {"index": 0, "codec_type": "video", "codec_name": "h264", "width": 64, "height": 36,
             "r_frame_rate": "30000/1001"},
            {"index": 1, "codec_type": "audio", "codec_name": "aac", "sample_rate": "48000"},
        ],
        "packets": [
            {"stream_index": 0, "pts": 6000, "flags": "K__"},
            {"stream_index": 1, "pts": 100, "flags": "K__"},
            {"stream_index": 0, "pts": 3000, "flags": "___"},
            {"stream_index": 0, "pts": 0, "flags": "K__"},
        ],
    }  # fmt: skip
    fmt = probe.format_from_probe(parsed)
    assert fmt.keyframes == (0, 6000)
    assert fmt.frame_rate == (30000, 1001)
    assert fmt.frame_ticks == pytest.approx(3003)
    assert fmt.audio_frame_ticks == pytest.approx(1920)


@pytest.mark.parametrize(
    "pts, points",
    [
        # I0 P3 b1 b2 P6 b4 b5: after I0 alone, and after each P-frame's B-frames.
        ([0, 3, 1, 2, 6, 4, 5], [1, 4]),
        # B-pyramid: I0 P4 B2 b1 b3 P8 B6 b5 b7.
        ([0, 4, 2, 1, 3, 8, 6, 5, 7], [1, 5]),
        # No B-frames: after every frame.
        ([0, 1, 2, 3], [1, 2, 3]),
        # A closed GOP starting at 10 after one ending with B-frames.
        ([0, 3, 1, 2, 10, 13, 11, 12], [1, 10, 11]),
        # The second GOP's leading B-frames show before its keyframe (open GOP):
        # no split at the keyframe.
        ([0, 2, 1, 5, 3, 4], [1, 3]),
        ([], []),
        ([0, None, 1], []),
    ],
)
def test_split_points(pts, points):
    assert list(probe.split_points(pts)) == points


def test_split_points_of_the_video_only():
    parsed = {
        "streams": [
            {"index": 0, "codec_type": "audio", "codec_name": "aac", "sample_rate": "48000"},
            {"index": 1, "codec_type": "video", "codec_name": "h264", "width": 64, "height": 36,
             "r_frame_rate": "30/1"},
        ],
        "packets": [
            {"stream_index": 1, "pts": 0, "flags": "K__"},
            {"stream_index": 0, "pts": 0, "flags": "K__"},
            {"stream_index": 1, "pts": 6000, "flags": "___"},
            {"stream_index": 0, "pts": 1920, "flags": "K__"},
            {"stream_index": 1, "pts": 3000, "flags": "___"},
        ],
    }  # fmt: skip
    assert list(probe.format_from_probe(parsed).split_points) == [3000]


def encode(path, *args):
    subprocess.run(
        ["ffmpeg", "-hide_banner", "-nostdin", "-v", "error", "-y",
         "-f", "lavfi", "-i", "testsrc2=size=128x72:rate=25",
         "-f", "lavfi", "-i", "sine=sample_rate=48000", "-t", "0.4",
         *args, "-c:a", "aac", str(path)],
        check=True,
    )  # fmt: skip
    return str(path)


@pytest.mark.slow
def test_real_files(tmp_path):
    x265 = ["-c:v", "libx265", "-x265-params", "log-level=none", "-pix_fmt", "yuv420p"]
    fmp4 = ["-movflags", "+frag_keyframe+empty_moov+default_base_moof"]
    hevc_mp4 = encode(tmp_path / "hevc.mp4", *x265, "-tag:v", "hvc1", *fmp4)
    hevc_ts = encode(tmp_path / "hevc.ts", *x265)
    av1_mp4 = encode(tmp_path / "av1.mp4", "-c:v", "libsvtav1", "-pix_fmt", "yuv420p", *fmp4)
    h264_ts = encode(tmp_path / "h264.ts", "-c:v", "libx264", "-profile:v", "main")

    mp4 = probe.describe(hevc_mp4)
    assert mp4.resolution == (128, 72) and mp4.frame_rate == (25, 1)
    # x265's Main profile at this size: Main- and Main 10-compatible, main tier,
    # level 1 (level_idc 30), progressive frames only (constraint byte 0x90).
    assert mp4.codecs == "hvc1.1.6.L30.90,mp4a.40.2"
    ts = probe.describe(hevc_ts)
    # The same encoder settings in MPEG-TS: the same fields, parameter sets in band.
    assert ts.codecs == mp4.codecs.replace("hvc1.", "hev1.")
    assert probe.describe(av1_mp4).codecs == "av01.0.00M.08,mp4a.40.2"
    assert probe.describe(h264_ts).codecs.startswith("avc1.4d00")
    fmt = probe.stream_format(h264_ts)
    assert fmt.keyframes and fmt.resolution == (128, 72)
    # ffprobe failing: stream_format raises, describe says nothing.
    broken = tmp_path / "broken.ts"
    broken.write_bytes(b"not video")
    with pytest.raises(probe.FFmpegError):
        probe.stream_format(str(broken))
    assert probe.describe(str(broken)) == (None, None, None)
