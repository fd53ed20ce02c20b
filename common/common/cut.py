"""Cutting exact time ranges out of a segment store into one MPEG-TS file.

`cut(segments, start, end, type=...)` takes the list `get_best_segments` gives
(segments, with `None` at holes) and returns an iterator of the output file's
bytes. Two ways to cut:

- **fast** (the default; cut, then cat): only the video from the start to the
  next keyframe, and from the last split point before the end (a frame all
  packets before which in decode order show before it: at most a group of
  B-frames from the end), is re-encoded, trimmed to the exact frames; the rest
  of those two segments is remuxed (packets copied), and every segment between
  is passed through byte for byte. Audio is never re-encoded (every AAC encoder
  session adds priming and padding, which overlaps or gaps at each join): its
  packets are copied, split between pieces at one shared timestamp. The made
  pieces keep the source's timestamps exactly (`-copyts`, the encoder clocked
  in 90 kHz ticks, the same B-frame reorder delay and mux delay) and its PIDs,
  and their continuity counters are renumbered to run on from the copied
  neighbours: to a demuxer the result is one unbroken stream.
- **full** (cat, then cut): every covering segment is fed through one ffmpeg,
  which trims to the exact frames and samples and re-encodes everything. Slow
  (linear in length) but makes no assumption about the segments.

How it fails, and what it does about it:

- Holes (`None`, or a partial segment followed by one) are refused with
  `ContainsHoles` unless `allow_holes`; nothing in range at all is `NoContent`;
  a bad `type` or `end <= start` is `ValueError`. All raised by `cut` itself,
  before any ffmpeg starts, so a web route can answer 4xx.
- Segments that cannot be joined byte for byte — a stream restart (timestamps
  starting over), possibly with another resolution, codec, frame rate or
  audio layout — are found by reading a few packets of every segment in range
  (`mpegts.scan_head`, cached). The range is then split into runs of joinable
  segments, joined by `common.cut_join`. Runs of the first run's format (a
  restart of the same encoder setup, or the two sides of a hole allowed by
  `allow_holes`) are each cut fast and joined as they are (method `joined`):
  later runs' timestamps are shifted so the timeline runs on one frame after
  the previous run, their continuity counters follow on, and nothing is
  re-encoded beyond each run's ends; at a join the audio may pause for up to
  60 ms (see the last point). A run of another format is re-encoded whole
  into the first run's (scaled/padded, resampled, AAC audio) and joined the
  same way (method `converted`): the cost is that run's, the rest is still
  copied. Only when the first run cannot be cut fast, or its audio is not
  AAC-LC, does everything go through ffmpeg's concat filter, every run
  scaled/padded and resampled to the first segment's format; a fast cut that
  has to do this logs and counts it (`cut_fallbacks_total`). Either way the
  hole or the restart is simply absent from the output.
- An ffmpeg that fails raises `FFmpegError` from the iterator, with its last
  lines of stderr; the output so far is then incomplete.
- Closing the iterator early (a client went away) kills every ffmpeg it
  started and waits for them; nothing is written to disk, ever.
- Encoders mux audio 20-60 ms ahead of video, so a segment's last audio is in
  the next one. A cut ending exactly where the given segments end (the end of
  a recording, or a range ending on a segment boundary) has its audio stop
  that much before the video; anywhere else audio and video end together.

ffprobe runs in `common.probe` (segment formats, keyframes, cached) and the
ffmpeg processes in `common.ffmpeg`; this module plans the pieces and builds
their arguments, and `common.cut_join` joins the runs of a range that has
several.

Timestamps are 90 kHz ticks as in the segments: broadcast time `t` in a segment
that starts at broadcast time `s` is `first_video_pts + (t - s)` — a segment
starts with the keyframe its broadcast start time stamps. A cut keeps the
frames whose timestamps fall in `[start, end)`, so its first frame is the one
at or just after `start`, its last the one just before `end`, and its length
within one frame of `end - start`.
"""

import datetime
import functools
import logging
import math
import weakref

import gevent
import gevent.event
import prometheus_client
from prometheus_client import Counter, Histogram

from . import ffmpeg, mpegts, probe
from .probe import FFmpegError, StreamFormat  # noqa: F401 -- part of this module's API
from .stats import NORMALIZED_BUCKETS
from .times import format_time, to_utc

logger = logging.getLogger(__name__)

TYPES = ("fast", "full")

# x264 settings for re-encoded video. The encodes of a fast cut's two ends are
# most of its cost: for a 720p minute here, 1.0 CPU-s with `veryfast`, 0.8 with
# `superfast` (which keeps CABAC and deblocking, so the re-encoded GOPs look
# like their neighbours), 0.6 with `ultrafast` (which drops both). CRF 18 keeps
# the second or two re-encoded at each end as good as a typical live source.
ENCODE_PRESET = "superfast"
ENCODE_CRF = 18
# Audio bitrate for cuts that re-encode audio (full, and the concat fallback).
AUDIO_BITRATE = "160k"
# Two neighbouring segments whose first video timestamps differ from their
# broadcast start times' difference by more than this (90 kHz ticks: 0.1 s)
# come from different encoder sessions: a restart, not a continuous stream.
# Live sources put timestamps and program date-times a few ms apart at most.
TIMESTAMP_TOLERANCE = 9000
# libavformat's reference for undoing timestamp wraps: this long (90 kHz ticks)
# before a file's first timestamp (see `_as_ffmpeg_sees`).
WRAP_MARGIN = 60 * mpegts.CLOCK
# How far past a piece's last packet ffmpeg is told to stop reading (90 kHz
# ticks: 0.2 s), so that no packet it should keep is cut off.
STOP_MARGIN = 18000

# ffprobe profile names -> libx264 -profile:v values.
X264_PROFILES = {
    "Baseline": "baseline",
    "Constrained Baseline": "baseline",
    "Main": "main",
    "High": "high",
}


class CutError(Exception):
    """Base class for refusing a cut (the caller's range cannot be cut as asked)."""


class ContainsHoles(CutError):
    """The range has holes and `allow_holes` is False."""


class NoContent(CutError):
    """Nothing at all was recorded in the range."""

    outcome = "no_content"  # as `ffmpeg.Run` counts it


# --- metrics -----------------------------------------------------------------


class _Metrics:
    def __init__(self, registry):
        self.cuts = Counter(
            "cuts",
            "Cuts by requested type, method used (fast, joined, converted, full, concat) and outcome",
            ["type", "method", "outcome"],
            registry=registry,
        )
        self.latency = Histogram(
            "cut_latency_normalized",
            "Wall time of a finished cut per second of video in it",
            ["type", "method"],
            buckets=NORMALIZED_BUCKETS,
            registry=registry,
        )
        self.fallbacks = Counter(
            "cut_fallbacks",
            "Fast cuts done through the concat filter instead, by reason",
            ["reason"],
            registry=registry,
        )


_metrics_by_registry = weakref.WeakKeyDictionary()


def _metrics(registry):
    metrics = _metrics_by_registry.get(registry)
    if metrics is None:
        metrics = _metrics_by_registry[registry] = _Metrics(registry)
    return metrics


# --- facts about segments ----------------------------------------------------


@functools.lru_cache(maxsize=probe.CACHE_SIZE)
def segment_head(path):
    """The segment's `mpegts.SegmentHead` (cached by path, which names the content).

    ValueError if it is not MPEG-TS.
    """
    return mpegts.scan_head(path)


segment_format = probe.stream_format
_file_url = probe.file_url


def _ticks(delta):
    """A timedelta in 90 kHz ticks, rounded to the nearest tick."""
    micros = delta // datetime.timedelta(microseconds=1)
    return (micros * 9 + 50) // 100


def _as_ffmpeg_sees(pts, first):
    """A raw 33-bit timestamp as ffmpeg presents it in a file starting at `first`.

    libavformat undoes the 26.5-hour wrap of MPEG-TS timestamps relative to a
    reference 60 s before the file's first timestamp: later ones that wrapped
    get 2**33 added, except that a file starting within 60 s of the wrap point
    gets 2**33 subtracted from its timestamps before the wrap instead (they go
    negative). Every timestamp given to ffmpeg about a file goes through this.
    """
    modulo = mpegts.TIMESTAMP_MODULO
    pts %= modulo
    reference = first % modulo - WRAP_MARGIN
    if first % modulo >= modulo - WRAP_MARGIN:
        return pts - modulo if pts >= reference else pts
    return pts + modulo if pts < reference else pts


def _first_pts(head):
    """The segment's first video timestamp, as ffmpeg presents it when reading it."""
    return _as_ffmpeg_sees(head.video_pts, head.video_dts)


def _next_frame(first_pts, pts, frame_ticks):
    """The timestamp of the first frame at or after `pts`, on the frame grid that
    starts at `first_pts` (live streams have a constant frame rate)."""
    frames = max(0, math.ceil((pts - first_pts) / frame_ticks - 1e-6))
    return first_pts + round(frames * frame_ticks)


def _seconds(ticks):
    return f"{ticks / mpegts.CLOCK:.6f}"


# --- planning ----------------------------------------------------------------


def _joinable(previous, segment):
    """Why `segment` cannot follow `previous` byte for byte, or None if it can."""
    a, b = segment_head(previous.path), segment_head(segment.path)
    if a.video_pts is None or b.video_pts is None:
        return "format"
    if a.signature != b.signature:
        if segment_format(previous.path).key() != segment_format(segment.path).key():
            return "format"
    expected = _ticks(segment.start - previous.start)
    actual = (b.video_pts - a.video_pts) % mpegts.TIMESTAMP_MODULO
    if abs(actual - expected) > TIMESTAMP_TOLERANCE:
        return "restart"
    return None


def _runs(segments):
    """Split the segments into runs that can be joined byte for byte.

    Returns (runs, reasons): `reasons` says why runs were split ("hole",
    "restart", "format").
    """
    runs, reasons, current = [], set(), []
    for segment in segments:
        if segment is None:
            if current:
                runs.append(current)
                current = []
            reasons.add("hole")
            continue
        if current:
            reason = _joinable(current[-1], segment)
            if reason:
                logger.info("Cannot join %s after %s: %s", segment.path, current[-1].path, reason)
                runs.append(current)
                current = []
                reasons.add(reason)
        current.append(segment)
    if current:
        runs.append(current)
    return runs, reasons


def _has_frames(segment, start, end):
    """Whether any frame of `segment` falls in [start, end)."""
    head = segment_head(segment.path)
    first_pts = _first_pts(head)
    start_pts = first_pts + _ticks(max(start, segment.start) - segment.start)
    end_pts = first_pts + _ticks(min(end, segment.end) - segment.start)
    return _next_frame(first_pts, start_pts, segment_format(segment.path).frame_ticks) < end_pts


def _fast_blocker(run):
    """Why this run cannot be fast-cut, or None."""
    _probe_ends(run)
    for segment in (run[0], run[-1]):
        fmt = segment_format(segment.path)
        head = segment_head(segment.path)
        if fmt.video["codec_name"] != "h264" or fmt.video["profile"] not in X264_PROFILES:
            return "codec"
        if head.video_dts is None or _reorder_delay(head, fmt) > 2:
            return "codec"
    return None


def _reorder_delay(head, fmt):
    """The source's B-frame reorder delay, in frames: its first keyframe's PTS - DTS."""
    return round(((head.video_pts - head.video_dts) % mpegts.TIMESTAMP_MODULO) / fmt.frame_ticks)


# --- ffmpeg arguments --------------------------------------------------------


def _video_encode_args(fmt, delay=None):
    video = fmt.video
    args = ["-c:v", "libx264", "-preset", ENCODE_PRESET, "-crf", str(ENCODE_CRF)]
    if video["pix_fmt"]:
        args += ["-pix_fmt", video["pix_fmt"]]
    profile = X264_PROFILES.get(video["profile"])
    if profile:
        args += ["-profile:v", profile]
    if video["level"] and video["level"] > 0:
        args += ["-level:v", f"{video['level'] / 10:g}"]
    if delay is not None:
        # x264 delays decoding by 2 frames with B-pyramid, 1 with plain B-frames.
        args += {
            0: ["-bf", "0"],
            1: ["-bf", "2", "-x264-params", "b-pyramid=none"],
            2: ["-bf", "3", "-x264-params", "b-pyramid=normal"],
        }[delay]
    return args


def _mux_args(head):
    """MPEG-TS output options that make a piece continue the source's stream.

    Timestamps as given (`-mpegts_copyts`), the source's mux delay (how far PCR
    runs behind DTS) and its PIDs and ids, so that PCR and PIDs run on across
    the joins.
    """
    mux_delay = 0
    if head.pcr is not None:
        mux_delay = (head.video_dts - head.pcr) % mpegts.TIMESTAMP_MODULO
    args = [
        "-f", "mpegts", "-mpegts_copyts", "1", "-avoid_negative_ts", "disabled",
        "-muxdelay", _seconds(mux_delay), "-muxpreload", "0",
        "-mpegts_pmt_start_pid", str(head.pmt_pid),
        "-streamid", f"0:{head.video_pid}",
    ]  # fmt: skip
    if head.audio_pid is not None:
        args += ["-streamid", f"1:{head.audio_pid}"]
    if head.transport_stream_id is not None:
        args += ["-mpegts_transport_stream_id", str(head.transport_stream_id)]
    if head.program_number is not None:
        args += ["-mpegts_service_id", str(head.program_number)]
    return args


def _drop_args(stream, field, first=None, end=None):
    """A bitstream filter keeping only packets with `first <= field < end` (90 kHz).

    Copied packets are chosen this way rather than with output `-ss`/`-to`,
    which judge video by DTS rather than PTS, shift timestamps, and cut every
    stream of the output at once.
    """
    conditions = []
    if first is not None:
        conditions.append(f"lt({field}\\,{round(first)})")
    if end is not None:
        conditions.append(f"gte({field}\\,{round(end)})")
    if not conditions:
        return []
    return [f"-bsf:{stream}", f"noise=drop={'+'.join(conditions)}"]


def _stop_args(last_pts):
    """Output `-to` a little past a piece's last packet, so that ffmpeg stops there.

    Only to stop early: the packets are chosen exactly by `_drop_args` and
    trims, but without a `-to` ffmpeg reads (and decodes) the segment to its
    end, a third of a piece's cost. `-to` without `-ss` cannot be negative, so
    a file ffmpeg shows negative timestamps for (just before the 33-bit wrap)
    is read to its end.
    """
    stop = last_pts + STOP_MARGIN
    return ["-to", _seconds(stop)] if stop > 0 else []


def _encode_piece_args(segment, start_pts, end_pts, audio_start=None, audio_end=None, input=0):
    """ffmpeg output options re-encoding one segment's video between two timestamps,
    read from input number `input` of the command (`_end_args`).

    `start_pts`/`end_pts` (90 kHz, as in the file; None for the segment's own
    start/end) bound the kept frames: `start_pts <= pts < end_pts`. The audio
    is copied between `audio_start` and `audio_end`; by default from half an
    audio frame before the first kept frame until half a frame before the end
    of the last, so that audio starts and ends within half a frame of the
    video, with no audio packet cut in two.
    """
    head = segment_head(segment.path)
    fmt = segment_format(segment.path)
    half_audio = fmt.audio_frame_ticks / 2
    trims = []
    if start_pts is not None:
        start_pts = max(start_pts, _first_pts(head))
        trims.append(f"start_pts={start_pts}")
        if audio_start is None:
            audio_start = _next_frame(_first_pts(head), start_pts, fmt.frame_ticks) - half_audio
    if end_pts is not None:
        trims.append(f"end_pts={end_pts}")
        if audio_end is None:
            audio_end = _next_frame(_first_pts(head), end_pts, fmt.frame_ticks) - half_audio
    chain = f"trim={':'.join(trims)}" if trims else "null"
    args = ["-filter_complex", f"[{input}:v:0]{chain}[v]", "-map", "[v]", "-map", f"{input}:a:0?"]
    delay = _reorder_delay(head, fmt)
    args += _video_encode_args(fmt, delay)
    args += ["-enc_time_base:v", f"1:{mpegts.CLOCK}", "-fps_mode", "passthrough"]
    # x264 only learns its decode delay from the first few frames, and a piece of
    # one or two frames comes out with DTS = PTS, which goes back at the join
    # after it. Every frame's DTS is known anyway: one frame apart, `delay`
    # frames before the first keyframe.
    args += [
        "-bsf:v",
        f"setts=pts=PTS:dts=STARTPTS+(N-{delay})*{fmt.frame_ticks:g}/{mpegts.CLOCK}/TB",
    ]
    args += ["-c:a", "copy"] + _drop_args("a", "pts", audio_start, audio_end)
    if end_pts is not None:
        args += _stop_args(max(end_pts, audio_end))
    return args + _mux_args(head)


def _remux_piece_args(segment, video_dts, audio_pts, input=0):
    """ffmpeg output options copying the packets of a segment between two bounds,
    read from input number `input` of the command (`_end_args`).

    `video_dts` and `audio_pts` are (first, end) pairs of 90 kHz timestamps,
    either end None for open; video is chosen by DTS, so that a bound at a
    keyframe's DTS splits the GOPs before and after it.
    """
    head = segment_head(segment.path)
    args = ["-map", f"{input}:v:0", "-map", f"{input}:a:0?", "-c", "copy"]
    args += _drop_args("v", "dts", *video_dts) + _drop_args("a", "pts", *audio_pts)
    if video_dts[1] is not None and audio_pts[1] is not None:
        args += _stop_args(max(video_dts[1], audio_pts[1]))
    return args + _mux_args(head)


def _end_args(segment, outputs):
    """One ffmpeg making every piece of one end of a cut: ("made", (args, outputs)).

    The segment is opened once per output (the same file, input number
    `i` for output `i`): ffmpeg stops reading an input once the outputs fed
    from it are done, so the encode, which needs only the frames up to its
    end, does not decode the rest of the segment for the remux beside it.
    """
    args = ffmpeg.base_args() + ["-copyts"]
    args += ["-i", _file_url(segment.path)] * len(outputs)
    return ("made", (args, outputs))


def _plan_fast(run, start, end):
    """The pieces of a fast cut: ("made", (args, outputs)) for each end, made by
    one ffmpeg (`ffmpeg.start`), or ("copy", segments) between.

    Only the frames that cannot be copied are re-encoded: from the first kept
    frame to the next keyframe, and from the last split point at or before the
    end (`StreamFormat.split_points`: usually the last frame that is not a
    B-frame, so at most a few frames) to the end. The rest of those two
    segments is remuxed (packets copied, from that keyframe on / up to that
    point), and the segments between are copied byte for byte. Each boundary
    between pieces is one timestamp that both sides use, so no audio packet is
    lost or doubled there:

    - video: the keyframe's or split point's DTS (in decode order, everything
      before it is shown before it, everything from it on at or after it);
    - audio: half an audio frame before its PTS.

    A range inside one segment is re-encoded whole (at most one segment).
    """
    first, last = run[0], run[-1]
    _probe_ends(run)
    first_head, last_head = segment_head(first.path), segment_head(last.path)
    start_pts = _first_pts(first_head) + _ticks(max(start, first.start) - first.start)
    end_pts = _first_pts(last_head) + _ticks(min(end, last.end) - last.start)
    if len(run) == 1:
        return [_end_args(first, [_encode_piece_args(first, start_pts, end_pts)])]
    fmt = segment_format(first.path)
    first_frame = _next_frame(_first_pts(first_head), start_pts, fmt.frame_ticks)
    if first_frame >= _first_pts(first_head) + _ticks(first.duration):
        # The start falls after the first segment's last frame: the cut
        # starts with the next segment (whose audio must still be trimmed
        # to its video, hence not simply dropping the first segment).
        return _plan_fast(run[1:], run[1].start, end)

    pieces = []
    half_audio = fmt.audio_frame_ticks / 2
    key = next((k for k in fmt.keyframes if k >= first_frame), None)
    if key is None:
        pieces.append(_end_args(first, [_encode_piece_args(first, start_pts, None)]))
    else:
        key_dts = key - _reorder_delay(first_head, fmt) * fmt.frame_ticks
        outputs = []
        if key > first_frame:
            outputs.append(_encode_piece_args(first, start_pts, key, audio_end=key - half_audio))
        audio_start = key - half_audio if key > first_frame else first_frame - half_audio
        outputs.append(
            _remux_piece_args(first, (key_dts, None), (audio_start, None), input=len(outputs))
        )
        pieces.append(_end_args(first, outputs))

    if len(run) > 2:
        pieces.append(("copy", run[1:-1]))

    fmt = segment_format(last.path)
    half_audio = fmt.audio_frame_ticks / 2
    end_frame = _next_frame(_first_pts(last_head), end_pts, fmt.frame_ticks)
    split = max((p for p in fmt.split_points if p <= end_frame), default=None)
    if split is None or split <= _first_pts(last_head):
        pieces.append(_end_args(last, [_encode_piece_args(last, None, end_pts)]))
    else:
        split_dts = split - _reorder_delay(last_head, fmt) * fmt.frame_ticks
        outputs = [_remux_piece_args(last, (None, split_dts), (None, split - half_audio))]
        if split < end_frame:
            outputs.append(
                _encode_piece_args(last, split, end_pts, audio_start=split - half_audio, input=1)
            )
        pieces.append(_end_args(last, outputs))
    return pieces


def _probe_ends(run):
    """Probe a run's first and last segments (cached) side by side, not in turn."""
    paths = {run[0].path, run[-1].path}
    gevent.joinall([gevent.spawn(segment_format, path) for path in paths], raise_error=True)


def _fast_cut(run, start, end, processes):
    """Yield the fast cut of one joinable run (see the module docstring and `_plan_fast`)."""
    return (yield from _made_groups(_start_fast(run, start, end, processes)))


def _start_fast(run, start, end, processes):
    """Start every ffmpeg of a run's fast cut at once (they are independent).

    Returns its groups: ("copy", segments) or ("made", [AsyncResult, ...]),
    consecutive made pieces joined in one group.
    """
    groups = []
    for kind, what in _plan_fast(run, start, end):
        if kind == "copy":
            groups.append((kind, what))
            continue
        result = gevent.event.AsyncResult()
        processes.append(ffmpeg.start(*what))
        processes[-1].readers.append(gevent.spawn(ffmpeg.collect, processes[-1], result))
        if groups and groups[-1][0] == "made":
            groups[-1][1].append(result)
        else:
            groups.append(("made", [result]))
    return groups


def _made_groups(groups):
    """Yield the groups' bytes; returns the last continuity counters yielded.

    A made group's continuity counters are renumbered as one: backwards from
    the copied segment after it (so the group is held until done), or on
    from the copied segment before it.
    """
    previous_counters = None  # last continuity counters of what was yielded so far
    for i, (kind, what) in enumerate(groups):
        if kind == "copy":
            for segment in what:
                yield from ffmpeg.copy_file(segment.path)
            previous_counters = mpegts.file_last_counters(what[-1].path)
            continue
        data = bytearray().join(result.get() for result in what)
        if previous_counters is not None:
            mpegts.renumber(data, after=previous_counters)
        elif i + 1 < len(groups):
            mpegts.renumber(data, before=segment_head(groups[i + 1][1][0].path).first_counters)
        else:
            mpegts.renumber(data)
        previous_counters = mpegts.last_counters(data)
        for offset in range(0, len(data), ffmpeg.CHUNK_SIZE):
            yield bytes(data[offset : offset + ffmpeg.CHUNK_SIZE])
    return previous_counters


# --- the entry point ---------------------------------------------------------


def cut(segments, start, end, type="fast", allow_holes=False, registry=prometheus_client.REGISTRY,
        container="ts"):  # fmt: skip
    """Cut [start, end) out of `segments` (from `get_best_segments`) as MPEG-TS bytes
    (`container="mp4"`: MP4; that and fMP4 segments are cut by `common.cut_mp4`).

    Validates eagerly, raising before returning: ValueError for an unknown
    type or `end <= start`, `ContainsHoles` if the range has a hole (a `None`)
    and `allow_holes` is False, `NoContent` if no segment overlaps the range.
    Returns an iterator yielding the file as it is produced; it raises
    `FFmpegError` if ffmpeg fails, `NoContent` before any output if the
    segments hold no frame of the range (a range shorter than a frame, which
    only the probe can tell), and closing it early kills every ffmpeg it
    started. With `allow_holes`, holes are left out of the output: the pieces
    either side are joined.
    """
    metrics = _metrics(registry)
    start, end = to_utc(start), to_utc(end)
    if type not in TYPES:
        metrics.cuts.labels(type="invalid", method="none", outcome="bad_request").inc()
        raise ValueError(f"unknown cut type {type!r}: expected one of {', '.join(TYPES)}")
    if end <= start:
        metrics.cuts.labels(type=type, method="none", outcome="bad_request").inc()
        raise ValueError("end must be after start")
    in_range = [s for s in segments if s is None or (s.start < end and s.end > start)]
    if not any(s is not None for s in in_range):
        metrics.cuts.labels(type=type, method="none", outcome="no_content").inc()
        raise NoContent(f"no content between {format_time(start)} and {format_time(end)}")
    if None in in_range and not allow_holes:
        metrics.cuts.labels(type=type, method="none", outcome="holes").inc()
        raise ContainsHoles(f"the range {format_time(start)} to {format_time(end)} has holes")
    if container != "ts" or any(s is not None and s.container == "mp4" for s in in_range):
        from . import cut_mp4  # fMP4 in or out (it builds on this module)

        return cut_mp4.cut(in_range, start, end, type, container, metrics)
    return _cut(in_range, start, end, type, metrics)


def _cut(segments, start, end, type, metrics):
    from . import cut_join  # joins several runs (it builds on this module)

    with ffmpeg.Run(metrics, type, method=type) as cut_run:
        runs, reasons = _runs(segments)
        # A run of one segment may hold no frame of the range at all (a sliver
        # of a segment before a hole, or a range shorter than a frame).
        runs = [run for run in runs if len(run) > 1 or _has_frames(run[0], start, end)]
        if not runs:
            raise NoContent(f"no frame between {format_time(start)} and {format_time(end)}")
        cut_run.video_seconds = sum(
            (min(end, run[-1].end) - max(start, run[0].start)).total_seconds() for run in runs
        )
        kinds = None  # how each run joins the first (`cut_join.join_plan`)
        if type == "fast":
            if len(runs) > 1:
                kinds, reason = cut_join.join_plan(runs)
                if kinds:
                    converted = kinds.count("convert")
                    cut_run.method = "converted" if converted else "joined"
                    logger.info(
                        "Cut %s to %s: joining %d runs (%s), re-encoding the %d of another format",
                        start.isoformat(), end.isoformat(), len(runs), ", ".join(sorted(reasons)),
                        converted,
                    )  # fmt: skip
            else:
                reason = _fast_blocker(runs[0])
            if reason:
                cut_run.method = "concat"
                metrics.fallbacks.labels(reason=reason).inc()
                logger.warning(
                    "Cut %s to %s cannot be fast (%s across %d runs): using the concat filter",
                    start.isoformat(), end.isoformat(), reason, len(runs),
                )  # fmt: skip
        if cut_run.method == "fast":
            yield from _fast_cut(runs[0], start, end, cut_run.processes)
        elif kinds:
            yield from cut_join.joined_cut(
                runs, kinds, start, end, cut_run.processes, cut_run.pipes
            )
        else:
            yield from cut_join.concat_cut(runs, start, end, cut_run.processes, cut_run.pipes)
