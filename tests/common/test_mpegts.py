import pytest

from common import mpegts


def packet(pid, cc, payload=True):
    control = 0x10 if payload else 0x20
    header = bytes([0x47, (pid >> 8) & 0x1F, pid & 0xFF, control | cc])
    if payload:
        return header + b"\xff" * 184
    return header + bytes([183]) + b"\x00" + b"\xff" * 182


def counters(data, pid):
    return [
        data[i + 3] & 0x0F for i in range(0, len(data), 188) if mpegts.packet_pid(data, i) == pid
    ]


@pytest.mark.parametrize(
    "packets, kwargs, expected",
    [
        # Continue after the stream before: 5 -> 6, 7, ...
        ([(256, 0), (256, 1), (256, 2)], {"after": {256: 5}}, {256: [6, 7, 8]}),
        # Wrap at 16.
        ([(256, 0), (256, 1)], {"after": {256: 15}}, {256: [0, 1]}),
        # Packets without payload repeat the counter before them.
        ([(256, 0), (256, None), (256, 1)], {"after": {256: 3}}, {256: [4, 4, 5]}),
        # End just before the stream after: its first counter is 2.
        ([(256, 0)] * 5, {"before": {256: 2}}, {256: [13, 14, 15, 0, 1]}),
        # Each PID on its own; a PID in no map counts on from its first counter.
        (
            [(256, 0), (257, 9), (256, 1), (258, 7), (258, 0), (258, None), (258, 3)],
            {"after": {256: 0, 257: 3}},
            {256: [1, 2], 257: [4], 258: [7, 8, 8, 9]},
        ),
        # Two pieces glued together, numbered as one.
        ([(256, 4), (256, 5), (256, 0), (256, 1)], {}, {256: [4, 5, 6, 7]}),
    ],
)
def test_renumber(packets, kwargs, expected):
    data = bytearray(b"".join(packet(pid, cc or 0, cc is not None) for pid, cc in packets))
    mpegts.renumber(data, **kwargs)
    for pid, ccs in expected.items():
        assert counters(data, pid) == ccs


def test_counts_and_last_counters():
    data = b"".join([packet(256, 3), packet(257, 1), packet(256, 4), packet(256, 9, False)])
    assert mpegts.payload_counts(data) == {256: 2, 257: 1}
    assert mpegts.last_counters(data) == {256: 4, 257: 1}


@pytest.mark.parametrize(
    "data, message",
    [(b"\x47" * 100, "whole number"), (packet(256, 0) + b"\x00" + packet(256, 1)[1:], "sync")],
)
def test_damaged_data_is_refused(data, message):
    with pytest.raises(ValueError, match=message):
        mpegts.check_packets(data)


def test_scan_head_of_real_segments(marked_media, small_media):
    first = mpegts.scan_head(marked_media[0][0])
    second = mpegts.scan_head(marked_media[1][0])
    assert (first.pmt_pid, first.video_pid, first.audio_pid) == (0x1000, 0x100, 0x101)
    # 10 h of timestamps plus the HLS muxer's 1.4 s delay; B-frames: DTS 2 frames early.
    assert first.video_pts == 36001.4 * 90000
    assert first.video_pts - first.video_dts == 2 * 3000
    assert second.video_pts - first.video_pts == 6 * 90000
    # Audio starts a little before the video in each segment.
    assert 0 < first.video_pts - first.audio_pts < 90000 / 10
    # Counters run on across the segment boundary.
    last = mpegts.file_last_counters(marked_media[0][0])
    assert all((last[pid] + 1) % 16 == cc for pid, cc in second.first_counters.items())
    assert first.signature == second.signature
    assert mpegts.scan_head(small_media[0][0]).signature != first.signature


def test_scan_head_refuses_what_is_not_mpegts(tmp_path):
    path = tmp_path / "x.ts"
    path.write_bytes(b"not a transport stream" * 100)
    with pytest.raises(ValueError):
        mpegts.scan_head(str(path))


def timestamp_bytes(prefix, value):
    """A PES timestamp field as a muxer writes it (marker bits set)."""
    return bytes([
        prefix << 4 | (value >> 29) & 0x0E | 1, (value >> 22) & 0xFF,
        (value >> 14) & 0xFE | 1, (value >> 7) & 0xFF, (value << 1) & 0xFE | 1,
    ])  # fmt: skip


def pes_packet(pid, cc, pts, dts=None, pcr=None):
    """A unit-start packet of a video PES with PTS (and DTS), maybe with a PCR."""
    flags, header = (0x80, timestamp_bytes(2, pts)) if dts is None else (0xC0, b"")
    if dts is not None:
        header = timestamp_bytes(3, pts) + timestamp_bytes(1, dts)
    pes = b"\x00\x00\x01\xe0\x00\x00\x80" + bytes([flags, len(header)]) + header
    adaptation = b""
    control = 0x10
    if pcr is not None:
        # PCR base, 6 reserved bits, a 9-bit extension (here 0x155).
        value = pcr << 15 | 0x3F << 9 | 0x155
        adaptation = bytes([7, 0x10]) + value.to_bytes(6, "big")
        control = 0x30
    header = bytes([0x47, 0x40 | (pid >> 8), pid & 0xFF, control | cc]) + adaptation
    return header + pes + b"\xff" * (188 - len(header) - len(pes))


def read_timestamps(data):
    """[(pts, dts, pcr)] of every packet: what the demuxer reads back."""
    found = []
    for offset in range(0, len(data), 188):
        at = mpegts._payload_offset(data, offset)
        pts, dts = mpegts.pes_timestamps(data[at : offset + 188])
        found.append((pts, dts, mpegts._pcr(data, offset)))
    return found


@pytest.mark.parametrize(
    "shift",
    [
        90000,  # one second on
        -36000 * 90000,  # back by ten hours
        mpegts.TIMESTAMP_MODULO - 3000,  # across the 33-bit wrap
    ],
)
def test_shifter_moves_every_timestamp_and_continues_counters(shift):
    modulo = mpegts.TIMESTAMP_MODULO
    stream = (
        pes_packet(256, 3, 36000 * 90000 + 6000, 36000 * 90000, pcr=36000 * 90000 - 9000)
        + packet(256, 4)
        + pes_packet(257, 9, 36000 * 90000 + 1500)
        + packet(256, 5, payload=False)
    )
    before = read_timestamps(stream)
    shifter = mpegts.Shifter(shift, after={256: 14, 257: 0})
    # Fed in pieces that split packets: only whole packets come out.
    out = b"".join(shifter.feed(stream[i : i + 100]) for i in range(0, len(stream), 100))
    shifter.finish()
    assert len(out) == len(stream)
    expected = [tuple(None if v is None else (v + shift) % modulo for v in row) for row in before]
    assert read_timestamps(out) == expected
    assert counters(out, 256) == [15, 0, 0] and counters(out, 257) == [1]
    assert shifter.last_counters == {256: 0, 257: 1}
    # The PCR's extension (bytes 10-11 of the packet, below the base's last
    # bit) and the payload after the timestamps are untouched.
    assert out[11] == stream[11] and out[10] & 0x7F == stream[10] & 0x7F
    assert out[188 + 4 : 376] == stream[188 + 4 : 376]


def test_shifter_refuses_a_partial_packet():
    shifter = mpegts.Shifter(0)
    shifter.feed(packet(256, 0)[:100])
    with pytest.raises(ValueError, match="whole number"):
        shifter.finish()
