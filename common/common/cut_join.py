"""Joining the runs of a fast MPEG-TS cut that crosses stream restarts or holes.

`common.cut` splits a range into runs of segments that can be joined byte for
byte (`cut._runs`: a stream restart, timestamps starting over, or a hole
allowed by `allow_holes`, ends a run) and hands several runs here:

- `join_blocker` says whether the runs can be cut fast and joined as they are
  (one format, the same PIDs and B-frame reorder delay);
- `joined_fast_cut` does that: each run cut fast (`cut._start_fast`), later
  runs shifted onto the output's timeline (`mpegts.Shifter`);
- `concat_cut` is the fallback: everything re-encoded through ffmpeg's concat
  filter, every run scaled/padded (`conform_video`) and resampled to the first
  segment's format.

This module builds on `common.cut` (its planning helpers and ffmpeg arguments),
which imports it only when a cut has several runs.
"""

import os

import gevent
import gevent.fileobject

from . import ffmpeg, mpegts
from .cut import (
    AUDIO_BITRATE,
    _as_ffmpeg_sees,
    _fast_blocker,
    _first_pts,
    _made_groups,
    _next_frame,
    _reorder_delay,
    _seconds,
    _start_fast,
    _ticks,
    _video_encode_args,
    segment_format,
    segment_head,
)


def join_blocker(runs):
    """Why these runs cannot each be cut fast and joined as they are, or None.

    They can when every run can be cut fast and all have one format, the
    same PIDs and the same B-frame reorder delay (so decode timestamps step
    evenly across a join): a stream that restarted, or resumed after a hole,
    with its encoder set up as before.
    """
    for run in runs:
        reason = _fast_blocker(run)
        if reason:
            return reason
    first = segment_head(runs[0][0].path)
    fmt = segment_format(runs[0][0].path)
    for run in runs:
        for segment in (run[0], run[-1]):
            head = segment_head(segment.path)
            if segment_format(segment.path).key() != fmt.key():
                return "format"
            pids = (head.pmt_pid, head.video_pid, head.audio_pid)
            if pids != (first.pmt_pid, first.video_pid, first.audio_pid):
                return "format"
            if _reorder_delay(head, fmt) != _reorder_delay(first, fmt):
                return "format"
    return None


def _run_frames(run, start, end):
    """(first frame, frame slot after the last) of a run's part of the range:
    90 kHz timestamps as ffmpeg reads the run's first and last segments."""
    first, last = run[0], run[-1]
    first_pts, last_pts = _first_pts(segment_head(first.path)), _first_pts(segment_head(last.path))
    ticks = segment_format(first.path).frame_ticks
    start_pts = first_pts + _ticks(max(start, first.start) - first.start)
    end_pts = last_pts + _ticks(min(end, last.end) - last.start)
    return _next_frame(first_pts, start_pts, ticks), _next_frame(last_pts, end_pts, ticks)


def joined_fast_cut(runs, start, end, processes):
    """Yield the fast cuts of several runs as one stream, nothing re-encoded
    beyond each run's ends.

    Each later run's timestamps (PTS, DTS, PCR) are shifted so that its first
    frame comes one frame after the previous run's last, and its continuity
    counters follow on (`mpegts.Shifter`): the hole or the restart is simply
    absent from the output. Audio keeps its packets, so at a join it may
    leave a gap of less than one audio frame.
    """
    started = [_start_fast(run, start, end, processes) for run in runs]
    counters = yield from _made_groups(started[0])
    out_end = _run_frames(runs[0], start, end)[1]
    for run, groups in zip(runs[1:], started[1:], strict=True):
        first_frame, end_frame = _run_frames(run, start, end)
        shifter = mpegts.Shifter(out_end - first_frame, after=counters)
        for chunk in _made_groups(groups):
            yield shifter.feed(chunk)
        shifter.finish()
        counters = shifter.last_counters
        out_end = end_frame + out_end - first_frame


def conform_video(fmt, target):
    """The filter tail that brings video of format `fmt` to `target`'s frame
    rate, size (scaled to fit, padded), SAR and pixel format, for the concat
    filter, which needs every input alike."""
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
    writers = [
        gevent.spawn(ffmpeg.feed, [s.path for s in run], pipe)
        for run, pipe in zip(runs, pipes, strict=True)
    ]
    try:
        yield from process.chunks()
        process.check()
        for writer in writers:
            writer.get()
    finally:
        gevent.killall(writers, timeout=ffmpeg.KILL_TIMEOUT)
