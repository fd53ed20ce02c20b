"""The fast cut of a fragmented-MP4 range (H.264 or HEVC) into fragmented MP4.

The plan is the MPEG-TS fast cut's (`common.cut`), done on MP4 samples
instead of TS packets. Only the frames that cannot be copied are re-encoded:
from the first kept frame to the next keyframe, and from the last keyframe
before the end to the end (each a part of one GOP). Every other video sample
and every audio sample is copied without decoding: the segments between the
first and the last are copied box for box (their `moof` and `mdat`, the
`moof` patched in place: sequence number, decode times), and the first and
last segments are rewritten at the sample level (`common.mp4box`): one new
fragment each, holding the re-encoded samples and the copied ones. So is the
segment right after a re-encoded piece, whose first keyframe must carry the
source's parameter sets again (see below). A range split by holes or
restarts (one init section throughout) is several such runs, each later one
re-timed to follow on (`plan`).

How the pieces join exactly:

- Timing is ours, not ffmpeg's: a re-encoded piece's frames take the
  source's presentation times (the n-th in presentation order gets the n-th
  source time it replaces) and the decode times and durations of the source
  samples in the same places of the GOP, so decode times run on exactly
  across every join. The encoder is set to the source's B-frame reorder delay
  or less, which is what keeps every composition offset positive; a piece
  that breaks that, or yields another number of frames, is unusable.
- Parameter sets travel in band: the output's init section is the source's
  first, with its sample entry renamed `avc1`->`avc3` / `hvc1`->`hev1` (same
  size), which allows them in the samples. A piece's keyframe carries the
  piece's SPS/PPS (/VPS, from the piece's own `avcC`/`hvcC`), and the first
  copied keyframe after a piece carries the source's again (unless they are
  the same bytes), so every frame decodes with its own encoder's.
- Audio is never re-encoded: AAC samples are copied, those presented from
  half an audio frame before the first frame to half an audio frame before
  the end (as the TS fast cut does). Where the given segments end (a
  recording's end, a range ending on a segment boundary, a hole) the audio,
  which encoders mux 20-60 ms ahead, would stop that much before the video:
  it is ended with silent AAC frames (one made by ffmpeg once per format).
- The output starts at 0: each track's decode times are lowered by the
  first output sample's, and the init section gets one edit per track that
  starts the video at its first frame and shifts the audio with it — whatever
  presentation offset, `tfdt` or edit list the source carried (Twitch's fMP4
  starts its timeline at the broadcast's start through an empty edit).

Why this design rather than remuxing pieces and copied media through one
ffmpeg (`-c copy`, exact too): only the two ends are decoded and encoded,
the middle costs a read and a write of each segment, and no muxer re-times
anything at the joins. The figures are in `common.cut_mp4`.

How it fails: `plan` raises `NotFast` (with a `cut_fallbacks_total` reason)
for a range it cannot cut this way, before any output: runs whose B-frame
reorder delays differ, an edit list or fragment layout `mp4box` cannot read
(`format`), a profile or pixel format the encoders are not set up for (10-bit,
4:2:2), an open GOP, negative composition offsets, a reorder delay above two
frames (`codec`); `common.cut_mp4` sends ranges whose init section
changes the full way before asking. `NoContent` for a range between two
frames. A piece's ffmpeg that fails, or makes something unusable, is
`FFmpegError` from `pieces`, which waits for them all before any output (so
the caller falls back). While the output is written, a segment between the
ends that cannot be copied is `FFmpegError` from the iterator (the output so
far is then incomplete); closing the iterator kills the ffmpegs (the
caller's `ffmpeg.Run`).
"""

import bisect
import functools
import itertools
import logging
import math
from fractions import Fraction
from typing import NamedTuple

import gevent
import gevent.event

from . import ffmpeg, mp4box, probe
from .cut import X264_PROFILES, NoContent
from .cut import _video_encode_args as _x264_args
from .probe import FFmpegError
from .times import exact_seconds

logger = logging.getLogger(__name__)

# Piece outputs: fragmented, written front to back into a pipe.
PIECE_MOVFLAGS = "frag_keyframe+empty_moov+default_base_moof"
# How far past a piece's last frame ffmpeg is told to stop reading (seconds),
# so that it does not decode the rest of the segment for nothing.
STOP_MARGIN = Fraction(1, 5)
# The greatest B-frame reorder delay (frames) the encoders are set up for.
MAX_DELAY = 2
# x265's B-frame settings giving each reorder delay (frames).
X265_DELAY = {0: "bframes=0", 1: "bframes=1:b-pyramid=0", 2: "bframes=3:b-pyramid=1"}
# x265 for the pieces: `ultrafast`, since x265 is where a fast HEVC cut's time
# goes: 22 frames of 720p here took 3.7 s with `superfast` (the full cut's
# preset), 1.7 s with `ultrafast`, on a loaded 2-core machine. CRF 20 rather
# than the full cut's 22 makes up some of what the faster preset loses.
HEVC_PRESET = "ultrafast"
HEVC_CRF = 20
# The profiles (as ffprobe names them) the pieces can be encoded in: 8-bit
# 4:2:0, what libx264 and libx265 make by default and live streams carry.
ENCODABLE = {"h264": set(X264_PROFILES), "hevc": {"Main"}}
# Samples in an AAC frame: the audio's unit when a segment shows none.
AAC_FRAME = 1024


class NotFast(Exception):
    """The range cannot be cut this way; `reason` is the fallback's label."""

    def __init__(self, reason, why):
        super().__init__(why)
        self.reason = reason


class Media(NamedTuple):
    """One stored segment read: its bytes, tracks, fragments and samples."""

    segment: object
    data: bytes
    init_size: int
    video: mp4box.Track
    audio: mp4box.Track | None
    fragments: list
    samples: dict  # track_id -> [Sample] in decode order


def read_media(segment, init_size):
    """The segment's `Media` (its whole file read). NotFast (`format`) if
    `mp4box` cannot read it exactly, or it holds no video sample."""
    with open(segment.path, "rb") as f:
        data = f.read()
    try:
        tracks = mp4box.read_init(data[:init_size])
        video = next((t for t in tracks.values() if t.handler == b"vide"), None)
        audio = next((t for t in tracks.values() if t.handler == b"soun"), None)
        if video is None or not video.nal_length:
            raise mp4box.Unsupported("no H.264/HEVC video track")
        fragments, samples = mp4box.read_media(data, init_size, tracks)
    except mp4box.Unsupported as e:
        raise NotFast("format", f"{segment.path}: {e}") from None
    if not samples[video.track_id]:
        raise NotFast("format", f"{segment.path}: no video samples")
    return Media(segment, data, init_size, video, audio, fragments, samples)


class Encode(NamedTuple):
    """A re-encoded piece: the source frames it replaces (presentation times,
    in order) and the source samples whose decode slots it takes."""

    times: list
    slots: list


class Part(NamedTuple):
    """One output fragment made at the sample level: video items (("copy",
    [Sample]) or ("encode", Encode)), the audio samples kept, and silent
    audio frames to add after them (count, one frame's bytes)."""

    media: Media
    video: list
    audio: list
    silence: tuple = (0, b"")


class Plan(NamedTuple):
    init: bytes
    init_size: int  # of the source's init section, in every segment of the runs
    # Per run: (parts: Part, or a segment copied box for box; shifts:
    # track_id -> ticks taken off every decode time of that run).
    runs: list


class RunPlan(NamedTuple):
    parts: list
    video: mp4box.Track
    audio: mp4box.Track | None
    init: bytes  # the run's first init section


def _ceil_frames(seconds, rate):
    return max(0, math.ceil(seconds * rate - Fraction(1, 10**6)))


def plan(runs, start, end, init_size):
    """The `Plan` of the fast cut of `runs` (from `common.cut_mp4.runs`: segments
    with one init section of `init_size` bytes, split at holes or restarts) over
    [start, end).

    Several runs are joined as they are, nothing re-encoded at the joins (a
    run after a hole starts on its first keyframe and the one before ends on
    a segment's end): each later run's decode times are shifted to run on
    from the previous run's last frame, and its audio to start with its
    video (no earlier than the previous run's audio ends, which silence
    pads to its video's end): the hole is simply absent. A run holding no
    frame of the range (a sliver before a hole) is left out; runs whose
    B-frame reorder delays differ are `NotFast` (`format`).
    """
    planned = []
    for run in runs:
        try:
            planned.append(_plan_run(run, start, end, init_size))
        except NoContent:
            if len(runs) == 1:
                raise
    if not planned:
        raise NoContent("no frame in the range")
    video, audio = planned[0].video, planned[0].audio
    if len({rp.parts[0].media.samples[video.track_id][0].cto for rp in planned}) > 1:
        raise NotFast("format", "the B-frame reorder delay changes between runs")
    media_times, shifts = _timeline(planned[0].parts, video, audio)
    joined = [(planned[0].parts, shifts)]
    for rp in planned[1:]:
        joined.append((rp.parts, _joined_shifts(rp.parts, video, audio, media_times,
                                                _ends(*joined[-1], video, audio))))  # fmt: skip
    try:
        init = mp4box.rewrite_init(planned[0].init, media_times)
    except mp4box.Unsupported as e:
        raise NotFast("format", str(e)) from None
    return Plan(init, init_size, joined)


def _plan_run(run, start, end, init_size):
    """The `RunPlan` of one run's part of [start, end)."""
    fmt = probe.stream_format(run[0].path)
    codec, profile = fmt.video["codec_name"], fmt.video["profile"]
    if profile not in ENCODABLE.get(codec, ()) or fmt.video["pix_fmt"] not in (None, "yuv420p"):
        raise NotFast("codec", f"{codec} {profile} {fmt.video['pix_fmt']} is not cut fast")
    num, den = fmt.video["frame_rate"]
    rate = Fraction(num, den)
    first = read_media(run[0], init_size)
    frame = first.video.timescale / rate  # ticks, a Fraction
    lo = (
        _first_pts(first)
        + _ceil_frames(exact_seconds(max(start, run[0].start) - run[0].start), rate) * frame
    )
    if len(run) > 1 and lo - frame / 2 > max(s.pts for s in first.samples[first.video.track_id]):
        # The start falls after the first segment's last frame.
        return _plan_run(run[1:], run[1].start, end, init_size)
    last = first if len(run) == 1 else read_media(run[-1], init_size)
    hi = (
        _first_pts(last)
        + _ceil_frames(exact_seconds(min(end, run[-1].end) - run[-1].start), rate) * frame
    )
    video, audio = first.video, first.audio
    # Audio from half an audio frame before the first frame to half a frame
    # before the end: within half a frame of the video, no packet cut.
    half_audio = 0
    if audio:
        sound = first.samples[audio.track_id] or last.samples[audio.track_id]
        half_audio = Fraction(sound[0].duration if sound else AAC_FRAME, 2 * audio.timescale)
    audio_lo, audio_hi = _view(video, lo) - half_audio, _view(video, hi) - half_audio
    parts = []
    for i, segment in enumerate(run):
        media = first if i == 0 else last if i == len(run) - 1 else None
        if media is None:
            parts.append(segment)  # read when its turn comes
            continue
        v_lo = lo - frame / 2 if i == 0 else -math.inf
        v_hi = hi - frame / 2 if i == len(run) - 1 else math.inf
        items = _video_items(media, v_lo, v_hi, frame)
        silence = (0, b"")
        if audio and i == len(run) - 1:
            silence = _silence(fmt, audio, _audio(media, audio_lo, audio_hi), audio_hi)
        parts.append(Part(media, items, _audio(media, audio_lo, audio_hi), silence))
    if not parts[0].video:
        raise NoContent("no frame in the range")
    # A copied segment right after a re-encoded piece must carry the
    # source's parameter sets again: it is rewritten at the sample level.
    # (So is its audio bounded: a start in the first segment's last frames is
    # after the next segment's first audio, which encoders mux 20-60 ms early.)
    if len(parts) > 2 and parts[0].video[-1][0] == "encode":
        media = read_media(parts[1], init_size)
        items = _video_items(media, -math.inf, math.inf, frame)
        parts[1] = Part(media, items, _audio(media, audio_lo, audio_hi))

    return RunPlan(parts, video, audio, first.data[:init_size])


def _audio(media, lo, hi):
    """The segment's audio samples presented in [lo, hi) (seconds)."""
    if not media.audio:
        return []
    return [s for s in media.samples[media.audio.track_id] if lo <= _view(media.audio, s.pts) < hi]


def _view(track, ticks):
    """A track's media time in presentation seconds, as ffmpeg reads the source."""
    return Fraction(ticks + track.view_offset, track.timescale)


def _timeline(parts, video, audio):
    """({track_id: edit's media time}, {track_id: decode-time shift}) that start
    the output at 0: the video's decode times from its first sample's, its
    edit at its first frame; the audio shifted to the same instant (rounded
    to an audio tick), its edit starting where that instant is."""
    first_dts, first_pts = _first_video(parts)
    media_times = {video.track_id: first_pts - first_dts}
    shifts = {video.track_id: first_dts}
    if audio:
        start_tick = round(_view(video, first_pts) * audio.timescale) - audio.view_offset
        first_audio = next(
            (p.audio[0].dts for p in parts if isinstance(p, Part) and p.audio), start_tick
        )
        shifts[audio.track_id] = max(0, min(first_audio, start_tick))
        media_times[audio.track_id] = start_tick - shifts[audio.track_id]
    return media_times, shifts


def _first_video(parts):
    """(dts, pts) of a run's first output sample and first frame (source ticks)."""
    kind, what = parts[0].video[0]
    return (what[0].dts if kind == "copy" else what.slots[0].dts), min(_item_times((kind, what)))


def _ends(parts, shifts, video, audio):
    """(video, audio) output decode ticks where a run's samples end."""
    kind, what = parts[-1].video[-1]
    last = what[-1] if kind == "copy" else what.slots[-1]
    video_end = last.dts + last.duration - shifts[video.track_id]
    audio_end = None
    sounding = [p for p in parts if isinstance(p, Part) and p.audio]
    if audio and sounding:
        last = sounding[-1].audio[-1]
        count = sounding[-1].silence[0] if sounding[-1] is parts[-1] else 0
        audio_end = last.dts + last.duration * (1 + count) - shifts[audio.track_id]
    return video_end, audio_end


def _joined_shifts(parts, video, audio, media_times, ends):
    """The shifts of a run joined after another that ends at `ends` (`_ends`)."""
    video_end, audio_end = ends
    first_dts, first_pts = _first_video(parts)
    shifts = {video.track_id: first_dts - video_end}
    if audio:
        # Where the run's first frame is presented in the output, and in the source.
        out = Fraction(first_pts - shifts[video.track_id] - media_times[video.track_id],
                       video.timescale)  # fmt: skip
        shift = (round((_view(video, first_pts) - out) * audio.timescale) - audio.view_offset
                 - media_times[audio.track_id])  # fmt: skip
        first_audio = next((p.audio[0].dts for p in parts if isinstance(p, Part) and p.audio), None)
        if first_audio is not None and audio_end is not None:
            shift = min(shift, first_audio - audio_end)
        shifts[audio.track_id] = shift
    return shifts


def _silence(fmt, audio, kept, audio_hi):
    """The silent frames that end the audio with the video, where the segments
    end (a recording's end, a range ending on a segment boundary): encoders
    mux a segment's last 20-60 ms of audio with the next one. Nothing for
    audio other than AAC-LC, or when ffmpeg cannot make the frame (logged)."""
    if not kept or fmt.audio["codec_name"] != "aac" or fmt.audio["profile"] != "LC":
        return (0, b"")
    duration = kept[-1].duration
    after = kept[-1].pts + duration
    missing = (audio_hi * audio.timescale - audio.view_offset - after) / duration
    count = max(0, math.ceil(missing))
    if not count:
        return (0, b"")
    layout = fmt.audio["channel_layout"] or ("stereo" if fmt.audio["channels"] == 2 else "mono")
    try:
        return (count, silent_aac_frame(fmt.audio["sample_rate"], layout))
    except FFmpegError as e:
        logger.warning("No silence to end the audio with: %s", e)
        return (0, b"")


@functools.lru_cache(maxsize=16)
def silent_aac_frame(sample_rate, layout):
    """One AAC-LC frame of silence (raw, as an MP4 sample holds it), encoded by
    ffmpeg once per format: the fifth of a silent stream, past any priming."""
    args = ffmpeg.base_args() + ["-f", "lavfi", "-i", f"anullsrc=r={sample_rate}:cl={layout}"]
    args += ["-frames:a", "8", "-c:a", "aac", "-f", "adts", "pipe:1"]
    try:
        process = ffmpeg.Process(args)
    except OSError as e:
        raise FFmpegError(f"cannot run ffmpeg: {e}") from None
    try:
        data = bytes(bytearray().join(process.chunks()))
        process.check()
    finally:
        process.kill()
    frames, offset = [], 0
    while offset + 7 <= len(data) and data[offset] == 0xFF:
        header = 7 if data[offset + 1] & 1 else 9  # protection_absent: no CRC
        length = ((data[offset + 3] & 3) << 11) | (data[offset + 4] << 3) | (data[offset + 5] >> 5)
        frames.append(data[offset + header : offset + length])
        offset += length
    if len(frames) < 5:
        raise FFmpegError("ffmpeg made no silent AAC frames")
    return frames[4]


def _first_pts(media):
    return min(s.pts for s in media.samples[media.video.track_id])


def _item_times(item):
    kind, what = item
    return [s.pts for s in what] if kind == "copy" else what.times


def _video_items(media, lo, hi, frame):
    """The video of one segment between presentation times lo and hi (ticks):
    whole GOPs copied, parts of GOPs re-encoded."""
    samples = media.samples[media.video.track_id]
    if not samples[0].sync:
        raise NotFast("codec", f"{media.segment.path} does not start with a keyframe")
    starts = [i for i, s in enumerate(samples) if s.sync] + [len(samples)]
    items = []
    for a, b in itertools.pairwise(starts):
        gop = samples[a:b]
        times = sorted(s.pts for s in gop)
        if times[0] != gop[0].pts or (b < len(samples) and times[-1] >= samples[b].pts):
            raise NotFast("codec", f"{media.segment.path}: an open GOP")
        if any(s.cto < 0 for s in gop):
            # Decode slots are borrowed from the source: they must come
            # no later than the frames presented in them.
            raise NotFast("codec", f"{media.segment.path}: negative composition offsets")
        delay = round(gop[0].cto / frame)
        if delay > MAX_DELAY:
            raise NotFast("codec", f"{media.segment.path}: reorder delay of {delay} frames")
        kept_from = bisect.bisect_left(times, lo)
        kept_to = bisect.bisect_left(times, hi)
        if kept_to <= kept_from:
            continue
        if kept_from == 0 and kept_to == len(gop):
            if items and items[-1][0] == "copy":
                items[-1][1].extend(gop)
            else:
                items.append(("copy", list(gop)))
            continue
        items.append(("encode", Encode(times[kept_from:kept_to], gop[kept_from:kept_to])))
    return items


# --- making the pieces -------------------------------------------------------


def _encode_args(media, piece, fmt):
    """ffmpeg arguments re-encoding `piece` (an Encode) of `media`'s segment to fMP4."""
    video = media.video
    offset = video.view_offset  # times as ffmpeg presents them
    delay = round(media.samples[video.track_id][0].cto * fmt.video["frame_rate"][0]
                  / (fmt.video["frame_rate"][1] * video.timescale))  # fmt: skip
    first, last = piece.times[0] + offset, piece.times[-1] + offset
    args = ffmpeg.base_args() + ["-copyts", "-i", probe.file_url(media.segment.path)]
    args += ["-filter_complex", f"[0:v:0]trim=start_pts={first}:end_pts={last + 1}[v]"]
    args += ["-map", "[v]", "-an", "-sn", "-dn"]
    if fmt.video["codec_name"] == "hevc":
        args += ["-c:v", "libx265", "-preset", HEVC_PRESET, "-crf", str(HEVC_CRF)]
        args += ["-x265-params", f"log-level=error:open-gop=0:{X265_DELAY[min(delay, 2)]}"]
        args += ["-pix_fmt", fmt.video["pix_fmt"] or "yuv420p"]
    else:
        args += _x264_args(fmt, min(delay, 2))
    stop = Fraction(last, video.timescale) + STOP_MARGIN
    args += ["-fps_mode", "passthrough", "-to", f"{float(stop):.6f}"]
    return args + ["-f", "mp4", "-movflags", PIECE_MOVFLAGS, "pipe:1"]


def start(plan, processes):
    """Start every piece's ffmpeg at once; returns {id(Encode): AsyncResult}."""
    results = {}
    fmt = probe.stream_format(plan.runs[0][0][0].media.segment.path)  # one init: one format
    for part in (part for parts, _ in plan.runs for part in parts):
        if not isinstance(part, Part):
            continue
        for kind, what in part.video:
            if kind != "encode":
                continue
            result = gevent.event.AsyncResult()
            process = ffmpeg.Process(_encode_args(part.media, what, fmt))
            processes.append(process)
            process.readers.append(gevent.spawn(ffmpeg.collect, process, result))
            results[id(what)] = result
    return results


def _piece_samples(data, piece, length, shift):
    """The piece's samples (its ffmpeg output `data`) timed as the frames it
    replaces, and the piece's parameter sets."""
    try:
        init_end = next(o for k, o, _, _ in mp4box.boxes(data) if k == b"moof")
        tracks = mp4box.read_init(data[:init_end])
        (track,) = tracks.values()
        _, found = mp4box.read_media(data, init_end, tracks)
    except (mp4box.Unsupported, StopIteration, ValueError) as e:
        raise FFmpegError(f"unreadable re-encoded piece: {e}") from None
    samples = found[track.track_id]
    if len(samples) != len(piece.times) or not samples or not samples[0].sync:
        raise FFmpegError(f"re-encoded piece has {len(samples)} frames for {len(piece.times)}")
    order = sorted(range(len(samples)), key=lambda i: samples[i].pts)
    rank = {index: r for r, index in enumerate(order)}
    out = []
    for i, (sample, slot) in enumerate(zip(samples, piece.slots, strict=True)):
        pts = piece.times[rank[i]]
        if pts < slot.dts:
            raise FFmpegError("re-encoded piece reorders more than its source")
        units = mp4box.nal_units(data[sample.offset : sample.offset + sample.size],
                                 track.nal_length)  # fmt: skip
        if i == 0:
            units = list(track.parameter_sets) + units
        flags = mp4box.SYNC_FLAGS if sample.sync else mp4box.OTHER_FLAGS
        out.append(mp4box.OutSample(slot.dts - shift, slot.duration, flags, pts - slot.dts,
                                    mp4box.join_nal_units(units, length)))  # fmt: skip
    return out, track.parameter_sets


def _copied(media, samples, shift):
    return [
        mp4box.OutSample(
            s.dts - shift, s.duration, s.flags, s.cto, media.data[s.offset : s.offset + s.size]
        )  # fmt: skip
        for s in samples
    ]


def pieces(plan, results):
    """Wait for every piece (`start`'s `results`): {id(Encode): (samples to
    write, the piece's parameter sets)}. FFmpegError if a piece's ffmpeg failed
    or made something unusable: nothing has been output yet, so the caller
    can still cut the range another way."""
    made = {}
    for parts, shifts in plan.runs:
        for part in parts:
            if not isinstance(part, Part):
                continue
            video = part.media.video
            for kind, what in part.video:
                if kind == "encode":
                    made[id(what)] = _piece_samples(
                        results[id(what)].get(), what, video.nal_length, shifts[video.track_id]
                    )
    return made


def made(plan, pieces, init_size, sequence=1):
    """Yield the output's bytes: the init section, then each part's fragments.

    `pieces` are `pieces`'s. FFmpegError if a segment between the ends cannot
    be copied (read only now, one at a time): the output so far is then
    incomplete.
    """
    yield plan.init
    after_piece = None  # the parameter sets of the piece just written
    for part, shifts in ((part, shifts) for parts, shifts in plan.runs for part in parts):
        if not isinstance(part, Part):
            try:
                media = read_media(part, init_size)
            except NotFast as e:
                raise FFmpegError(str(e)) from None
            for fragment in media.fragments:
                (offset, size), (mdat_offset, mdat_size) = fragment.moof, fragment.mdat
                moof = bytearray(media.data[offset : offset + size])
                try:
                    mp4box.patch_fragment(moof, sequence, shifts, fragment)
                except mp4box.Unsupported as e:
                    raise FFmpegError(f"{part.path}: {e}") from None
                sequence += 1
                yield bytes(moof)
                yield media.data[mdat_offset : mdat_offset + mdat_size]
            continue
        media = part.media
        video = media.video
        length = video.nal_length
        shift = shifts[video.track_id]
        samples = []
        for kind, what in part.video:
            if kind == "encode":
                encoded, after_piece = pieces[id(what)]
                samples += encoded
                continue
            copied = _copied(media, what, shift)
            if after_piece is not None and after_piece != video.parameter_sets:
                units = mp4box.nal_units(copied[0].data, length)
                copied[0] = copied[0]._replace(
                    data=mp4box.join_nal_units(list(video.parameter_sets) + units, length)
                )
            after_piece = None
            samples += copied
        tracks = [(video.track_id, samples)]
        if media.audio:
            audio = _copied(media, part.audio, shifts[media.audio.track_id])
            count, frame = part.silence
            for _ in range(count):
                last = audio[-1]
                audio.append(last._replace(dts=last.dts + last.duration, data=frame))
            tracks.append((media.audio.track_id, audio))
        yield mp4box.write_fragment(sequence, tracks)
        sequence += 1
