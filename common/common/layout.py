"""Where a segment file's media initialization section ends (RFC 8216 §3).

A player needs each segment's init section once per run of segments that share
it (`EXT-X-MAP`), and the media after it (`EXT-X-BYTERANGE`), so the
restreamer must know where one stops and the other starts; so will a cut that
joins fMP4 segments behind one init section.

Fragmented MP4 (ISO/IEC 14496-12 boxes): a stored `.mp4` segment is its media
initialization section (`ftyp`, `moov`) followed by the media segment (`styp`,
`sidx`, `prft`, `emsg`, then `moof` + `mdat` fragments). The split is found by
walking the file's top-level box headers: a few small reads at the start of the
file, never the media itself.

MPEG-TS: the init section is the PAT and PMT (RFC 8216 §3.2) that every
stored `.ts` file starts with; the segment stays whole after it (it carries
its own PAT and PMT, so repeating them is harmless).

How things fail: a file that is not fMP4 (no `moov` before the media, a box
that runs past the end of the file, a body cut short inside the init section,
as a `partial` download may be), or a `.ts` file that does not start with its
PAT and PMT, raises `BadLayout` saying why. A media part cut short (a
`partial` segment) is fine: only the init section must be whole.
"""

import functools
import hashlib
import struct
from typing import NamedTuple

from . import mpegts

# Boxes that start a media segment (RFC 8216 §3.3: a media segment holds a
# moof/mdat pair, and may start with styp, sidx, prft or emsg boxes).
MEDIA_BOXES = frozenset({b"styp", b"sidx", b"ssix", b"prft", b"emsg", b"moof", b"mdat"})
# An init section is an ftyp and a moov of a few KB (ffmpeg: 1.3-3.7 KB for
# H.264, AV1 and HEVC at 320x180). A file whose media starts later than this
# is not a segment to hand to a player.
MAX_INIT_SIZE = 1 << 20  # bytes
# Top-level boxes before the media; an init section has two or three.
MAX_INIT_BOXES = 64


class BadLayout(ValueError):
    """The file does not start with a whole media initialization section."""


class Layout(NamedTuple):
    """Where a segment file's parts are: `init_size` bytes of init section from
    offset 0 (its SHA-256 is `init_hash`, hex, to tell runs of identical ones
    apart), then the media segment up to `size`."""

    init_size: int
    init_hash: str
    size: int

    @property
    def media_size(self):
        return self.size - self.init_size


def read_layout(path, container="mp4"):
    """The `Layout` of one segment file (`container`: `mp4` or `ts`). BadLayout if
    it has no init section to find; OSError if it cannot be read.

    Content-addressed files never change, so callers cache the result by path.
    """
    with open(path, "rb") as f:
        size = f.seek(0, 2)
        if container == "ts":
            init_size = _ts_init_size(f, path)
        else:
            init_size = _init_size(f, size, path)
        f.seek(0)
        init = f.read(init_size)
    if len(init) != init_size:
        raise BadLayout(f"{path}: shorter than its init section")
    return Layout(init_size, hashlib.sha256(init).hexdigest(), size)


# Layouts kept by `cached_layout`: two days of 2 s segments, at about 200
# bytes each. Keyed by path, which names the bytes (the hash is in the name),
# so an entry never goes stale; failures are not kept (lru_cache does not
# cache exceptions), so a file that was short while being copied is read again.
CACHE_SIZE = 100_000
cached_layout = functools.lru_cache(maxsize=CACHE_SIZE)(read_layout)


def _init_size(f, size, path):
    offset = 0
    seen_moov = False
    for _ in range(MAX_INIT_BOXES):
        if offset + 8 > size:
            break
        f.seek(offset)
        header = f.read(16)
        box_size, box_type = struct.unpack(">I4s", header[:8])
        if box_type in MEDIA_BOXES:
            if not seen_moov:
                raise BadLayout(f"{path}: no moov box before the media")
            return offset
        if box_size == 1:  # a 64-bit size follows the type
            if len(header) < 16:
                break
            (box_size,) = struct.unpack(">Q", header[8:16])
        elif box_size == 0:  # the box runs to the end of the file
            box_size = size - offset
        if box_size < 8 or offset + box_size > size:
            raise BadLayout(f"{path}: box {box_type!r} at {offset} runs past the end")
        seen_moov = seen_moov or box_type == b"moov"
        offset += box_size
        if offset > MAX_INIT_SIZE:
            raise BadLayout(f"{path}: no media within {MAX_INIT_SIZE} bytes")
    raise BadLayout(f"{path}: no media segment after the init section")


# The PSI packets an encoder starts a segment with: ffmpeg writes SDT, PAT,
# PMT; Twitch PAT, PMT. A few programs could take a few more.
MAX_TS_INIT_PACKETS = 8
# PIDs below this are reserved for tables (PAT, CAT, NIT, SDT, EIT...).
FIRST_ELEMENTARY_PID = 0x20


def _ts_init_size(f, path):
    """The table packets (PAT and PMT, and the SDT and others with them) the file
    starts with, in bytes."""
    size = mpegts.PACKET_SIZE
    f.seek(0)
    data = f.read(size * MAX_TS_INIT_PACKETS)
    pmt_pids = set()
    seen_pmt = False
    offset = 0
    while offset + size <= len(data) and data[offset] == mpegts.SYNC_BYTE:
        pid = mpegts.packet_pid(data, offset)
        if pid == mpegts.PAT_PID:
            # The payload follows the 4-byte header (and any adaptation field).
            start = offset + 4 + (1 + data[offset + 4] if data[offset + 3] & 0x20 else 0)
            try:
                pmt_pids.update(mpegts.parse_pat(data[start : offset + size])[1].values())
            except IndexError:  # a PAT section cut short: names no PMT
                pass
        elif pid in pmt_pids:
            seen_pmt = True
        elif pid >= FIRST_ELEMENTARY_PID:
            break
        offset += size
    if not seen_pmt:
        raise BadLayout(f"{path}: does not start with a PAT and a PMT")
    return offset
