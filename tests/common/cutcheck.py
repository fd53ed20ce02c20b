"""Judging cuts with ffmpeg and ffprobe: the checks every cut test makes.

Test media carries a per-frame marker (`marker_filter`): the frame number in
binary, as white/black boxes along the top edge, so a decoded frame says
exactly which source frame it is, whatever re-encoding did to it.
"""

import json
import os
import subprocess
import time
from itertools import pairwise

import gevent

from common import ffmpeg, mpegts

MARKER_BITS = 12
MARKER_HEIGHT = 16


def marker_filter(width):
    """An ffmpeg filter chain burning the frame number into the top edge."""
    block = width // 16
    boxes = [f"drawbox=x=0:y=0:w=iw:h={MARKER_HEIGHT}:color=black:t=fill"]
    for bit in range(MARKER_BITS):
        boxes.append(
            f"drawbox=x={bit * block}:y=0:w={block}:h={MARKER_HEIGHT}:color=white:t=fill"
            f":enable='mod(floor(n/{2**bit}),2)'"
        )
    return ",".join(boxes)


def wrap_ffmpeg(tmp_path, monkeypatch, action):
    """Make cuts run an ffmpeg that does `action` (shell) for the fast cut's
    remux of its last segment (the only one choosing video packets up to a
    DTS), and is the real one otherwise."""
    script = tmp_path / "ffmpeg"
    script.write_text(f'#!/bin/sh\ncase "$*" in *"gte(dts"*) {action};; esac\nexec ffmpeg "$@"\n')
    script.chmod(0o755)
    monkeypatch.setattr(ffmpeg, "FFMPEG", str(script))


def write_cut(path, chunks):
    """Write a cut's bytes (an iterable: `cut(...)`, a response body) to `path`; returns it."""
    with open(path, "wb") as f:
        for chunk in chunks:
            f.write(chunk)
    return path


def decode_warnings(path):
    """What `ffmpeg -v warning -i path -f null -` prints: must be nothing."""
    result = subprocess.run(
        [
            "ffmpeg",
            "-hide_banner",
            "-nostdin",
            "-v",
            "warning",
            "-i",
            f"file:{path}",
            "-f",
            "null",
            "-",
        ],
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0, result.stderr
    return result.stderr.strip()


def frame_numbers(path, width):
    """The marker of every decoded frame of `path`, in presentation order."""
    raw = subprocess.run(
        [
            "ffmpeg", "-hide_banner", "-nostdin", "-v", "error", "-i", f"file:{path}",
            "-vf", f"crop={width}:{MARKER_HEIGHT}:0:0,format=gray",
            "-fps_mode", "passthrough", "-f", "rawvideo", "-",
        ],
        capture_output=True,
        check=True,
    ).stdout  # fmt: skip
    size = width * MARKER_HEIGHT
    block = width // 16
    numbers = []
    for offset in range(0, len(raw), size):
        frame = raw[offset : offset + size]
        number = 0
        for bit in range(MARKER_BITS):
            row = frame[(MARKER_HEIGHT // 2) * width :][:width]
            value = sum(row[bit * block + 3 : (bit + 1) * block - 3]) / (block - 6)
            if value > 128:
                number |= 1 << bit
        numbers.append(number)
    return numbers


def packets(path):
    """{'video': [...], 'audio': [...]} of packets (pts, dts, duration in 90 kHz), file order."""
    output = subprocess.run(
        [
            "ffprobe", "-v", "error", "-show_entries",
            "packet=stream_index,pts,dts,duration:stream=index,codec_type,width,height",
            "-of", "json", f"file:{path}",
        ],
        capture_output=True,
        check=True,
    ).stdout  # fmt: skip
    parsed = json.loads(output)
    kinds = {s["index"]: s["codec_type"] for s in parsed["streams"]}
    result = {"video": [], "audio": [], "streams": parsed["streams"]}
    for packet in parsed["packets"]:
        result[kinds[packet["stream_index"]]].append(
            (packet.get("pts"), packet.get("dts"), packet.get("duration"))
        )
    return result


def check_timestamps(found, frame_ticks=3000, audio_slack=0, audio_joins=0):
    """Video DTS step by exactly one frame; audio packets follow on without gap or
    overlap (re-encoded audio may be `audio_slack` ticks off: rounding between
    its sample clock and 90 kHz; at `audio_joins` places, where two recordings
    were joined, by up to three frames). Returns (video_start, video_end, audio_start,
    audio_end) in ticks."""
    video, audio = found["video"], found["audio"]
    dts = [p[1] for p in video]
    steps = {b - a for a, b in pairwise(dts)}
    assert steps == {frame_ticks}, f"video DTS steps {sorted(steps)}"
    pts = sorted(p[0] for p in video)
    assert {b - a for a, b in pairwise(pts)} == {frame_ticks}, "video frames missing/doubled"
    joins = 0
    for (pts_a, _, duration), (pts_b, _, _) in pairwise(audio):
        gap = pts_b - pts_a - duration
        if abs(gap) > audio_slack:
            # Where two recordings were joined: the first one's last audio
            # frames were muxed into a segment that is not there (encoders
            # mux audio 20-60 ms ahead of video), so a gap of up to 3 frames,
            # or an overlap of less than one.
            joins += 1
            assert joins <= audio_joins and -duration < gap <= 3 * duration, (
                f"audio gap/overlap at {pts_a}: {gap}"
            )
    return pts[0], pts[-1] + frame_ticks, audio[0][0], audio[-1][0] + audio[-1][2]


def check_continuity(path):
    """Every PID's continuity counters run on, and PCR never goes backwards."""
    with open(path, "rb") as f:
        data = f.read()
    mpegts.check_packets(data)
    last = {}
    pcr = None
    for offset in range(0, len(data), mpegts.PACKET_SIZE):
        pid = mpegts.packet_pid(data, offset)
        has_payload = bool(data[offset + 3] & 0x10)
        cc = data[offset + 3] & 0x0F
        if pid in last:
            expected = (last[pid] + 1) & 0x0F if has_payload else last[pid]
            assert cc == expected, f"pid {pid} at byte {offset}: counter {cc}, expected {expected}"
        last[pid] = cc
        value = mpegts._pcr(data, offset)
        if value is not None:
            # PCR wraps with the 33-bit clock: "forward" is less than half a turn on.
            forward = pcr is None or (value - pcr) % mpegts.TIMESTAMP_MODULO < 1 << 32
            assert forward, f"PCR goes back at byte {offset}"
            pcr = value


def child_processes():
    """PIDs of this process's live (not zombie) child processes."""
    me = str(os.getpid())
    found = set()
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/status") as f:
                status = dict(line.split(":", 1) for line in f if ":" in line)
        except OSError:
            continue
        if status.get("PPid", "").strip() == me and not status["State"].strip().startswith("Z"):
            found.add(int(entry))
    return found


def new_children_after(before, timeout=1):
    """Child processes not in `before` still alive after up to `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while child_processes() - before and time.monotonic() < deadline:
        gevent.sleep(0.02)
    return child_processes() - before
