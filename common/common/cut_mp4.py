"""Cutting ranges that hold fragmented-MP4 segments, or that ask for MP4 output.

`common.cut.cut` hands a range here when any of its segments is
fMP4, or when the caller asked for an `.mp4` file; MPEG-TS ranges cut to
MPEG-TS stay in `common.cut`. Two ways to cut, both frame-exact:

- **fast** (`common.cut_mp4_fast`): fMP4 H.264 or HEVC segments of one
  init section cut to `.mp4` (method `joined` when holes or restarts split
  them into several runs: each later run re-timed to follow on). Only the partial GOPs at the two ends are re-encoded;
  every other sample (all the audio) is copied, the segments between the
  ends fragment by fragment, into one fragmented MP4 behind the recording's
  init section (sample entry renamed to allow in-band parameter sets).
- **full** (here): the video re-encoded, through ffmpeg's concat filter:
  any codec, any mix of containers and formats. A `fast` cut that cannot be
  done the fast way (AV1; a mix of containers; MPEG-TS to `.mp4` or fMP4 to
  `.ts`; an init section change; an open GOP; a re-encoded piece that
  failed: the pieces are all made before the first byte goes out) is done
  this way (method `concat`), logged and counted in
  `cut_fallbacks_total` with its reason (`fast_blocker`, `cut_mp4_fast.NotFast`).

Why splice at the sample level rather than join re-encoded pieces and
copied media with one ffmpeg `-c copy` remux (exact too): the remux is a
second pass over every packet of the range, started only once the pieces
are made, its cost growing with the length, and ffmpeg's MP4 muxer re-times
what it joins (edit lists, B-frame delay); the splice sets every timestamp
itself and only parses the moofs in between. Measured (`bench/cut_mp4.py`:
1280x720 30 fps H.264 with B-frames, 2 s segments, cold caches, 2 cores at a
load of about 10): a 1-minute cut took 2.4 s fast (1.1 CPU-s), 42 s full
(18 CPU-s), 0.5 s for a bare `-c copy` (keyframe-accurate only, 22 frames
early); 5 minutes: 1.3 s fast, 148 s full, 0.2 s `-c copy`. HEVC, 1 minute:
3.9 s fast (x265 being slower), 109 s full, 0.3 s `-c copy`.

How a range is read: it is split into runs of segments one ffmpeg can read
as one stream: the same container, for fMP4 the same init section (one
encoder session: its timestamps run on from segment to segment), nothing
missing between, and first-frame times that follow the broadcast times. An
fMP4 run is fed to ffmpeg as the first segment's init section followed by the
media part of every segment (where it starts: `common.layout`), an MPEG-TS run
as its files back to back. Each run is one input of ffmpeg's concat filter,
trimmed to its frames of the range, its timestamps restarted at 0, scaled,
padded and resampled to the first segment's format.

Timestamps: a segment's broadcast start time (its name) is its first frame's
presentation time as ffmpeg reads the file, whatever presentation offset,
`tfdt` or edit list the file carries: ffmpeg reads the segment alone and
within its run alike, since both start with the same init section. The kept
frames are those whose time falls in `[start, end)`; the audio is trimmed to
the same instants and re-encoded (AAC); where the given segments end (the
end of a recording, or a range ending on a segment boundary) the audio, which
encoders mux 20-60 ms behind the video, is padded with that much silence.

How it fails: an output the muxer cannot carry (AV1 in MPEG-TS, which
ffmpeg 5.1 cannot write) is refused by `common.cut` with the reason
`check_output` gives, before any ffmpeg starts; an fMP4 segment without a whole init section is
`FFmpegError` from the iterator, like any ffmpeg failure; closing the
iterator kills ffmpeg (the caller's `finally` does).
"""

import functools
import logging
import math
import os
from fractions import Fraction

import gevent
import gevent.fileobject

from . import cut_mp4_fast, ffmpeg, layout, mp4box, probe
from .cut import AUDIO_BITRATE, CutError, NoContent
from .cut import _video_encode_args as _x264_args
from .cut_join import conform_video
from .probe import FFmpegError
from .times import exact_seconds

logger = logging.getLogger(__name__)

CONTAINERS = ("ts", "mp4")
# Video codecs each output container can carry (ffmpeg 5.1's MPEG-TS muxer
# has no AV1 mapping: it writes a stream no demuxer reads back).
OUTPUT_CODECS = {"ts": {"h264", "hevc"}, "mp4": {"h264", "hevc", "av1"}}
# Encoder settings per source codec. x264 as in common.cut; x265 and SVT-AV1
# at fast presets (a full cut is linear in length), quiet, closed GOPs.
HEVC_CRF = 22
AV1_CRF = 32
AV1_PRESET = 10
# SVT-AV1 prints its settings to stderr at every start unless its log level
# (this environment variable) says errors only.
SVT_LOG = {"SVT_LOG": "1"}
# fMP4 output: fragments at each keyframe, written to a pipe front to back (no
# seeking back to fill in an index), so it streams. The moov waits for the
# first fragment (`delay_moov`) so that it can carry edit lists: with an empty
# moov, ffmpeg shifts the video by its B-frame delay (67 ms here) and gives
# the first audio packet that long a duration instead, putting audio ahead.
MP4_MOVFLAGS = "frag_keyframe+delay_moov+default_base_moof"
# Two segments of one run whose first frames are further apart than their
# broadcast starts by more than this (seconds) come from different sessions.
TIME_TOLERANCE = Fraction(1, 10)


def output_container(segments):
    """The container to cut a range to when the caller has no preference: `ts` for a
    range of MPEG-TS segments only (the fast cut's output), `mp4` as soon as one
    segment is fMP4 (`.mp4` carries every codec the store records; AV1 cannot go
    to `.ts`). `segments` as `get_best_segments` gives them (None at holes)."""
    return "mp4" if any(s is not None and s.container == "mp4" for s in segments) else "ts"


class UnsupportedContainer(CutError):
    """The output container asked for cannot carry the range's video (AV1 in .ts)."""


def check_output(segments, container):
    """Why `container` cannot carry the range's video (one line), or None.
    ValueError for an unknown container."""
    if container not in CONTAINERS:
        raise ValueError(f"unknown container {container!r}: expected one of {CONTAINERS}")
    first = next(s for s in segments if s is not None)
    codec = probe.stream_format(first.path).video["codec_name"]
    if codec not in OUTPUT_CODECS[container]:
        usable = ", ".join("." + c for c in CONTAINERS if codec in OUTPUT_CODECS[c])
        return f"{codec} video cannot be cut to .{container}: ask for {usable or 'another'}"
    return None


def fast_blocker(segments, container):
    """Why a fast cut of this range cannot even be tried (the full way, then), or
    None: `format` for a mix of containers, `container` for an output in
    another container than the recording's (MPEG-TS to .mp4, fMP4 to .ts),
    `codec` for video other than H.264 and HEVC (AV1)."""
    present = [s for s in segments if s is not None]
    if len({s.container for s in present}) > 1:
        return "format"
    if present[0].container != container:
        return "container"
    if probe.stream_format(present[0].path).video["codec_name"] not in ("h264", "hevc"):
        return "codec"
    return None


# --- facts about segments ----------------------------------------------------


def _time_base(path):
    """The video stream's time base as a Fraction (1/90000 for MPEG-TS)."""
    return Fraction(probe.stream_format(path).video.get("time_base") or "1/90000")


def first_time(segment):
    """The segment's first frame's presentation time, in seconds, as ffmpeg reads it.

    For fMP4, from the init section and the first fragment's header (a few KB
    read: `mp4box.first_video_pts`, cached); from ffprobe (a read of the whole
    file) for MPEG-TS, or an fMP4 file mp4box cannot read.
    """
    if segment.container == "mp4":
        try:
            return _mp4_first_time(segment.path)
        except (mp4box.Unsupported, layout.BadLayout) as e:
            logger.info("Probing %s instead: %s", segment.path, e)
    keyframes = probe.stream_format(segment.path).keyframes
    if not keyframes:
        raise FFmpegError(f"{segment.path}: no keyframe")
    return keyframes[0] * _time_base(segment.path)


@functools.lru_cache(maxsize=probe.CACHE_SIZE)
def _mp4_first_time(path):
    init_size = layout.cached_layout(path).init_size
    with open(path, "rb") as f:
        tracks = mp4box.read_init(f.read(init_size))
        video, pts = mp4box.first_video_pts(f, init_size, tracks)
    return Fraction(pts + video.view_offset, video.timescale)


def _init_hash(segment):
    return layout.cached_layout(segment.path).init_hash if segment.container == "mp4" else None


def runs(segments):
    """Split the segments into runs one ffmpeg reads as one stream (see the module docstring)."""
    result, current = [], []
    for segment in segments:
        if segment is None:
            if current:
                result.append(current)
            current = []
            continue
        if current:
            previous = current[-1]
            expected = exact_seconds(segment.start - previous.start)
            joinable = (
                segment.container == previous.container
                and _init_hash(segment) == _init_hash(previous)
                and abs(first_time(segment) - first_time(previous) - expected) <= TIME_TOLERANCE
                # One fMP4 init section describes one format: no probe needed.
                and (
                    segment.container == "mp4"
                    or probe.stream_format(segment.path).key()
                    == probe.stream_format(previous.path).key()
                )
            )
            if not joinable:
                logger.info("Cannot read %s on from %s as one stream", segment.path, previous.path)
                result.append(current)
                current = []
        current.append(segment)
    if current:
        result.append(current)
    return result


def _parts(run):
    """(path, offset) byte ranges that make the run one input: for fMP4 the first
    init section once, then each segment's media."""
    if run[0].container != "mp4":
        return [(s.path, 0) for s in run]
    parts = [(run[0].path, 0)]
    for segment in run[1:]:
        try:
            parts.append((segment.path, layout.cached_layout(segment.path).init_size))
        except layout.BadLayout as e:
            raise FFmpegError(str(e)) from None
    return parts


# --- ffmpeg arguments --------------------------------------------------------


def _video_encode_args(fmt, container):
    codec = fmt.video["codec_name"]
    pix_fmt = ["-pix_fmt", fmt.video["pix_fmt"] or "yuv420p"]
    if codec == "hevc":
        args = ["-c:v", "libx265", "-preset", "superfast", "-crf", str(HEVC_CRF)]
        args += ["-x265-params", "log-level=error:open-gop=0"] + pix_fmt
        # hvc1: parameter sets in the sample entry, as Apple's players want.
        return args + (["-tag:v", "hvc1"] if container == "mp4" else [])
    if codec == "av1":
        return ["-c:v", "libsvtav1", "-preset", str(AV1_PRESET), "-crf", str(AV1_CRF)] + pix_fmt
    return _x264_args(fmt)


def _next_frame(first, t, frame):
    """The first frame time at or after `t` on the grid starting at `first` (Fractions)."""
    return first + max(0, math.ceil((t - first) / frame - Fraction(1, 10**6))) * frame


def _f(value):
    return f"{float(value):.6f}"


def cut_args(runs, start, end, container, read_fds):
    """ffmpeg arguments for the cut of `runs`, input i read from `pipe:read_fds[i]`.

    Also returns the seconds of video the output holds.
    """
    target = probe.stream_format(runs[0][0].path)
    audio = target.audio or {"sample_rate": 48000, "channel_layout": "stereo", "channels": 2}
    layout_name = audio["channel_layout"] or ("stereo" if audio["channels"] == 2 else "mono")
    args = ffmpeg.base_args() + ["-copyts"]
    filters, total = [], Fraction(0)
    for i, (run, fd) in enumerate(zip(runs, read_fds, strict=True)):
        args += ["-f", "mp4" if run[0].container == "mp4" else "mpegts", "-i", f"pipe:{fd}"]
        fmt = probe.stream_format(run[0].path)
        num, den = fmt.video["frame_rate"]
        frame = Fraction(den, num)
        first = first_time(run[0])
        s = first + exact_seconds(max(start, run[0].start) - run[0].start)
        e = first_time(run[-1]) + exact_seconds(min(end, run[-1].end) - run[-1].start)
        first_frame, end_frame = _next_frame(first, s, frame), _next_frame(first, e, frame)
        total += max(0, end_frame - first_frame)
        # Frame times in the file are rounded to its time base: trim half a
        # frame before the grid points, so rounding cannot move a frame across.
        video = (
            f"[{i}:v:0]trim=start={_f(first_frame - frame / 2)}:end={_f(end_frame - frame / 2)}"
            f",setpts=PTS-{_f(first_frame)}/TB"
        )
        video += conform_video(fmt, target) + f"[v{i}]"
        if fmt.audio:
            # A segment's last 20-60 ms of audio are muxed with the next one's
            # video: a run ending where the range's segments end is padded with
            # that much silence, so that audio and video end together.
            sound = (
                f"[{i}:a:0]atrim=start={_f(first_frame)}:end={_f(end_frame)}"
                f",asetpts=PTS-{_f(first_frame)}/TB,apad=whole_dur={_f(end_frame - first_frame)}"
            )
        else:
            sound = f"anullsrc=r={audio['sample_rate']}:cl={layout_name},atrim=end={_f(e - s)}"
        sound += (
            f",aresample={audio['sample_rate']}"
            f",aformat=sample_fmts=fltp:channel_layouts={layout_name}[a{i}]"
        )
        filters += [video, sound]
    joined = "".join(f"[v{i}][a{i}]" for i in range(len(runs)))
    filters.append(f"{joined}concat=n={len(runs)}:v=1:a=1[v][a]")
    args += ["-filter_complex", ";".join(filters), "-map", "[v]", "-map", "[a]"]
    args += _video_encode_args(target, container) + ["-fps_mode", "passthrough"]
    args += ["-c:a", "aac", "-b:a", AUDIO_BITRATE, "-ar", str(audio["sample_rate"])]
    if container == "mp4":
        args += ["-f", "mp4", "-movflags", MP4_MOVFLAGS, "pipe:1"]
    else:
        args += ["-f", "mpegts", "pipe:1"]
    return args, float(total)


def cut(segments, start, end, type, container, metrics):
    """`common.cut.cut` for a range holding fMP4 segments or asked for as MP4
    (`segments` in range, holes already refused or allowed; `metrics`: its
    metrics). Raises ValueError for an unknown container and
    UnsupportedContainer for one that cannot carry the video, before any
    ffmpeg starts; returns an iterator of the output's bytes."""
    reason = check_output(segments, container)
    if reason:
        metrics.cuts.labels(type=type, method="none", outcome="unsupported").inc()
        raise UnsupportedContainer(reason)
    return _cut(segments, start, end, type, container, metrics)


def _cut(segments, start, end, type, container, metrics):
    with ffmpeg.Run(metrics, type, "full") as run:
        run.video_seconds = sum(
            (min(end, s.end) - max(start, s.start)).total_seconds() for s in segments if s
        )
        if type == "fast":
            plan = reason = _fast_plan(segments, start, end, container)
            if not isinstance(plan, str):
                reason, made = _fast_pieces(plan, run.processes, start, end)
            if reason is None:
                run.method = "joined" if len(plan.runs) > 1 else "fast"
                yield from cut_mp4_fast.made(plan, made, plan.init_size)
                return
            run.method = "concat"
            metrics.fallbacks.labels(reason=reason).inc()
        yield from _made(segments, start, end, container, run.processes, run.pipes)


def _fast_pieces(plan, processes, start, end):
    """(None, the pieces) of a fast plan, all made before any output; or
    ("piece", None) if one failed (logged): the range is then cut the full way."""
    try:
        return None, cut_mp4_fast.pieces(plan, cut_mp4_fast.start(plan, processes))
    except FFmpegError as e:
        logger.warning(
            "Cut %s to %s: a re-encoded piece failed (%s): re-encoding it all",
            start.isoformat(), end.isoformat(), e,
        )  # fmt: skip
        return "piece", None


def _fast_plan(segments, start, end, container):
    """The fast cut's plan (`cut_mp4_fast.plan`), or why there is none (a
    `cut_fallbacks_total` reason), logged."""
    reason = fast_blocker(segments, container)
    why = reason
    if reason is None:
        split = runs(segments)
        if len({_init_hash(run[0]) for run in split}) > 1:
            reason = "format"
            why = "the init section changes"
        else:
            try:
                init_size = layout.cached_layout(split[0][0].path).init_size
                return cut_mp4_fast.plan(split, start, end, init_size)
            except (cut_mp4_fast.NotFast, layout.BadLayout) as e:
                reason, why = getattr(e, "reason", "format"), str(e)
    logger.warning(
        "Cut %s to %s as .%s cannot be fast (%s): re-encoding it all",
        start.isoformat(), end.isoformat(), container, why,
    )  # fmt: skip
    return reason


def _made(segments, start, end, container, processes, pipes):
    """Yield the re-encoded cut of `segments` as `container` bytes. ffmpeg is
    added to `processes` and the pipes into it to `pipes`: the caller kills
    and closes them."""
    split = runs(segments)
    read_fds = []
    try:
        for _ in split:
            read_fd, write_fd = os.pipe()
            read_fds.append(read_fd)
            pipes.append(gevent.fileobject.FileObjectPosix(write_fd, "wb", close=True))
        args, seconds = cut_args(split, start, end, container, read_fds)
        if seconds <= 0:
            # Only the probe can tell: a range between two frames.
            raise NoContent(f"no frame between {start.isoformat()} and {end.isoformat()}")
        process = ffmpeg.Process(args, pass_fds=read_fds, env={**os.environ, **SVT_LOG})
        processes.append(process)
    finally:
        for fd in read_fds:
            os.close(fd)
    inputs = [(_parts(run), pipe) for run, pipe in zip(split, pipes, strict=True)]
    yield from ffmpeg.fed_output(process, inputs)
