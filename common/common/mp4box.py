"""Reading and writing fragmented-MP4 boxes (ISO/IEC 14496-12) at the sample level.

What a fast cut of fMP4 needs, and nothing more: the tracks of an init section
(track ID, handler, timescale, edit list, sample entry and its parameter
sets), the samples of a media segment's fragments (decode time, duration,
size, flags, composition offset, where its bytes are), a writer for
fragments (`moof` + `mdat`) made of chosen samples, an init section with new
edit lists and a renamed sample entry, and an in-place patch of a copied
`moof`'s sequence number and decode times. Pure functions on bytes: no I/O.

How it fails: anything this module cannot read exactly (a box running past
its parent, a truncated table, a fragment whose data offsets are absolute
file positions, a track the init section does not declare) raises
`Unsupported` saying what; the fast cut then falls back to a full one. So
does a media part cut short (a `partial` segment: its last box runs past the
end of the file).
"""

import struct
from typing import NamedTuple

# Boxes holding only other boxes, walked into when looking for a path.
CONTAINERS = frozenset(
    {b"moov", b"trak", b"mdia", b"minf", b"stbl", b"mvex", b"moof", b"traf", b"edts", b"dinf"}
)
# Sample entries whose parameter sets may also be in the samples (avc3,
# hev1) for those that keep them in the sample entry only (avc1, hvc1).
IN_BAND_ENTRIES = {b"avc1": b"avc3", b"hvc1": b"hev1", b"avc3": b"avc3", b"hev1": b"hev1"}
# A visual sample entry's fixed fields before its child boxes (avcC, hvcC).
VISUAL_ENTRY_FIELDS = 78
# tfhd flags.
BASE_DATA_OFFSET = 0x000001
SAMPLE_DESCRIPTION = 0x000002
DEFAULT_DURATION = 0x000008
DEFAULT_SIZE = 0x000010
DEFAULT_FLAGS = 0x000020
DEFAULT_BASE_IS_MOOF = 0x020000
# trun flags.
DATA_OFFSET = 0x000001
FIRST_SAMPLE_FLAGS = 0x000004
SAMPLE_DURATION = 0x000100
SAMPLE_SIZE = 0x000200
SAMPLE_FLAGS = 0x000400
SAMPLE_CTO = 0x000800
# Sample flags: sample_is_non_sync_sample, and what ffmpeg writes for a
# keyframe (depends on nothing) and for any other frame.
NON_SYNC = 0x00010000
SYNC_FLAGS = 0x02000000
OTHER_FLAGS = 0x01010000


class Unsupported(ValueError):
    """The bytes are not fMP4 this module can read exactly."""


def boxes(data, start=0, end=None):
    """Yield (type, offset, header size, size) of the boxes in data[start:end]."""
    end = len(data) if end is None else end
    offset = start
    while offset + 8 <= end:
        size, kind = struct.unpack_from(">I4s", data, offset)
        header = 8
        if size == 1:
            if offset + 16 > end:
                raise Unsupported(f"box {kind!r} at {offset}: header cut short")
            (size,) = struct.unpack_from(">Q", data, offset + 8)
            header = 16
        elif size == 0:
            size = end - offset
        if size < header or offset + size > end:
            raise Unsupported(f"box {kind!r} at {offset} runs past its parent")
        yield kind, offset, header, size
        offset += size


def child(data, parent, kind):
    """(offset, header, size) of the first `kind` box inside the box at `parent`, or None."""
    _, header, size = _box_at(data, parent)
    for found, offset, h, s in boxes(data, parent + header, parent + size):
        if found == kind:
            return offset, h, s
    return None


def _box_at(data, offset):
    kind, offset, header, size = next(boxes(data, offset))
    return offset, header, size


def _full_box(data, offset, header):
    """(version, flags) of a full box."""
    value = struct.unpack_from(">I", data, offset + header)[0]
    return value >> 24, value & 0xFFFFFF


# --- init sections -----------------------------------------------------------


class Track(NamedTuple):
    track_id: int
    handler: bytes  # b"vide", b"soun"
    timescale: int
    # Ticks to add to a sample's media time to get the time ffmpeg presents
    # (the edit list: empty edits delay, a media time skips).
    view_offset: int
    entry: bytes  # the sample entry's type (b"avc1", b"mp4a", ...)
    entry_offset: int  # where the sample entry's type is in the init section
    nal_length: int  # bytes of each NAL unit's length prefix (video), else 0
    parameter_sets: tuple  # the NAL units in the sample entry's avcC/hvcC
    defaults: tuple  # trex: (sample description, duration, size, flags)


def read_init(init):
    """{track_id: Track} of an init section (ftyp + moov). Unsupported if unreadable."""
    try:
        moov = next(o for k, o, _, _ in boxes(init) if k == b"moov")
    except StopIteration:
        raise Unsupported("no moov box") from None
    movie_scale = _movie_timescale(init, moov)
    defaults = {}
    mvex = child(init, moov, b"mvex")
    if mvex:
        for kind, offset, header, _ in boxes(init, mvex[0] + mvex[1], mvex[0] + mvex[2]):
            if kind == b"trex":
                track_id, *values = struct.unpack_from(">5I", init, offset + header + 4)
                defaults[track_id] = tuple(values)
    tracks = {}
    _, header, size = _box_at(init, moov)
    for kind, trak, _, _ in boxes(init, moov + header, moov + size):
        if kind == b"trak":
            track = _read_trak(init, trak, movie_scale, defaults)
            tracks[track.track_id] = track
    return tracks


def _movie_timescale(data, moov):
    offset, header, _ = child(data, moov, b"mvhd")
    version, _ = _full_box(data, offset, header)
    return struct.unpack_from(">I", data, offset + header + (20 if version == 1 else 12))[0]


def _path(data, offset, *kinds):
    for kind in kinds:
        found = child(data, offset, kind)
        if found is None:
            raise Unsupported(f"no {kind.decode()} box")
        offset = found[0]
    return offset


def _read_trak(data, trak, movie_scale, defaults):
    tkhd = _path(data, trak, b"tkhd")
    version, _ = _full_box(data, tkhd, 8)
    track_id = struct.unpack_from(">I", data, tkhd + 8 + (20 if version == 1 else 12))[0]
    mdhd = _path(data, trak, b"mdia", b"mdhd")
    version, _ = _full_box(data, mdhd, 8)
    timescale = struct.unpack_from(">I", data, mdhd + 8 + (20 if version == 1 else 12))[0]
    hdlr = _path(data, trak, b"mdia", b"hdlr")
    handler = data[hdlr + 16 : hdlr + 20]
    stsd = _path(data, trak, b"mdia", b"minf", b"stbl", b"stsd")
    entry_offset = stsd + 16
    entry = data[entry_offset + 4 : entry_offset + 8]
    nal_length, parameter_sets = 0, ()
    if handler == b"vide":
        entry_size = struct.unpack_from(">I", data, entry_offset)[0]
        for kind, offset, header, size in boxes(
            data, entry_offset + 8 + VISUAL_ENTRY_FIELDS, entry_offset + entry_size
        ):
            if kind in (b"avcC", b"hvcC"):
                record = bytes(data[offset + header : offset + size])
                nal_length, parameter_sets = _read_config(kind, record)
    view_offset = _edit_offset(data, trak, movie_scale, timescale)
    track_defaults = defaults.get(track_id)
    if track_defaults is None:
        raise Unsupported(f"track {track_id} has no trex")
    return Track(track_id, handler, timescale, view_offset, entry, entry_offset + 4,
                 nal_length, parameter_sets, track_defaults)  # fmt: skip


def _read_config(kind, record):
    """(NAL length size, parameter set NAL units) of an avcC or hvcC record."""
    try:
        if kind == b"avcC":
            length = (record[4] & 3) + 1
            nals, offset = [], 5
            for count_mask in (0x1F, 0xFF):  # SPS, then PPS
                count = record[offset] & count_mask
                offset += 1
                for _ in range(count):
                    (size,) = struct.unpack_from(">H", record, offset)
                    nals.append(record[offset + 2 : offset + 2 + size])
                    offset += 2 + size
            return length, tuple(nals)
        length = (record[21] & 3) + 1
        nals, offset = [], 23
        for _ in range(record[22]):
            (count,) = struct.unpack_from(">H", record, offset + 1)
            offset += 3
            for _ in range(count):
                (size,) = struct.unpack_from(">H", record, offset)
                nals.append(record[offset + 2 : offset + 2 + size])
                offset += 2 + size
        return length, tuple(nals)
    except (IndexError, struct.error):
        raise Unsupported(f"{kind.decode()} record cut short") from None


def _edit_offset(data, trak, movie_scale, timescale):
    """Ticks ffmpeg adds to media times for the track's edit list (0 without one).

    Empty edits (media time -1) delay the track by their duration (in the
    movie's timescale), rounded to the track's as ffmpeg does; the first real
    edit's media time is where presentation starts. Only edits that play at
    rate 1 and run to the end (a fragmented file's kind) are understood.
    """
    edts = child(data, trak, b"edts")
    if edts is None:
        return 0
    elst = child(data, edts[0], b"elst")
    if elst is None:
        return 0
    offset, header, _ = elst
    version, _ = _full_box(data, offset, header)
    (count,) = struct.unpack_from(">I", data, offset + header + 4)
    entry = ">QqI" if version == 1 else ">IiI"
    position = offset + header + 8
    empty = 0
    for _ in range(count):
        duration, media_time, rate = struct.unpack_from(entry, data, position)
        position += struct.calcsize(entry)
        if media_time == -1:
            empty += duration
            continue
        if rate != 0x00010000:
            raise Unsupported(f"edit list at rate {rate / 65536}")
        return (empty * timescale * 2 + movie_scale) // (2 * movie_scale) - media_time
    raise Unsupported("edit list without media")


def rewrite_init(init, media_times, rename=IN_BAND_ENTRIES):
    """The init section with each track's edit list replaced by one edit
    starting at `media_times[track_id]` (ticks), and its sample entry renamed
    after `rename` (same size: the bytes change in place)."""
    out = bytearray()
    tracks = read_init(init)
    renamed = bytearray(init)
    for track in tracks.values():
        new = rename.get(track.entry)
        if new:
            renamed[track.entry_offset : track.entry_offset + 4] = new
    for kind, offset, _, size in boxes(renamed):
        if kind != b"moov":
            out += renamed[offset : offset + size]
            continue
        body = bytearray()
        for sub, sub_offset, _, sub_size in boxes(renamed, offset + 8, offset + size):
            part = renamed[sub_offset : sub_offset + sub_size]
            if sub == b"trak":
                part = _with_edit(renamed, sub_offset, sub_size, tracks, media_times)
            body += part
        out += _box(b"moov", body)
    return bytes(out)


def _with_edit(data, trak, size, tracks, media_times):
    tkhd = _path(data, trak, b"tkhd")
    version, _ = _full_box(data, tkhd, 8)
    track_id = struct.unpack_from(">I", data, tkhd + 8 + (20 if version == 1 else 12))[0]
    edit = _box(b"edts", _box(b"elst", struct.pack(">IIIiI", 0, 1, 0,
                                                    media_times[track_id], 0x00010000)))  # fmt: skip
    body = bytearray()
    for kind, offset, _, sub_size in boxes(data, trak + 8, trak + size):
        if kind == b"edts":
            continue
        body += data[offset : offset + sub_size]
        if kind == b"tkhd":
            body += edit
    return _box(b"trak", body)


def _box(kind, body):
    return struct.pack(">I4s", 8 + len(body), kind) + body


# --- media segments ----------------------------------------------------------


class Sample(NamedTuple):
    dts: int
    duration: int
    flags: int
    cto: int  # composition time offset: pts - dts
    offset: int  # where its bytes are in the data read
    size: int

    @property
    def pts(self):
        return self.dts + self.cto

    @property
    def sync(self):
        return not self.flags & NON_SYNC


class Fragment(NamedTuple):
    """One moof and the mdat after it, as (offset, size) pairs in the data read,
    and where its in-place fields are: the sequence number, and per track
    (track_id, offset of the tfdt's time, its version)."""

    moof: tuple
    mdat: tuple
    sequence_offset: int
    decode_times: tuple


def read_media(data, start, tracks):
    """(fragments, {track_id: [Sample, ...]}) of the media segment at data[start:]:
    samples in decode order across fragments. Non-fragment boxes (styp, sidx,
    prft, emsg) are skipped. Unsupported if a fragment cannot be read exactly."""
    samples = {track_id: [] for track_id in tracks}
    fragments = []
    moof = None
    for kind, offset, _, size in boxes(data, start):
        if kind == b"moof":
            moof = (offset, size)
        elif kind == b"mdat" and moof is not None:
            fragment = _read_moof(data, moof, tracks, samples)._replace(mdat=(offset, size))
            for found in samples.values():
                if found and found[-1].offset + found[-1].size > offset + size:
                    raise Unsupported("sample data past its mdat")
            fragments.append(fragment)
            moof = None
    return fragments, samples


# Bytes read at a time while looking for a file's first moof: its init section
# and first boxes are a few KB (a 2 s fragment's moof: about 1 KB at 30 fps).
HEAD_READ = 64 * 1024


def first_video_pts(f, init_size, tracks):
    """(video Track, first frame's pts in its media ticks) of an fMP4 file `f`
    (opened binary) from its first fragment alone: a few KB read, not the media.
    Unsupported if it has no video fragment there."""
    video = next((t for t in tracks.values() if t.handler == b"vide"), None)
    if video is None:
        raise Unsupported("no video track")
    size = f.seek(0, 2)
    offset = init_size
    while offset + 8 <= size:
        f.seek(offset)
        header = f.read(16)
        box_size, kind = struct.unpack_from(">I4s", header)
        if box_size == 1:
            (box_size,) = struct.unpack_from(">Q", header, 8)
        if box_size < 8 or offset + box_size > size:
            break
        if kind == b"moof":
            f.seek(offset)
            moof = f.read(box_size)
            samples = {track_id: [] for track_id in tracks}
            _read_moof(moof, (0, box_size), tracks, samples)
            found = samples[video.track_id]
            if found:
                # A GOP's first frame is presented first (closed GOPs) or
                # after its leading pictures: the least pts of the fragment.
                return video, min(s.pts for s in found)
            raise Unsupported("first fragment without video")
        offset += box_size
    raise Unsupported("no fragment")


def _read_moof(data, moof, tracks, samples):
    moof_offset, moof_size = moof
    mfhd = _path(data, moof_offset, b"mfhd")
    decode_times = []
    data_end = moof_offset  # where the previous track's data ended (no base given)
    for kind, traf, header, size in boxes(data, moof_offset + 8, moof_offset + moof_size):
        if kind != b"traf":
            continue
        tfhd = _path(data, traf, b"tfhd")
        _, flags = _full_box(data, tfhd, 8)
        (track_id,) = struct.unpack_from(">I", data, tfhd + 12)
        track = tracks.get(track_id)
        if track is None:
            raise Unsupported(f"fragment of undeclared track {track_id}")
        if flags & BASE_DATA_OFFSET:
            raise Unsupported("fragment with absolute data offsets")
        _, default_duration, default_size, default_flags = track.defaults
        position = tfhd + 16
        if flags & SAMPLE_DESCRIPTION:
            position += 4
        if flags & DEFAULT_DURATION:
            (default_duration,) = struct.unpack_from(">I", data, position)
            position += 4
        if flags & DEFAULT_SIZE:
            (default_size,) = struct.unpack_from(">I", data, position)
            position += 4
        if flags & DEFAULT_FLAGS:
            (default_flags,) = struct.unpack_from(">I", data, position)
        base = moof_offset if flags & DEFAULT_BASE_IS_MOOF or not decode_times else data_end
        tfdt = child(data, traf, b"tfdt")
        if tfdt is None:
            raise Unsupported(f"track {track_id} fragment without tfdt")
        version, _ = _full_box(data, tfdt[0], tfdt[1])
        time_offset = tfdt[0] + tfdt[1] + 4
        dts = struct.unpack_from(">Q" if version == 1 else ">I", data, time_offset)[0]
        decode_times.append((track_id, time_offset, version))
        position = None
        for sub, trun, trun_header, _ in boxes(data, traf + header, traf + size):
            if sub != b"trun":
                continue
            dts, position = _read_trun(
                data, trun + trun_header, base, position, dts,
                (default_duration, default_size, default_flags), samples[track_id],
            )  # fmt: skip
        data_end = position if position is not None else data_end
    return Fragment(moof, None, mfhd + 12, tuple(decode_times))


def _read_trun(data, offset, base, position, dts, defaults, out):
    """Read one trun's samples into `out`; returns (next dts, end of its data).

    Its data starts at `base` + its data offset, or without one where the
    previous trun's ended (`position`; `base` for the first)."""
    value, count = struct.unpack_from(">II", data, offset)
    version, flags = value >> 24, value & 0xFFFFFF
    offset += 8
    if flags & DATA_OFFSET:
        (data_offset,) = struct.unpack_from(">i", data, offset)
        position = base + data_offset
        offset += 4
    elif position is None:
        position = base
    first_flags = None
    if flags & FIRST_SAMPLE_FLAGS:
        (first_flags,) = struct.unpack_from(">I", data, offset)
        offset += 4
    default_duration, default_size, default_flags = defaults
    cto_format = ">i" if version == 1 else ">I"
    for i in range(count):
        duration, size, sample_flags, cto = default_duration, default_size, default_flags, 0
        if flags & SAMPLE_DURATION:
            (duration,) = struct.unpack_from(">I", data, offset)
            offset += 4
        if flags & SAMPLE_SIZE:
            (size,) = struct.unpack_from(">I", data, offset)
            offset += 4
        if flags & SAMPLE_FLAGS:
            (sample_flags,) = struct.unpack_from(">I", data, offset)
            offset += 4
        elif i == 0 and first_flags is not None:
            sample_flags = first_flags
        if flags & SAMPLE_CTO:
            (cto,) = struct.unpack_from(cto_format, data, offset)
            offset += 4
        out.append(Sample(dts, duration, sample_flags, cto, position, size))
        dts += duration
        position += size
    return dts, position


def patch_fragment(moof, sequence, shifts, fragment):
    """The bytes of a copied `moof` (a bytearray, from fragment.moof's offset)
    with its sequence number set and each track's decode time lowered by
    `shifts[track_id]`, in place: every data offset stays right."""
    base = fragment.moof[0]
    struct.pack_into(">I", moof, fragment.sequence_offset - base, sequence)
    for track_id, offset, version in fragment.decode_times:
        form = ">Q" if version == 1 else ">I"
        (time,) = struct.unpack_from(form, moof, offset - base)
        if time < shifts[track_id]:
            raise Unsupported(f"track {track_id}: decode time {time} before the output's start")
        struct.pack_into(form, moof, offset - base, time - shifts[track_id])
    return moof


class OutSample(NamedTuple):
    """A sample to write: its timing and its bytes."""

    dts: int
    duration: int
    flags: int
    cto: int
    data: bytes


def write_fragment(sequence, tracks):
    """A moof + mdat holding `tracks`: [(track_id, [OutSample, ...]), ...], each
    track's samples back to back in decode order (the first one's dts becomes
    the tfdt); data offsets from the moof's start (default-base-is-moof)."""
    trafs, payloads = [], []
    for track_id, samples in tracks:
        if not samples:
            continue
        signed = any(s.cto < 0 for s in samples)
        rows = b"".join(
            struct.pack(">IIIi" if signed else ">IIII", s.duration, len(s.data), s.flags, s.cto)
            for s in samples
        )
        flags = DATA_OFFSET | SAMPLE_DURATION | SAMPLE_SIZE | SAMPLE_FLAGS | SAMPLE_CTO
        trun_head = struct.pack(">II", (int(signed) << 24) | flags, len(samples))
        tfhd = _box(b"tfhd", struct.pack(">II", DEFAULT_BASE_IS_MOOF, track_id))
        tfdt = _box(b"tfdt", struct.pack(">IQ", 1 << 24, samples[0].dts))
        trafs.append([tfhd + tfdt, trun_head, rows])
        payloads.append(b"".join(s.data for s in samples))
    mfhd = _box(b"mfhd", struct.pack(">II", 0, sequence))
    # Sizes first (a trun's data offset needs the whole moof's size).
    traf_sizes = [8 + len(a) + 8 + len(b) + 4 + len(c) for a, b, c in trafs]
    moof_size = 8 + len(mfhd) + sum(traf_sizes)
    position = moof_size + 8  # the first byte of data, after mdat's header
    moof = bytearray(struct.pack(">I4s", moof_size, b"moof") + mfhd)
    for (head, trun_head, rows), payload in zip(trafs, payloads, strict=True):
        trun = _box(b"trun", trun_head + struct.pack(">i", position) + rows)
        moof += _box(b"traf", head + trun)
        position += len(payload)
    payload = b"".join(payloads)
    return bytes(moof) + struct.pack(">I4s", 8 + len(payload), b"mdat") + payload


def nal_units(data, length):
    """The NAL units of a sample with `length`-byte size prefixes. Unsupported if cut short."""
    units, offset = [], 0
    while offset < len(data):
        if offset + length > len(data):
            raise Unsupported("NAL unit length cut short")
        size = int.from_bytes(data[offset : offset + length], "big")
        offset += length
        if offset + size > len(data):
            raise Unsupported("NAL unit cut short")
        units.append(data[offset : offset + size])
        offset += size
    return units


def join_nal_units(units, length):
    """NAL units as one sample with `length`-byte size prefixes."""
    return b"".join(len(u).to_bytes(length, "big") + u for u in units)
