"""What a segment holds, from ffprobe: the one probe of the project.

`stream_format(path)` gives a segment's `StreamFormat`: the video and audio
parameters that decide whether two pieces can be joined (codec, profile,
resolution, frame rate, audio layout) and where its keyframes are.
`describe(path)` gives what an HLS master playlist lists for it: the RFC 6381
CODECS string, resolution and frame rate. Both work on MPEG-TS and MP4 (init
section + media segment) files alike: ffprobe reads both, and the codec
strings come from the parameter sets ffprobe hands back as the
stream's extradata (Annex B NAL units in MPEG-TS, an `hvcC`/`av1C`/`avcC`
record in MP4).

How it fails, and what it does about it:

- ffprobe failing, timing out or printing nonsense raises `FFmpegError`
  with its output; `stream_format` also raises it for a file with no usable
  video stream (a cut needs one). `describe` (for playlists, which can do
  without the attributes) logs and answers `(None, None, None)` instead.
- A codec whose string we cannot build exactly (an unknown profile, a
  parameter set we cannot parse) gives no CODECS at all: RFC 8216 wants every
  codec listed or none, and a wrong one makes players refuse the variant.

Results are cached by path: a segment's path names its content (its hash),
so an entry never goes stale; failures are not cached (a file that was being
written may probe fine later).
"""

import array
import functools
import json
import logging
import os
from typing import NamedTuple

import gevent.subprocess

logger = logging.getLogger(__name__)

FFPROBE = "ffprobe"
# ffprobe lists a 6 s segment's packets in tens of milliseconds; one that
# takes this long is stuck (a broken file, a hung disk) and counts as failed.
PROBE_TIMEOUT = 10  # seconds
# Segments whose formats are kept: at about 1.5 KB each (the split points are
# most of it), 20,000 are 30 MB, more than a day of 6 s segments (and only the
# two ends of each cut are probed).
CACHE_SIZE = 20000
CLOCK = 90000  # ticks per second: MPEG-TS timestamps, and ours


class FFmpegError(Exception):
    """An ffmpeg or ffprobe run failed; the message ends with its last stderr lines."""


class StreamFormat(NamedTuple):
    """The stream parameters that must match for two pieces to be joined, and
    where the segment's keyframes are (which has nothing to do with joining,
    but comes from the same ffprobe run)."""

    video: dict | None  # codec_name, profile, level, width, height, pix_fmt, frame_rate, sar
    audio: dict | None  # codec_name, profile, sample_rate, channels, channel_layout
    keyframes: tuple = ()  # PTS of the video keyframes, as ffmpeg reads them
    # PTS of every frame F such that the video packets before F's decode-order
    # position are exactly the frames shown before F (ascending; keyframes of
    # closed GOPs among them): those packets decode on their own, so a piece
    # ending at F can be copied and only F onwards re-encoded. `array("q")`:
    # 77 in a 6 s segment at 30 fps with 2 B-frames, kept in 0.7 KB, not 3.
    split_points: array.array = array.array("q")

    def key(self):
        """What must be equal for two segments to be joined (the level may differ)."""
        video = self.video and {k: v for k, v in self.video.items() if k != "level"}
        return json.dumps([video, self.audio], sort_keys=True)

    @property
    def resolution(self):
        """`(width, height)` of the video, or None."""
        if not self.video or not self.video["width"] or not self.video["height"]:
            return None
        return self.video["width"], self.video["height"]

    @property
    def frame_rate(self):
        """The video's frame rate as (numerator, denominator), or None."""
        return self.video and self.video["frame_rate"]

    @property
    def frame_ticks(self):
        """One frame's duration in 90 kHz ticks (a float)."""
        num, den = self.video["frame_rate"]
        return CLOCK * den / num

    @property
    def audio_frame_ticks(self):
        """One AAC frame (1024 samples) in 90 kHz ticks, 0 without audio."""
        if not self.audio or not self.audio["sample_rate"]:
            return 0
        return CLOCK * 1024 / self.audio["sample_rate"]


class Description(NamedTuple):
    """What a master playlist says about a variant; None where unknown."""

    resolution: tuple[int, int] | None
    codecs: str | None  # "avc1.64001f,mp4a.40.2"; None when not every codec is known
    frame_rate: tuple[int, int] | None


def file_url(path):
    """`path` as an ffmpeg input. Segment names contain ':' ("50:12.000000-..."),
    which ffmpeg would take for a protocol name: always an absolute file: URL."""
    return "file:" + os.path.abspath(path)


def stream_format(path):
    """The segment's `StreamFormat` (cached). FFmpegError if unusable for a cut."""
    fmt = _probe(path)
    if fmt.video is None or fmt.video["frame_rate"] is None or not fmt.video["width"]:
        raise FFmpegError(f"{path}: no usable video stream")
    return fmt


def describe(path):
    """The segment's `Description` for a master playlist (cached); all None if
    ffprobe fails."""
    try:
        return _describe(path)
    except FFmpegError as e:
        logger.warning("Could not probe %s: %s", path, e)
        return Description(None, None, None)


@functools.lru_cache(maxsize=CACHE_SIZE)
def _probe(path):
    # The packets' flags give the keyframes, their order the split points;
    # streams only, no data (with -show_data ffprobe formats every packet's
    # bytes too: 7x the CPU).
    parsed = _ffprobe(path, "-show_streams", "-show_entries", "packet=stream_index,pts,flags")
    return format_from_probe(parsed)


@functools.lru_cache(maxsize=CACHE_SIZE)
def _describe(path):
    # -show_data for the parameter sets (extradata) the codec strings need.
    parsed = _ffprobe(path, "-show_streams", "-show_data")
    return describe_streams(parsed.get("streams", []), mp4=path.endswith(".mp4"))


def _ffprobe(path, *args):
    """ffprobe's JSON for `path` with `args`; FFmpegError if it fails."""
    try:
        output = gevent.subprocess.check_output(
            [FFPROBE, "-v", "error", *args, "-of", "json", file_url(path)],
            stderr=gevent.subprocess.STDOUT,
            timeout=PROBE_TIMEOUT,
        )
    except gevent.subprocess.CalledProcessError as e:
        raise FFmpegError(
            f"ffprobe failed on {path}: {e.output.decode(errors='replace')}"
        ) from None
    except gevent.subprocess.TimeoutExpired:
        raise FFmpegError(f"ffprobe timed out on {path}") from None
    except OSError as e:
        raise FFmpegError(f"cannot run ffprobe on {path}: {e}") from None
    try:
        return json.loads(output)
    except ValueError:
        raise FFmpegError(f"ffprobe printed no JSON for {path}") from None


def describe_streams(streams, mp4=False):
    """A `Description` from ffprobe's streams (with `-show_data` for HEVC and AV1)."""
    fmt = format_from_probe({"streams": streams})
    return Description(fmt.resolution, codecs_string(streams, mp4=mp4), fmt.frame_rate)


def format_from_probe(parsed):
    """A `StreamFormat` from ffprobe's JSON (`-show_streams` and packets)."""
    streams = parsed.get("streams", [])
    video = audio = video_index = None
    for stream in streams:
        if stream.get("codec_type") == "video" and video is None:
            video_index = stream.get("index")
            video = {
                "codec_name": stream.get("codec_name"),
                "profile": stream.get("profile"),
                "level": stream.get("level"),
                "width": stream.get("width"),
                "height": stream.get("height"),
                "pix_fmt": stream.get("pix_fmt"),
                "frame_rate": _ratio(stream.get("r_frame_rate")),
                "sar": stream.get("sample_aspect_ratio") or "1:1",
                # The unit of `keyframes` (1/90000 in MPEG-TS, the track's in MP4).
                "time_base": stream.get("time_base"),
            }
        elif stream.get("codec_type") == "audio" and audio is None:
            audio = {
                "codec_name": stream.get("codec_name"),
                "profile": stream.get("profile"),
                "sample_rate": int(stream.get("sample_rate") or 0),
                "channels": stream.get("channels"),
                "channel_layout": stream.get("channel_layout"),
            }
    packets = [p for p in parsed.get("packets", []) if p.get("stream_index") == video_index]
    keyframes = sorted(
        p["pts"] for p in packets if "K" in p.get("flags", "") and isinstance(p.get("pts"), int)
    )
    return StreamFormat(
        video, audio, tuple(keyframes), split_points([p.get("pts") for p in packets])
    )


def split_points(pts):
    """The `StreamFormat.split_points` of video packets with these PTS (in decode
    order): the PTS after every prefix whose PTS are all below the rest's.
    None at all if any PTS is missing (nothing can be said)."""
    if not pts or not all(isinstance(p, int) for p in pts):
        return array.array("q")
    after = [0] * len(pts)  # after[i]: the smallest PTS from packet i on
    smallest = pts[-1]
    for i in range(len(pts) - 1, -1, -1):
        smallest = min(smallest, pts[i])
        after[i] = smallest
    points, largest = array.array("q"), pts[0]
    for i in range(1, len(pts)):
        if largest < after[i]:
            points.append(after[i])
        largest = max(largest, pts[i])
    return points


def _ratio(text):
    try:
        num, den = (int(x) for x in str(text).split("/"))
    except ValueError:
        return None
    return (num, den) if num > 0 and den > 0 else None


# --- RFC 6381 codec strings -----------------------------------------------------

# profile name (as ffprobe gives it) → (profile_idc, constraint flags byte) for
# the `avc1.PPCCLL` codec string of RFC 6381. Constrained Baseline is Baseline
# with constraint_set1 (0x40) set, which is what players check for.
H264_PROFILES = {
    "Constrained Baseline": (66, 0x40),
    "Baseline": (66, 0x00),
    "Main": (77, 0x00),
    "Extended": (88, 0x00),
    "High": (100, 0x00),
    "High 10": (110, 0x00),
    "High 4:2:2": (122, 0x00),
    "High 4:4:4 Predictive": (244, 0x00),
}
# AAC profile name → MPEG-4 audio object type (`mp4a.40.<type>`).
AAC_PROFILES = {"LC": 2, "HE-AAC": 5, "HE-AACv2": 29, "Main": 1}
# HEVC NAL unit type of a sequence parameter set (ITU-T H.265 table 7-1).
HEVC_SPS = 33


def codecs_string(streams, mp4=False):
    """The CODECS attribute for ffprobe's streams, or None.

    The RFC wants every codec in CODECS or none: one audio or video stream
    we cannot name drops the attribute.
    """
    codecs = []
    for stream in streams:
        if stream.get("codec_type") not in ("video", "audio"):
            continue
        codec = stream_codec(stream, mp4=mp4)
        if codec is None:
            return None
        codecs.append(codec)
    return ",".join(codecs) or None


def stream_codec(stream, mp4=False):
    """An RFC 6381 codec string from one ffprobe stream dict, or None if unknown.

    `stream["extradata"]` is ffprobe's hex dump of the stream's parameter
    sets (with `-show_data`); HEVC and AV1 need it, H.264 and AAC do not.
    """
    name = stream.get("codec_name")
    if name == "h264":
        profile = H264_PROFILES.get(stream.get("profile"))
        level = stream.get("level")
        if profile is None or not isinstance(level, int) or not 0 < level < 256:
            return None
        return f"avc1.{profile[0]:02x}{profile[1]:02x}{level:02x}"
    if name == "hevc":
        return hevc_codec(_extradata(stream), stream.get("codec_tag_string"), mp4)
    if name == "av1":
        return av1_codec(_extradata(stream))
    if name == "aac":
        object_type = AAC_PROFILES.get(stream.get("profile"))
        return None if object_type is None else f"mp4a.40.{object_type}"
    if name == "mp3":
        return "mp4a.40.34"
    return None


def _extradata(stream):
    """The bytes of ffprobe's extradata hex dump ("00000000: 0104 0800 ...  ascii")."""
    lines = (stream.get("extradata") or "").splitlines()
    try:
        # Each line: an 8-digit offset, ": ", 8 groups of 4 hex digits, ASCII.
        return b"".join(bytes.fromhex(line[10:50]) for line in lines if line.strip())
    except ValueError:
        return b""


def hevc_codec(extradata, tag=None, mp4=False):
    """`hvc1.…`/`hev1.…` (ISO/IEC 14496-15 annex E) from HEVC parameter sets, or None.

    The fields are general_profile_space (as "", A, B, C) and profile_idc;
    the 32 compatibility flags in reverse bit order, in hex; the tier (L/H)
    and level_idc; the six constraint bytes in hex, trailing zero bytes left
    out. `extradata` is an `hvcC` record (MP4) or Annex B NAL units (MPEG-TS,
    read from the SPS). The sample entry is `hvc1` when parameter sets are
    only in it, `hev1` when they may be in band, as they always are in
    MPEG-TS; an MP4 says which in its tag.
    """
    if extradata[:1] == b"\x01" and len(extradata) >= 13:
        ptl = extradata[1:13]
    else:
        ptl = _hevc_sps_ptl(extradata)
        if ptl is None:
            return None
    if mp4 and tag in ("hvc1", "hev1"):
        entry = tag
    else:
        entry = "hev1"
    space, tier, profile = ptl[0] >> 6, (ptl[0] >> 5) & 1, ptl[0] & 0x1F
    compatibility = int(f"{int.from_bytes(ptl[1:5], 'big'):032b}"[::-1], 2)
    constraints = list(ptl[5:11])
    while constraints and constraints[-1] == 0:
        constraints.pop()
    parts = [
        entry,
        f"{'' if space == 0 else 'ABC'[space - 1]}{profile}",
        f"{compatibility:X}",
        f"{'LH'[tier]}{ptl[11]}",
    ] + [f"{byte:X}" for byte in constraints]
    return ".".join(parts)


def _hevc_sps_ptl(data):
    """The 12 bytes of general profile_tier_level from the first SPS in Annex B data."""
    for nal in data.split(b"\x00\x00\x01")[1:]:
        if len(nal) < 2 or (nal[0] >> 1) & 0x3F != HEVC_SPS:
            continue
        # Undo emulation prevention (00 00 03 → 00 00) before reading fields.
        payload = nal[2:].replace(b"\x00\x00\x03", b"\x00\x00")
        # One byte of sps_video_parameter_set_id, max_sub_layers_minus1 and
        # temporal_id_nesting_flag, then profile_tier_level.
        if len(payload) >= 13:
            return payload[1:13]
    return None


def av1_codec(extradata):
    """`av01.P.LLT.DD` (the AV1 codec ISO-BMFF binding's codecs parameter) or None.

    P is seq_profile, LL seq_level_idx_0 (two digits), T the tier (M/H), DD
    the bit depth; the optional colour fields are left out (they are all or
    none, and their defaults say nothing wrong). Read from an `av1C` record,
    which ffprobe gives for AV1 in MP4.
    """
    if len(extradata) < 4 or extradata[0] != 0x81:  # marker 1, version 1
        return None
    profile, level = extradata[1] >> 5, extradata[1] & 0x1F
    tier = extradata[2] >> 7
    high_bitdepth, twelve_bit = (extradata[2] >> 6) & 1, (extradata[2] >> 5) & 1
    depth = (12 if twelve_bit else 10) if high_bitdepth else 8
    return f"av01.{profile}.{level:02d}{'MH'[tier]}.{depth:02d}"
