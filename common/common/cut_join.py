"""Joining the runs of a fast MPEG-TS cut that crosses stream restarts or holes.

`common.cut` splits a range into runs of segments that can be joined byte for
byte (`cut._runs`: a stream restart, timestamps starting over, or a hole
allowed by `allow_holes`, ends a run) and hands several runs here:

- `join_plan` says how each run joins the first: copied (it has the first
  run's format, PIDs and B-frame reorder delay) or converted (any other
  format), or that they cannot be joined so (the first run cannot be cut
  fast, or its audio is not AAC-LC) and need `concat_cut`;
- `joined_cut` makes that: copied runs cut fast (`cut._start_fast`),
  converted runs re-encoded whole into the first run's format (`_Conversion`),
  every later run shifted onto the output's timeline (`mpegts.Shifter`), so
  that the output is one stream, timestamps and continuity counters running
  on across each join, and only the converted runs cost a re-encode;
- `concat_cut` is the fallback (and the full cut): everything re-encoded
  through ffmpeg's concat filter, every run scaled/padded (`conform_video`)
  and resampled to the first segment's format.

This module builds on `common.cut` (its planning helpers and ffmpeg
arguments), which imports it lazily, when it cuts.
"""

import math
import os

import gevent
import gevent.fileobject
import gevent.queue

from . import ffmpeg, mpegts
from .cut import (
    AUDIO_BITRATE,
    _as_ffmpeg_sees,
    _drop_args,
    _fast_blocker,
    _first_pts,
    _made_groups,
    _mux_args,
    _next_frame,
    _reorder_delay,
    _seconds,
    _start_fast,
    _ticks,
    _video_encode_args,
    segment_format,
    segment_head,
)


def join_plan(runs):
    """How each run joins the first: (["copy" | "convert", ...], None), or
    (None, reason) when the runs must all go through `concat_cut`.

    A run is copied (cut fast, its packets kept) when it can be cut fast and
    has the first run's format, PIDs and B-frame reorder delay (so decode
    timestamps step evenly across a join): a stream that restarted, or
    resumed after a hole, with its encoder set up as before. Any other run is
    converted to the first run's format. That needs the first run itself to
    be cut fast ("codec" if not) and its audio to be AAC-LC, which ffmpeg's
    encoder can continue ("codec" if not).
    """
    reason = _fast_blocker(runs[0])
    if reason:
        return None, reason
    audio = segment_format(runs[0][0].path).audio
    if audio and (audio["codec_name"] != "aac" or audio["profile"] not in ("LC", None)):
        return None, "codec"
    kinds = ["copy"] + ["copy" if _copyable(run, runs[0]) else "convert" for run in runs[1:]]
    return kinds, None


def _copyable(run, first_run):
    """Whether `run` can be cut fast and joined to `first_run` as it is."""
    if _fast_blocker(run):
        return False
    first = segment_head(first_run[0].path)
    fmt = segment_format(first_run[0].path)
    for segment in (run[0], run[-1]):
        head = segment_head(segment.path)
        if segment_format(segment.path).key() != fmt.key():
            return False
        if (head.pmt_pid, head.video_pid, head.audio_pid) != (
            first.pmt_pid, first.video_pid, first.audio_pid
        ):  # fmt: skip
            return False
        if _reorder_delay(head, fmt) != _reorder_delay(first, fmt):
            return False
    return True


def _run_frames(run, start, end):
    """(first frame, frame slot after the last) of a run's part of the range:
    90 kHz timestamps as ffmpeg reads the run's first and last segments."""
    first, last = run[0], run[-1]
    first_pts, last_pts = _first_pts(segment_head(first.path)), _first_pts(segment_head(last.path))
    ticks = segment_format(first.path).frame_ticks
    start_pts = first_pts + _ticks(max(start, first.start) - first.start)
    end_pts = last_pts + _ticks(min(end, last.end) - last.start)
    return _next_frame(first_pts, start_pts, ticks), _next_frame(last_pts, end_pts, ticks)


def joined_cut(runs, kinds, start, end, processes, pipes):
    """Yield several runs as one stream, as `join_plan` says: the copied runs
    cut fast (nothing re-encoded beyond their ends), the others converted
    whole (`_Conversion`).

    Every run's ffmpegs start at once. Each later run's timestamps (PTS, DTS,
    PCR) are shifted so that its first frame comes one frame after the
    previous run's last, and its continuity counters follow on
    (`mpegts.Shifter`): the hole or the restart is simply absent from the
    output. Copied audio keeps its packets, so at a join it may leave a gap
    of less than one audio frame, or up to 60 ms where the source's last
    audio before a restart was never recorded; a converted run's audio
    starts and ends with its video.
    """
    started = []
    try:
        for run, kind in zip(runs, kinds, strict=True):
            if kind == "copy":
                started.append(_start_fast(run, start, end, processes))
            else:
                started.append(_Conversion(run, runs[0], start, end, processes, pipes))
        counters = yield from _made_groups(started[0])
        out_end = _run_frames(runs[0], start, end)[1]
        for run, what in zip(runs[1:], started[1:], strict=True):
            if isinstance(what, _Conversion):
                first_frame, length, chunks = what.base, what.length, what.chunks()
            else:
                first_frame, end_frame = _run_frames(run, start, end)
                length, chunks = end_frame - first_frame, _made_groups(what)
            shifter = mpegts.Shifter(out_end - first_frame, after=counters)
            for chunk in chunks:
                yield shifter.feed(chunk)
            shifter.finish()
            counters = shifter.last_counters
            out_end += length
    finally:
        writers = [what.writer for what in started if isinstance(what, _Conversion)]
        gevent.killall(writers, timeout=ffmpeg.KILL_TIMEOUT)


def conform_video(fmt, target):
    """The filter tail that brings video of format `fmt` to `target`'s frame
    rate, size (scaled to fit, padded), SAR and pixel format: for a converted
    run, and for the concat filter, which needs every input alike."""
    width, height = target.video["width"], target.video["height"]
    tail = ""
    if fmt.video["frame_rate"] != target.video["frame_rate"]:
        tail += ",fps={}/{}".format(*target.video["frame_rate"])
    return tail + (
        f",scale={width}:{height}:force_original_aspect_ratio=decrease"
        f",pad={width}:{height}:(ow-iw)/2:(oh-ih)/2"
        f",setsar={target.video['sar'].replace(':', '/')}"
        f",format={target.video['pix_fmt'] or 'yuv420p'}"
    )


# Where a converted run's own timeline starts (10 s, in 90 kHz ticks) before
# `mpegts.Shifter` moves it onto the output's: far enough from 0 that its
# DTS (up to two frames before the PTS) and PCR (the mux delay, up to 1.4 s,
# before that) never go negative, which the MPEG-TS muxer cannot write.
CONVERTED_BASE = 10 * mpegts.CLOCK
# How much of a converted run's output is read ahead (bytes, at most) while
# the runs before it are still being sent, so that its encode runs alongside
# theirs instead of waiting on a full pipe: about a minute of 720p, which the
# converter writes at 0.6 MB/s (bench/cut.py's test pattern, CRF 18).
READ_AHEAD = 32 * 1024 * 1024
# ffmpeg's AAC coder for a converted run's audio: "fast" takes half the CPU of
# the default, twoloop (0.54 against 1.06 CPU-s for 19.5 s of stereo at
# 160 kb/s here: a tenth of the conversion), and ffmpeg's developers found it
# the better-sounding of the two at such bitrates.
AAC_CODER = "fast"


class _Conversion:
    """One run re-encoded whole into the first run's format: MPEG-TS that
    continues the first run's stream once shifted (started at once).

    Its segments' bytes go through a pipe into one ffmpeg, which trims the
    run to its part of the range and conforms the video (`conform_video`),
    then encodes it as a fast cut's re-encoded pieces are: the same x264
    settings, B-frame reorder delay (decode timestamps set one frame apart, as
    `cut._encode_piece_args` does), PIDs and mux delay. The audio is
    resampled to the first run's rate and layout, padded with silence to the
    video's length (a run's last audio before a restart is often missing;
    a run without audio gets silence) and encoded as AAC; the encoder's
    priming packet, one frame before the first sample, and any packet from
    half a frame before the video's end on are dropped, so that audio starts
    and ends with the video. Its first frame is at `base` (90 kHz) and it
    lasts `length` ticks, whatever the source holds: a frame it lacks
    (damaged, or past the end of a segment cut short) is the one before
    held. Its output is read ahead (up to `READ_AHEAD`) as it comes;
    `chunks()` yields it and raises `FFmpegError` if ffmpeg failed (a
    warning from ffmpeg reading damaged input is logged).
    """

    def __init__(self, run, target_run, start, end, processes, pipes):
        target = segment_format(target_run[0].path)
        target_head = segment_head(target_run[0].path)
        fmt = segment_format(run[0].path)
        head, last_head = segment_head(run[0].path), segment_head(run[-1].path)
        # ffmpeg reads the run as one file: timestamps as it sees them there.
        first_pts = _first_pts(head)
        last_pts = _as_ffmpeg_sees(last_head.video_pts, head.video_dts)
        s = first_pts + _ticks(max(start, run[0].start) - run[0].start)
        e = last_pts + _ticks(min(end, run[-1].end) - run[-1].start)
        first_frame = _next_frame(first_pts, s, fmt.frame_ticks)
        ticks = target.frame_ticks
        frames = max(1, round((_next_frame(first_pts, e, fmt.frame_ticks) - first_frame) / ticks))
        # On the output's frame grid, so that an fps filter keeps it exactly.
        self.base = round(math.ceil(CONVERTED_BASE / ticks) * ticks)
        self.length = round(frames * ticks)

        # Exactly `frames` frames, one frame apart: a frame lost to damage is
        # filled by the one before (`fps`, which `conform_video` adds only
        # for another rate), and a run whose last segment holds fewer frames
        # than its listed duration says (cut short before a hole) ends on
        # copies of its last frame, so that the next run still joins one
        # frame on.
        video = f"[0:v:0]trim=start_pts={s}:end_pts={e},setpts=PTS-{first_frame}+{self.base}"
        video += conform_video(fmt, target)
        if fmt.frame_rate == target.frame_rate:
            video += ",fps={}/{}".format(*target.frame_rate)
        filters = [video + f",tpad=stop=-1:stop_mode=clone,trim=end_frame={frames}[v]"]
        delay = _reorder_delay(target_head, target)
        args = ["-map", "[v]"] + _video_encode_args(target, delay)
        args += ["-enc_time_base:v", f"1:{mpegts.CLOCK}", "-fps_mode", "passthrough"]
        args += ["-bsf:v", f"setts=pts=PTS:dts=STARTPTS+(N-{delay})*{ticks:g}/{mpegts.CLOCK}/TB"]
        if target.audio:
            rate = target.audio["sample_rate"]
            layout = target.audio["channel_layout"] or (
                "stereo" if target.audio["channels"] == 2 else "mono"
            )
            if fmt.audio:
                sound = (
                    f"[0:a:0]atrim=start={_seconds(first_frame)}"
                    f":end={_seconds(first_frame + self.length)}"
                    f",asetpts=PTS+({_seconds(self.base - first_frame)})/TB"
                )
            else:
                sound = (
                    f"anullsrc=r={rate}:cl={layout},atrim=end={_seconds(self.length)}"
                    f",asetpts=PTS+{_seconds(self.base)}/TB"
                )
            filters.append(
                sound + f",aresample={rate},aformat=sample_fmts=fltp:channel_layouts={layout}"
                f",apad=whole_dur={_seconds(self.length)}[a]"
            )
            half_audio = target.audio_frame_ticks / 2
            args += ["-map", "[a]", "-c:a", "aac", "-aac_coder", AAC_CODER, "-b:a", AUDIO_BITRATE]
            args += ["-ar", str(rate)]
            args += _drop_args(
                "a", "pts", self.base - half_audio, self.base + self.length - half_audio
            )
        args = ["-filter_complex", ";".join(filters)] + args + _mux_args(target_head) + ["pipe:1"]

        read_fd, write_fd = os.pipe()
        try:
            # The write end belongs to `pipes` at once, so that it is closed
            # however the cut ends.
            pipes.append(gevent.fileobject.FileObjectPosix(write_fd, "wb", close=True))
            source = ["-copyts", "-f", "mpegts", "-i", f"pipe:{read_fd}"]
            self.process = ffmpeg.Process(ffmpeg.base_args() + source + args, pass_fds=[read_fd])
            processes.append(self.process)
        finally:
            os.close(read_fd)
        self.writer = gevent.spawn(ffmpeg.feed, [(s.path, 0) for s in run], pipes[-1])
        self.output = gevent.queue.Queue(maxsize=READ_AHEAD // ffmpeg.CHUNK_SIZE)
        # A reader of the process: `kill` ends it.
        self.process.readers.append(gevent.spawn(self._read_ahead))

    def _read_ahead(self):
        """Queue the output's chunks, then None, or the error that ended it."""
        try:
            for chunk in self.process.chunks():
                self.output.put(chunk)
            self.process.check()
            self.writer.get()
            self.output.put(None)
        except Exception as e:  # FFmpegError, or the writer's OSError: for `chunks`
            self.output.put(e)

    def chunks(self):
        while (chunk := self.output.get()) is not None:
            if isinstance(chunk, Exception):
                raise chunk
            yield chunk


def concat_cut(runs, start, end, processes, pipes):
    """Yield a re-encoded cut of the runs, joined by ffmpeg's concat filter.

    Each run is one input, its segments' bytes written into a pipe; each is
    trimmed to its part of the range, its timestamps restarted at 0, scaled,
    padded and resampled to the first segment's format, then all are joined.
    """
    target = segment_format(runs[0][0].path)
    audio = target.audio or {"sample_rate": 48000, "channel_layout": "stereo", "channels": 2}
    layout = audio["channel_layout"] or ("stereo" if audio["channels"] == 2 else "mono")

    read_fds, filters = [], []
    args = ffmpeg.base_args() + ["-copyts"]
    try:
        for i, run in enumerate(runs):
            # The write end belongs to `pipes` at once, so that it is closed
            # however this ends.
            read_fd, write_fd = os.pipe()
            read_fds.append(read_fd)
            pipes.append(gevent.fileobject.FileObjectPosix(write_fd, "wb", close=True))
            args += ["-f", "mpegts", "-i", f"pipe:{read_fd}"]
            head = segment_head(run[0].path)
            last_head = segment_head(run[-1].path)
            run_start = max(start, run[0].start)
            run_end = min(end, run[-1].end)
            # ffmpeg reads the run as one file: timestamps as it sees them there.
            first_pts = _first_pts(head)
            last_pts = _as_ffmpeg_sees(last_head.video_pts, head.video_dts)
            s = first_pts + _ticks(run_start - run[0].start)
            e = last_pts + _ticks(run_end - run[-1].start)
            fmt = segment_format(run[0].path)
            # Timestamps restart at the first kept frame, on the frame grid, and
            # the audio is trimmed to the kept frames exactly.
            first_frame = _next_frame(first_pts, s, fmt.frame_ticks)
            end_frame = _next_frame(first_pts, e, fmt.frame_ticks)
            video = f"[{i}:v:0]trim=start_pts={s}:end_pts={e},setpts=PTS-{first_frame}"
            video += conform_video(fmt, target) + f"[v{i}]"
            if fmt.audio:
                sound = (
                    f"[{i}:a:0]atrim=start={_seconds(first_frame)}:end={_seconds(end_frame)}"
                    f",asetpts=PTS-{_seconds(first_frame)}/TB"
                )
            else:
                sound = (
                    f"anullsrc=r={audio['sample_rate']}:cl={layout}"
                    f",atrim=end={_seconds(end_frame - first_frame)}"
                )
            sound += (
                f",aresample={audio['sample_rate']}"
                f",aformat=sample_fmts=fltp:channel_layouts={layout}[a{i}]"
            )
            filters += [video, sound]
        joined = "".join(f"[v{i}][a{i}]" for i in range(len(runs)))
        filters.append(f"{joined}concat=n={len(runs)}:v=1:a=1[v][a]")
        args += ["-filter_complex", ";".join(filters), "-map", "[v]", "-map", "[a]"]
        args += _video_encode_args(target)
        args += ["-enc_time_base:v", f"1:{mpegts.CLOCK}", "-fps_mode", "passthrough"]
        args += ["-c:a", "aac", "-b:a", AUDIO_BITRATE, "-ar", str(audio["sample_rate"])]
        args += ["-f", "mpegts", "pipe:1"]
        process = ffmpeg.Process(args, pass_fds=read_fds)
        processes.append(process)
    finally:
        for fd in read_fds:
            os.close(fd)
    inputs = [([(s.path, 0) for s in run], pipe) for run, pipe in zip(runs, pipes, strict=True)]
    yield from ffmpeg.fed_output(process, inputs)
