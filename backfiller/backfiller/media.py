"""Does a peer's body look like the segment its name says? Pure checks over bytes.

A hash in the name proves only that the peer sent the bytes it named: a
hostile peer can name anything it likes, a 10-byte file or another stream's
video. Before a backfilled segment is kept, `check_segment` makes sure its
body parses as its container and that its timeline matches its name:

- MPEG-TS (`.ts`): whole 188-byte packets in sync, a PAT and a PMT, and PES
  timestamps on the timeline stream (video, else audio);
- fragmented MP4 (`.mp4`, the init section then the media segment): an
  `ftyp`+`moov` with track timescales, then `moof`/`mdat` fragments whose
  `tfdt` and `trun` give each track's first time and sample durations;
- the timeline stream spans the name's duration within one frame (its
  shortest frame interval, plus a millisecond for the name's rounding), and
  every other stream's first timestamp is within MAX_START_SKEW of it.

Raises `ValueError` saying what is wrong. Only a few packets a segment are
looked at for MPEG-TS (those starting a PES), so a 500 KB segment costs well
under a millisecond; ffprobe would cost ~30 ms and a process.
"""

import datetime
import struct

from common.mpegts import (
    AUDIO_STREAM_TYPES,
    PACKET_SIZE,
    PAT_PID,
    TIMESTAMP_MODULO,
    VIDEO_STREAM_TYPES,
    check_packets,
    packet_pid,
    parse_pat,
    parse_pmt,
    pes_timestamps,
)

# How far apart the first timestamps of a segment's streams may be. Encoders
# start audio a frame or two (tens of ms) from video; a second apart means the
# streams were stitched from different places.
MAX_START_SKEW = datetime.timedelta(seconds=1)
# The name's duration has millisecond precision (and 90 kHz ticks do not
# divide every frame exactly).
ROUNDING = datetime.timedelta(milliseconds=1)


def check_segment(data, container, duration, whole=True):
    """Raise ValueError unless `data` is a `container` segment lasting `duration`.

    A body that is not `whole` (a `partial` or `suspect` copy, cut short when
    its download broke) may end mid-packet or mid-box and last less, never
    more: what is there must still parse and fit its name. A table or box
    too short for its fields (IndexError, struct.error as the parsers read
    past it) is a ValueError too: a refused body, not a bug in the caller.
    """
    try:
        if container == "ts":
            if not whole:
                data = data[: len(data) - len(data) % PACKET_SIZE]
            tracks = _ts_tracks(data)
        elif container == "mp4":
            tracks = _mp4_tracks(data, whole)
        else:
            raise ValueError(f"unknown container {container!r}")
    except (IndexError, struct.error) as e:
        raise ValueError(f"malformed {container}: {e}") from None
    _check_timeline(tracks, duration, whole)


class _Track:
    """One stream's timeline: `kind` ('video'/'audio'/'other'), first time, length, frame.

    `length` runs from the first frame's start to the last frame's end; `frame`
    is the shortest frame interval. Both are None with fewer than two frames.
    """

    def __init__(self, kind, first, length=None, frame=None):
        self.kind, self.first, self.length, self.frame = kind, first, length, frame


def _check_timeline(tracks, duration, whole=True):
    timed = [t for t in tracks if t.first is not None]
    main = next((t for t in timed if t.kind == "video"), None) or next(
        (t for t in timed if t.kind == "audio"), None
    )
    if main is None:
        raise ValueError("no video or audio timestamps")
    if main.frame is None:
        raise ValueError(f"only one {main.kind} frame: no timeline to check")
    measured = main.length
    if not whole:
        measured = max(measured, duration)  # shorter is what partial means
    if abs(measured - duration) > main.frame + ROUNDING:
        raise ValueError(
            f"{main.kind} lasts {measured.total_seconds():.3f}s, "
            f"the name says {duration.total_seconds():.3f}s"
        )
    for track in timed:
        if abs(track.first - main.first) > MAX_START_SKEW:
            raise ValueError(
                f"{track.kind} starts {(track.first - main.first).total_seconds():+.3f}s "
                f"from {main.kind}"
            )


def _ticks(ticks, rate):
    return datetime.timedelta(microseconds=ticks * 1_000_000 // rate)


def _timeline(kind, times, rate):
    """A _Track from a stream's timestamps (in ticks of `rate`, wrapping at TIMESTAMP_MODULO)."""
    if not times:
        return _Track(kind, None)
    first = times[0]
    half = TIMESTAMP_MODULO // 2
    # Relative to the first, unwrapped: B-frames come before it, a wrap after.
    relative = sorted({(t - first + half) % TIMESTAMP_MODULO - half for t in times})
    gaps = [b - a for a, b in zip(relative, relative[1:], strict=False)]
    if not gaps:
        return _Track(kind, _ticks(first, rate))
    frame = min(gaps)
    return _Track(
        kind,
        _ticks(first, rate),
        _ticks(relative[-1] - relative[0] + frame, rate),
        _ticks(frame, rate),
    )


# --- MPEG-TS -----------------------------------------------------------------

# A packet's second byte -> 1 if it has payload_unit_start_indicator set, else 0.
_UNIT_START = bytes(1 if byte & 0x40 else 0 for byte in range(256))


def _ts_tracks(data):
    if not data:
        raise ValueError("empty body")
    check_packets(data)
    data = memoryview(data)
    # Packets starting a PES or section (payload_unit_start_indicator) are one
    # in ~40 of a video segment: found by a C-speed search, not a Python loop.
    starts = bytes(data[1::PACKET_SIZE]).translate(_UNIT_START)
    pmt_pid = streams = None
    pts = {}  # pid -> [pts of each PES start, in file order]
    index = starts.find(1)
    while index != -1:
        offset = index * PACKET_SIZE
        index = starts.find(1, index + 1)
        pid = packet_pid(data, offset)
        # Only the first PAT and PMT count, and only the PMT's streams' PES
        # are used: the rest (a third of a video segment's unit starts are
        # repeated tables) are passed over before any payload is looked at.
        if pid == PAT_PID:
            if pmt_pid is not None:
                continue
        elif pid == pmt_pid:
            if streams is not None:
                continue
        elif streams is not None and pid not in streams:
            continue
        control = (data[offset + 3] >> 4) & 3
        if not control & 1:
            continue
        start = offset + 4 + (1 + data[offset + 4] if control & 2 else 0)
        payload = data[start : offset + PACKET_SIZE]  # a view: no copy
        if not payload:
            continue
        if pid == PAT_PID:
            _, programs = parse_pat(payload)
            if programs:
                pmt_pid = min(programs.items())[1]
        elif pid == pmt_pid:
            _, found = parse_pmt(payload)
            streams = found or None
        else:
            value, _ = pes_timestamps(payload)
            if value is not None:
                pts.setdefault(pid, []).append(value)
    if pmt_pid is None or streams is None:
        raise ValueError("no PAT/PMT: not an MPEG-TS segment")
    tracks = []
    for pid, stream_type in sorted(streams.items()):
        if stream_type in VIDEO_STREAM_TYPES:
            kind = "video"
        elif stream_type in AUDIO_STREAM_TYPES:
            kind = "audio"
        else:
            kind = "other"
        tracks.append(_timeline(kind, pts.get(pid, []), 90000))
    return tracks


# --- fragmented MP4 ---------------------------------------------------------


def _boxes(data, start=0, end=None, whole=True):
    """(type, payload start, payload end) of each box in data[start:end].

    A box overrunning `end` raises ValueError, or ends the list if not `whole`.
    """
    end = len(data) if end is None else end
    offset = start
    while offset < end:
        if end - offset < 8:
            raise ValueError(f"truncated box header at byte {offset}")
        size, kind = struct.unpack_from(">I4s", data, offset)
        header = 8
        if size == 1:
            if end - offset < 16:
                raise ValueError(f"truncated box header at byte {offset}")
            (size,) = struct.unpack_from(">Q", data, offset + 8)
            header = 16
        elif size == 0:
            size = end - offset
        if not whole and offset + size > end:
            return
        if size < header or offset + size > end:
            raise ValueError(f"box {kind!r} at byte {offset} overruns its parent")
        yield kind.decode("latin-1"), offset + header, offset + size
        offset += size


def _child(data, start, end, kind):
    for found, child_start, child_end in _boxes(data, start, end):
        if found == kind:
            return child_start, child_end
    return None


def _mp4_tracks(data, whole=True):
    data = bytes(data)
    top = list(_boxes(data, whole=whole))
    kinds = [kind for kind, _, _ in top]
    needed = ("moov", "moof", "mdat") if whole else ("moov", "moof")  # cut short in mdat
    if any(kind not in kinds for kind in needed):
        raise ValueError(f"expected an init section and a media segment, got boxes {kinds[:8]}")
    if kinds.index("moov") > kinds.index("moof"):
        raise ValueError("the media segment comes before the init section")
    moov = top[kinds.index("moov")]
    timescales, handlers, defaults = {}, {}, {}
    for kind, start, end in _boxes(data, moov[1], moov[2]):
        if kind == "trak":
            tkhd = _child(data, start, end, "tkhd")
            mdia = _child(data, start, end, "mdia")
            if tkhd is None or mdia is None:
                raise ValueError("a trak without tkhd or mdia")
            version = data[tkhd[0]]
            (track_id,) = struct.unpack_from(">I", data, tkhd[0] + (20 if version else 12))
            mdhd = _child(data, *mdia, "mdhd")
            hdlr = _child(data, *mdia, "hdlr")
            if mdhd is None or hdlr is None:
                raise ValueError(f"track {track_id} has no mdhd or hdlr")
            version = data[mdhd[0]]
            (timescale,) = struct.unpack_from(">I", data, mdhd[0] + (20 if version else 12))
            if not timescale:
                raise ValueError(f"track {track_id} has timescale 0")
            timescales[track_id] = timescale
            handlers[track_id] = data[hdlr[0] + 8 : hdlr[0] + 12].decode("latin-1")
        elif kind == "mvex":
            for sub, sub_start, _ in _boxes(data, start, end):
                if sub == "trex":
                    track_id, _, duration = struct.unpack_from(">III", data, sub_start + 4)
                    defaults[track_id] = duration
    if not timescales:
        raise ValueError("no tracks in moov")
    times = {track_id: [] for track_id in timescales}  # decode time of every sample
    for kind, start, end in top:
        if kind != "moof":
            continue
        for traf, traf_start, traf_end in _boxes(data, start, end):
            if traf == "traf":
                _read_traf(data, traf_start, traf_end, timescales, defaults, times)
    kinds_by_handler = {"vide": "video", "soun": "audio"}
    tracks = []
    for track_id, samples in sorted(times.items()):
        kind = kinds_by_handler.get(handlers[track_id], "other")
        rate = timescales[track_id]
        durations = [duration for _, duration in samples if duration]
        if len(samples) < 2 or not durations:
            tracks.append(_Track(kind, _ticks(samples[0][0], rate) if samples else None))
            continue
        first, (last, last_duration) = samples[0][0], samples[-1]
        length = _ticks(last + last_duration - first, rate)
        tracks.append(_Track(kind, _ticks(first, rate), length, _ticks(min(durations), rate)))
    return tracks


def _read_traf(data, start, end, timescales, defaults, times):
    """Append (decode time, duration) of each sample of one track fragment to `times`."""
    tfhd = _child(data, start, end, "tfhd")
    if tfhd is None:
        raise ValueError("a traf without tfhd")
    flags = int.from_bytes(data[tfhd[0] + 1 : tfhd[0] + 4], "big")
    (track_id,) = struct.unpack_from(">I", data, tfhd[0] + 4)
    if track_id not in timescales:
        raise ValueError(f"a fragment of unknown track {track_id}")
    at = tfhd[0] + 8 + (8 if flags & 0x01 else 0) + (4 if flags & 0x02 else 0)
    default = struct.unpack_from(">I", data, at)[0] if flags & 0x08 else defaults.get(track_id, 0)
    tfdt = _child(data, start, end, "tfdt")
    if tfdt is None:
        raise ValueError(f"track {track_id}: a fragment without tfdt")
    if data[tfdt[0]]:
        (time,) = struct.unpack_from(">Q", data, tfdt[0] + 4)
    else:
        (time,) = struct.unpack_from(">I", data, tfdt[0] + 4)
    for kind, trun_start, trun_end in _boxes(data, start, end):
        if kind != "trun":
            continue
        flags = int.from_bytes(data[trun_start + 1 : trun_start + 4], "big")
        (count,) = struct.unpack_from(">I", data, trun_start + 4)
        at = trun_start + 8 + (4 if flags & 0x01 else 0) + (4 if flags & 0x04 else 0)
        fields = [bit for bit in (0x100, 0x200, 0x400, 0x800) if flags & bit]
        if at + count * 4 * len(fields) > trun_end:
            raise ValueError(f"track {track_id}: trun of {count} samples overruns its box")
        for _ in range(count):
            duration = default
            if flags & 0x100:
                (duration,) = struct.unpack_from(">I", data, at)
            at += 4 * len(fields)
            times[track_id].append((time, duration))
            time += duration
